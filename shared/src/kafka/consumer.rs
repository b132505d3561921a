//! The consumer runner every cell consumer is built on.
//!
//! - Each partition is processed in order by its own worker task.
//! - Work in flight is bounded: a bounded queue per partition, and a small
//!   librdkafka prefetch. When the queues are full the runner stops polling
//!   (back-pressure) instead of buffering.
//! - Offsets are committed only after the handler returned `Ok`, i.e. after its
//!   effect is durable. A crash between effect and commit redelivers the
//!   message, so handlers must be idempotent (effect + processed id in one
//!   Postgres transaction).
//! - A message that fails for a non-transient reason goes to the dead-letter
//!   topic with its error and original headers, then is committed.
//! - Transient failures feed a circuit breaker; while it is open the runner
//!   pauses its partitions and the failing message is retried, never skipped.
//! - An operator can hold a consumer ([`Hold`]): its partitions are paused as
//!   for an open breaker until released; nothing is skipped or lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use super::producer::Producer;
use super::record::Record;

/// Header names the runner adds to dead-lettered messages.
pub mod dead_letter_headers {
    pub const ERROR: &str = "dlq-error";
    pub const SOURCE_TOPIC: &str = "dlq-source-topic";
    pub const SOURCE_PARTITION: &str = "dlq-source-partition";
    pub const SOURCE_OFFSET: &str = "dlq-source-offset";
    pub const CONSUMER_GROUP: &str = "dlq-consumer-group";
}

/// How a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying (database down, timeout): counts towards the breaker.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying will not help (bad payload, rule violation): dead-letter it.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

/// What a consumer does with the messages of one partition, in order.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Applies a batch of consecutive messages of one partition. `Ok` means
    /// the effect of every message is durable. A permanent error for a batch
    /// of several is retried message by message to isolate the poison one.
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError>;
}

#[derive(Clone, Debug)]
pub struct RunnerConfig {
    pub bootstrap: String,
    pub group_id: String,
    pub topics: Vec<String>,
    /// Messages queued per partition before the runner stops polling.
    pub max_in_flight: usize,
    /// Largest batch handed to the handler.
    pub max_batch: usize,
    /// librdkafka prefetch bound per partition, in KiB.
    pub prefetch_kbytes: u32,
    /// Where permanently failing messages go; `None` makes them transient.
    pub dead_letter_topic: Option<String>,
    pub breaker: BreakerConfig,
    pub commit_interval: Duration,
    /// Pause between retries of a transiently failing batch while the breaker is closed.
    pub retry_backoff: Duration,
    /// A group with no committed offset starts at the end instead of the
    /// beginning (for change feeds where only what follows matters).
    pub start_at_latest: bool,
    /// A member with no partitions for this long leaves and rejoins its group.
    /// Longer than the session timeout (10 s), so a dead member's partitions
    /// have been released by then. A group with more members than partitions
    /// should raise it.
    pub rejoin_when_unassigned: Duration,
    /// The operator's hold on this consumer (shared with whoever sets it).
    pub hold: Hold,
}

/// An operator's hold on a consumer. While held the runner pauses its
/// partitions, as while its breaker is open: what is already queued finishes,
/// nothing new is fetched, the backlog waits in the log. Clones share it.
#[derive(Clone, Debug)]
pub struct Hold(Arc<watch::Sender<bool>>);

impl Default for Hold {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Hold {
    pub fn set(&self, held: bool) {
        self.0.send_replace(held);
    }

