# Feed global's shard registry: one POST /ops/v1/shards per entry (infra/README.md).
output "shard_registry" {
  description = "Registry entries {id, public_url, internal_url, broker_bootstrap, capacity} by shard id."
  value       = { for id, cell in module.cell : id => cell.registry_entry }
}

output "shard_admin_tokens" {
  description = "Each cell's own admin token by shard id (cellctl --shard-token)."
  value       = { for id, cell in module.cell : id => cell.admin_token }
  sensitive   = true
}

output "global_ops_url" {
  description = "In-cluster URL of the ops API (operator-labelled pods only)."
  value       = module.global.ops_url
}

output "global_public_url" {
  value = module.global.public_url
}

output "global_internal_url" {
  value = module.global.internal_url
}

output "cluster_name" {
  value = module.platform.cluster_name
}

output "data_cidr" {
  description = "Must equal the ipBlock of the NetworkPolicies in infra/k8s/base."
  value       = module.platform.data_cidr
}
