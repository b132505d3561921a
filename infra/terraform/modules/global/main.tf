# The global router tier's AWS resources: the directory database (RDS,
# multi-AZ), the global broker (MSK; it carries the directory-change feed), the
# router's pod security group and workload role, the secrets only global holds
# (secrets.tf) and the public DNS name of the global API. Its Kubernetes side
# (infra/k8s/overlays/global) is applied by infra/rollout.sh. Each cell's internal
# token lives in that cell's state; the router's role is granted it by the cell.

locals {
  name       = "${var.environment}-global"
  namespace  = "cellbank-global"
  tags       = merge(var.tags, { "cellbank.io/tier" = "global" })
  app_port   = 8080
  ops_port   = 8090
  shard_port = 8081
}

# --- encryption ---

module "kms" {
  source            = "../kms"
  name              = local.name
  description       = "${local.name}: RDS, MSK, secrets and logs of the global tier"
  decrypt_role_arns = [module.role.arn]
  secret_readers = [for arn in var.operator_role_arns : {
    role_arn = arn, secret_name = "cellbank/${var.environment}/global/admin-token"
  }]
  tags = local.tags
}

# --- network ---

# The router's pods (the SecurityGroupPolicy infra/rollout.sh writes). Cells admit
# it on their API port and brokers by referencing this group.
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
  description       = "Every cell API (authorizations, internal API)"
  cidr_ipv4         = var.vpc_cidr
  ip_protocol       = "tcp"
  from_port         = local.shard_port
  to_port           = local.shard_port
}

resource "aws_vpc_security_group_egress_rule" "pods_to_kafka" {
  security_group_id = aws_security_group.pods.id
  description       = "The global broker and the brokers of every cell"
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
  security_group_description = "Directory Postgres: the router pods only"
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
  security_group_description = "Global brokers: the router pods only"
  client_security_groups = {
    pods = { description = "Router pods", security_group_id = aws_security_group.pods.id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
}

# --- identity: the router's pods, and nothing else, assume this role ---

module "role" {
  source          = "../workload_role"
  name            = "${local.name}-router"
  cluster_name    = var.cluster_name
  namespace       = local.namespace
  service_account = "cellbank-global"
  secret_arns = concat(
    [for s in aws_secretsmanager_secret.global : s.arn],
    [module.postgres.master_user_secret_arn],
  )
  kms_key_arn          = module.kms.arn
  database_resource_id = module.postgres.resource_id
  tags                 = local.tags
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
