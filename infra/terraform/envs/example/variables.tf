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

variable "operator_role_arns" {
  description = "Roles of the operators who run infra/rollout.sh and cellctl: they may read the admin tokens (global's and each cell's), no other secret."
  type        = list(string)
  default     = []
}

variable "global_image_tag" {
  description = "The cellbank-global image (infra/k8s/overlays/global must name the same tag)."
  type        = string
}

# The set of shard cells and what each runs. Adding a cell is one entry here plus
#   infra/k8s/render-shard.sh shard-N --image-tag TAG
# A cell's release (image_tag, postgres_version, kafka_version) is its own, so one
# canary cell runs a new version first. Sizing attributes are optional.
variable "shards" {
  description = "Shard cells by id (shard-N): release, sizing, and the decommission flag."
  type = map(object({
    image_tag            = string
    canary               = optional(bool, false)
    wave                 = optional(number, 1)
    postgres_version     = optional(string, "16")
    kafka_version        = optional(string, "3.7.x")
    capacity             = optional(number, 1000000)
    db_instance_class    = optional(string, "db.r6g.large")
    db_allocated_storage = optional(number, 100)
    kafka_instance_type  = optional(string, "kafka.m7g.large")
    kafka_broker_count   = optional(number, 3)
    kafka_volume_size    = optional(number, 500)
    decommission         = optional(bool, false)
  }))
  validation {
    condition     = alltrue([for id in keys(var.shards) : can(regex("^shard-[1-9][0-9]{0,3}$", id))])
    error_message = "Shard ids must look like shard-1 (no leading zero)."
  }
  validation {
    condition     = length([for s in values(var.shards) : s if s.canary]) <= 1
    error_message = "At most one cell is the canary."
  }
  validation {
    condition     = alltrue([for s in values(var.shards) : can(regex("^[0-9]{2}$", s.postgres_version))])
    error_message = "postgres_version is a major version only, e.g. \"16\"."
  }
}

variable "retired_shards" {
  description = "Removed cells whose exported history stays queryable (the Glue tables' shard enum is the shards map plus these)."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for id in var.retired_shards : can(regex("^shard-[1-9][0-9]{0,3}$", id))])
    error_message = "Retired shard ids must look like shard-1 (no leading zero)."
  }
}
