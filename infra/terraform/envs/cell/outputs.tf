output "registry_entry" {
  description = "cellctl shards add takes this (infra/rollout.sh)."
  value       = module.cell.registry_entry
}

output "deployment" {
  value = module.cell.deployment
}

output "release" {
  value = module.cell.release
}

output "database_identifier" {
  value = module.cell.database_identifier
}

output "database_ingress" {
  value = module.cell.database_ingress
}

output "kafka_cluster_name" {
  value = module.cell.kafka_cluster_name
}

output "kms_key_arn" {
  value = module.cell.kms_key_arn
}

output "exporter" {
  value = module.cell.exporter
}

output "security_group_names" {
  value = module.cell.security_group_names
}

output "host" {
  value = module.cell.host
}
