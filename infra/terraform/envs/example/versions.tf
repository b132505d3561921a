terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # terraform init -backend-config=backend.hcl (bucket, region, dynamodb_table,
  # kms_key_id; key = <environment>/shared.tfstate). No secret values live in this
  # state (they are write-only), but ids and ARNs do: keep it encrypted and locked.
  backend "s3" {
    encrypt = true
  }
}
