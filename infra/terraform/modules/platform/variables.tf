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

variable "node_min_size" {
  type    = number
  default = 3
}

variable "node_max_size" {
  type    = number
  default = 30
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
