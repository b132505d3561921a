//! The exporter's typed settings: which cell, its broker, where the files go
//! and how batches close. Loaded like the other binaries' (`CELLBANK__*`).

use cellbank_shared::config::{
    require_positive, ConfigError, KafkaSettings, ServerSettings, TelemetrySettings, Validate,
};
use cellbank_shared::ids::ShardId;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub shard: ShardRef,
    pub kafka: KafkaSettings,
    pub export: ExportSettings,
    /// `/healthz`, `/readyz` and `/metrics` only.
    pub server: ServerSettings,
    pub telemetry: TelemetrySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            shard: ShardRef::default(),
            kafka: KafkaSettings::default(),
            export: ExportSettings::default(),
            server: ServerSettings {
                port: 8083,
                ..ServerSettings::default()
            },
            telemetry: TelemetrySettings::default(),
        }
    }
}

/// The cell whose log this exporter reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardRef {
    /// `shard-<n>`.
    pub id: Option<ShardId>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportSettings {
    /// Where the dataset lives: `file:///dir` (a local directory, created if
    /// missing) or `s3://bucket/prefix` (credentials and region from the
    /// standard `AWS_*` environment, e.g. the pod's web identity).
    pub store_url: String,
    /// A batch closes at this many rows (after de-duplication)...
    pub batch_rows: usize,
    /// ...or this long after its first record, whichever comes first.
    pub batch_ms: u64,
    /// Change ids remembered per partition to drop redeliveries.
    pub dedupe_window: u64,
    /// Closed batches waiting to be written, at most; past it the consumer
    /// pauses its partitions until the writer catches up.
    pub max_pending_batches: usize,
    /// librdkafka's prefetch bound per partition (`queued.max.messages.kbytes`).
    pub prefetch_kbytes: u32,
    /// Files of one flush written at once.
    pub parallel_puts: usize,
    /// Records read again before a partition's resume point (after a
    /// restart or a pause), then skipped. A broker that answers a fetch
    /// from inside a record batch with the *next* batch (tansu 0.6 does:
    /// RELIABILITY.md) would otherwise skip the rest of that batch; this
    /// must exceed the largest batch a producer of the log writes (the
    /// cell's relay sends at most 500 records at a time). 0 against Kafka.
    pub refetch_records: i64,
}

impl Default for ExportSettings {
    fn default() -> Self {
        Self {
            store_url: String::new(),
            batch_rows: 50_000,
            batch_ms: 10_000,
            dedupe_window: 1_000_000,
            max_pending_batches: 2,
            prefetch_kbytes: 8 * 1024,
            parallel_puts: 4,
            refetch_records: 1_000,
        }
    }
}

impl ExportSettings {
    pub fn batch_age(&self) -> Duration {
        Duration::from_millis(self.batch_ms)
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.shard.id.is_none() {
            return Err(ConfigError::invalid(
                "shard.id",
                "is required (CELLBANK__SHARD__ID, e.g. shard-1)",
            ));
        }
        if self.kafka.bootstrap.trim().is_empty() {
            return Err(ConfigError::invalid(
                "kafka.bootstrap",
                "is required (CELLBANK__KAFKA__BOOTSTRAP)",
            ));
        }
        let url = self.export.store_url.trim();
        if !(url.starts_with("file://") || url.starts_with("s3://")) {
            return Err(ConfigError::invalid(
                "export.store_url",
                "must be file:///<dir> or s3://<bucket>/<prefix> (CELLBANK__EXPORT__STORE_URL)",
            ));
        }
        require_positive("export.batch_rows", self.export.batch_rows as u64)?;
        require_positive("export.batch_ms", self.export.batch_ms)?;
        require_positive("export.dedupe_window", self.export.dedupe_window)?;
        require_positive(
            "export.max_pending_batches",
            self.export.max_pending_batches as u64,
        )?;
        require_positive("export.prefetch_kbytes", self.export.prefetch_kbytes.into())?;
        require_positive("export.parallel_puts", self.export.parallel_puts as u64)?;
        if self.export.refetch_records < 0 {
            return Err(ConfigError::invalid(
                "export.refetch_records",
                "must be zero or more",
            ));
        }
        Ok(())
    }
}
