# The secrets only global holds, encrypted with the global tier's key, readable
# only by the router's role:
# - signing-key:  auth.signing_key, the Ed25519 seed tokens are signed with
#   (url-safe base64, TokenSigner::from_seed_b64). Rotation is a runbook step.
# - next-signing-key: auth.next_signing_key, the other key the JWKS lists during a
#   rotation; blank (one space) otherwise.
# - pan-hmac-key: the key PANs are HMACed with before they are stored.
# - admin-token:  the ops API's admin token (CELLCTL_ADMIN_TOKEN). Never a cell's.
# Terraform creates the secrets, not their values: infra/rollout.sh generates a
# value for each secret that has none, so no key ever passes through Terraform
# state, plans or outputs.

locals {
  secret_names = toset(["signing-key", "next-signing-key", "pan-hmac-key", "admin-token"])
}

resource "aws_secretsmanager_secret" "global" {
  for_each    = local.secret_names
  name        = "cellbank/${var.environment}/global/${each.key}"
  description = "${each.key} of the global tier"
  kms_key_id  = module.kms.arn
  tags        = local.tags
}
