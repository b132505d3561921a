output "address" {
  value = aws_db_instance.this.address
}

output "port" {
  value = aws_db_instance.this.port
}

output "identifier" {
  value = aws_db_instance.this.identifier
}

output "resource_id" {
  description = "For rds-db:connect (IAM database authentication)."
  value       = aws_db_instance.this.resource_id
}

output "master_user_secret_arn" {
  description = "The Secrets Manager secret RDS keeps the master credentials in ({username, password})."
  value       = aws_db_instance.this.master_user_secret[0].secret_arn
}

output "security_group_id" {
  description = "The database's security group (callers' egress rules reference it)."
  value       = aws_security_group.db.id
}

output "ingress" {
  description = "Who the database admits, by rule: a security group, never a CIDR (asserted by the plan tests)."
  value = { for k, r in aws_vpc_security_group_ingress_rule.db : k => {
    referenced_security_group_id = r.referenced_security_group_id
    cidr_ipv4                    = r.cidr_ipv4
    cidr_ipv6                    = r.cidr_ipv6
    from_port                    = r.from_port
  } }
}
