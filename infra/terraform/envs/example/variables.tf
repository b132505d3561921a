variable "environment" {
  description = "Prefix of every AWS resource name."
  type        = string
  default     = "cellbank-example"
}

variable "region" {
  type    = string
  default = "sa-east-1"
}

variable "availability_zones" {
  type    = list(string)
  default = ["sa-east-1a", "sa-east-1b", "sa-east-1c"]
}

variable "domain" {
  description = "Public API domain: global at https://<domain>, cells at https://shard-N.<domain>. Must match render-shard.sh --domain."
  type        = string
  default     = "api.example.com"
}

variable "route53_zone_id" {
  description = "Hosted zone that holds var.domain."
  type        = string
}

variable "ingress_hostname" {
  description = "DNS name of the ingress-nginx controller's network load balancer."
  type        = string
}

variable "cluster_admin_cidrs" {
  description = "Operators' networks allowed to the private Kubernetes API."
  type        = list(string)
  default     = []
}

# The set of shard cells. Adding a cell is one entry here plus
#   infra/k8s/render-shard.sh shard-N
# Every attribute is optional: {} takes the module's production defaults.
variable "shards" {
  description = "Shard cells by id (shard-N) and their sizing."
  type = map(object({
    capacity             = optional(number, 1000000)
    db_instance_class    = optional(string, "db.r6g.large")
    db_allocated_storage = optional(number, 100)
    kafka_instance_type  = optional(string, "kafka.m7g.large")
    kafka_broker_count   = optional(number, 3)
    kafka_volume_size    = optional(number, 500)
  }))
  validation {
    condition     = alltrue([for id in keys(var.shards) : can(regex("^shard-[1-9][0-9]{0,3}$", id))])
    error_message = "Shard ids must look like shard-1 (no leading zero)."
  }
}
