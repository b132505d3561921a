variable "name" {
  description = "Environment name; prefixes every resource (e.g. cellbank-prod)."
  type        = string
}

variable "vpc_cidr" {
  description = "The VPC's CIDR. Pods and nodes use the private /18s, databases and brokers the data /18 (10.0.64.0/18 for the default), which the NetworkPolicies in infra/k8s name."
  type        = string
  default     = "10.0.0.0/16"
}

variable "availability_zones" {
  description = "Three AZs: RDS multi-AZ and MSK spread over them."
  type        = list(string)
  validation {
    condition     = length(var.availability_zones) == 3
    error_message = "Use exactly three availability zones."
  }
}

variable "kubernetes_version" {
  type    = string
  default = "1.33"
}

variable "node_instance_types" {
  type    = list(string)
  default = ["m7g.xlarge"]
}

variable "node_min_size_per_zone" {
  type    = number
  default = 1
}

variable "node_max_size_per_zone" {
  description = "The autoscaler adds nodes up to this many per AZ as cells are added."
  type        = number
  default     = 10
}

variable "route53_zone_id" {
  description = "The public zone of the API domain: cert-manager proves shard-N.<domain> with DNS-01 records in it."
  type        = string
}

variable "cluster_admin_cidrs" {
  description = "CIDRs allowed to the private EKS API endpoint (VPN, bastion)."
  type        = list(string)
  default     = []
}

variable "tags" {
  type    = map(string)
  default = {}
}
