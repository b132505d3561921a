# One shard cell: its own Postgres (RDS, multi-AZ), its own Kafka (MSK, one broker
# per AZ), its own KMS key, security groups that admit only this cell's pods (and
# the router, for the broker), its namespace and workloads (the kustomize overlay
# infra/k8s/overlays/<shard_id>), and its public DNS name.

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

module "kms" {
  source      = "../kms"
  name        = local.name
  description = "${local.name}: RDS, MSK, secrets and logs of this cell"
  tags        = local.tags
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
  referenced_security_group_id = module.postgres.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "pods_to_kafka" {
  security_group_id            = aws_security_group.pods.id
  description                  = "This cell's brokers"
  referenced_security_group_id = module.kafka.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
}

# --- this cell's Postgres and Kafka (production settings live in those modules) ---

module "postgres" {
  source                     = "../postgres"
  name                       = local.name
  engine_version             = var.postgres_version
  instance_class             = var.db_instance_class
  allocated_storage          = var.db_allocated_storage
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.data_subnet_ids
  security_group_description = "Postgres of ${var.shard_id}: this cell's pods only"
  client_security_groups = {
    pods = { description = "Pods of ${var.shard_id}", security_group_id = aws_security_group.pods.id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
}

module "kafka" {
  source                     = "../kafka"
  name                       = local.name
  kafka_version              = var.kafka_version
  instance_type              = var.kafka_instance_type
  broker_count               = var.kafka_broker_count
  volume_size                = var.kafka_volume_size
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.data_subnet_ids
  security_group_description = "Brokers of ${var.shard_id}: this cell's pods and the router"
  client_security_groups = {
    pods   = { description = "Pods of ${var.shard_id}", security_group_id = aws_security_group.pods.id }
    router = { description = "Global router produces routed events", security_group_id = var.router_security_group_id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
}

# --- secrets ---

# This cell's own admin token (its admin API: dead letters, consumers, summary),
# for operators (cellctl --shard-token). Not global's: a cell never holds that.
resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "database_url" {
  name        = "cellbank/${var.environment}/${var.shard_id}/database-url"
  description = "CELLBANK__DATABASE__URL of ${var.shard_id}"
  kms_key_id  = module.kms.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = module.postgres.url
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
    CELLBANK__KAFKA__BOOTSTRAP = module.kafka.bootstrap_brokers
  }
  depends_on = [kustomization_resource.p0]
}

resource "kubernetes_secret_v1" "cell" {
  metadata {
    name      = local.secret_name
    namespace = local.namespace
  }
  data = {
    "database-url"   = module.postgres.url
    "admin-token"    = random_password.admin_token.result
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
    module.postgres,
  ]
}

# Pods read the Secret once, at start: a changed token rolls the cell out.
resource "kubernetes_annotations" "secret_rollout" {
  api_version = "apps/v1"
  kind        = "Deployment"
  metadata {
    name      = "cellbank-shard"
    namespace = local.namespace
  }
  template_annotations = {
    "cellbank.io/secrets-sha256" = sha256(jsonencode(kubernetes_secret_v1.cell.data))
  }
  depends_on = [kustomization_resource.p1]
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
