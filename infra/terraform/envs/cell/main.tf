# One shard cell, in a state of its own: infra/rollout.sh runs
#   terraform init -backend-config=<env backend.hcl> -backend-config=key=<environment>/cells/<shard>.tfstate
#   terraform apply -var-file=<the shared stack's cells[<shard>] output>
# so a cell's plan can only ever change that cell.

provider "aws" {
  region = var.cell.region
  default_tags {
    tags = {
      "app.kubernetes.io/part-of" = "cellbank"
      environment                 = var.cell.environment
      "cellbank.io/shard"         = var.cell.shard_id
    }
  }
}

module "cell" {
  source = "../../modules/cell"

  shard_id                  = var.cell.shard_id
  environment               = var.cell.environment
  image_tag                 = var.cell.image_tag
  vpc_id                    = var.cell.vpc_id
  data_subnet_ids           = var.cell.data_subnet_ids
  cluster_name              = var.cell.cluster_name
  cluster_security_group_id = var.cell.cluster_security_group_id
  router_security_group_id  = var.cell.router_security_group_id
  router_role_arn           = var.cell.router_role_arn
  router_role_name          = var.cell.router_role_name
  operator_role_arns        = var.cell.operator_role_arns
  alarm_topic_arn           = var.cell.alarm_topic_arn
  domain                    = var.cell.domain
  route53_zone_id           = var.cell.route53_zone_id
  ingress_hostname          = var.cell.ingress_hostname
  global_internal_url       = var.cell.global_internal_url
  analytics_bucket          = var.cell.analytics_bucket
  analytics_bucket_arn      = var.cell.analytics_bucket_arn
  analytics_kms_key_arn     = var.cell.analytics_kms_key_arn
  analytics_prefix          = var.cell.analytics_prefix
  decommission              = var.cell.decommission

  capacity             = var.cell.capacity
  postgres_version     = var.cell.postgres_version
  kafka_version        = var.cell.kafka_version
  db_instance_class    = var.cell.db_instance_class
  db_allocated_storage = var.cell.db_allocated_storage
  kafka_instance_type  = var.cell.kafka_instance_type
  kafka_broker_count   = var.cell.kafka_broker_count
  kafka_volume_size    = var.cell.kafka_volume_size
}
