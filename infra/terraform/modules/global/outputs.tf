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

output "router_role_arn" {
  description = "Cells let this role decrypt their internal token (and nothing else of theirs)."
  value       = module.role.arn
}

output "router_role_name" {
  value = module.role.name
}

# What infra/rollout.sh needs to deploy the tier's Kubernetes side: no secret
# values, only where they are.
output "deployment" {
  value = {
    namespace              = local.namespace
    image_tag              = var.image_tag
    host                   = var.domain
    kafka_bootstrap        = module.kafka.bootstrap_brokers
    database_address       = module.postgres.address
    database_port          = module.postgres.port
    database_secret_arn    = module.postgres.master_user_secret_arn
    secret_arns            = { for k, s in aws_secretsmanager_secret.global : k => s.arn }
    pod_security_group_ids = [aws_security_group.pods.id, var.cluster_security_group_id]
    role_arn               = module.role.arn
  }
}

output "database_identifier" {
  value = module.postgres.identifier
}

output "kms_key_arn" {
  value = module.kms.arn
}
