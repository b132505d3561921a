variable "name" {
  description = "The role's name."
  type        = string
}

variable "cluster_name" {
  type = string
}

variable "namespace" {
  type = string
}

variable "service_account" {
  type = string
}

variable "secret_arns" {
  description = "The only secrets the pods may read (none: the role reads no secret and connects to no database)."
  type        = list(string)
  default     = []
}

variable "kms_key_arn" {
  description = "The tier's or cell's own key (the secrets are encrypted with it); required with secret_arns."
  type        = string
  default     = null
  validation {
    condition     = length(var.secret_arns) == 0 || var.kms_key_arn != null
    error_message = "kms_key_arn is required when the role reads secrets."
  }
}

variable "database_resource_id" {
  description = "The RDS resource id of the tier's or cell's own database (null: none)."
  type        = string
  default     = null
}

variable "database_user" {
  type    = string
  default = "cellbank"
}

variable "tags" {
  type    = map(string)
  default = {}
}
