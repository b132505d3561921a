output "public_url" {
  value = "https://${var.domain}"
}

output "internal_url" {
  description = "In-cluster URL of global; cells fetch JWKS from it (CELLBANK__GLOBAL__URL)."
  value       = "http://cellbank-global.${local.namespace}.svc.cluster.local:${local.app_port}"
}

output "router_security_group_id" {
  description = "Cells admit this group on their API port and brokers."
  value       = aws_security_group.pods.id
}

output "admin_token" {
  value     = random_password.admin_token.result
  sensitive = true
}

output "internal_token" {
  value     = random_password.internal_token.result
  sensitive = true
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
