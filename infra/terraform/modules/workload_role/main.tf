# The AWS identity of one tier's or one cell's pods, through EKS Pod Identity: a
# role only the named service account of the named namespace, in this cluster,
# can assume, allowed to read only its own secrets (and decrypt them with its own
# key, through Secrets Manager) and to connect to its own database as its user.
# A workload with neither (a cell's exporter) gets a role with no access here;
# its caller attaches what it may do (aws_iam_role_policy on `name`).

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

resource "aws_iam_role" "this" {
  name               = var.name
  assume_role_policy = data.aws_iam_policy_document.trust.json
  tags               = var.tags
}

# Pod Identity tags the session with the pod's cluster, namespace and service
# account; the trust policy admits only this one.
data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole", "sts:TagSession"]
    principals {
      type        = "Service"
      identifiers = ["pods.eks.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/eks-cluster-name"
      values   = [var.cluster_name]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-namespace"
      values   = [var.namespace]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:RequestTag/kubernetes-service-account"
      values   = [var.service_account]
    }
  }
}

# A tier or cell with a database reads its secrets (the password RDS manages is
# one), so the policy exists exactly when there are secrets to read.
data "aws_iam_policy_document" "access" {
  count = length(var.secret_arns) > 0 ? 1 : 0
  statement {
    sid       = "OwnSecrets"
    actions   = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    resources = var.secret_arns
  }
  statement {
    sid       = "OwnKeyThroughSecretsManager"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${data.aws_region.current.name}.amazonaws.com"]
    }
  }
  dynamic "statement" {
    for_each = var.database_resource_id == null ? [] : [var.database_resource_id]
    content {
      sid       = "OwnDatabaseUser"
      actions   = ["rds-db:connect"]
      resources = ["arn:${data.aws_partition.current.partition}:rds-db:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:dbuser:${statement.value}/${var.database_user}"]
    }
  }
}

resource "aws_iam_role_policy" "access" {
  count  = length(var.secret_arns) > 0 ? 1 : 0
  name   = "own-secrets-and-database"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.access[0].json
}

# The policy was a single resource before workloads without secrets existed.
moved {
  from = aws_iam_role_policy.access
  to   = aws_iam_role_policy.access[0]
}

resource "aws_eks_pod_identity_association" "this" {
  cluster_name    = var.cluster_name
  namespace       = var.namespace
  service_account = var.service_account
  role_arn        = aws_iam_role.this.arn
  tags            = var.tags
}
