# An environment: the platform (VPC + EKS), the global tier, and one cell per
# entry of var.shards.

provider "aws" {
  region = var.region
  default_tags {
    tags = { "app.kubernetes.io/part-of" = "cellbank", environment = var.environment }
  }
}

locals {
  k8s_dir = "${path.root}/../../../k8s"
  kubeconfig = yamlencode({
    apiVersion      = "v1"
    kind            = "Config"
    current-context = "cellbank"
    clusters = [{ name = "cellbank", cluster = {
      server                     = module.platform.cluster_endpoint
      certificate-authority-data = base64encode(module.platform.cluster_ca_certificate)
    } }]
    users = [{ name = "cellbank", user = { exec = {
      apiVersion = "client.authentication.k8s.io/v1beta1"
      command    = "aws"
      args       = ["eks", "get-token", "--cluster-name", module.platform.cluster_name, "--region", var.region]
    } } }]
    contexts = [{ name = "cellbank", context = { cluster = "cellbank", user = "cellbank" } }]
  })
}

provider "kubernetes" {
  host                   = module.platform.cluster_endpoint
  cluster_ca_certificate = module.platform.cluster_ca_certificate
  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.platform.cluster_name, "--region", var.region]
  }
}

provider "kustomization" {
  kubeconfig_raw = local.kubeconfig
}

module "platform" {
  source              = "../../modules/platform"
  name                = var.environment
  availability_zones  = var.availability_zones
  cluster_admin_cidrs = var.cluster_admin_cidrs
}

module "global" {
  source                    = "../../modules/global"
  environment               = var.environment
  vpc_id                    = module.platform.vpc_id
  vpc_cidr                  = module.platform.vpc_cidr
  data_subnet_ids           = module.platform.data_subnet_ids
  cluster_security_group_id = module.platform.node_security_group_id
  domain                    = var.domain
  route53_zone_id           = var.route53_zone_id
  ingress_hostname          = var.ingress_hostname
  shard_ids                 = toset(keys(var.shards))
  k8s_overlay_path          = "${local.k8s_dir}/overlays/global"
}

# Each cell gets only its own internal token (never global's admin token, never
# another cell's); it generates its own admin token.
module "cell" {
  source   = "../../modules/cell"
  for_each = var.shards

  shard_id                  = each.key
  environment               = var.environment
  vpc_id                    = module.platform.vpc_id
  data_subnet_ids           = module.platform.data_subnet_ids
  cluster_security_group_id = module.platform.node_security_group_id
  router_security_group_id  = module.global.router_security_group_id
  domain                    = var.domain
  route53_zone_id           = var.route53_zone_id
  ingress_hostname          = var.ingress_hostname
  global_internal_url       = module.global.internal_url
  internal_token            = module.global.shard_internal_tokens[each.key]
  k8s_overlay_path          = "${local.k8s_dir}/overlays/${each.key}"

  capacity             = each.value.capacity
  db_instance_class    = each.value.db_instance_class
  db_allocated_storage = each.value.db_allocated_storage
  kafka_instance_type  = each.value.kafka_instance_type
  kafka_broker_count   = each.value.kafka_broker_count
  kafka_volume_size    = each.value.kafka_volume_size
}
