variable "environment" {
  description = "Environment name, e.g. cellbank-prod; prefixes AWS resource names."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "vpc_cidr" {
  description = "The router reaches every cell's API and brokers inside the VPC."
  type        = string
}

variable "data_subnet_ids" {
  description = "Three private data subnets (one per AZ) for RDS and MSK."
  type        = list(string)
}

variable "cluster_security_group_id" {
  description = "EKS cluster security group (nodes, kubelet probes, ingress controller, DNS)."
  type        = string
}

variable "domain" {
  description = "Public API domain; global answers at https://<domain>, cells at https://shard-N.<domain>."
  type        = string
}

variable "route53_zone_id" {
  type = string
}

variable "ingress_hostname" {
  description = "DNS name of the ingress controller's load balancer."
  type        = string
}

variable "cluster_name" {
  description = "The EKS cluster (Pod Identity association of the router's role)."
  type        = string
}

variable "operator_role_arns" {
  description = "Operators' roles: they may decrypt the ops API's admin token (cellctl), nothing else of global's."
  type        = list(string)
  default     = []
}

variable "image_tag" {
  description = "The cellbank-global image the tier runs (its overlay's images: entry must match)."
  type        = string
}

variable "postgres_version" {
  description = "Major version only (\"16\"): RDS applies minor versions itself."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  type    = string
  default = "db.r6g.xlarge"
}

variable "db_allocated_storage" {
  type    = number
  default = 200
}

variable "kafka_version" {
  type    = string
  default = "3.7.x"
}

variable "kafka_instance_type" {
  type    = string
  default = "kafka.m7g.large"
}

variable "kafka_volume_size" {
  type    = number
  default = 100
}

variable "tags" {
  type    = map(string)
  default = {}
}
