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

variable "image_tag" {
  description = "The cellbank-shard image this cell runs (its overlay's images: entry must match; infra/rollout.sh checks)."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$", var.image_tag))
    error_message = "image_tag must be a container image tag."
  }
}

variable "vpc_id" {
  type = string
}

variable "data_subnet_ids" {
  description = "Three private data subnets (one per AZ) for RDS and MSK."
  type        = list(string)
}

variable "cluster_name" {
  description = "The EKS cluster (Pod Identity associations)."
  type        = string
}

variable "cluster_security_group_id" {
  description = "EKS cluster security group (nodes, kubelet probes, ingress controller, DNS)."
  type        = string
}

variable "router_security_group_id" {
  description = "The global tier's pod security group: the router produces to this cell's broker and calls its API."
  type        = string
}

variable "router_role_arn" {
  description = "The global tier's workload role: it may decrypt this cell's internal token, nothing else."
  type        = string
}

variable "router_role_name" {
  description = "The same role by name (this cell attaches its read-internal-token policy to it)."
  type        = string
}

variable "operator_role_arns" {
  description = "Operators' roles: they may decrypt this cell's admin token (cellctl --shard-token), nothing else of it."
  type        = list(string)
  default     = []
}

variable "alarm_topic_arn" {
  description = "SNS topic the cell's alarms notify."
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

variable "analytics_bucket" {
  description = "The bank's analytics bucket (modules/analytics): this cell's exporter writes its own paths there."
  type        = string
}

variable "analytics_bucket_arn" {
  type = string
}

variable "analytics_kms_key_arn" {
  description = "The analytics bucket's key: the exporter generates data keys with it (and decrypts its checkpoint)."
  type        = string
}

variable "analytics_prefix" {
  description = "The dataset's prefix in the bucket: the exporter's store is s3://<bucket>/<prefix>."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.analytics_prefix))
    error_message = "analytics_prefix is one path segment, without slashes."
  }
}

variable "decommission" {
  description = "Step one of removing the cell: turns the database's deletion protection off, in its own apply (infra/README.md)."
  type        = bool
  default     = false
}

variable "capacity" {
  description = "Customers this cell is sized for (the shard registry's capacity)."
  type        = number
  default     = 1000000
}

variable "postgres_version" {
  description = "Major version only (\"16\"): RDS applies minor versions itself."
  type        = string
  default     = "16"
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

variable "max_consumer_lag_seconds" {
  type    = number
  default = 60
}

variable "max_errors_per_minute" {
  type    = number
  default = 10
}

variable "tags" {
  type    = map(string)
  default = {}
}
