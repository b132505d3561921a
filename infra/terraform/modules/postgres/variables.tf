variable "name" {
  description = "Instance identifier; also names its subnet group, parameter group, monitoring role and security group."
  type        = string
}

variable "engine_version" {
  description = "Major version only, e.g. \"16\": minor versions are RDS's to apply (auto_minor_version_upgrade)."
  type        = string
  validation {
    condition     = can(regex("^[0-9]{2}$", var.engine_version))
    error_message = "engine_version is a major version only, e.g. \"16\" (a pinned minor makes every automatic minor upgrade look like a downgrade)."
  }
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
  # EC2 refuses any other character at apply time (an apostrophe, say), and
  # neither the provider nor `terraform validate` checks this argument.
  validation {
    condition     = can(regex("^[0-9A-Za-z_ .:/()#,@\\[\\]+=&;{}!$*-]{1,255}$", var.security_group_description))
    error_message = "security_group_description may use only a-z A-Z 0-9 spaces and _ . : / ( ) # , @ [ ] + = & ; { } ! $ * - (EC2 rejects anything else, such as an apostrophe)."
  }
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

variable "decommission" {
  description = "Turns deletion protection off, in its own apply, before the cell is destroyed (infra/README.md)."
  type        = bool
  default     = false
}
