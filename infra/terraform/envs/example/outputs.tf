# Feed global's shard registry: one POST /ops/v1/shards per entry (infra/README.md).
output "shard_registry" {
  description = "Registry entries {id, public_url, internal_url, broker_bootstrap, capacity} by shard id."
  value       = { for id, cell in module.cell : id => cell.registry_entry }
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
