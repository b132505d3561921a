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
//! - A partition's worker is created when the partition is assigned and
//!   dropped when it is revoked; its progress is committed before it goes.
//! - A member left with no partitions rejoins its group: the runner's one
//!   stall-recovery mechanism.
//! - Each partition's offsets reach its worker once and in order: a repeat
//!   from the broker is dropped, a gap is rewound over ([`super::continuity`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
use super::continuity::{Continuity, Verdict};
use super::partitions::{Partitions, TopicPartition, WorkerParts};
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
    /// Longest a fetch waits for new records (librdkafka `fetch.wait.max.ms`,
    /// 500 by default). The broker does not always answer a waiting fetch as
    /// soon as records arrive, so this bounds how late a record is seen on an
    /// idle partition: a move's cutover waits on a fence marker and a fact.
    pub fetch_wait_ms: u32,
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
            fetch_wait_ms: 500,
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
    /// Gaps in a partition's offsets re-read from before them.
    pub rewinds: AtomicU64,
    /// Records dropped because they had been passed on already.
    pub repeats: AtomicU64,
    /// Partition workers alive now (one per assigned partition).
    pub workers: AtomicI64,
}

impl RunnerStats {
    pub(super) fn enter(&self) {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
    }
    pub(super) fn leave(&self, n: usize) {
        self.in_flight.fetch_sub(n as i64, Ordering::SeqCst);
    }
}

/// Whether consumption should be paused: the breaker is open (or trying one
/// message) or an operator holds the consumer.
fn pause_wanted(hold: &Hold, breaker: &CircuitBreaker) -> bool {
    hold.is_held() || breaker.state() != BreakerState::Closed
}

/// Offsets processed and not yet committed, by partition (next offset to read).
pub(super) type Progress = Arc<Mutex<HashMap<TopicPartition, i64>>>;

/// What a rebalance did, for the runner's loop to act on.
enum Rebalanced {
    Assigned(Vec<TopicPartition>),
    Revoked(Vec<TopicPartition>),
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<TopicPartition> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

/// Rebalance hooks. Before a revoke, the revoked partitions' progress is
/// committed (the next owner starts where this one stopped); after any
/// rebalance the loop is told, to create or drop workers. Newly assigned
/// partitions are paused at once while the breaker is open or held.
struct RunnerContext {
    hold: Hold,
    breaker: Arc<CircuitBreaker>,
    progress: Progress,
    rebalanced: mpsc::UnboundedSender<Rebalanced>,
    /// Set when the run was dropped rather than stopped (a crash): the
    /// revoke that closing the consumer triggers then commits nothing.
    abandoned: AtomicBool,
}
impl ClientContext for RunnerContext {}
impl ConsumerContext for RunnerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = r else { return };
        let revoked = partitions_of(tpl);
        if self.abandoned.load(Ordering::SeqCst) {
            return;
        }
        let mut offsets = TopicPartitionList::new();
        {
            let mut progress = self.progress.lock().expect("progress lock");
            for tp in &revoked {
                if let Some(next) = progress.remove(tp) {
                    let _ = offsets.add_partition_offset(&tp.0, tp.1, Offset::Offset(next));
                }
            }
        }
        if offsets.count() > 0 {
            if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                tracing::warn!(error = %e, "commit revoked partitions failed");
            }
        }
        tracing::info!(partitions = revoked.len(), "partitions revoked");
        let _ = self.rebalanced.send(Rebalanced::Revoked(revoked));
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        match r {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = tpl.count(), "partitions assigned");
                if pause_wanted(&self.hold, &self.breaker) {
                    if let Err(e) = consumer.pause(tpl) {
                        tracing::warn!(error = %e, "pause assigned partitions failed");
                    }
                }
                let _ = self
                    .rebalanced
                    .send(Rebalanced::Assigned(partitions_of(tpl)));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance failed"),
        }
    }
}

