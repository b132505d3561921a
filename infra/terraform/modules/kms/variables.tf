variable "name" {
  description = "The key's alias is alias/<name>."
  type        = string
}

variable "description" {
  type = string
}

variable "tags" {
  type    = map(string)
  default = {}
}
