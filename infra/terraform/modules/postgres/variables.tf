variable "name" {
  description = "Instance identifier; also names its subnet group, parameter group, monitoring role and security group."
  type        = string
}

variable "engine_version" {
  type = string
}

variable "instance_class" {
  type = string
}

variable "allocated_storage" {
  description = "GiB; storage autoscaling may grow it to 10x."
  type        = number
}

variable "vpc_id" {
  type = string
}

variable "subnet_ids" {
  description = "Three private data subnets (one per AZ)."
  type        = list(string)
}

variable "security_group_description" {
  description = "Says who the database admits."
  type        = string
}

variable "client_security_groups" {
  description = "The only security groups admitted on 5432, by a fixed key (the rule's name)."
  type = map(object({
    description       = string
    security_group_id = string
  }))
}

variable "kms_key_arn" {
  description = "Encrypts storage and Performance Insights."
  type        = string
}

variable "tags" {
  type    = map(string)
  default = {}
}