/// The librdkafka settings of a runner's consumer: manual commits, a small
/// prefetch (the in-flight bound), a short session so a dead member's
/// partitions move on quickly.
fn client_config(cfg: &RunnerConfig) -> ClientConfig {
    let prefetch_bytes = cfg.prefetch_kbytes as usize * 1024;
    let reset = if cfg.start_at_latest {
        "latest"
    } else {
        "earliest"
    };
    let mut c = super::client_config(&cfg.bootstrap);
    c.set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", reset)
        .set(
            "queued.max.messages.kbytes",
            cfg.prefetch_kbytes.to_string(),
        )
        .set("queued.min.messages", "100")
        .set("fetch.wait.max.ms", cfg.fetch_wait_ms.to_string())
        // librdkafka waits this long (1 s by default) before fetching a
        // partition again once the prefetch queue is over its bound: with
        // a small prefetch, a backlog was consumed one partition at a
        // time (BENCHMARKS.md, the set-based ledger).
        .set("fetch.queue.backoff.ms", "10")
        // librdkafka wants fetch.max.bytes >= message.max.bytes (1 MB).
        .set("fetch.max.bytes", prefetch_bytes.max(1_048_576).to_string())
        .set(
            "max.partition.fetch.bytes",
            prefetch_bytes.clamp(65_536, 1_048_576).to_string(),
        )
        .set("max.poll.interval.ms", "600000")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    c
}

/// Whether the partitions are paused now, and the changes to make when the
/// wanted state (breaker open or operator hold) differs.
struct Pause<'a> {
    paused: bool,
    hold: &'a Hold,
    breaker: &'a CircuitBreaker,
    stats: &'a RunnerStats,
    group: &'a str,
}

impl Pause<'_> {
    fn settle(&mut self, consumer: &StreamConsumer<RunnerContext>, reason: &str) {
        let want = pause_wanted(self.hold, self.breaker);
        if want == self.paused {
            return;
        }
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let (done, verb) = if want {
            (consumer.pause(&assignment), "paused")
        } else {
            (consumer.resume(&assignment), "resumed")
        };
        if let Err(e) = done {
            tracing::warn!(error = %e, verb, "pause or resume partitions failed");
        }
        self.paused = want;
        let counter = if want {
            &self.stats.pauses
        } else {
            &self.stats.resumes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if want {
            tracing::warn!(group = %self.group, reason, "consumption paused");
        } else {
            tracing::info!(group = %self.group, reason, "consumption resumed");
        }
    }

    /// Partitions assigned by a rebalance start unpaused: pause them too.
    fn reapply(&self, consumer: &StreamConsumer<RunnerContext>) {
        if !self.paused {
            return;
        }
        if let Ok(a) = consumer.assignment() {
            if let Err(e) = consumer.pause(&a) {
                tracing::warn!(error = %e, "pause new assignment failed");
            }
        }
    }
}

/// Runs one consumer group member until cancelled.
pub struct Runner<H: Handler> {
    cfg: RunnerConfig,
    handler: Arc<H>,
    dead_letters: Option<Producer>,
    breaker: Arc<CircuitBreaker>,
    stats: Arc<RunnerStats>,
}

