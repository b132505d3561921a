variable "name" {
  description = "The key's alias is alias/<name>; CloudWatch log groups under /cellbank/<name>/ may use it."
  type        = string
}

variable "description" {
  type = string
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
