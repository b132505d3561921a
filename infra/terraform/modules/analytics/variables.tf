variable "name" {
  description = "Environment name (e.g. cellbank-prod): the bucket is <name>-analytics-<account>, the Glue database <name>_analytics."
  type        = string
}

variable "prefix" {
  description = "Where the dataset lives in the bucket: each exporter's store_url is s3://<bucket>/<prefix>."
  type        = string
  default     = "export"
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_-]{0,62}$", var.prefix))
    error_message = "prefix is one path segment (lowercase letters, digits, - and _), without slashes."
  }
}

variable "shards" {
  description = "Every cell whose export is queryable (the partition projection's shard enum): today's cells and removed ones."
  type        = list(string)
  validation {
    condition     = length(var.shards) > 0 && alltrue([for s in var.shards : can(regex("^shard-[1-9][0-9]{0,3}$", s))])
    error_message = "shards lists at least one cell id, each like shard-1."
  }
}

variable "first_date" {
  description = "The first day the partition projection covers (yyyy-MM-dd); rows filed before it are not queried."
  type        = string
  default     = "2026-01-01"
  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.first_date))
    error_message = "first_date is yyyy-MM-dd."
  }
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept."
  type        = number
  default     = 30
}

variable "tags" {
  type    = map(string)
  default = {}
}
