# The global tier's KMS key, Postgres and Kafka moved into the shared modules kms,
# postgres and kafka (one definition of their production settings for the global
# tier and every cell). These blocks carry existing state to the new addresses, so
# an apply after the refactor changes nothing instead of replacing the directory
# database and the broker.

moved {
  from = aws_kms_key.global
  to   = module.kms.aws_kms_key.this
}

moved {
  from = aws_kms_alias.global
  to   = module.kms.aws_kms_alias.this
}

moved {
  from = aws_security_group.db
  to   = module.postgres.aws_security_group.db
}

moved {
  from = aws_vpc_security_group_ingress_rule.db_from_pods
  to   = module.postgres.aws_vpc_security_group_ingress_rule.db["pods"]
}

moved {
  from = random_password.db
  to   = module.postgres.random_password.db
}

moved {
  from = aws_db_subnet_group.this
  to   = module.postgres.aws_db_subnet_group.this
}

moved {
  from = aws_db_parameter_group.this
  to   = module.postgres.aws_db_parameter_group.this
}

moved {
  from = aws_iam_role.rds_monitoring
  to   = module.postgres.aws_iam_role.rds_monitoring
}

moved {
  from = aws_iam_role_policy_attachment.rds_monitoring
  to   = module.postgres.aws_iam_role_policy_attachment.rds_monitoring
}

moved {
  from = aws_db_instance.this
  to   = module.postgres.aws_db_instance.this
}

moved {
  from = aws_security_group.kafka
  to   = module.kafka.aws_security_group.kafka
}

moved {
  from = aws_vpc_security_group_ingress_rule.kafka_from_pods
  to   = module.kafka.aws_vpc_security_group_ingress_rule.kafka["pods"]
}

moved {
  from = aws_msk_configuration.this
  to   = module.kafka.aws_msk_configuration.this
}

moved {
  from = aws_cloudwatch_log_group.kafka
  to   = module.kafka.aws_cloudwatch_log_group.kafka
}

moved {
  from = aws_msk_cluster.this
  to   = module.kafka.aws_msk_cluster.this
}
