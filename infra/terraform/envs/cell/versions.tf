terraform {
  required_version = ">= 1.11"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
  }

  # One state per cell: the key is set at init (see main.tf).
  backend "s3" {
    encrypt = true
  }
}