/// The state of one running member: its consumer, workers and offsets.
struct Member<'a, H: Handler> {
    runner: &'a Runner<H>,
    consumer: StreamConsumer<RunnerContext>,
    rebalanced: mpsc::UnboundedReceiver<Rebalanced>,
    partitions: Partitions<H>,
    progress: Progress,
    committed: HashMap<TopicPartition, i64>,
    empty_since: Option<Instant>,
    continuity: Continuity,
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

    fn join(&self) -> anyhow::Result<Member<'_, H>> {
        let progress: Progress = Arc::default();
        let (tx, rebalanced) = mpsc::unbounded_channel();
        let consumer: StreamConsumer<RunnerContext> = client_config(&self.cfg)
            .create_with_context(RunnerContext {
                hold: self.cfg.hold.clone(),
                breaker: self.breaker.clone(),
                progress: progress.clone(),
                rebalanced: tx,
                abandoned: AtomicBool::new(false),
            })
            .context("create kafka consumer")?;
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribe")?;
        let partitions = Partitions::new(WorkerParts {
            cfg: self.cfg.clone(),
            handler: self.handler.clone(),
            dead_letters: self.dead_letters.clone(),
            breaker: self.breaker.clone(),
            stats: self.stats.clone(),
            progress: progress.clone(),
        });
        Ok(Member {
            runner: self,
            consumer,
            rebalanced,
            partitions,
            progress,
            committed: HashMap::new(),
            empty_since: None,
            continuity: Continuity::default(),
        })
    }

    /// Consumes until `shutdown` is cancelled, then lets each worker finish its
    /// current batch and commits what was processed. Dropping the future
    /// instead (a crash) commits nothing more.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let mut member = self.join()?;
        let mut pause = Pause {
            paused: false,
            hold: &self.cfg.hold,
            breaker: &self.breaker,
            stats: &self.stats,
            group: &self.cfg.group_id,
        };
        pause.settle(&member.consumer, "operator hold");
        let mut open_rx = self.breaker.subscribe();
        let mut hold_rx = self.cfg.hold.subscribe();
        let mut commit_tick = tokio::time::interval(self.cfg.commit_interval);
        let mut assignment_tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(r) = member.rebalanced.recv() => member.rebalanced(r),
                changed = open_rx.changed() => {
                    if changed.is_err() { break; }
                    open_rx.borrow_and_update();
                    pause.settle(&member.consumer, "circuit breaker");
                }
                changed = hold_rx.changed() => {
                    if changed.is_err() { break; }
                    hold_rx.borrow_and_update();
                    pause.settle(&member.consumer, "operator hold");
                }
                _ = commit_tick.tick() => member.commit(CommitMode::Async),
                _ = assignment_tick.tick() => {
                    pause.reapply(&member.consumer);
                    member.rejoin_if_unassigned()?;
                }
                msg = member.consumer.recv() => {
                    let record = match msg {
                        Ok(m) => Record::from_message(&m),
                        Err(e) => {
                            tracing::warn!(error = %e, "consume failed");
                            continue;
                        }
                    };
                    if !member.dispatch(record, &shutdown).await {
                        break;
                    }
                }
            }
        }
        member.stop().await;
        tracing::info!(group = %self.cfg.group_id, "consumer stopped");
        Ok(())
    }
}

/// Dropping a member (after a graceful stop, or when the run is dropped
/// mid-flight) closes its consumer; nothing more is committed then.
impl<H: Handler> Drop for Member<'_, H> {
    fn drop(&mut self) {
        self.consumer
            .context()
            .abandoned
            .store(true, Ordering::SeqCst);
    }
}

