# One Glue table per exported entity, for Athena: Parquet files under
# <prefix>/<entity>/date=<yyyy-MM-dd>/shard=<cell>/ (the exporter's layout). The
# partitions are projected, so no crawler and no ALTER TABLE ADD PARTITION:
# - date: every day from first_date to today;
# - shard: an enum of every cell that has exported (the shared stack's shards map
#   plus the removed cells whose history stays queryable). Not `injected`: that
#   would make every query name its cells, and the logical tables
#   (shard/exporter/analytics/logical_tables.sql) read all of them.
# The files carry a `shard` column too; here it is the partition key only.

locals {
  database = "${replace(var.name, "-", "_")}_analytics"

  # Every table's first columns (after `shard`, the partition key), then the entity's
  # own, as shard/exporter/src/tables.rs writes them: int64 is bigint, timestamps
  # are microseconds in UTC.
  common_columns = [
    ["change_id", "bigint"], ["op", "string"], ["customer_id", "string"], ["epoch", "bigint"],
    ["changed_at", "timestamp"], ["source_partition", "bigint"], ["source_offset", "bigint"],
  ]
  entity_columns = {
    postings = [
      ["id", "bigint"], ["namespace", "string"], ["event_id", "string"], ["entry_no", "bigint"],
      ["account_code", "string"], ["currency", "string"], ["amount", "bigint"], ["business_time", "timestamp"],
    ]
    customers = [["state", "string"], ["currency", "string"], ["created_at", "timestamp"]]
    accounts = [
      ["account_id", "string"], ["kind", "string"], ["number", "string"], ["currency", "string"],
      ["created_at", "timestamp"],
    ]
    cards = [
      ["card_id", "string"], ["last4", "string"], ["currency", "string"], ["credit_limit", "bigint"],
      ["limit_set_at", "timestamp"], ["blocked", "boolean"], ["closing_day", "bigint"], ["due_day", "bigint"],
      ["created_at", "timestamp"],
    ]
    transfers = [
      ["transfer_id", "string"], ["from_account", "string"], ["to_account", "string"],
      ["to_account_number", "string"], ["amount", "bigint"], ["currency", "string"], ["state", "string"],
      ["reason", "string"], ["created_at", "timestamp"], ["settled_at", "timestamp"],
    ]
  }
  root = "s3://${aws_s3_bucket.this.bucket}/${var.prefix}"
}

resource "aws_glue_catalog_database" "this" {
  name        = local.database
  description = "Every cell's export (cellbank-exporter), one table per entity"
  tags        = local.tags
}

resource "aws_glue_catalog_table" "entity" {
  for_each      = local.entity_columns
  name          = each.key
  database_name = aws_glue_catalog_database.this.name
  description   = "Every change of ${each.key} any cell exported, one row per change"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    EXTERNAL                        = "TRUE"
    classification                  = "parquet"
    "parquet.compression"           = "SNAPPY"
    "projection.enabled"            = "true"
    "projection.date.type"          = "date"
    "projection.date.format"        = "yyyy-MM-dd"
    "projection.date.range"         = "${var.first_date},NOW"
    "projection.date.interval"      = "1"
    "projection.date.interval.unit" = "DAYS"
    "projection.shard.type"         = "enum"
    "projection.shard.values"       = join(",", var.shards)
    "storage.location.template"     = "${local.root}/${each.key}/date=$${date}/shard=$${shard}/"
  }

  # `date` is a reserved word in Athena's SQL: write it "date" in queries.
  partition_keys {
    name    = "date"
    type    = "string"
    comment = "The day the row is filed under (UTC): a posting's business date, else the change's"
  }
  partition_keys {
    name    = "shard"
    type    = "string"
    comment = "The cell that exported the row (shard-N)"
  }

  storage_descriptor {
    location      = "${local.root}/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      name                  = "parquet"
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
      parameters            = { "serialization.format" = "1" }
    }

    dynamic "columns" {
      for_each = concat(local.common_columns, each.value)
      content {
        name = columns.value[0]
        type = columns.value[1]
      }
    }
  }
}
