//! Writing a flush: its ranges saved as pending, its files put (Parquet per
//! partition, entity and date; rejects as JSON lines), then the advanced
//! offsets saved. Object names are derived from the cell, the partition and
//! the offset range, so a redo overwrites, never adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

use crate::batch::{FileKey, Flush};
use crate::checkpoint::{Checkpoint, PartitionProgress, Range};
use crate::metrics;
use crate::tables;

pub struct Writer {
    pub store: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub shard: String,
    pub parallel_puts: usize,
    /// What is durable: the last checkpoint saved without a pending flush.
    pub durable: Checkpoint,
}

/// A file's name: `<entity>/date=<d>/shard=<cell>/<cell>-p<P>-<start>-<end>.parquet`
/// (hive-style partitions, offsets zero-padded so names sort by offset).
pub fn file_path(prefix: &Path, shard: &str, key: &FileKey, r: Range) -> Path {
    prefix
        .clone()
        .join(key.entity.as_str())
        .join(format!("date={}", key.date))
        .join(format!("shard={shard}"))
        .join(format!(
            "{shard}-p{}-{:012}-{:012}.parquet",
            key.partition, r.start, r.end
        ))
}

/// Where a partition's rejects of one flush go.
pub fn rejects_path(prefix: &Path, shard: &str, partition: i32, r: Range) -> Path {
    prefix
        .clone()
        .join("_rejects")
        .join(format!("shard={shard}"))
        .join(format!(
            "{shard}-p{partition}-{:012}-{:012}.jsonl",
            r.start, r.end
        ))
}

impl Writer {
    /// Puts each table's schema as an empty Parquet file under `_schemas/`,
    /// so a query over a table no cell has rows for yet finds it empty.
    pub async fn write_schemas(&self) -> anyhow::Result<()> {
        for entity in cellbank_shared::contract::changes::ENTITIES {
            let body = tables::encode(entity, &self.shard, &[])?;
            let path = self
                .prefix
                .clone()
                .join("_schemas")
                .join(format!("{entity}.parquet"));
            self.store
                .put(&path, PutPayload::from(Bytes::from(body)))
                .await
                .with_context(|| format!("put {path}"))?;
        }
        Ok(())
    }

    /// Writes `flush` until it is durable, retrying what fails (the consumer
    /// waits meanwhile: that is the back-pressure).
    pub async fn write(&mut self, flush: &Flush) {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.try_write(flush).await {
                Ok(files) => {
                    metrics::flushed(flush, files, started.elapsed());
                    return;
                }
                Err(e) => {
                    metrics::WRITE_FAILURES.inc();
                    tracing::warn!(error = %format!("{e:#}"), "writing a flush failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn try_write(&mut self, flush: &Flush) -> anyhow::Result<usize> {
        let mut pending = self.durable.clone();
        pending.pending = flush.ranges.clone();
        pending.save(self.store.as_ref(), &self.prefix).await?;
        // Encoding is CPU work: off the runtime's async threads.
        let puts = tokio::task::block_in_place(|| self.files(flush))?;
        let files = puts.len();
        let store = self.store.clone();
        futures::stream::iter(puts)
            .map(|(path, body)| {
                let store = store.clone();
                async move {
                    store
                        .put(&path, PutPayload::from(body))
                        .await
                        .with_context(|| format!("put {path}"))
                }
            })
            .buffer_unordered(self.parallel_puts)
            .try_collect::<Vec<_>>()
            .await?;
        let mut done = self.durable.clone();
        for (p, r) in &flush.ranges {
            done.partitions
                .insert(*p, PartitionProgress { next: r.end + 1 });
        }
        done.window = flush.window.clone();
        done.pending.clear();
        done.save(self.store.as_ref(), &self.prefix).await?;
        self.durable = done;
        Ok(files)
    }

    /// Every object of the flush, encoded.
    fn files(&self, flush: &Flush) -> anyhow::Result<Vec<(Path, Bytes)>> {
        let mut out = Vec::with_capacity(flush.files.len() + flush.rejects.len());
        for (key, rows) in &flush.files {
            let range = flush.ranges[&key.partition];
            let body = tables::encode(&key.entity, &self.shard, rows)?;
            out.push((
                file_path(&self.prefix, &self.shard, key, range),
                Bytes::from(body),
            ));
        }
        for (p, rejects) in &flush.rejects {
            let mut body = Vec::new();
            for r in rejects {
                serde_json::to_writer(&mut body, r).expect("reject serializes");
                body.push(b'\n');
            }
            let path = rejects_path(&self.prefix, &self.shard, *p, flush.ranges[p]);
            out.push((path, Bytes::from(body)));
        }
        Ok(out)
    }
}
