output "bootstrap_brokers" {
  description = "The plaintext bootstrap string (CELLBANK__KAFKA__BOOTSTRAP)."
  value       = aws_msk_cluster.this.bootstrap_brokers
}

output "arn" {
  value = aws_msk_cluster.this.arn
}

output "security_group_id" {
  description = "The brokers' security group (callers' egress rules reference it)."
  value       = aws_security_group.kafka.id
}

output "cluster_name" {
  value = aws_msk_cluster.this.cluster_name
}