impl<H: Handler> Member<'_, H> {
    fn rebalanced(&mut self, r: Rebalanced) {
        match r {
            Rebalanced::Assigned(tps) => {
                self.partitions.assign(&tps);
                self.expect_committed(&tps);
            }
            Rebalanced::Revoked(tps) => {
                for tp in &tps {
                    self.committed.remove(tp);
                    self.continuity.forget(tp);
                }
                self.partitions.revoke(&tps);
            }
        }
    }

    /// Newly assigned partitions start at their committed offsets (one
    /// without a commit starts at the first record it is given).
    fn expect_committed(&mut self, tps: &[TopicPartition]) {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in tps {
            list.add_partition(topic, *partition);
        }
        match self
            .consumer
            .committed_offsets(list, rdkafka::util::Timeout::After(Duration::from_secs(5)))
        {
            Ok(committed) => {
                for e in committed.elements() {
                    if let Offset::Offset(next) = e.offset() {
                        let tp = (e.topic().to_owned(), e.partition());
                        self.continuity.start(tp, next);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "committed offsets unknown; each partition starts at its first record")
            }
        }
    }

    /// Whether `record` is its partition's next offset. A repeat is
    /// dropped; before a gap the partition is rewound and read again.
    fn in_sequence(&mut self, record: &Record) -> bool {
        let tp = (record.topic.clone(), record.partition);
        let stats = &self.runner.stats;
        match self
            .continuity
            .check(&tp, record.offset, std::time::Instant::now())
        {
            Verdict::Next => true,
            Verdict::Repeat => {
                stats.repeats.fetch_add(1, Ordering::Relaxed);
                false
            }
            Verdict::Gap {
                expected,
                from,
                attempt,
            } => {
                stats.rewinds.fetch_add(1, Ordering::Relaxed);
                let to = from.map_or(Offset::Beginning, Offset::Offset);
                tracing::warn!(topic = %tp.0, partition = tp.1, expected, got = record.offset, attempt, ?to, "gap in a partition's offsets; re-reading from before it");
                let timeout = rdkafka::util::Timeout::After(Duration::from_secs(5));
                if let Err(e) = self.consumer.seek(&tp.0, tp.1, to, timeout) {
                    tracing::warn!(error = %e, "rewind failed; the next record retries it");
                }
                false
            }
            Verdict::Missing { expected } => {
                tracing::error!(topic = %tp.0, partition = tp.1, expected, got = record.offset, "offsets missing from the log after every rewind; going on from here");
                true
            }
            Verdict::Reset { expected } => {
                tracing::error!(topic = %tp.0, partition = tp.1, expected, got = record.offset, "the broker no longer has the committed offset; going on from its reset position");
                true
            }
        }
    }

    /// Queues `record` on its partition's worker. Back-pressure: when that
    /// queue is full, polling stops here. False when stopped meanwhile.
    async fn dispatch(&mut self, record: Record, shutdown: &CancellationToken) -> bool {
        if !self.in_sequence(&record) {
            return true;
        }
        let stats = &self.runner.stats;
        let tp = (record.topic.clone(), record.partition);
        let queue = self.partitions.queue(&tp);
        stats.enter();
        tokio::select! {
            r = queue.send(record) => {
                if r.is_err() {
                    stats.leave(1);
                }
                true
            }
            () = shutdown.cancelled() => {
                stats.leave(1);
                false
            }
        }
    }

    /// A member left with no partitions for longer than a session timeout
    /// rejoins: the broker can hand a restarted member's partitions to its
    /// dead predecessor and never rebalance.
    fn rejoin_if_unassigned(&mut self) -> anyhow::Result<()> {
        let empty = self
            .consumer
            .assignment()
            .map(|a| a.count() == 0)
            .unwrap_or(false);
        let cfg = &self.runner.cfg;
        match (empty, self.empty_since) {
            (false, _) => self.empty_since = None,
            (true, None) => self.empty_since = Some(Instant::now()),
            (true, Some(t)) if t.elapsed() >= cfg.rejoin_when_unassigned => {
                tracing::warn!(group = %cfg.group_id, "no partitions assigned; rejoining the group");
                let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
                self.consumer.unsubscribe();
                self.consumer.subscribe(&topics).context("resubscribe")?;
                self.runner.stats.rejoins.fetch_add(1, Ordering::Relaxed);
                self.empty_since = None;
            }
            (true, Some(_)) => {}
        }
        Ok(())
    }

    /// Commits what the workers recorded since the last commit, for the
    /// partitions this member still owns.
    fn commit(&mut self, mode: CommitMode) {
        let owned = self.consumer.assignment().unwrap_or_default();
        let pending: Vec<(TopicPartition, i64)> = {
            let p = self.progress.lock().expect("progress lock");
            p.iter()
                .filter(|(k, v)| self.committed.get(*k) != Some(*v))
                .filter(|(k, _)| owned.find_partition(&k.0, k.1).is_some())
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        if pending.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &pending {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*next))
                .is_err()
            {
                return;
            }
        }
        match self.consumer.commit(&tpl, mode) {
            Ok(()) => {
                self.runner.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.committed.extend(pending);
            }
            Err(e) => tracing::warn!(error = %e, "commit offsets failed"),
        }
    }

    /// Graceful stop: workers finish the batch they are on, then we commit.
    async fn stop(mut self) {
        self.partitions.shutdown().await;
        self.commit(CommitMode::Sync);
    }
}
