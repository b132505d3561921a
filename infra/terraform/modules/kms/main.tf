# A customer-managed KMS key with rotation on, a 30-day deletion window and an
# alias. The account's administrators manage it but cannot use it directly: data is
# encrypted only through the services that hold the tier's or cell's data (Secrets
# Manager, CloudWatch Logs, and `services`: RDS and MSK by default, S3 for the
# analytics bucket), and only the roles named in decrypt_role_arns (the tier's or
# cell's own workload role) may decrypt through Secrets Manager. One key per tier
# and per cell, so a cell's role can never read another cell's data.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  account_root = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root"
  region       = data.aws_region.current.name
  via_services = [for s in var.services : "${s}.${local.region}.amazonaws.com"]
}

resource "aws_kms_key" "this" {
  description             = var.description
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.kms.json
  tags                    = var.tags
  # A removed cell's key stays: its final database snapshot and its secrets are
  # encrypted with it. `infra/rollout.sh remove` forgets the key (terraform state
  # rm) before the cell's destroy, so the destroy never schedules its deletion; a
  # stray destroy still leaves 30 days to cancel it (infra/README.md).
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.this.key_id
}

data "aws_iam_policy_document" "kms" {
  statement {
    sid = "AccountManagesTheKey"
    actions = [
      "kms:Create*", "kms:Describe*", "kms:Enable*", "kms:List*", "kms:Put*", "kms:Update*",
      "kms:Revoke*", "kms:Disable*", "kms:Get*", "kms:Delete*", "kms:TagResource",
      "kms:UntagResource", "kms:ScheduleKeyDeletion", "kms:CancelKeyDeletion",
    ]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
  }

  # Terraform (and RDS, MSK on its behalf) encrypt through the data services only;
  # for S3, IAM policies in the account decide who may (the key delegates to them).
  statement {
    sid       = "EncryptThroughDataServices"
    actions   = ["kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = local.via_services
    }
    condition {
      test     = "StringEquals"
      variable = "kms:CallerAccount"
      values   = [data.aws_caller_identity.current.account_id]
    }
  }

  # Writing secrets (Terraform) through Secrets Manager: encrypt only, never decrypt.
  statement {
    sid       = "WriteSecrets"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey*", "kms:DescribeKey"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.account_root]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }

  dynamic "statement" {
    for_each = length(var.decrypt_role_arns) > 0 ? [1] : []
    content {
      sid       = "OwnRolesReadSecrets"
      actions   = ["kms:Decrypt", "kms:DescribeKey"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = var.decrypt_role_arns
      }
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
    }
  }

  # Another tier's role reading one named secret of this tier or cell (the router
  # reads each cell's internal token), and no other.
  dynamic "statement" {
    for_each = var.secret_readers
    content {
      sid       = "ReadOneSecret${statement.key}"
      actions   = ["kms:Decrypt"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = [statement.value.role_arn]
      }
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.amazonaws.com"]
      }
      condition {
        test     = "StringLike"
        variable = "kms:EncryptionContext:SecretARN"
        values   = ["arn:${data.aws_partition.current.partition}:secretsmanager:${local.region}:${data.aws_caller_identity.current.account_id}:secret:${statement.value.secret_name}-??????"]
      }
    }
  }

  statement {
    sid       = "CloudWatchLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${data.aws_partition.current.partition}:logs:${local.region}:${data.aws_caller_identity.current.account_id}:log-group:/cellbank/${var.name}/*"]
    }
  }
}
