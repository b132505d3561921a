# The global router tier: the directory database (RDS, multi-AZ), the global
# broker (MSK; it carries the directory-change feed), the router's pod security
# group, the secrets only global holds (token signing key, PAN HMAC key, the
# admin token of the ops API, and one internal token per cell, of which each cell
# gets only its own), the workloads (infra/k8s/overlays/global) and the public
# DNS name of the global API.

locals {
  name      = "${var.environment}-global"
  namespace = "cellbank-global"
  tags      = merge(var.tags, { "cellbank.io/tier" = "global" })
  # Names below must match what infra/k8s/base/global/deployment.yaml references;
  # infra/checks/drift.py compares them.
  infra_config_map = "cellbank-global-infra"
  secret_name      = "cellbank-global-secrets"
  app_port         = 8080
  ops_port         = 8090
  shard_port       = 8081
}

# --- encryption ---

module "kms" {
  source      = "../kms"
  name        = local.name
  description = "${local.name}: RDS, MSK, secrets and logs of the global tier"
  tags        = local.tags
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
  referenced_security_group_id = module.postgres.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

# --- the directory database and the global broker (production settings live in those modules) ---

module "postgres" {
  source                     = "../postgres"
  name                       = local.name
  engine_version             = var.postgres_version
  instance_class             = var.db_instance_class
  allocated_storage          = var.db_allocated_storage
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.data_subnet_ids
  security_group_description = "Directory Postgres: the router's pods only"
  client_security_groups = {
    pods = { description = "Router pods", security_group_id = aws_security_group.pods.id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
}

# Global creates its directory-change topic at start; nothing is created implicitly.
module "kafka" {
  source                     = "../kafka"
  name                       = local.name
  kafka_version              = var.kafka_version
  instance_type              = var.kafka_instance_type
  broker_count               = 3
  volume_size                = var.kafka_volume_size
  vpc_id                     = var.vpc_id
  subnet_ids                 = var.data_subnet_ids
  security_group_description = "Global brokers: the router's pods only"
  client_security_groups = {
    pods = { description = "Router pods", security_group_id = aws_security_group.pods.id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
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

# One internal token per cell: global presents shard-N's token to shard-N only,
# and each cell holds only its own (module.cell's internal_token), so a cell that
# leaks its token cannot call another cell as global. Adding a shard adds one.
resource "random_password" "shard_internal_token" {
  for_each = var.shard_ids
  length   = 48
  special  = false
}

locals {
  database_url = module.postgres.url
  signing_key  = replace(replace(replace(random_bytes.signing_key.base64, "+", "-"), "/", "_"), "=", "")
  pan_hmac_key = replace(replace(replace(random_bytes.pan_hmac_key.base64, "+", "-"), "/", "_"), "=", "")
  # auth.shard_tokens as a figment dict for CELLBANK__AUTH__SHARD_TOKENS:
  # {shard-1="...",shard-2="..."} (the tokens are alphanumeric, safe in quotes).
  shard_tokens = "{${join(",", [for id in sort(tolist(var.shard_ids)) : "${id}=\"${random_password.shard_internal_token[id].result}\""])}}"
}

resource "aws_secretsmanager_secret" "global" {
  name        = "cellbank/${var.environment}/global"
  description = "Secrets of the global tier (database url, signing key, PAN HMAC key, tokens)"
  kms_key_id  = module.kms.arn
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "global" {
  secret_id = aws_secretsmanager_secret.global.id
  secret_string = jsonencode({
    "database-url" = local.database_url
    "signing-key"  = local.signing_key
    "pan-hmac-key" = local.pan_hmac_key
    "admin-token"  = random_password.admin_token.result
    "shard-tokens" = local.shard_tokens
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
    CELLBANK__KAFKA__BOOTSTRAP = module.kafka.bootstrap_brokers
  }
  depends_on = [kustomization_resource.p0]
}

resource "kubernetes_secret_v1" "global" {
  metadata {
    name      = local.secret_name
    namespace = local.namespace
  }
  data = {
    "database-url" = local.database_url
    "signing-key"  = local.signing_key
    "pan-hmac-key" = local.pan_hmac_key
    "admin-token"  = random_password.admin_token.result
    "shard-tokens" = local.shard_tokens
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
    module.postgres,
  ]
}

# Pods read the Secret once, into their environment, at start. When it changes
# (a shard added, so a token added to shard-tokens; a rotation) this annotation
# of the pod template changes with it, which rolls global out with the new
# tokens before the new cell is registered.
resource "kubernetes_annotations" "secret_rollout" {
  api_version = "apps/v1"
  kind        = "Deployment"
  metadata {
    name      = "cellbank-global"
    namespace = local.namespace
  }
  template_annotations = {
    "cellbank.io/secrets-sha256" = sha256(jsonencode(kubernetes_secret_v1.global.data))
  }
  depends_on = [kustomization_resource.p1]
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
