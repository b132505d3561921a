# Example environment. route53_zone_id and ingress_hostname are placeholders.
environment      = "cellbank-example"
domain           = "api.example.com"
route53_zone_id  = "Z0000000000EXAMPLE"
ingress_hostname = "ingress-nginx-0123456789abcdef.elb.sa-east-1.amazonaws.com"
global_image_tag = "0.1.0"

# One entry per cell; each needs infra/k8s/overlays/<id> with the same image tag
# (infra/k8s/render-shard.sh <id> --image-tag <tag>). shard-1 is the canary: a new
# image_tag goes there first (infra/README.md, "Canary rollout").
shards = {
  "shard-1" = { image_tag = "0.1.0", canary = true }
  "shard-2" = { image_tag = "0.1.0" }
}

# Removed cells whose exported history stays queryable (the Glue tables' shard
# enum; infra/README.md, "Removing a cell"), e.g. retired_shards = ["shard-3"].
