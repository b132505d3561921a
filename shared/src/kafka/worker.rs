//! One partition's worker: takes the partition's records in order, hands
//! them to the handler in batches, retries transient failures behind the
//! circuit breaker, dead-letters poison messages and records progress for the
//! runner to commit. It lives from the partition's assignment to its revoke.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::breaker::CircuitBreaker;
use super::producer::Producer;
use super::record::Record;
use super::runner::{
    dead_letter_headers, Handler, HandlerError, Progress, RunnerConfig, RunnerStats,
};

pub(super) struct Worker<H: Handler> {
    pub(super) cfg: RunnerConfig,
    pub(super) handler: Arc<H>,
    pub(super) dead_letters: Option<Producer>,
    pub(super) breaker: Arc<CircuitBreaker>,
    pub(super) stats: Arc<RunnerStats>,
    pub(super) progress: Progress,
    /// Ends the worker: the runner stops, or the partition is revoked.
    pub(super) stop: CancellationToken,
    /// Set when the partition was revoked: nothing more is recorded.
    pub(super) revoked: CancellationToken,
}

impl<H: Handler> Worker<H> {
    pub(super) async fn run(self, mut rx: mpsc::Receiver<Record>) {
        let mut batch = Vec::with_capacity(self.cfg.max_batch);
        loop {
            let first = tokio::select! {
                biased;
                () = self.stop.cancelled() => break,
                r = rx.recv() => match r { Some(r) => r, None => break },
            };
            batch.push(first);
            while batch.len() < self.cfg.max_batch {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let n = batch.len();
            if !self.process(&batch).await {
                // Stopped while retrying: leave it uncommitted for redelivery.
                self.stats.leave(n);
                break;
            }
            self.stats.leave(n);
            batch.clear();
        }
        let left = rx.len();
        self.stats.leave(left);
    }

    /// Returns false when stopped before the batch was done.
    async fn process(&self, batch: &[Record]) -> bool {
        loop {
            if !self.breaker.try_acquire() {
                let at = self.breaker.retry_at();
                tokio::select! {
                    () = self.stop.cancelled() => return false,
                    () = tokio::time::sleep_until(at) => {},
                }
                continue;
            }
            match self.handle(batch).await {
                Ok(()) => {
                    self.breaker.record_success();
                    self.done(batch);
                    return true;
                }
                Err(HandlerError::Permanent(e)) if batch.len() == 1 => {
                    self.breaker.record_success();
                    match self.dead_letter(&batch[0], &e).await {
                        Ok(()) => {
                            self.done(batch);
                            return true;
                        }
                        Err(dl) => {
                            tracing::error!(error = %dl, "dead-letter produce failed; retrying");
                            self.failed_transiently().await;
                        }
                    }
                }
                Err(HandlerError::Permanent(_)) => {
                    self.breaker.record_success();
                    return self.one_by_one(batch).await;
                }
                Err(HandlerError::Transient(e)) => {
                    tracing::warn!(error = %format!("{e:#}"), "handler failed transiently; retrying");
                    self.breaker.record_failure();
                    self.failed_transiently().await;
                }
            }
            if self.stop.is_cancelled() {
                return false;
            }
        }
    }

    /// Calls the handler in a span parented by the first record's trace context.
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let span = tracing::info_span!(
            "consume",
            topic = %batch[0].topic,
            partition = batch[0].partition,
            offset = batch[0].offset,
            batch = batch.len(),
        );
        let headers = &batch[0].headers;
        crate::telemetry::set_parent_from(&span, |k| {
            headers
                .iter()
                .find(|(hk, _)| hk == k)
                .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
        });
        // A panicking handler must not take its partition down silently: the
        // panic is a permanent failure (the batch is retried one by one and
        // the message that panics is dead-lettered with the panic's text).
        let handled = std::panic::AssertUnwindSafe(self.handler.handle(batch).instrument(span))
            .catch_unwind()
            .await;
        handled.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned());
            tracing::error!(panic = %what, "handler panicked");
            Err(HandlerError::Permanent(anyhow::anyhow!(
                "handler panicked: {what}"
            )))
        })
    }

    /// A batch failed permanently: retry its messages one by one, so only the
    /// poison one is dead-lettered.
    async fn one_by_one(&self, batch: &[Record]) -> bool {
        for one in batch {
            if !Box::pin(self.process(std::slice::from_ref(one))).await {
                return false;
            }
        }
        true
    }

    async fn failed_transiently(&self) {
        self.stats
            .transient_failures
            .fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = self.stop.cancelled() => {},
            () = tokio::time::sleep(self.cfg.retry_backoff) => {},
        }
    }

    /// Records the batch as done. A worker whose partition was revoked
    /// meanwhile records no progress: the partition's new owner commits it.
    fn done(&self, batch: &[Record]) {
        let last = batch.last().expect("non-empty batch");
        self.stats
            .processed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut progress = self.progress.lock().expect("progress lock");
        if !self.revoked.is_cancelled() {
            progress.insert((last.topic.clone(), last.partition), last.offset + 1);
        }
    }

    async fn dead_letter(&self, r: &Record, err: &anyhow::Error) -> Result<(), String> {
        use dead_letter_headers as h;
        let (Some(topic), Some(producer)) = (&self.cfg.dead_letter_topic, &self.dead_letters)
        else {
            return Err("no dead-letter topic configured".into());
        };
        let reason = format!("{err:#}");
        tracing::warn!(
            topic = %r.topic, partition = r.partition, offset = r.offset, error = %reason,
            "message dead-lettered"
        );
        let partition = r.partition.to_string();
        let offset = r.offset.to_string();
        let mut headers: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .filter(|(k, _)| !k.starts_with("dlq-") && k != "traceparent" && k != "tracestate")
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        headers.push((h::ERROR, reason.as_bytes()));
        headers.push((h::SOURCE_TOPIC, r.topic.as_bytes()));
        headers.push((h::SOURCE_PARTITION, partition.as_bytes()));
        headers.push((h::SOURCE_OFFSET, offset.as_bytes()));
        headers.push((h::CONSUMER_GROUP, self.cfg.group_id.as_bytes()));
        producer
            .send(
                topic,
                r.key.as_deref().unwrap_or_default(),
                &r.payload,
                &headers,
            )
            .await
            .map_err(|e| e.to_string())?;
        self.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
