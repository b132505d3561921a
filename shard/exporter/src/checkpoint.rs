//! The exporter's progress, kept with its output (one object per cell in the
//! same store, as stateful stream processors keep offsets with their state):
//! per log partition, the next offset to export; the de-duplication window
//! as of those offsets; and the flush in progress, if any.
//!
//! A flush first saves its offset ranges as `pending`, then writes its files,
//! then saves the advanced offsets. A crash anywhere in between redoes the
//! pending ranges exactly (same records, same window, same batch
//! boundaries), so the files are rewritten under the same names, never added
//! a second time; the broker's committed offsets are only for lag graphs.

use std::collections::BTreeMap;

use anyhow::Context as _;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};
use serde::{Deserialize, Serialize};

use crate::window::Window;

/// One partition's durable progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// The first offset not yet exported.
    pub next: i64,
}

/// Offsets `start..=end` of a partition, exported by one flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: i64,
    pub end: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub shard: String,
    pub topic: String,
    pub partitions: BTreeMap<i32, PartitionProgress>,
    /// The change ids exported lately, as of `partitions`.
    #[serde(default)]
    pub window: Window,
    /// The flush being written: redone exactly after a crash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pending: BTreeMap<i32, Range>,
}

/// Where a cell's checkpoint lives.
pub fn path(prefix: &Path, shard: &str) -> Path {
    prefix
        .clone()
        .join("_checkpoints")
        .join(format!("{shard}.json"))
}

impl Checkpoint {
    /// The saved checkpoint, or a fresh one (export from the log's start).
    pub async fn load(
        store: &dyn ObjectStore,
        prefix: &Path,
        shard: &str,
        topic: &str,
    ) -> anyhow::Result<Checkpoint> {
        let at = path(prefix, shard);
        match store.get(&at).await {
            Ok(got) => {
                let bytes = got.bytes().await.context("read checkpoint")?;
                let c: Checkpoint = serde_json::from_slice(&bytes)
                    .with_context(|| format!("checkpoint {at} is not valid"))?;
                anyhow::ensure!(
                    c.shard == shard && c.topic == topic,
                    "checkpoint {at} belongs to {} / {}, not {shard} / {topic}",
                    c.shard,
                    c.topic
                );
                Ok(c)
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Checkpoint {
                shard: shard.to_owned(),
                topic: topic.to_owned(),
                ..Checkpoint::default()
            }),
            Err(e) => Err(e).context("read checkpoint"),
        }
    }

    /// Saves it (an object put: all or nothing).
    pub async fn save(&self, store: &dyn ObjectStore, prefix: &Path) -> anyhow::Result<()> {
        let body = serde_json::to_vec(self).expect("checkpoint serializes");
        store
            .put(
                &path(prefix, &self.shard),
                PutPayload::from(Bytes::from(body)),
            )
            .await
            .context("save checkpoint")?;
        Ok(())
    }

    /// The offset to start a partition from (None: the log's start).
    pub fn next(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(|p| p.next)
    }
}
