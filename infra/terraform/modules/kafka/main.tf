# A managed Kafka (MSK) with Cellbank's production settings: one broker per AZ
# (a multiple of three), replication 3 with min.insync.replicas 2, no implicit
# topics, encrypted at rest with the caller's KMS key and between brokers, no
# public access, broker logs to CloudWatch, behind a security group that admits
# only the caller's client security groups. Used by the global tier and by every
# cell: change a production setting here, once, for both.

locals {
  # The plaintext client listener (see encryption_in_transit below).
  port = 9092
}

resource "aws_security_group" "kafka" {
  name        = "${var.name}-kafka"
  description = var.security_group_description
  vpc_id      = var.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "kafka" {
  for_each                     = var.client_security_groups
  security_group_id            = aws_security_group.kafka.id
  description                  = each.value.description
  referenced_security_group_id = each.value.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
}

resource "aws_msk_configuration" "this" {
  name           = var.name
  kafka_versions = [var.kafka_version]
  # The services create their topics at start (kafka::admin::ensure_topics), never implicitly.
  server_properties = <<-PROPS
    auto.create.topics.enable=false
    default.replication.factor=3
    min.insync.replicas=2
    unclean.leader.election.enable=false
    num.partitions=12
  PROPS
}

resource "aws_cloudwatch_log_group" "kafka" {
  name              = "/cellbank/${var.name}/msk"
  retention_in_days = 365
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  enhanced_monitoring    = "PER_TOPIC_PER_BROKER"

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.kafka.id]
    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size
      }
    }
    connectivity_info {
      public_access {
        type = "DISABLED"
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.kms_key_arn
    encryption_in_transit {
      # The binaries' KafkaSettings has no TLS/SASL settings yet, so clients use the
      # plaintext listener (9092) inside the VPC; brokers encrypt among themselves.
      # Switch to "TLS" once kafka.security_protocol exists (see infra/README.md).
      client_broker = "TLS_PLAINTEXT"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = true
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.kafka.name
      }
    }
  }

  tags = var.tags
}
