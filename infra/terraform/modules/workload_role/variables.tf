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
  description = "The only secrets the pods may read."
  type        = list(string)
}

variable "kms_key_arn" {
  description = "The tier's or cell's own key (the secrets are encrypted with it)."
  type        = string
}

variable "database_resource_id" {
  description = "The RDS resource id of the tier's or cell's own database."
  type        = string
}

variable "database_user" {
  type    = string
  default = "cellbank"
}

variable "tags" {
  type    = map(string)
  default = {}
}
