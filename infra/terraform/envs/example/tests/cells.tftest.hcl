# Plans and applies, against a mocked AWS provider (nothing is created), the
# example environment's shared stack with two and with three shards, then each
# cell's own stack (../cell) from the shared stack's `cells` output, and asserts
# what every shard gets: its own database, broker, KMS key, security groups,
# secrets, role and DNS name, none of them shared with another shard, and a
# database that admits only its own cell's pods; and its exporter: its own role,
# which may put only that cell's paths of the one analytics bucket.
#   cd infra/terraform/envs/example && terraform init -backend=false && terraform test

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
  mock_data "aws_partition" {
    defaults = { partition = "aws" }
  }
  mock_data "aws_caller_identity" {
    defaults = { account_id = "123456789012" }
  }
  mock_data "aws_region" {
    defaults = { name = "sa-east-1" }
  }
  mock_resource "aws_iam_role" {
    defaults = { arn = "arn:aws:iam::123456789012:role/mock" }
  }
  mock_resource "aws_kms_key" {
    defaults = { arn = "arn:aws:kms:sa-east-1:123456789012:key/mock" }
  }
  mock_resource "aws_sns_topic" {
    defaults = { arn = "arn:aws:sns:sa-east-1:123456789012:mock" }
  }
  mock_resource "aws_secretsmanager_secret" {
    defaults = { arn = "arn:aws:secretsmanager:sa-east-1:123456789012:secret:mock-AbCdEf" }
  }
  mock_resource "aws_db_instance" {
    defaults = {
      master_user_secret = [{ secret_arn = "arn:aws:secretsmanager:sa-east-1:123456789012:secret:rds-AbCdEf", kms_key_id = "k", secret_status = "active" }]
      port               = 5432
    }
  }
  mock_resource "aws_msk_configuration" {
    defaults = { arn = "arn:aws:kafka:sa-east-1:123456789012:configuration/mock/1", latest_revision = 1 }
  }
  mock_resource "aws_msk_cluster" {
    defaults = { arn = "arn:aws:kafka:sa-east-1:123456789012:cluster/mock/1", bootstrap_brokers = "b-1.mock:9092,b-2.mock:9092,b-3.mock:9092" }
  }
  mock_resource "aws_cloudwatch_log_group" {
    defaults = { arn = "arn:aws:logs:sa-east-1:123456789012:log-group:mock" }
  }
}

variables {
  route53_zone_id  = "Z0000000000EXAMPLE"
  ingress_hostname = "ingress.elb.sa-east-1.amazonaws.com"
  global_image_tag = "0.1.0"
}

# --- two shards ---

run "shared_two" {
  variables {
    shards = {
      "shard-1" = { image_tag = "0.2.0", canary = true }
      "shard-2" = { image_tag = "0.1.0" }
    }
  }
  assert {
    condition     = keys(output.cells) == ["shard-1", "shard-2"]
    error_message = "one cell input per shard"
  }
  assert {
    condition     = jsonencode(output.waves) == jsonencode([["shard-1"], ["shard-2"]])
    error_message = "the canary is a wave of its own, first"
  }
  assert {
    condition     = output.cells["shard-1"].image_tag == "0.2.0" && output.cells["shard-2"].image_tag == "0.1.0"
    error_message = "each cell keeps its own image tag"
  }
  assert {
    condition     = output.cells["shard-1"].postgres_version == "16" && output.cells["shard-1"].kafka_version == "3.7.x"
    error_message = "engine versions default per cell"
  }
  assert {
    condition     = output.analytics.bucket == "cellbank-example-analytics-123456789012" && output.cells["shard-2"].analytics_bucket == output.analytics.bucket
    error_message = "one analytics bucket for the bank, named to every cell"
  }
  assert {
    condition     = keys(module.analytics.tables) == ["accounts", "cards", "customers", "postings", "transfers"]
    error_message = "one Glue table per exported entity"
  }
  assert {
    condition     = alltrue([for t, v in module.analytics.tables : v.location == "s3://cellbank-example-analytics-123456789012/export/${t}/" && v.shards == "shard-1,shard-2"])
    error_message = "each table reads its entity's prefix and projects every cell"
  }
}

run "two_cell_1" {
  module {
    source = "../cell"
  }
  variables {
    cell = run.shared_two.cells["shard-1"]
  }
  assert {
    condition     = output.database_identifier == "cellbank-example-shard-1" && output.kafka_cluster_name == "cellbank-example-shard-1"
    error_message = "shard-1 gets its own database and broker"
  }
  assert {
    condition     = output.host == "shard-1.api.example.com" && output.registry_entry.public_url == "https://shard-1.api.example.com"
    error_message = "shard-1 is served at shard-1.<domain>"
  }
  assert {
    condition     = output.security_group_names == { pods = "cellbank-example-shard-1-pods", exporter = "cellbank-example-shard-1-exporter", database = "cellbank-example-shard-1-postgres", brokers = "cellbank-example-shard-1-kafka" }
    error_message = "shard-1 gets its own security groups"
  }
  assert {
    condition     = alltrue([for r in values(output.database_ingress) : r.cidr_ipv4 == null && r.cidr_ipv6 == null && r.referenced_security_group_id != null])
    error_message = "the database admits security groups only, never a CIDR"
  }
  assert {
    condition     = keys(output.database_ingress) == ["pods"]
    error_message = "the database admits only this cell's pods"
  }
  assert {
    condition     = output.release == { image_tag = "0.2.0", postgres_version = "16", kafka_version = "3.7.x" }
    error_message = "the canary runs its own release"
  }
  assert {
    condition     = module.cell.deployment.namespace == "cellbank-shard-1" && module.cell.deployment.service_account == "cellbank-shard"
    error_message = "shard-1 deploys into its own namespace"
  }
  assert {
    condition     = output.exporter.role_name == "cellbank-example-shard-1-exporter" && module.cell.deployment.exporter_service_account == "cellbank-exporter"
    error_message = "shard-1's exporter has a role and service account of its own"
  }
  assert {
    condition     = output.exporter.store_url == "s3://cellbank-example-analytics-123456789012/export" && module.cell.deployment.export_store_url == output.exporter.store_url
    error_message = "shard-1's exporter writes to the analytics bucket's dataset"
  }
  assert {
    condition     = output.exporter.checkpoint == "export/_checkpoints/shard-1.json"
    error_message = "shard-1's exporter keeps its own checkpoint"
  }
  assert {
    condition     = alltrue([for r in output.exporter.puts : strcontains(r, "/shard=shard-1/shard-1-p") || strcontains(r, "/_schemas/")]) && length(output.exporter.puts) == 11
    error_message = "shard-1's exporter puts only its own files (5 tables, rejects) and the 5 schema files"
  }
}

