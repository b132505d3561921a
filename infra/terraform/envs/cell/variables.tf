# One entry of the shared stack's `cells` output (envs/example/outputs.tf).
variable "cell" {
  description = "This cell's release, sizing and the shared stack's ids it lives in."
  type = object({
    shard_id                  = string
    environment               = string
    region                    = string
    image_tag                 = string
    canary                    = optional(bool, false)
    wave                      = optional(number, 1)
    vpc_id                    = string
    data_subnet_ids           = list(string)
    cluster_name              = string
    cluster_security_group_id = string
    router_security_group_id  = string
    router_role_arn           = string
    router_role_name          = string
    operator_role_arns        = optional(list(string), [])
    alarm_topic_arn           = string
    domain                    = string
    route53_zone_id           = string
    ingress_hostname          = string
    global_internal_url       = string
    analytics_bucket          = string
    analytics_bucket_arn      = string
    analytics_kms_key_arn     = string
    analytics_prefix          = string
    decommission              = optional(bool, false)
    capacity                  = optional(number, 1000000)
    postgres_version          = optional(string, "16")
    kafka_version             = optional(string, "3.7.x")
    db_instance_class         = optional(string, "db.r6g.large")
    db_allocated_storage      = optional(number, 100)
    kafka_instance_type       = optional(string, "kafka.m7g.large")
    kafka_broker_count        = optional(number, 3)
    kafka_volume_size         = optional(number, 500)
  })
}
