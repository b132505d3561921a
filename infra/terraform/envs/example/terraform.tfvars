# Example environment. route53_zone_id and ingress_hostname are placeholders.
environment      = "cellbank-example"
domain           = "api.example.com"
route53_zone_id  = "Z0000000000EXAMPLE"
ingress_hostname = "ingress-nginx-0123456789abcdef.elb.sa-east-1.amazonaws.com"

# One entry per cell; each needs infra/k8s/overlays/<id> (infra/k8s/render-shard.sh <id>).
shards = {
  "shard-1" = {}
  "shard-2" = {}
}