run "two_cell_2" {
  module {
    source = "../cell"
  }
  variables {
    cell = run.shared_two.cells["shard-2"]
  }
  assert {
    condition     = output.database_identifier == "cellbank-example-shard-2" && output.database_identifier != run.two_cell_1.database_identifier
    error_message = "shard-2 gets a database of its own"
  }
  assert {
    condition     = output.kafka_cluster_name != run.two_cell_1.kafka_cluster_name
    error_message = "shard-2 gets a broker of its own"
  }
  assert {
    condition     = output.host == "shard-2.api.example.com"
    error_message = "shard-2 is served at shard-2.<domain>"
  }
  assert {
    condition     = output.release.image_tag == "0.1.0"
    error_message = "shard-2 stays on its own release while the canary bakes"
  }
  assert {
    condition     = length(setintersection(values(output.security_group_names), values(run.two_cell_1.security_group_names))) == 0
    error_message = "no security group is shared between cells"
  }
  assert {
    condition     = output.exporter.role_name != run.two_cell_1.exporter.role_name && output.exporter.checkpoint != run.two_cell_1.exporter.checkpoint
    error_message = "each cell's exporter has its own role and checkpoint"
  }
  assert {
    condition     = alltrue([for r in setintersection(output.exporter.puts, run.two_cell_1.exporter.puts) : strcontains(r, "/_schemas/")])
    error_message = "two cells' exporters share no path but the tables' schema files"
  }
}

# --- three shards: adding a cell adds one cell stack and changes no other ---

run "shared_three" {
  variables {
    shards = {
      "shard-1" = { image_tag = "0.1.0", canary = true }
      "shard-2" = { image_tag = "0.1.0" }
      "shard-3" = { image_tag = "0.1.0", wave = 2, postgres_version = "17" }
    }
    retired_shards = ["shard-4"]
  }
  assert {
    condition     = keys(output.cells) == ["shard-1", "shard-2", "shard-3"]
    error_message = "one cell input per shard"
  }
  assert {
    condition     = jsonencode(output.waves) == jsonencode([["shard-1"], ["shard-2"], ["shard-3"]])
    error_message = "canary, then the waves in order"
  }
  assert {
    condition     = output.cells["shard-1"].router_role_arn == output.cells["shard-3"].router_role_arn
    error_message = "every cell grants the same router role"
  }
  assert {
    condition     = module.analytics.tables["postings"].shards == "shard-1,shard-2,shard-3,shard-4"
    error_message = "the tables project every cell, and a removed cell's history stays queryable"
  }
  assert {
    condition     = !contains(keys(output.cells), "shard-4")
    error_message = "a retired cell gets no cell stack"
  }
}

run "three_cell_1" {
  module {
    source = "../cell"
  }
  variables {
    cell = run.shared_three.cells["shard-1"]
  }
  assert {
    condition     = output.database_identifier == "cellbank-example-shard-1" && output.host == "shard-1.api.example.com"
    error_message = "shard-1 is unchanged by adding shard-3"
  }
}

run "three_cell_2" {
  module {
    source = "../cell"
  }
  variables {
    cell = run.shared_three.cells["shard-2"]
  }
  assert {
    condition     = output.database_identifier == "cellbank-example-shard-2" && output.host == "shard-2.api.example.com"
    error_message = "shard-2 is unchanged by adding shard-3"
  }
}

run "three_cell_3" {
  module {
    source = "../cell"
  }
  variables {
    cell = run.shared_three.cells["shard-3"]
  }
  assert {
    condition     = output.database_identifier == "cellbank-example-shard-3" && output.kafka_cluster_name == "cellbank-example-shard-3"
    error_message = "shard-3 gets its own database and broker"
  }
  assert {
    condition     = output.host == "shard-3.api.example.com" && output.registry_entry.id == "shard-3"
    error_message = "shard-3 is served at shard-3.<domain> and registers as shard-3"
  }
  assert {
    condition     = output.release.postgres_version == "17"
    error_message = "shard-3 runs its own Postgres major version"
  }
  assert {
    condition     = length(setintersection(values(output.security_group_names), values(run.three_cell_1.security_group_names))) == 0
    error_message = "no security group is shared between cells"
  }
}
