# A managed Postgres (RDS) with Cellbank's production settings: multi-AZ, storage
# and Performance Insights encrypted with the caller's KMS key, deletion-protected
# with a final snapshot, 14 days of backups, private in the data subnets behind a
# security group that admits only the caller's client security groups. Used by
# the global tier (directory) and by every cell: change a production setting here,
# once, for both.

data "aws_partition" "current" {}

locals {
  port = 5432
}

resource "aws_security_group" "db" {
  name        = "${var.name}-postgres"
  description = var.security_group_description
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "db" {
  for_each                     = var.client_security_groups
  security_group_id            = aws_security_group.db.id
  description                  = each.value.description
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
}

resource "aws_db_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
  tags       = var.tags
}

resource "aws_db_parameter_group" "this" {
  name   = var.name
  family = "postgres${var.engine_version}"
  # RDS for PostgreSQL 15+ defaults rds.force_ssl to 1, but the binaries' sqlx has
  # no TLS backend yet: allow plaintext inside the VPC until it does (see
  # infra/README.md, "Known gaps"; checkov CKV2_AWS_69 is baselined for this).
  parameter {
    name  = "rds.force_ssl"
    value = "0"
  }
  parameter {
    name  = "log_min_duration_statement"
    value = "500"
  }
  parameter {
    name  = "log_lock_waits"
    value = "1"
  }
  parameter {
    name  = "log_statement"
    value = "ddl"
  }
  tags = var.tags
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${var.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "monitoring.rds.amazonaws.com" } }]
  })
  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = var.name
  engine         = "postgres"
  engine_version = var.engine_version
  instance_class = var.instance_class
  db_name        = "cellbank"
  username       = "cellbank"
  # RDS generates the master password and keeps it in Secrets Manager, encrypted
  # with the caller's key: it never passes through Terraform state.
  manage_master_user_password   = true
  master_user_secret_kms_key_id = var.kms_key_arn

  allocated_storage     = var.allocated_storage
  max_allocated_storage = var.allocated_storage * 10
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = var.kms_key_arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  # Deletion protection is turned off only by a separate, reviewed apply with
  # decommission = true (infra/README.md, "Removing a cell"); the final snapshot
  # and the automated backups outlive the instance either way.
  deletion_protection       = !var.decommission
  skip_final_snapshot       = false
  final_snapshot_identifier = "${var.name}-final"
  delete_automated_backups  = false
  backup_retention_period   = 14
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true

  # engine_version is a major version only ("16"): RDS applies minor versions in
  # the maintenance window, and the next plan does not try to "downgrade" to a
  # pinned minor. A major upgrade is a deliberate change of this value.
  auto_minor_version_upgrade          = true
  allow_major_version_upgrade         = false
  iam_database_authentication_enabled = true
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = var.kms_key_arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  tags = var.tags
}
