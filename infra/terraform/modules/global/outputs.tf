output "public_url" {
  value = "https://${var.domain}"
}

output "internal_url" {
  description = "In-cluster URL of global; cells fetch JWKS from it (CELLBANK__GLOBAL__URL)."
  value       = "http://cellbank-global.${local.namespace}.svc.cluster.local:${local.app_port}"
}

output "ops_url" {
  description = "In-cluster URL of the ops API (CELLCTL_OPS_URL), reachable from operator-labelled pods only."
  value       = "http://cellbank-global-ops.${local.namespace}.svc.cluster.local:${local.ops_port}"
}

output "router_security_group_id" {
  description = "Cells admit this group on their API port and brokers."
  value       = aws_security_group.pods.id
}

output "admin_token" {
  description = "The ops API's admin token (CELLCTL_ADMIN_TOKEN). Never passed to a cell."
  value       = random_password.admin_token.result
  sensitive   = true
}

output "shard_internal_tokens" {
  description = "Internal token of each cell by shard id; give each cell only its own entry."
  value       = { for id, t in random_password.shard_internal_token : id => t.result }
  sensitive   = true
}

output "secrets_arn" {
  value = aws_secretsmanager_secret.global.arn
}

output "directory_endpoint" {
  value = module.postgres.address
}

output "kafka_bootstrap" {
  value = module.kafka.bootstrap_brokers
}
