# One shard cell's AWS resources: its own Postgres (RDS, multi-AZ), its own Kafka
# (MSK, one broker per AZ), its own KMS key, its own secrets (admin token, internal
# token) and workload role, security groups that admit only this cell's pods (and
# the router), its alarms, its public DNS name, and its exporter's role and
# security group (exporter.tf: its own paths of the shared analytics bucket). Its Kubernetes side (namespace,
# workloads, the SecurityGroupPolicy, the Secret) is applied by infra/rollout.sh
# from infra/k8s/overlays/<shard_id> and this module's outputs. Each cell is its
# own Terraform state (infra/terraform/envs/cell), so one cell's apply cannot
# touch another cell.

locals {
  name            = "${var.environment}-${var.shard_id}"
  namespace       = "cellbank-${var.shard_id}"
  service_account = "cellbank-shard"
  host            = "${var.shard_id}.${var.domain}"
  tags            = merge(var.tags, { "cellbank.io/shard" = var.shard_id })
  app_port        = 8081
  secret_prefix   = "cellbank/${var.environment}/${var.shard_id}"
  # EC2 accepts only these characters in security-group descriptions.
  ec2_text            = "^[0-9A-Za-z_ .:/()#,@\\[\\]+=&;{}!$*-]{1,255}$"
  pods_sg_description = "Pods of ${var.shard_id}"
}

# --- encryption: only this cell's role (and the router, for the internal token) decrypts ---

module "kms" {
  source            = "../kms"
  name              = local.name
  description       = "${local.name}: RDS, MSK, secrets and logs of this cell"
  decrypt_role_arns = [module.role.arn]
  secret_readers = concat(
    [{ role_arn = var.router_role_arn, secret_name = "${local.secret_prefix}/internal-token" }],
    [for arn in var.operator_role_arns : { role_arn = arn, secret_name = "${local.secret_prefix}/admin-token" }],
  )
  tags = local.tags
}

# --- identity: this cell's pods, and nothing else, assume this role ---

module "role" {
  source               = "../workload_role"
  name                 = "${local.name}-pods"
  cluster_name         = var.cluster_name
  namespace            = local.namespace
  service_account      = local.service_account
  secret_arns          = [aws_secretsmanager_secret.admin_token.arn, aws_secretsmanager_secret.internal_token.arn, module.postgres.master_user_secret_arn]
  kms_key_arn          = module.kms.arn
  database_resource_id = module.postgres.resource_id
  tags                 = local.tags
}

# --- network: who may reach this cell's data ---

# Attached to this cell's pods by the SecurityGroupPolicy infra/rollout.sh writes.
resource "aws_security_group" "pods" {
  name        = "${local.name}-pods"
  description = local.pods_sg_description
  vpc_id      = var.vpc_id
  tags        = local.tags

  lifecycle {
    precondition {
      condition     = can(regex(local.ec2_text, local.pods_sg_description))
      error_message = "The pods' security-group description has a character EC2 rejects."
    }
  }
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
  description                  = "Postgres of this cell"
  referenced_security_group_id = module.postgres.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
}

resource "aws_vpc_security_group_egress_rule" "pods_to_kafka" {
  security_group_id            = aws_security_group.pods.id
  description                  = "Brokers of this cell"
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
  security_group_description = "Postgres of ${var.shard_id}: this cell pods only"
  client_security_groups = {
    pods = { description = "Pods of ${var.shard_id}", security_group_id = aws_security_group.pods.id }
  }
  kms_key_arn  = module.kms.arn
  decommission = var.decommission
  tags         = local.tags
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
  security_group_description = "Brokers of ${var.shard_id}: this cell pods and the router"
  client_security_groups = {
    pods     = { description = "Pods of ${var.shard_id}", security_group_id = aws_security_group.pods.id }
    router   = { description = "Global router produces routed events", security_group_id = var.router_security_group_id }
    exporter = { description = "Exporter of ${var.shard_id} reads the change log", security_group_id = aws_security_group.exporter.id }
  }
  kms_key_arn = module.kms.arn
  tags        = local.tags
}

# --- public DNS name (cert-manager proves it with DNS-01 for the TLS certificate) ---

resource "aws_route53_record" "public" {
  zone_id = var.route53_zone_id
  name    = local.host
  type    = "CNAME"
  ttl     = 60
  records = [var.ingress_hostname]
}