    pub fn is_held(&self) -> bool {
        *self.0.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl RunnerConfig {
    pub fn new(bootstrap: &str, group_id: &str, topics: &[&str]) -> Self {
        Self {
            bootstrap: bootstrap.to_owned(),
            group_id: group_id.to_owned(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            max_in_flight: 256,
            max_batch: 1,
            prefetch_kbytes: 1024,
            dead_letter_topic: None,
            breaker: BreakerConfig::default(),
            commit_interval: Duration::from_millis(500),
            retry_backoff: Duration::from_millis(100),
            start_at_latest: false,
            rejoin_when_unassigned: Duration::from_secs(15),
            hold: Hold::default(),
        }
    }
}

/// Counters a runner keeps; readable while it runs (metrics, tests).
#[derive(Debug, Default)]
pub struct RunnerStats {
    pub processed: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub transient_failures: AtomicU64,
    pub in_flight: AtomicI64,
    pub max_in_flight: AtomicI64,
    pub pauses: AtomicU64,
    pub resumes: AtomicU64,
    pub commits: AtomicU64,
    pub rejoins: AtomicU64,
}

impl RunnerStats {
    fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self, n: usize) {
        self.in_flight.fetch_sub(n as i64, Ordering::SeqCst);
    }
}

/// Whether consumption should be paused: the breaker is open (or trying one
/// message) or an operator holds the consumer.
fn pause_wanted(hold: &Hold, breaker: &CircuitBreaker) -> bool {
    hold.is_held() || breaker.state() != BreakerState::Closed
}

/// Rebalance hooks: logs assignments and pauses newly assigned partitions at
/// once while the breaker is open or an operator holds the consumer.
struct RunnerContext {
    hold: Hold,
    breaker: Arc<CircuitBreaker>,
}
impl ClientContext for RunnerContext {}
impl ConsumerContext for RunnerContext {
    fn post_rebalance(&self, consumer: &rdkafka::consumer::BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if pause_wanted(&self.hold, &self.breaker) {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "pause assigned partitions failed");
                    }
                }
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions revoked")
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

type Progress = Arc<Mutex<HashMap<(String, i32), i64>>>;

/// Runs one consumer group member until cancelled.
pub struct Runner<H: Handler> {
    cfg: RunnerConfig,
    handler: Arc<H>,
    dead_letters: Option<Producer>,
    breaker: Arc<CircuitBreaker>,
    stats: Arc<RunnerStats>,
}

impl<H: Handler> Runner<H> {
    pub fn new(cfg: RunnerConfig, handler: H) -> anyhow::Result<Self> {
        let dead_letters = match cfg.dead_letter_topic {
            Some(_) => Some(Producer::new(&cfg.bootstrap, Duration::from_secs(10))?),
            None => None,
        };
        let breaker = Arc::new(CircuitBreaker::new(cfg.breaker.clone()));
        Ok(Self {
            cfg,
            handler: Arc::new(handler),
            dead_letters,
            breaker,
            stats: Arc::new(RunnerStats::default()),
        })
    }

    pub fn stats(&self) -> Arc<RunnerStats> {
        self.stats.clone()
    }

    pub fn breaker(&self) -> Arc<CircuitBreaker> {
        self.breaker.clone()
    }

    /// Consumes until `shutdown` is cancelled, then lets each worker finish its
    /// current batch and commits what was processed. Dropping the future
    /// instead (a crash) commits nothing more.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let consumer: StreamConsumer<RunnerContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.cfg.bootstrap)
            .set("group.id", &self.cfg.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                if self.cfg.start_at_latest {
                    "latest"
                } else {
                    "earliest"
                },
            )
            .set(
                "queued.max.messages.kbytes",
                self.cfg.prefetch_kbytes.to_string(),
            )
            .set("queued.min.messages", "100")
            // librdkafka wants fetch.max.bytes >= message.max.bytes (1 MB).
            .set(
                "fetch.max.bytes",
                (self.cfg.prefetch_kbytes as usize * 1024)
                    .max(1_048_576)
                    .to_string(),
            )
            .set(
                "max.partition.fetch.bytes",
                (self.cfg.prefetch_kbytes as usize * 1024)
                    .clamp(65_536, 1_048_576)
                    .to_string(),
            )
            .set("max.poll.interval.ms", "600000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .create_with_context(RunnerContext {
                hold: self.cfg.hold.clone(),
                breaker: self.breaker.clone(),
            })
            .context("create kafka consumer")?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribe")?;
        let consumer = Arc::new(consumer);

        let progress: Progress = Arc::default();
        let workers_stop = CancellationToken::new();
        let mut workers: HashMap<(String, i32), mpsc::Sender<Record>> = HashMap::new();
        let mut tasks = tokio::task::JoinSet::new();
        let mut open_rx = self.breaker.subscribe();
        let mut hold_rx = self.cfg.hold.subscribe();
        let mut paused = false;
        let mut commit_tick = tokio::time::interval(self.cfg.commit_interval);
        let mut assignment_tick = tokio::time::interval(Duration::from_secs(1));
        let mut empty_since: Option<tokio::time::Instant> = None;
        let mut committed: HashMap<(String, i32), i64> = HashMap::new();
        // Pauses or resumes the current assignment when the wanted state
        // (breaker open or operator hold) differs from what is in force.
        let settle = |paused: &mut bool, reason: &str| {
            let want = pause_wanted(&self.cfg.hold, &self.breaker);
            let Ok(assignment) = consumer.assignment() else {
                return;
            };
            if want && !*paused {
                if let Err(e) = consumer.pause(&assignment) {
                    tracing::warn!(error = %e, "pause partitions failed");
                }
                *paused = true;
                self.stats.pauses.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(group = %self.cfg.group_id, reason, "consumption paused");
            } else if !want && *paused {
                if let Err(e) = consumer.resume(&assignment) {
                    tracing::warn!(error = %e, "resume partitions failed");
                }
                *paused = false;
                self.stats.resumes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(group = %self.cfg.group_id, reason, "consumption resumed");
            }
        };
        settle(&mut paused, "operator hold");

        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = open_rx.changed() => {
                    if changed.is_err() { break; }
                    open_rx.borrow_and_update();
                    settle(&mut paused, "circuit breaker");
                }
                changed = hold_rx.changed() => {
                    if changed.is_err() { break; }
                    hold_rx.borrow_and_update();
                    settle(&mut paused, "operator hold");
                }
                _ = commit_tick.tick() => {
                    commit(&consumer, &progress, &mut committed, CommitMode::Async, &self.stats);
                }
                _ = assignment_tick.tick() => {
                    // A member left with no partitions for longer than a session
                    // timeout rejoins: the broker can hand a restarted member's
                    // partitions to its dead predecessor and never rebalance.
                    let assignment = consumer.assignment().ok();
                    let empty = assignment.as_ref().map(|a| a.count() == 0).unwrap_or(false);
                    // Partitions assigned by a rebalance start unpaused.
                    if let (true, Some(a)) = (paused, assignment.as_ref()) {
                        if let Err(e) = consumer.pause(a) {
                            tracing::warn!(error = %e, "pause new assignment failed");
                        }
                    }
                    match (empty, empty_since) {
                        (false, _) => empty_since = None,
                        (true, None) => empty_since = Some(tokio::time::Instant::now()),
                        (true, Some(t)) if t.elapsed() >= self.cfg.rejoin_when_unassigned => {
                            tracing::warn!(group = %self.cfg.group_id, "no partitions assigned; rejoining the group");
                            consumer.unsubscribe();
                            consumer.subscribe(&topics).context("resubscribe")?;
                            self.stats.rejoins.fetch_add(1, Ordering::Relaxed);
                            empty_since = None;
                        }
                        (true, Some(_)) => {}
                    }
                }
                msg = consumer.recv() => {
                    let msg = match msg {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::warn!(error = %e, "consume failed");
                            continue;
                        }
                    };
                    let record = Record::from_message(&msg);
                    drop(msg);
                    let key = (record.topic.clone(), record.partition);
                    let tx = workers.entry(key.clone()).or_insert_with(|| {
                        let (tx, rx) = mpsc::channel(self.cfg.max_in_flight);
                        let worker = Worker {
                            cfg: self.cfg.clone(),
                            handler: self.handler.clone(),
                            dead_letters: self.dead_letters.clone(),
                            breaker: self.breaker.clone(),
                            stats: self.stats.clone(),
                            progress: progress.clone(),
                            stop: workers_stop.clone(),
                        };
                        tasks.spawn(worker.run(rx).instrument(tracing::info_span!(
                            "partition_worker", topic = %key.0, partition = key.1
                        )));
                        tx
                    });
                    self.stats.enter();
                    // Back-pressure: when this partition's queue is full we stop polling here.
                    let send = tx.send(record);
                    tokio::select! {
                        r = send => if r.is_err() { self.stats.leave(1); },
                        () = shutdown.cancelled() => { self.stats.leave(1); break; }
                    }
                }
            }
        }

        // Graceful stop: workers finish the batch they are on, then we commit.
        workers_stop.cancel();
        drop(workers);
        while tasks.join_next().await.is_some() {}
        commit(
            &consumer,
            &progress,
            &mut committed,
            CommitMode::Sync,
            &self.stats,
        );
        tracing::info!(group = %self.cfg.group_id, "consumer stopped");
        Ok(())
    }
}

