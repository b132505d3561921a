variable "name" {
  description = "Cluster name; also names its configuration, log group (/cellbank/<name>/msk) and security group."
  type        = string
}

variable "kafka_version" {
  type = string
}

variable "instance_type" {
  type = string
}

variable "broker_count" {
  description = "A multiple of the three AZs."
  type        = number
  validation {
    condition     = var.broker_count % 3 == 0
    error_message = "broker_count must be a multiple of 3 (one per AZ)."
  }
}

variable "volume_size" {
  description = "GiB of EBS per broker."
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
  description = "Says who the brokers admit."
  type        = string
  # EC2 refuses any other character at apply time (an apostrophe, say), and
  # neither the provider nor `terraform validate` checks this argument.
  validation {
    condition     = can(regex("^[0-9A-Za-z_ .:/()#,@\\[\\]+=&;{}!$*-]{1,255}$", var.security_group_description))
    error_message = "security_group_description may use only a-z A-Z 0-9 spaces and _ . : / ( ) # , @ [ ] + = & ; { } ! $ * - (EC2 rejects anything else, such as an apostrophe)."
  }
}

variable "client_security_groups" {
  description = "The only security groups admitted on 9092, by a fixed key (the rule's name)."
  type = map(object({
    description       = string
    security_group_id = string
  }))
}

variable "kms_key_arn" {
  description = "Encrypts the brokers' storage and their CloudWatch log group."
  type        = string
}

variable "tags" {
  type    = map(string)
  default = {}
}
