output "address" {
  value = aws_db_instance.this.address
}

output "port" {
  value = aws_db_instance.this.port
}

output "url" {
  description = "CELLBANK__DATABASE__URL: postgres://cellbank:<password>@<address>:<port>/cellbank."
  value       = "postgres://cellbank:${random_password.db.result}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/cellbank"
  sensitive   = true
}

output "security_group_id" {
  description = "The database's security group (callers' egress rules reference it)."
  value       = aws_security_group.db.id
}