fn commit(
    consumer: &StreamConsumer<RunnerContext>,
    progress: &Progress,
    committed: &mut HashMap<(String, i32), i64>,
    mode: CommitMode,
    stats: &RunnerStats,
) {
    let snapshot: Vec<((String, i32), i64)> = {
        let p = progress.lock().expect("progress lock");
        p.iter()
            .filter(|(k, v)| committed.get(*k) != Some(*v))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    };
    if snapshot.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((topic, partition), next) in &snapshot {
        if tpl
            .add_partition_offset(topic, *partition, Offset::Offset(*next))
            .is_err()
        {
            return;
        }
    }
    match consumer.commit(&tpl, mode) {
        Ok(()) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            committed.extend(snapshot);
        }
        Err(e) => tracing::warn!(error = %e, "commit offsets failed"),
    }
}

struct Worker<H: Handler> {
    cfg: RunnerConfig,
    handler: Arc<H>,
    dead_letters: Option<Producer>,
    breaker: Arc<CircuitBreaker>,
    stats: Arc<RunnerStats>,
    progress: Progress,
    stop: CancellationToken,
}

impl<H: Handler> Worker<H> {
    async fn run(self, mut rx: mpsc::Receiver<Record>) {
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
            let span = tracing::info_span!(
                "consume",
                topic = %batch[0].topic,
                partition = batch[0].partition,
                offset = batch[0].offset,
                batch = batch.len(),
            );
            let headers = batch[0].headers.clone();
            crate::telemetry::set_parent_from(&span, |k| {
                headers
                    .iter()
                    .find(|(hk, _)| hk == k)
                    .and_then(|(_, v)| String::from_utf8(v.clone()).ok())
            });
            let result = self.handler.handle(batch).instrument(span).await;
            match result {
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
                    for one in batch {
                        if !Box::pin(self.process(std::slice::from_ref(one))).await {
                            return false;
                        }
                    }
                    return true;
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

    async fn failed_transiently(&self) {
        self.stats
            .transient_failures
            .fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = self.stop.cancelled() => {},
            () = tokio::time::sleep(self.cfg.retry_backoff) => {},
        }
    }

    fn done(&self, batch: &[Record]) {
        let last = batch.last().expect("non-empty batch");
        self.stats
            .processed
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.progress
            .lock()
            .expect("progress lock")
            .insert((last.topic.clone(), last.partition), last.offset + 1);
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
