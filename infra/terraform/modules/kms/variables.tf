variable "name" {
  description = "The key's alias is alias/<name>; CloudWatch log groups under /cellbank/<name>/ may use it."
  type        = string
}

variable "description" {
  type = string
}

variable "services" {
  description = "The data services (endpoint prefixes) the account may encrypt and decrypt through with this key."
  type        = list(string)
  default     = ["rds", "kafka"]
  validation {
    condition     = length(var.services) > 0 && !contains(var.services, "secretsmanager")
    error_message = "services names at least one data service; Secrets Manager has its own statements."
  }
}

variable "decrypt_role_arns" {
  description = "The only roles that may decrypt with this key (through Secrets Manager): the tier's or cell's own workload roles."
  type        = list(string)
  default     = []
}

variable "secret_readers" {
  description = "Roles of another tier that may decrypt one named secret each (Secrets Manager names, without the random suffix)."
  type = list(object({
    role_arn    = string
    secret_name = string
  }))
  default = []
}

variable "tags" {
  type    = map(string)
  default = {}
}
