output "registry_entry" {
  description = "The body of POST /ops/v1/shards for this cell (global's shard registry)."
  value = {
    id               = var.shard_id
    public_url       = "https://${local.host}"
    internal_url     = "http://cellbank-shard.${local.namespace}.svc.cluster.local:${local.app_port}"
    broker_bootstrap = module.kafka.bootstrap_brokers
    capacity         = var.capacity
  }
}

output "admin_token" {
  description = "This cell's admin token (cellctl --shard-token / CELLCTL_SHARD_ADMIN_TOKEN)."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "namespace" {
  value = local.namespace
}

output "database_endpoint" {
  value = module.postgres.address
}

output "database_url_secret_arn" {
  value = aws_secretsmanager_secret.database_url.arn
}

output "kafka_cluster_arn" {
  value = module.kafka.arn
}

output "pod_security_group_id" {
  value = aws_security_group.pods.id
}
