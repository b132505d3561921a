terraform {
  required_version = ">= 1.6"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.60"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 2.31"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
    kustomization = {
      source  = "kbst/kustomization"
      version = "~> 0.9"
    }
  }

  # State holds generated secrets: keep it in an encrypted, versioned, locked bucket.
  # terraform init -backend-config=backend.hcl  (bucket, key, region, dynamodb_table, kms_key_id)
  backend "s3" {
    encrypt = true
  }
}
