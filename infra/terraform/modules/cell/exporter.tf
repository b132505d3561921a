# This cell's exporter (cellbank-exporter, one pod): it tails the cell's change log
# on the cell's brokers and writes it as Parquet into the bank's analytics bucket
# (modules/analytics, in the shared stack). Least privilege, apart from the shard:
# its own service account and role, which may put only this cell's objects (its
# files, its rejects, its checkpoint, and the tables' shared schema files) and read
# only its own checkpoint: no listing of the bucket, no delete, nothing of another
# cell, no secret, no database. Its own security group: the cell's brokers and S3.

data "aws_region" "current" {}

locals {
  exporter_service_account = "cellbank-exporter"
  exporter_port            = 8083
  export_root              = "${var.analytics_bucket_arn}/${var.analytics_prefix}"
  export_checkpoint        = "${var.analytics_prefix}/_checkpoints/${var.shard_id}.json"
  # shared::contract::changes::ENTITIES; the Glue tables of modules/analytics.
  exported_entities       = ["postings", "customers", "accounts", "cards", "transfers"]
  exporter_sg_description = "Exporter of ${var.shard_id}"
}

module "exporter_role" {
  source          = "../workload_role"
  name            = "${local.name}-exporter"
  cluster_name    = var.cluster_name
  namespace       = local.namespace
  service_account = local.exporter_service_account
  tags            = local.tags
}

data "aws_iam_policy_document" "exporter" {
  # <entity>/date=<yyyy-MM-dd>/shard=<cell>/<cell>-p<P>-<start>-<end>.parquet and
  # _rejects/shard=<cell>/<cell>-p<P>-<start>-<end>.jsonl. The date is exactly ten
  # characters: a `*` there would also match "<date>/shard=<another cell>", a path
  # inside another cell's partition.
  statement {
    sid     = "PutOwnFiles"
    actions = ["s3:PutObject"]
    resources = concat(
      [for e in local.exported_entities :
      "${local.export_root}/${e}/date=??????????/shard=${var.shard_id}/${var.shard_id}-p*.parquet"],
      ["${local.export_root}/_rejects/shard=${var.shard_id}/${var.shard_id}-p*.jsonl"],
      # Each table's schema as an empty file, which every cell writes alike.
      [for e in local.exported_entities : "${local.export_root}/_schemas/${e}.parquet"],
    )
  }

  # Its progress: read at start, written at every flush.
  statement {
    sid       = "OwnCheckpoint"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = ["${var.analytics_bucket_arn}/${local.export_checkpoint}"]
  }

  # SSE-KMS: a put needs a data key, reading the checkpoint back needs Decrypt.
  statement {
    sid       = "AnalyticsKeyThroughS3"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [var.analytics_kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
}

# The exporter's first checkpoint (no partition yet: export the log from its
# start), written once by Terraform, so the exporter never reads a missing
# object: S3 answers that with 403 to a role that may not list the bucket, and
# the exporter stops rather than guess. The exporter owns it from then on.
resource "aws_s3_object" "exporter_checkpoint" {
  bucket                 = var.analytics_bucket
  key                    = local.export_checkpoint
  content_type           = "application/json"
  content                = jsonencode({ shard = var.shard_id, topic = "cellbank.cell-changes", partitions = {} })
  server_side_encryption = "aws:kms"
  kms_key_id             = var.analytics_kms_key_arn
  tags                   = local.tags

  lifecycle {
    ignore_changes = [content, content_type, etag, tags, tags_all, metadata]
  }
}

resource "aws_iam_role_policy" "exporter" {
  name   = "write-own-export"
  role   = module.exporter_role.name
  policy = data.aws_iam_policy_document.exporter.json
}

# --- network: the exporter's pods (their own SecurityGroupPolicy, infra/rollout.sh) ---

resource "aws_security_group" "exporter" {
  name        = "${local.name}-exporter"
  description = local.exporter_sg_description
  vpc_id      = var.vpc_id
  tags        = local.tags

  lifecycle {
    precondition {
      condition     = can(regex(local.ec2_text, local.exporter_sg_description))
      error_message = "The exporter's security-group description has a character EC2 rejects."
    }
  }
}

resource "aws_vpc_security_group_ingress_rule" "exporter_from_cluster" {
  security_group_id            = aws_security_group.exporter.id
  description                  = "Kubelet probes and Prometheus (health and metrics only)"
  referenced_security_group_id = var.cluster_security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.exporter_port
  to_port                      = local.exporter_port
}

resource "aws_vpc_security_group_egress_rule" "exporter_to_kafka" {
  security_group_id            = aws_security_group.exporter.id
  description                  = "Brokers of this cell (its change log)"
  referenced_security_group_id = module.kafka.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 9092
  to_port                      = 9092
}

data "aws_ec2_managed_prefix_list" "s3" {
  name = "com.amazonaws.${data.aws_region.current.name}.s3"
}

resource "aws_vpc_security_group_egress_rule" "exporter_to_s3" {
  security_group_id = aws_security_group.exporter.id
  description       = "S3 (the analytics bucket), through the VPC gateway endpoint"
  prefix_list_id    = data.aws_ec2_managed_prefix_list.s3.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
}
