# An environment's shared stack: the platform (VPC, EKS and its add-on roles) and
# the global tier, in one state. Cells are not applied here: each cell is its own
# state (../cell, one backend key per cell), so one cell's apply cannot touch
# another cell or the shared stack. This stack's `cells` output is each cell's
# input; infra/rollout.sh feeds it to ../cell one wave at a time.

provider "aws" {
  region = var.region
  default_tags {
    tags = { "app.kubernetes.io/part-of" = "cellbank", environment = var.environment }
  }
}

module "platform" {
  source              = "../../modules/platform"
  name                = var.environment
  availability_zones  = var.availability_zones
  cluster_admin_cidrs = var.cluster_admin_cidrs
  route53_zone_id     = var.route53_zone_id
}

module "global" {
  source                    = "../../modules/global"
  environment               = var.environment
  image_tag                 = var.global_image_tag
  operator_role_arns        = var.operator_role_arns
  vpc_id                    = module.platform.vpc_id
  vpc_cidr                  = module.platform.vpc_cidr
  data_subnet_ids           = module.platform.data_subnet_ids
  cluster_name              = module.platform.cluster_name
  cluster_security_group_id = module.platform.node_security_group_id
  domain                    = var.domain
  route53_zone_id           = var.route53_zone_id
  ingress_hostname          = var.ingress_hostname
}

# The bank's analytics bucket and its Glue tables: every cell's exporter writes its
# own paths there (modules/cell grants them). Removed cells stay in the tables.
module "analytics" {
  source = "../../modules/analytics"
  name   = var.environment
  shards = sort(distinct(concat(keys(var.shards), var.retired_shards)))
}

locals {
  # What every cell takes from the shared stack.
  shared = {
    environment               = var.environment
    region                    = var.region
    vpc_id                    = module.platform.vpc_id
    data_subnet_ids           = module.platform.data_subnet_ids
    cluster_name              = module.platform.cluster_name
    cluster_security_group_id = module.platform.node_security_group_id
    router_security_group_id  = module.global.router_security_group_id
    router_role_arn           = module.global.router_role_arn
    router_role_name          = module.global.router_role_name
    operator_role_arns        = var.operator_role_arns
    alarm_topic_arn           = module.platform.alarm_topic_arn
    domain                    = var.domain
    route53_zone_id           = var.route53_zone_id
    ingress_hostname          = var.ingress_hostname
    global_internal_url       = module.global.internal_url
    analytics_bucket          = module.analytics.bucket
    analytics_bucket_arn      = module.analytics.bucket_arn
    analytics_kms_key_arn     = module.analytics.kms_key_arn
    analytics_prefix          = module.analytics.prefix
  }
}

locals {
  # Wave 0 is the canary alone; then each cell's wave number, ascending.
  canary = [for id, s in var.shards : id if s.canary]
  waves = concat(
    length(local.canary) > 0 ? [local.canary] : [],
    [for w in sort(distinct([for id, s in var.shards : format("%04d", s.wave) if !s.canary])) :
    sort([for id, s in var.shards : id if !s.canary && format("%04d", s.wave) == w])],
  )
}
