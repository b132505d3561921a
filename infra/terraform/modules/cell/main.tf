# One shard cell: its own Postgres (RDS, multi-AZ), its own Kafka (MSK, one broker
# per AZ), its own KMS key, security groups that admit only this cell's pods (and
# the router, for the broker), its namespace and workloads (the kustomize overlay
# infra/k8s/overlays/<shard_id>), and its public DNS name.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  name      = "${var.environment}-${var.shard_id}"
  namespace = "cellbank-${var.shard_id}"
  host      = "${var.shard_id}.${var.domain}"
  tags      = merge(var.tags, { "cellbank.io/shard" = var.shard_id })
  # Names below must match what infra/k8s/base/shard/deployment.yaml references;
  # infra/checks/drift.py compares them.
  infra_config_map = "cellbank-shard-infra"
  secret_name      = "cellbank-shard-secrets"
  app_port         = 8081
}

# --- encryption ---

resource "aws_kms_key" "cell" {
  description             = "${local.name}: RDS, MSK, secrets and logs of this cell"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "cell" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.cell.key_id
}

data "aws_iam_policy_document" "kms" {
  statement {
    sid       = "AccountAdmin"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.amazonaws.com"]
    }
  }
}

# --- network: who may reach this cell's data ---

# Attached to this cell's pods by the SecurityGroupPolicy below.
resource "aws_security_group" "pods" {
  name        = "${local.name}-pods"
  description = "Pods of ${var.shard_id}"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "pods_from_router" {
  security_group_id            = aws_security_group.pods.id
  description                  = "Global router: authorizations and internal API"
  referenced_security_group_id = var.router_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
}

resource "aws_vpc_security_group_ingress_rule" "pods_from_cluster" {
  security_group_id            = aws_security_group.pods.id
  description                  = "Kubelet probes, ingress controller, Prometheus"
  referenced_security_group_id = var.cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
}

resource "aws_vpc_security_group_egress_rule" "pods_to_postgres" {
  security_group_id            = aws_security_group.pods.id
  description                  = "This cell's Postgres"
  referenced_security_group_id = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "pods_to_kafka" {
  security_group_id            = aws_security_group.pods.id
  description                  = "This cell's brokers"
  referenced_security_group_id = aws_security_group.kafka.id
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
}

resource "aws_security_group" "db" {
  name        = "${local.name}-postgres"
  description = "Postgres of ${var.shard_id}: this cell's pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_pods" {
  security_group_id            = aws_security_group.db.id
  description                  = "Pods of ${var.shard_id}"
  referenced_security_group_id = aws_security_group.pods.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "kafka" {
  name        = "${local.name}-kafka"
  description = "Brokers of ${var.shard_id}: this cell's pods and the router"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_pods" {
  security_group_id            = aws_security_group.kafka.id
  description                  = "Pods of ${var.shard_id}"
  referenced_security_group_id = aws_security_group.pods.id
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_router" {
  security_group_id            = aws_security_group.kafka.id
  description                  = "Global router produces routed events"
  referenced_security_group_id = var.router_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
}

# --- Postgres ---

resource "random_password" "db" {
  length  = 40
  special = false
}

resource "aws_db_subnet_group" "this" {
  name       = local.name
  subnet_ids = var.data_subnet_ids
  tags       = local.tags
}

resource "aws_db_parameter_group" "this" {
  name   = local.name
  family = "postgres${split(".", var.postgres_version)[0]}"
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
  tags = local.tags
}

resource "aws_iam_role" "rds_monitoring" {
  name = "${local.name}-rds-monitoring"
  assume_role_policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sts:AssumeRole", Principal = { Service = "monitoring.rds.amazonaws.com" } }]
  })
  tags = local.tags
}

resource "aws_iam_role_policy_attachment" "rds_monitoring" {
  role       = aws_iam_role.rds_monitoring.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"
}

resource "aws_db_instance" "this" {
  identifier     = local.name
  engine         = "postgres"
  engine_version = var.postgres_version
  instance_class = var.db_instance_class
  db_name        = "cellbank"
  username       = "cellbank"
  password       = random_password.db.result

  allocated_storage     = var.db_allocated_storage
  max_allocated_storage = var.db_allocated_storage * 10
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.cell.arn

  multi_az               = true
  db_subnet_group_name   = aws_db_subnet_group.this.name
  vpc_security_group_ids = [aws_security_group.db.id]
  publicly_accessible    = false
  parameter_group_name   = aws_db_parameter_group.this.name

  deletion_protection       = true
  skip_final_snapshot       = false
  final_snapshot_identifier = "${local.name}-final"
  backup_retention_period   = 14
  backup_window             = "03:00-04:00"
  maintenance_window        = "sun:04:30-sun:05:30"
  copy_tags_to_snapshot     = true

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  performance_insights_enabled        = true
  performance_insights_kms_key_id     = aws_kms_key.cell.arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  tags = local.tags
}

# --- Kafka ---

resource "aws_msk_configuration" "this" {
  name           = local.name
  kafka_versions = [var.kafka_version]
  # Topics are created by the shard at start (kafka::admin::ensure_topics), never implicitly.
  server_properties = <<-PROPS
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
    num.partitions=12
  PROPS
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/cellbank/${local.name}/msk"
  retention_in_days = 365
  kms_key_id        = aws_kms_key.cell.arn
  tags              = local.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = local.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.kafka_broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_BROKER"

  broker_node_group_info {
    instance_type   = var.kafka_instance_type
    client_subnets  = var.data_subnet_ids
    security_groups = [aws_security_group.kafka.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.kafka_volume_size
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = aws_kms_key.cell.arn
    encryption_in_transit {
      # The binaries' KafkaSettings has no TLS/SASL settings yet, so clients use the
      # plaintext listener (9092) inside the VPC; brokers encrypt among themselves.
      # Switch to "TLS" once kafka.security_protocol exists (see infra/README.md).
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = true
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }

  tags = local.tags
}

# --- secrets ---

resource "aws_secretsmanager_secret" "database_url" {
  name        = "cellbank/${var.environment}/${var.shard_id}/database-url"
  description = "CELLBANK__DATABASE__URL of ${var.shard_id}"
  kms_key_id  = aws_kms_key.cell.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = local.database_url
}

locals {
  database_url = "postgres://cellbank:${random_password.db.result}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/cellbank"
}

# --- Kubernetes: namespace and workloads from the overlay, plus what only Terraform knows ---

data "kustomization_build" "cell" {
  path = var.k8s_overlay_path
}

# Priority 0: the namespace (and any CRD); 1: workloads; 2: webhooks.
resource "kustomization_resource" "p0" {
  for_each = data.kustomization_build.cell.ids_prio[0]
  manifest = data.kustomization_build.cell.manifests[each.value]
}

resource "kubernetes_config_map_v1" "infra" {
  metadata {
    name      = local.infra_config_map
    namespace = local.namespace
  }
  data = {
    CELLBANK__KAFKA__BOOTSTRAP = aws_msk_cluster.this.bootstrap_brokers
  }
  depends_on = [kustomization_resource.p0]
}

resource "kubernetes_secret_v1" "cell" {
  metadata {
    name      = local.secret_name
    namespace = local.namespace
  }
  data = {
    "database-url"   = local.database_url
    "admin-token"    = var.admin_token
    "internal-token" = var.internal_token
  }
  depends_on = [kustomization_resource.p0]
}

resource "kubernetes_manifest" "pod_security_group" {
  manifest = {
    apiVersion = "vpcresources.k8s.aws/v1beta1"
    kind       = "SecurityGroupPolicy"
    metadata   = { name = "cellbank-shard", namespace = local.namespace }
    spec = {
      podSelector    = { matchLabels = { "app.kubernetes.io/name" = "cellbank-shard" } }
      securityGroups = { groupIds = [aws_security_group.pods.id, var.cluster_security_group_id] }
    }
  }
  depends_on = [kustomization_resource.p0]
}

resource "kustomization_resource" "p1" {
  for_each = data.kustomization_build.cell.ids_prio[1]
  manifest = data.kustomization_build.cell.manifests[each.value]
  wait     = true

  lifecycle {
    precondition {
      condition = anytrue([
        for m in values(data.kustomization_build.cell.manifests) :
        try(jsondecode(m).data.CELLBANK__GLOBAL__URL, null) == var.global_internal_url
      ])
      error_message = "The overlay's CELLBANK__GLOBAL__URL differs from the global tier's internal URL."
    }
  }

  depends_on = [
    kustomization_resource.p0,
    kubernetes_config_map_v1.infra,
    kubernetes_secret_v1.cell,
    kubernetes_manifest.pod_security_group,
    aws_db_instance.this,
  ]
}

resource "kustomization_resource" "p2" {
  for_each   = data.kustomization_build.cell.ids_prio[2]
  manifest   = data.kustomization_build.cell.manifests[each.value]
  depends_on = [kustomization_resource.p1]
}

# --- public DNS name ---

resource "aws_route53_record" "public" {
  zone_id = var.route53_zone_id
  name    = local.host
  type    = "CNAME"
  ttl     = 60
  records = [var.ingress_hostname]
}
