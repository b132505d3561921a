# This cell's alarms, to the platform's alarm topic: its database, its brokers,
# its error rate and its consumer lag. Every alarm names the cell, so a page says
# which customers are affected. Thresholds are variables with production defaults.

locals {
  alarm_prefix = "${local.name}:"
  app_log      = "/cellbank/${local.name}/app"
}

resource "aws_cloudwatch_metric_alarm" "db_cpu" {
  alarm_name          = "${local.alarm_prefix} database CPU above 80%"
  namespace           = "AWS/RDS"
  metric_name         = "CPUUtilization"
  dimensions          = { DBInstanceIdentifier = module.postgres.identifier }
  statistic           = "Average"
  period              = 300
  evaluation_periods  = 3
  threshold           = 80
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "db_storage" {
  alarm_name          = "${local.alarm_prefix} database free storage below 10 GiB"
  namespace           = "AWS/RDS"
  metric_name         = "FreeStorageSpace"
  dimensions          = { DBInstanceIdentifier = module.postgres.identifier }
  statistic           = "Minimum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 10 * 1024 * 1024 * 1024
  comparison_operator = "LessThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "broker_disk" {
  alarm_name          = "${local.alarm_prefix} broker disk above 75%"
  namespace           = "AWS/Kafka"
  metric_name         = "KafkaDataLogsDiskUsed"
  dimensions          = { "Cluster Name" = module.kafka.cluster_name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  threshold           = 75
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "broker_offline_partitions" {
  alarm_name          = "${local.alarm_prefix} offline partitions"
  namespace           = "AWS/Kafka"
  metric_name         = "OfflinePartitionsCount"
  dimensions          = { "Cluster Name" = module.kafka.cluster_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  alarm_actions       = [var.alarm_topic_arn]
  tags                = local.tags
}

# Consumer lag of every consumer group of this cell (ledger, authorizer, ...).
resource "aws_cloudwatch_metric_alarm" "consumer_lag" {
  alarm_name          = "${local.alarm_prefix} consumer lag above ${var.max_consumer_lag_seconds}s"
  namespace           = "AWS/Kafka"
  metric_name         = "EstimatedMaxTimeLag"
  dimensions          = { "Cluster Name" = module.kafka.cluster_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.max_consumer_lag_seconds
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = local.tags
}

# The cell's error rate: the pods' JSON logs (CELLBANK__TELEMETRY__FORMAT=json)
# reach this group through the cluster's log shipper; every ERROR line counts.
resource "aws_cloudwatch_log_group" "app" {
  name              = local.app_log
  retention_in_days = 365
  kms_key_id        = module.kms.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_metric_filter" "errors" {
  name           = "${local.name}-errors"
  log_group_name = aws_cloudwatch_log_group.app.name
  pattern        = "{ $.level = \"ERROR\" }"
  metric_transformation {
    name          = "Errors"
    namespace     = "Cellbank/${local.name}"
    value         = "1"
    default_value = "0"
  }
}

resource "aws_cloudwatch_metric_alarm" "error_rate" {
  alarm_name          = "${local.alarm_prefix} more than ${var.max_errors_per_minute} errors a minute"
  namespace           = "Cellbank/${local.name}"
  metric_name         = "Errors"
  statistic           = "Sum"
  period              = 60
  evaluation_periods  = 3
  threshold           = var.max_errors_per_minute
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alarm_topic_arn]
  ok_actions          = [var.alarm_topic_arn]
  tags                = local.tags
}
