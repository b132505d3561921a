# The global router tier: the directory database (RDS, multi-AZ), the global
# broker (MSK; it carries the directory-change feed), the router's pod security
# group, the secrets only global holds (token signing key, PAN HMAC key) and the
# tokens shared with every cell, the workloads (infra/k8s/overlays/global) and
# the public DNS name of the global API.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  name      = "${var.environment}-global"
  namespace = "cellbank-global"
  tags      = merge(var.tags, { "cellbank.io/tier" = "global" })
  # Names below must match what infra/k8s/base/global/deployment.yaml references;
  # infra/checks/drift.py compares them.
  infra_config_map = "cellbank-global-infra"
  secret_name      = "cellbank-global-secrets"
  app_port         = 8080
  shard_port       = 8081
}

# --- encryption ---

resource "aws_kms_key" "global" {
  description             = "${local.name}: RDS, MSK, secrets and logs of the global tier"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = local.tags
}

resource "aws_kms_alias" "global" {
  name          = "alias/${local.name}"
  target_key_id = aws_kms_key.global.key_id
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

# --- network ---

# The router's pods (SecurityGroupPolicy below). Cells admit it on their API
# port and brokers by referencing this group.
resource "aws_security_group" "pods" {
  name        = "${local.name}-pods"
  description = "Pods of the global router tier"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "pods_from_cluster" {
  security_group_id            = aws_security_group.pods.id
  description                  = "Kubelet probes, ingress controller, Prometheus, shards (JWKS)"
  referenced_security_group_id = var.cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.app_port
  to_port                      = local.app_port
}

resource "aws_vpc_security_group_egress_rule" "pods_to_shards" {
  security_group_id = aws_security_group.pods.id
  description       = "Every cell's API (authorizations, internal API)"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = local.shard_port
  to_port           = local.shard_port
}

resource "aws_vpc_security_group_egress_rule" "pods_to_kafka" {
  security_group_id = aws_security_group.pods.id
  description       = "The global broker and every cell's brokers"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = 9092
  to_port           = 9092
}

resource "aws_vpc_security_group_egress_rule" "pods_to_postgres" {
  security_group_id            = aws_security_group.pods.id
  description                  = "The directory database"
  referenced_security_group_id = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "db" {
  name        = "${local.name}-postgres"
  description = "Directory Postgres: the router's pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "db_from_pods" {
  security_group_id            = aws_security_group.db.id
  description                  = "Router pods"
  referenced_security_group_id = aws_security_group.pods.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_security_group" "kafka" {
  name        = "${local.name}-kafka"
  description = "Global brokers: the router's pods only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka_from_pods" {
  security_group_id            = aws_security_group.kafka.id
  description                  = "Router pods"
  referenced_security_group_id = aws_security_group.pods.id
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
  kms_key_id            = aws_kms_key.global.arn

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
  performance_insights_kms_key_id     = aws_kms_key.global.arn
  monitoring_interval                 = 60
  monitoring_role_arn                 = aws_iam_role.rds_monitoring.arn
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]

  tags = local.tags
}

# --- Kafka ---

resource "aws_msk_configuration" "this" {
  name           = local.name
  kafka_versions = [var.kafka_version]
  # Global creates its directory-change topic at start; nothing is created implicitly.
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
  kms_key_id        = aws_kms_key.global.arn
  tags              = local.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = local.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = 3
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
    encryption_at_rest_kms_key_arn = aws_kms_key.global.arn
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

# auth.signing_key: a url-safe base64 Ed25519 seed (TokenSigner::from_seed_b64).
# Rotating it is a runbook step (infra/README.md): taint this resource and apply.
resource "random_bytes" "signing_key" {
  length = 32
}

resource "random_bytes" "pan_hmac_key" {
  length = 32
}

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "random_password" "internal_token" {
  length  = 48
  special = false
}

locals {
  database_url = "postgres://cellbank:${random_password.db.result}@${aws_db_instance.this.address}:${aws_db_instance.this.port}/cellbank"
  signing_key  = replace(replace(replace(random_bytes.signing_key.base64, "+", "-"), "/", "_"), "=", "")
  pan_hmac_key = replace(replace(replace(random_bytes.pan_hmac_key.base64, "+", "-"), "/", "_"), "=", "")
}

resource "aws_secretsmanager_secret" "global" {
  name        = "cellbank/${var.environment}/global"
  description = "Secrets of the global tier (database url, signing key, PAN HMAC key, tokens)"
  kms_key_id  = aws_kms_key.global.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "global" {
  secret_id = aws_secretsmanager_secret.global.id
  secret_string = jsonencode({
    "database-url"   = local.database_url
    "signing-key"    = local.signing_key
    "pan-hmac-key"   = local.pan_hmac_key
    "admin-token"    = random_password.admin_token.result
    "internal-token" = random_password.internal_token.result
  })
}

# --- Kubernetes: namespace and workloads from the overlay, plus what only Terraform knows ---

data "kustomization_build" "global" {
  path = var.k8s_overlay_path
}

# Priority 0: the namespace (and any CRD); 1: workloads; 2: webhooks.
resource "kustomization_resource" "p0" {
  for_each = data.kustomization_build.global.ids_prio[0]
  manifest = data.kustomization_build.global.manifests[each.value]
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

resource "kubernetes_secret_v1" "global" {
  metadata {
    name      = local.secret_name
    namespace = local.namespace
  }
  data = {
    "database-url"   = local.database_url
    "signing-key"    = local.signing_key
    "pan-hmac-key"   = local.pan_hmac_key
    "admin-token"    = random_password.admin_token.result
    "internal-token" = random_password.internal_token.result
  }
  depends_on = [kustomization_resource.p0]
}

resource "kubernetes_manifest" "pod_security_group" {
  manifest = {
    apiVersion = "vpcresources.k8s.aws/v1beta1"
    kind       = "SecurityGroupPolicy"
    metadata   = { name = "cellbank-global", namespace = local.namespace }
    spec = {
      podSelector    = { matchLabels = { "app.kubernetes.io/name" = "cellbank-global" } }
      securityGroups = { groupIds = [aws_security_group.pods.id, var.cluster_security_group_id] }
    }
  }
  depends_on = [kustomization_resource.p0]
}

resource "kustomization_resource" "p1" {
  for_each = data.kustomization_build.global.ids_prio[1]
  manifest = data.kustomization_build.global.manifests[each.value]
  wait     = true
  depends_on = [
    kustomization_resource.p0,
    kubernetes_config_map_v1.infra,
    kubernetes_secret_v1.global,
    kubernetes_manifest.pod_security_group,
    aws_db_instance.this,
  ]
}

resource "kustomization_resource" "p2" {
  for_each   = data.kustomization_build.global.ids_prio[2]
  manifest   = data.kustomization_build.global.manifests[each.value]
  depends_on = [kustomization_resource.p1]
}

# --- public DNS name ---

resource "aws_route53_record" "public" {
  zone_id = var.route53_zone_id
  name    = var.domain
  type    = "A"
  alias {
    name                   = var.ingress_hostname
    zone_id                = data.aws_lb_hosted_zone_id.ingress.id
    evaluate_target_health = true
  }
}

data "aws_lb_hosted_zone_id" "ingress" {
  load_balancer_type = "network"
}
