output "registry_entry" {
  description = "The body of POST /ops/v1/shards for this cell (cellctl shards add; infra/rollout.sh sends it)."
  value = {
    id               = var.shard_id
    public_url       = "https://${local.host}"
    internal_url     = "http://cellbank-shard.${local.namespace}.svc.cluster.local:${local.app_port}"
    broker_bootstrap = module.kafka.bootstrap_brokers
    capacity         = var.capacity
  }
}

# What infra/rollout.sh needs to deploy the cell's Kubernetes side: no secret
# values, only where they are.
output "deployment" {
  value = {
    shard_id                  = var.shard_id
    namespace                 = local.namespace
    service_account           = local.service_account
    image_tag                 = var.image_tag
    host                      = local.host
    kafka_bootstrap           = module.kafka.bootstrap_brokers
    database_address          = module.postgres.address
    database_port             = module.postgres.port
    database_secret_arn       = module.postgres.master_user_secret_arn
    admin_token_secret_arn    = aws_secretsmanager_secret.admin_token.arn
    internal_token_secret_arn = aws_secretsmanager_secret.internal_token.arn
    pod_security_group_ids    = [aws_security_group.pods.id, var.cluster_security_group_id]
    role_arn                  = module.role.arn
    app_log_group             = aws_cloudwatch_log_group.app.name
    region                    = data.aws_region.current.name
    # The exporter: its own service account, role and security group; its store
    # is exactly the prefix its role may write under.
    exporter_service_account        = local.exporter_service_account
    exporter_role_arn               = module.exporter_role.arn
    exporter_pod_security_group_ids = [aws_security_group.exporter.id, var.cluster_security_group_id]
    export_store_url                = "s3://${var.analytics_bucket}/${var.analytics_prefix}"
  }
}

output "release" {
  description = "What this cell runs: the rollout compares it with the overlay and bakes it before the next wave."
  value = {
    image_tag        = var.image_tag
    postgres_version = var.postgres_version
    kafka_version    = var.kafka_version
  }
}

output "database_identifier" {
  value = module.postgres.identifier
}

output "database_ingress" {
  value = module.postgres.ingress
}

output "kafka_cluster_name" {
  value = module.kafka.cluster_name
}

output "kms_key_arn" {
  value = module.kms.arn
}

output "security_group_names" {
  value = {
    pods     = aws_security_group.pods.name
    exporter = aws_security_group.exporter.name
    database = "${local.name}-postgres"
    brokers  = "${local.name}-kafka"
  }
}

output "exporter" {
  description = "The exporter's role and the only S3 objects it may put (and, its checkpoint, read)."
  value = {
    role_name  = module.exporter_role.name
    store_url  = "s3://${var.analytics_bucket}/${var.analytics_prefix}"
    puts       = data.aws_iam_policy_document.exporter.statement[0].resources
    checkpoint = local.export_checkpoint
  }
}

output "host" {
  value = aws_route53_record.public.name
}
