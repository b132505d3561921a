variable "shard_id" {
  description = "The cell's id, shard-N (the same rule as shared::ids::ShardId)."
  type        = string
  validation {
    condition     = can(regex("^shard-[1-9][0-9]{0,3}$", var.shard_id))
    error_message = "shard_id must look like shard-1 (no leading zero)."
  }
}

variable "environment" {
  description = "Environment name, e.g. cellbank-prod; prefixes AWS resource names."
  type        = string
}

variable "vpc_id" {
  type = string
}

variable "data_subnet_ids" {
  description = "Three private data subnets (one per AZ) for RDS and MSK."
  type        = list(string)
}

variable "cluster_security_group_id" {
  description = "EKS cluster security group (nodes, kubelet probes, ingress controller, DNS)."
  type        = string
}

variable "router_security_group_id" {
  description = "The global tier's pod security group: the router produces to this cell's broker and calls its API."
  type        = string
}

variable "domain" {
  description = "Public API domain; the cell answers at https://<shard_id>.<domain>."
  type        = string
}

variable "route53_zone_id" {
  type = string
}

variable "ingress_hostname" {
  description = "DNS name of the ingress controller's load balancer."
  type        = string
}

variable "global_internal_url" {
  description = "In-cluster URL of the global tier (JWKS); must match CELLBANK__GLOBAL__URL in infra/k8s/base/shard."
  type        = string
  default     = "http://cellbank-global.cellbank-global.svc.cluster.local:8080"
}

variable "internal_token" {
  description = "This cell's auth.internal_token, which global presents to it (and to no other cell); the global module generates one per cell."
  type        = string
  sensitive   = true
}

variable "k8s_overlay_path" {
  description = "Path of this cell's kustomize overlay (infra/k8s/overlays/<shard_id>, written by render-shard.sh)."
  type        = string
}

variable "capacity" {
  description = "Customers this cell is sized for (the shard registry's capacity)."
  type        = number
  default     = 1000000
}

variable "postgres_version" {
  type    = string
  default = "16.4"
}

variable "db_instance_class" {
  type    = string
  default = "db.r6g.large"
}

variable "db_allocated_storage" {
  description = "GiB; storage autoscaling may grow it to 10x."
  type        = number
  default     = 100
}

variable "kafka_version" {
  type    = string
  default = "3.7.x"
}

variable "kafka_instance_type" {
  type    = string
  default = "kafka.m7g.large"
}

variable "kafka_broker_count" {
  description = "A multiple of the three AZs."
  type        = number
  default     = 3
  validation {
    condition     = var.kafka_broker_count % 3 == 0
    error_message = "kafka_broker_count must be a multiple of 3 (one per AZ)."
  }
}

variable "kafka_volume_size" {
  description = "GiB of EBS per broker."
  type        = number
  default     = 500
}

variable "tags" {
  type    = map(string)
  default = {}
}
