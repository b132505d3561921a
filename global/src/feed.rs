//! The directory-change feed on the global broker: every replica announces
//! the changes it commits and follows everyone's announcements to drop stale
//! cache entries, so a change is seen everywhere within a second. A change
//! goes through an outbox table first: one the broker did not acknowledge is
//! published again by the relay until it is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use cellbank_shared::kafka::{
    Handler, HandlerError, Producer, Record, Runner, RunnerConfig, Topic,
};

use crate::directory::{Change, Directory};
use crate::metrics;
use crate::partners::Partners;

mod outbox;

/// What travels on the feed: a change and the replica that committed it.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    origin: String,
    #[serde(flatten)]
    change: Change,
}

/// Announces directory changes; also applies them to this replica at once.
#[derive(Clone)]
pub struct Feed {
    producer: Producer,
    caches: Caches,
    replica: Arc<str>,
    live: Arc<AtomicBool>,
}

/// What a change makes stale on a replica: directory entries and partner
/// key lookups.
#[derive(Clone)]
pub struct Caches {
    pub directory: Directory,
    pub partners: Partners,
}

impl Caches {
    async fn drop_stale(&self, change: &Change) {
        if let Change::Partner { .. } = change {
            self.partners.forget_keys();
        }
        self.directory.invalidate(change).await;
    }
}

impl Feed {
    pub fn new(producer: Producer, caches: Caches) -> Self {
        Self {
            producer,
            caches,
            replica: uuid::Uuid::new_v4().to_string().into(),
            live: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether this replica has received its own ping back through the feed.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Relaxed)
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    /// Drops the local entries now and tells the other replicas: the change
    /// is kept in the outbox until the broker acknowledged it, so a failed
    /// announcement is retried by [`Feed::relay_outbox`], not lost.
    pub async fn announce(&self, change: Change) {
        self.caches.drop_stale(&change).await;
        let pool = self.caches.directory.pool();
        let kept = outbox::keep(pool, &change).await;
        match self.publish(&change).await {
            Ok(()) => {
                if let Ok(seq) = kept {
                    outbox::forget(pool, seq).await;
                }
            }
            Err(e) => {
                metrics::feed_publish_failed(change.kind());
                tracing::warn!(error = %e, change = change.kind(), kept = kept.is_ok(), "announce directory change failed; the outbox relay retries it");
            }
        }
    }

    /// Publishes what the outbox still holds (older than a moment, so a
    /// change being announced right now is left to its announcer), until shut
    /// down.
    pub async fn relay_outbox(self, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let pool = self.caches.directory.pool();
            if let Err(e) = outbox::relay(pool, |c| self.publish_owned(c)).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "directory outbox relay failed; retrying"
                );
            }
        }
    }

    async fn publish_owned(&self, change: Change) -> anyhow::Result<()> {
        self.caches.drop_stale(&change).await;
        self.publish(&change).await
    }

    async fn publish(&self, change: &Change) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(&Message {
            origin: self.replica.to_string(),
            change: change.clone(),
        })?;
        self.producer
            .send(Topic::DirectoryChanges.name(), b"directory", &payload, &[])
            .await?;
        Ok(())
    }

    /// A consumer runner in a group of its own (every replica must see every
    /// change), starting at the end of the feed: the cache starts empty.
    pub fn runner(
        &self,
        bootstrap: &str,
        group_prefix: &str,
    ) -> anyhow::Result<Runner<FeedHandler>> {
        let group = format!("{group_prefix}-global-directory-{}", self.replica);
        let mut cfg = RunnerConfig::new(bootstrap, &group, &[Topic::DirectoryChanges.name()]);
        cfg.start_at_latest = true;
        cfg.max_batch = 256;
        cfg.commit_interval = Duration::from_secs(5);
        Runner::new(
            cfg,
            FeedHandler {
                caches: self.caches.clone(),
                replica: self.replica.clone(),
                live: self.live.clone(),
            },
        )
    }

    /// Pings through the feed until this replica hears itself (then the feed
    /// is live), or until shut down.
    pub async fn ping_until_live(self, shutdown: CancellationToken) {
        let ping = Change::Ping;
        while !self.is_live() {
            if let Err(e) = self.publish(&ping).await {
                tracing::debug!(error = %e, "directory feed ping failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
        }
        tracing::info!("directory feed is live");
    }
}

/// Applies announced changes to this replica's caches.
pub struct FeedHandler {
    caches: Caches,
    replica: Arc<str>,
    live: Arc<AtomicBool>,
}

#[async_trait]
impl Handler for FeedHandler {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        for record in batch {
            match serde_json::from_slice::<Message>(&record.payload) {
                // This replica applied its own changes when it announced them;
                // dropping them again would only throw away fresh entries.
                Ok(m) if *m.origin == *self.replica => {
                    if m.change == Change::Ping {
                        self.live.store(true, Ordering::Relaxed);
                    }
                }
                Ok(m) => self.caches.drop_stale(&m.change).await,
                Err(e) => {
                    tracing::warn!(offset = record.offset, error = %e, "ignored undecodable directory change")
                }
            }
        }
        Ok(())
    }
}
