# The bank's analytics bucket: every cell's exporter (cellbank-exporter) writes its
# change log there as Parquet, under <prefix>/<entity>/date=<d>/shard=<cell>/, and
# Athena reads it through the Glue tables (glue.tf). One bucket for all cells, so a
# query spans the bank; each cell's exporter may write only its own paths (its
# role's policy, in modules/cell) and read only its own checkpoint. Encrypted with
# a key of its own (through S3 only), versioned, private, TLS only.

data "aws_caller_identity" "current" {}

locals {
  # Bucket names are global: the account id keeps the environment's name free.
  bucket = "${var.name}-analytics-${data.aws_caller_identity.current.account_id}"
  tags   = merge(var.tags, { "cellbank.io/tier" = "analytics" })
}

module "kms" {
  source      = "../kms"
  name        = "${var.name}-analytics"
  description = "${var.name}: the analytics bucket (every cell's export)"
  # Used through S3 only; IAM decides who (each cell's exporter, the analysts).
  services = ["s3"]
  tags     = local.tags
}

resource "aws_s3_bucket" "this" {
  bucket = local.bucket
  tags   = local.tags

  lifecycle {
    precondition {
      condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", local.bucket))
      error_message = "The analytics bucket name (<environment>-analytics-<account>) is not a valid S3 bucket name."
    }
  }
}

# No ACLs: the bucket owner owns every object, whoever wrote it.
resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

# A redo rewrites a file under the same name; versions keep what it replaced.
resource "aws_s3_bucket_versioning" "this" {
  bucket = aws_s3_bucket.this.id
  versioning_configuration {
    status = "Enabled"
  }
}

# Every object with the analytics key by default (the exporter sends no encryption
# headers); a bucket key saves a KMS call per put.
resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = module.kms.arn
    }
    bucket_key_enabled = true
  }
}

# Current objects stay (the dataset is the bank's history). Replaced versions go
# after noncurrent_version_days; a checkpoint is rewritten twice a flush, so its
# history goes after a week.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 7
    }
  }

  rule {
    id     = "noncurrent-versions"
    status = "Enabled"
    filter {}
    noncurrent_version_expiration {
      noncurrent_days = var.noncurrent_version_days
    }
    expiration {
      expired_object_delete_marker = true
    }
  }

  rule {
    id     = "checkpoint-history"
    status = "Enabled"
    filter {
      prefix = "${var.prefix}/_checkpoints/"
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
  }

  depends_on = [aws_s3_bucket_versioning.this]
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json
  # The public access block first, so this policy is judged against it.
  depends_on = [aws_s3_bucket_public_access_block.this]
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid       = "TlsOnly"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.this.arn, "${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }

  # A writer may leave encryption to the bucket's default, but never name another
  # algorithm or key.
  statement {
    sid       = "OnlyTheAnalyticsKey"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption-aws-kms-key-id"
      values   = [module.kms.arn]
    }
  }

  statement {
    sid       = "OnlyKmsEncryption"
    effect    = "Deny"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.this.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Null"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["false"]
    }
    condition {
      test     = "StringNotEquals"
      variable = "s3:x-amz-server-side-encryption"
      values   = ["aws:kms"]
    }
  }
}
