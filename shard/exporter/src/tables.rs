//! The exported tables: one per entity, each row a change with the columns
//! every table shares (cell, change id, customer, epoch, where in the log it
//! came from) and the entity's own, typed; encoded as a Parquet file.

use std::sync::Arc;

use anyhow::Context as _;
use arrow_array::builder::{
    BooleanBuilder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value};

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Str,
    I64,
    Bool,
    /// Microseconds, UTC.
    Ts,
}

type Columns = &'static [(&'static str, Kind)];

/// Columns of every table, in front of the entity's own.
pub const COMMON: Columns = &[
    ("shard", Kind::Str),
    ("change_id", Kind::I64),
    ("op", Kind::Str),
    ("customer_id", Kind::Str),
    ("epoch", Kind::I64),
    ("changed_at", Kind::Ts),
    ("source_partition", Kind::I64),
    ("source_offset", Kind::I64),
];

/// The entity's own columns, as the cell's change log carries them.
pub fn columns(entity: &str) -> Option<Columns> {
    use Kind::*;
    Some(match entity {
        "postings" => &[
            ("id", I64),
            ("namespace", Str),
            ("event_id", Str),
            ("entry_no", I64),
            ("account_code", Str),
            ("currency", Str),
            ("amount", I64),
            ("business_time", Ts),
        ],
        "customers" => &[("state", Str), ("currency", Str), ("created_at", Ts)],
        "accounts" => &[
            ("account_id", Str),
            ("kind", Str),
            ("number", Str),
            ("currency", Str),
            ("created_at", Ts),
        ],
        "cards" => &[
            ("card_id", Str),
            ("last4", Str),
            ("currency", Str),
            ("credit_limit", I64),
            ("limit_set_at", Ts),
            ("blocked", Bool),
            ("closing_day", I64),
            ("due_day", I64),
            ("created_at", Ts),
        ],
        "transfers" => &[
            ("transfer_id", Str),
            ("from_account", Str),
            ("to_account", Str),
            ("to_account_number", Str),
            ("amount", I64),
            ("currency", Str),
            ("state", Str),
            ("reason", Str),
            ("created_at", Ts),
            ("settled_at", Ts),
        ],
        _ => return None,
    })
}

/// One change as exported.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub change_id: i64,
    pub op: String,
    pub customer_id: String,
    pub epoch: i64,
    pub changed_at: DateTime<Utc>,
    pub source_partition: i32,
    pub source_offset: i64,
    pub values: Map<String, Value>,
}

impl Row {
    /// The date the row is filed under: a posting's business date (a late
    /// posting lands in its own day, as its own row), else the change's.
    pub fn date(&self, entity: &str) -> NaiveDate {
        let business = (entity == "postings")
            .then(|| self.values.get("business_time").and_then(timestamp))
            .flatten();
        business.unwrap_or(self.changed_at).date_naive()
    }

    fn common(&self, name: &str, shard: &str) -> Value {
        match name {
            "shard" => Value::from(shard),
            "change_id" => Value::from(self.change_id),
            "op" => Value::from(self.op.as_str()),
            "customer_id" => Value::from(self.customer_id.as_str()),
            "epoch" => Value::from(self.epoch),
            "changed_at" => Value::from(self.changed_at.to_rfc3339()),
            "source_partition" => Value::from(self.source_partition),
            "source_offset" => Value::from(self.source_offset),
            _ => Value::Null,
        }
    }
}

fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// The Arrow schema of an entity's table.
pub fn schema(own: Columns) -> Schema {
    let fields: Vec<Field> = COMMON
        .iter()
        .chain(own)
        .map(|(name, kind)| {
            let dt = match kind {
                Kind::Str => DataType::Utf8,
                Kind::I64 => DataType::Int64,
                Kind::Bool => DataType::Boolean,
                Kind::Ts => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            };
            // The shared columns are always there; the entity's may be null.
            Field::new(*name, dt, !COMMON.iter().any(|(c, _)| c == name))
        })
        .collect();
    Schema::new(fields)
}

/// A builder per column, fed JSON values (a value of another type is null:
/// the cell's schema, not the exporter, is the authority on types).
enum Builder {
    Str(StringBuilder),
    I64(Int64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Builder {
    fn new(kind: Kind, rows: usize) -> Self {
        match kind {
            Kind::Str => Builder::Str(StringBuilder::with_capacity(rows, rows * 16)),
            Kind::I64 => Builder::I64(Int64Builder::with_capacity(rows)),
            Kind::Bool => Builder::Bool(BooleanBuilder::with_capacity(rows)),
            Kind::Ts => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
            }
        }
    }

    fn push(&mut self, v: Option<&Value>) {
        let v = v.filter(|v| !v.is_null());
        match self {
            Builder::Str(b) => match v {
                Some(Value::String(s)) => b.append_value(s),
                Some(other) => b.append_value(other.to_string()),
                None => b.append_null(),
            },
            Builder::I64(b) => b.append_option(v.and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })),
            Builder::Bool(b) => b.append_option(v.and_then(Value::as_bool)),
            Builder::Ts(b) => b.append_option(v.and_then(timestamp).map(|t| t.timestamp_micros())),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Builder::Str(mut b) => Arc::new(b.finish()) as ArrayRef,
            Builder::I64(mut b) => Arc::new(b.finish()),
            Builder::Bool(mut b) => Arc::new(b.finish()),
            Builder::Ts(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Encodes `rows` of `entity` from cell `shard` as one Parquet file.
pub fn encode(entity: &str, shard: &str, rows: &[Row]) -> anyhow::Result<Vec<u8>> {
    let own = columns(entity).with_context(|| format!("no table for entity {entity:?}"))?;
    let schema = Arc::new(schema(own));
    let mut builders: Vec<Builder> = COMMON
        .iter()
        .chain(own)
        .map(|(_, kind)| Builder::new(*kind, rows.len()))
        .collect();
    for row in rows {
        let mut b = builders.iter_mut();
        for ((name, _), builder) in COMMON.iter().zip(&mut b) {
            builder.push(Some(&row.common(name, shard)));
        }
        for ((name, _), builder) in own.iter().zip(b) {
            builder.push(row.values.get(*name));
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(Builder::finish).collect();
    let batch = RecordBatch::try_new(schema.clone(), arrays).context("build record batch")?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("cellbank-exporter".into())
        .build();
    let mut out = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut out, schema, Some(props)).context("open parquet writer")?;
    writer.write(&batch).context("write parquet")?;
    writer.close().context("close parquet")?;
    Ok(out)
}
