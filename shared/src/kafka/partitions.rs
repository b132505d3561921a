//! The runner's partition workers: one task per assigned partition, created
//! when the partition is assigned and dropped when it is revoked, so nothing
//! keeps state for a partition this member no longer owns. A partition that
//! comes back starts its new worker only after the old one has finished the
//! batch it was on, so one partition is never processed twice at once.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::breaker::CircuitBreaker;
use super::producer::Producer;
use super::record::Record;
use super::runner::{Handler, Progress, RunnerConfig, RunnerStats};
use super::worker::Worker;

/// A topic and partition.
pub(super) type TopicPartition = (String, i32);

/// What every worker of one runner shares.
pub(super) struct WorkerParts<H: Handler> {
    pub cfg: RunnerConfig,
    pub handler: Arc<H>,
    pub dead_letters: Option<Producer>,
    pub breaker: Arc<CircuitBreaker>,
    pub stats: Arc<RunnerStats>,
    pub progress: Progress,
}

struct Live {
    tx: mpsc::Sender<Record>,
    stop: CancellationToken,
    revoked: CancellationToken,
    task: JoinHandle<()>,
}

/// The live workers of one runner, by partition.
pub(super) struct Partitions<H: Handler> {
    parts: WorkerParts<H>,
    /// The runner's graceful stop: workers finish their batch and record it.
    stop: CancellationToken,
    live: HashMap<TopicPartition, Live>,
    /// Workers of revoked partitions that may still be finishing a batch.
    retiring: HashMap<TopicPartition, JoinHandle<()>>,
}

impl<H: Handler> Partitions<H> {
    pub fn new(parts: WorkerParts<H>) -> Self {
        Self {
            parts,
            stop: CancellationToken::new(),
            live: HashMap::new(),
            retiring: HashMap::new(),
        }
    }

    /// Starts a worker for each newly assigned partition.
    pub fn assign(&mut self, partitions: &[TopicPartition]) {
        for tp in partitions {
            self.ensure(tp);
        }
    }

    /// Drops the workers of revoked partitions: they stop after the batch
    /// they are on, record nothing more, and their queued records are let go
    /// (the next owner fetches them again from the committed offset).
    pub fn revoke(&mut self, partitions: &[TopicPartition]) {
        self.retiring.retain(|_, task| !task.is_finished());
        for tp in partitions {
            if let Some(live) = self.live.remove(tp) {
                live.revoked.cancel();
                live.stop.cancel();
                drop(live.tx);
                self.retiring.insert(tp.clone(), live.task);
            }
        }
    }

    /// The queue of `tp`'s worker (started if the assignment was not seen yet).
    pub fn queue(&mut self, tp: &TopicPartition) -> &mpsc::Sender<Record> {
        self.ensure(tp);
        &self.live.get(tp).expect("worker just ensured").tx
    }

    fn ensure(&mut self, tp: &TopicPartition) {
        if self.live.contains_key(tp) {
            return;
        }
        let (tx, rx) = mpsc::channel(self.parts.cfg.max_in_flight);
        let stop = self.stop.child_token();
        let revoked = CancellationToken::new();
        let worker = Worker {
            cfg: self.parts.cfg.clone(),
            handler: self.parts.handler.clone(),
            dead_letters: self.parts.dead_letters.clone(),
            breaker: self.parts.breaker.clone(),
            stats: self.parts.stats.clone(),
            progress: self.parts.progress.clone(),
            stop: stop.clone(),
            revoked: revoked.clone(),
        };
        let previous = self.retiring.remove(tp);
        let stats = self.parts.stats.clone();
        let span = tracing::info_span!("partition_worker", topic = %tp.0, partition = tp.1);
        stats.workers.fetch_add(1, Ordering::SeqCst);
        let task = tokio::spawn(
            async move {
                if let Some(previous) = previous {
                    let _ = previous.await;
                }
                worker.run(rx).await;
                stats.workers.fetch_sub(1, Ordering::SeqCst);
            }
            .instrument(span),
        );
        self.live.insert(
            tp.clone(),
            Live {
                tx,
                stop,
                revoked,
                task,
            },
        );
    }

    /// Graceful stop: every worker finishes the batch it is on and records it.
    pub async fn shutdown(&mut self) {
        self.stop.cancel();
        let tasks: Vec<JoinHandle<()>> = self
            .live
            .drain()
            .map(|(_, l)| l.task)
            .chain(self.retiring.drain().map(|(_, t)| t))
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    }
}
