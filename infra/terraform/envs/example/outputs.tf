# Each cell's input for ../cell (infra/rollout.sh writes it to that cell's
# tfvars): its entry of var.shards (release and sizing) and the shared stack's ids.
output "cells" {
  value = { for id, s in var.shards : id => merge(local.shared, s, { shard_id = id }) }
}

# The waves infra/rollout.sh deploys, in order: the canary cell first, alone.
output "waves" {
  value = local.waves
}

output "global" {
  description = "The global tier's Kubernetes inputs for infra/rollout.sh (no secret values)."
  value = merge(module.global.deployment, {
    public_url   = module.global.public_url
    internal_url = module.global.internal_url
    ops_url      = module.global.ops_url
  })
}

output "platform" {
  value = {
    cluster_name    = module.platform.cluster_name
    region          = var.region
    route53_zone_id = var.route53_zone_id
    data_cidr       = module.platform.data_cidr
    alarm_topic_arn = module.platform.alarm_topic_arn
  }
}

output "analytics" {
  description = "The analytics bucket, its key and the Glue database Athena queries (shard/exporter/analytics)."
  value = {
    bucket        = module.analytics.bucket
    bucket_arn    = module.analytics.bucket_arn
    kms_key_arn   = module.analytics.kms_key_arn
    prefix        = module.analytics.prefix
    glue_database = module.analytics.glue_database
  }
}
