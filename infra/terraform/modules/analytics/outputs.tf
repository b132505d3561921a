output "bucket" {
  value = aws_s3_bucket.this.bucket
}

output "bucket_arn" {
  value = aws_s3_bucket.this.arn
}

output "kms_key_arn" {
  description = "The bucket's key: writers need kms:GenerateDataKey, readers kms:Decrypt, through S3."
  value       = module.kms.arn
}

output "prefix" {
  value = var.prefix
}

output "glue_database" {
  value = aws_glue_catalog_database.this.name
}

output "tables" {
  description = "Each Glue table's location and the cells its partition projection enumerates."
  value = { for name, t in aws_glue_catalog_table.entity : name => {
    location = t.storage_descriptor[0].location
    shards   = t.parameters["projection.shard.values"]
  } }
}
