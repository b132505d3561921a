//! The authorizer's side of the cell's log: follows Topic::Authorizations and
//! Topic::LedgerFacts, snapshots its state with the offsets it includes, and on
//! start loads the latest snapshot and replays from those offsets before it
//! reports ready.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use cellbank_shared::kafka::{
    client_config, Handler, HandlerError, Producer, Record, Runner, RunnerConfig, Topic,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::state::{fingerprint, AuthorizationRecord, AuthorizerState};
use super::{lease, Authorizer};
use crate::ledger::facts::FactRecord;
use crate::metrics;

/// The topics the authorizer follows.
pub const TOPICS: [Topic; 2] = [Topic::Authorizations, Topic::LedgerFacts];

/// The latest snapshot, or an empty state.
pub async fn load_latest(pool: &PgPool) -> anyhow::Result<AuthorizerState> {
    type Row = (Option<sqlx::types::Json<AuthorizerState>>, Option<Vec<u8>>);
    let row: Option<Row> = sqlx::query_as(
        "SELECT state, state_bytes FROM authorizer_snapshots ORDER BY id DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .context("read authorizer snapshot")?;
    match row {
        None => Ok(AuthorizerState::default()),
        Some((_, Some(bytes))) => {
            tokio::task::spawn_blocking(move || serde_json::from_slice::<AuthorizerState>(&bytes))
                .await
                .context("decode authorizer snapshot")?
                .context("decode authorizer snapshot")
        }
        Some((Some(state), None)) => Ok(state.0),
        Some((None, None)) => anyhow::bail!("authorizer snapshot without state"),
    }
}

/// Stores a snapshot and keeps the three latest.
/// Takes the state by value: callers hand over the copy they took under the
/// authorizer's lock.
pub async fn save_snapshot(pool: &PgPool, state: AuthorizerState) -> anyhow::Result<()> {
    let offsets = sqlx::types::Json(state.offsets.clone());
    // Serializing a busy cell's state takes a while: off the request threads.
    let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&state))
        .await
        .context("serialize authorizer snapshot")?
        .context("serialize authorizer snapshot")?;
    let mut tx = pool.begin().await.context("begin")?;
    sqlx::query("INSERT INTO authorizer_snapshots (offsets, state_bytes) VALUES ($1, $2)")
        .bind(offsets)
        .bind(bytes)
        .execute(&mut *tx)
        .await
        .context("insert authorizer snapshot")?;
    sqlx::query(
        "DELETE FROM authorizer_snapshots WHERE id NOT IN
           (SELECT id FROM authorizer_snapshots ORDER BY id DESC LIMIT 3)",
    )
    .execute(&mut *tx)
    .await
    .context("prune authorizer snapshots")?;
    tx.commit().await.context("commit")?;
    Ok(())
}

/// Writes a snapshot every `every` until cancelled (and once more at the end).
/// A large state is written less often: the next snapshot waits at least ten
/// times as long as the last one took, so snapshots cost at most about a
/// tenth of the cell's time however busy it is (the log replays the rest).
pub async fn snapshots(
    authorizer: Authorizer,
    pool: PgPool,
    every: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut due = tokio::time::Instant::now() + every;
    // An idle cell does not rewrite the same snapshot: only when the state
    // includes more of the log than the last snapshot did.
    let mut saved: Option<std::collections::BTreeMap<String, i64>> = None;
    loop {
        let stop = tokio::select! {
            () = shutdown.cancelled() => true,
            () = tokio::time::sleep_until(due) => false,
        };
        let started = tokio::time::Instant::now();
        let moved = authorizer.with_state(|s| saved.as_ref() != Some(&s.offsets));
        if authorizer.is_ready() && moved {
            let state = authorizer.state();
            let offsets = state.offsets.clone();
            match save_snapshot(&pool, state).await {
                Ok(()) => saved = Some(offsets),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "authorizer snapshot failed"),
            }
            metrics::observe_snapshot(started.elapsed().as_secs_f64());
        }
        if stop {
            return Ok(());
        }
        let took = started.elapsed();
        due = tokio::time::Instant::now() + every.max(took * 10);
    }
}

/// How far past the log's end a snapshot may be before the log counts as reset.
const SLACK: i64 = 1_000;

/// A snapshot that includes more of a partition than the log holds means the
/// log was reset or this is another broker: deciding from that state would
/// skip every record below the snapshot's offsets (cards unknown, limits
/// wrong), so the cell stops and says why instead.
fn refuse_a_log_behind(
    snapshot: &BTreeMap<String, i64>,
    log: &BTreeMap<String, (i64, i64)>,
) -> anyhow::Result<()> {
    let behind: Vec<String> = snapshot
        .iter()
        .filter_map(|(k, next)| {
            let (_, end) = log.get(k)?;
            // Coarse on purpose: tansu's high watermark trails the records it
            // serves (by up to its last batch; 2 records seen in CI), so only a
            // snapshot beyond the log's end by more than 1,000 records and by
            // more than the whole log counts as a reset or swapped log.
            (next - end > SLACK.max(*end))
                .then(|| format!("{k}: snapshot at {next}, log ends at {end}"))
        })
        .collect();
    if behind.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the cell's log is behind the authorizer snapshot ({}): the broker's log was reset \
         or this is another broker. Restore the log; if it is lost, delete the cell's \
         authorizer_snapshots and re-relay the ledger facts \
         (UPDATE ledger_facts SET sent_at = NULL) so the authorizer rebuilds from a complete log",
        behind.join(", ")
    )
}

/// Applies the log to the in-memory state.
pub struct LogHandler {
    authorizer: Authorizer,
}

#[async_trait]
impl Handler for LogHandler {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        self.authorizer.with_state(|s| {
            for r in batch {
                let fp = fingerprint(r.key.as_deref().unwrap_or_default(), &r.payload);
                if r.header(lease::MARKER_HEADER).is_some() {
                    s.skip(&r.topic, r.partition, r.offset);
                } else if r.topic == Topic::Authorizations.name() {
                    match serde_json::from_slice::<AuthorizationRecord>(&r.payload) {
                        Ok(rec) => s.apply_decision(&r.topic, r.partition, r.offset, &rec),
                        Err(e) => tracing::warn!(offset = r.offset, error = %e, "skipping undecodable decision"),
                    }
                } else {
                    match serde_json::from_slice::<FactRecord>(&r.payload) {
                        Ok(rec) => s.apply_fact(&r.topic, r.partition, r.offset, &rec),
                        Err(e) => tracing::warn!(offset = r.offset, error = %e, "skipping undecodable fact"),
                    }
                }
                s.note_fingerprint(&r.topic, r.partition, r.offset, fp);
            }
        });
        Ok(())
    }
}

/// High watermarks of every partition of the authorizer's topics, keyed `topic/partition`.
/// Refuses a log that is not the one the snapshot was built from: records it
/// had read were deleted before it read past them (a retention gap), or the
/// last record it read is gone (a reset or shortened log) or is another
/// record (a swapped log). Exact, by the record's fingerprint, not by the
/// broker's high watermark.
async fn refuse_another_log(
    bootstrap: &str,
    offsets: &BTreeMap<String, i64>,
    fingerprints: &BTreeMap<String, u64>,
    log: &BTreeMap<String, (i64, i64)>,
) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    for (k, next) in offsets {
        if let Some((low, _)) = log.get(k) {
            if low > next {
                wrong.push(format!(
                    "{k}: records {next} to {} were deleted before the authorizer read them",
                    low - 1
                ));
                continue;
            }
        }
        let (Some(expected), Some((topic, partition))) = (fingerprints.get(k), k.rsplit_once('/'))
        else {
            continue;
        };
        let partition: i32 = partition
            .parse()
            .context("partition of a snapshot offset")?;
        match fingerprint_at(bootstrap, topic, partition, next - 1).await? {
            Some(found) if found == *expected => {}
            Some(_) => wrong.push(format!(
                "{k}: record {} is not the one the snapshot read",
                next - 1
            )),
            None => wrong.push(format!("{k}: record {} is gone", next - 1)),
        }
    }
    if wrong.is_empty() {
        return Ok(());
    }
    anyhow::bail!(
        "the cell's log is not the one its authorizer snapshot was built from ({}): the \
         broker's log was reset, shortened or swapped. Restore the log; if it is lost, delete \
         the cell's authorizer_snapshots and re-relay the ledger facts \
         (UPDATE ledger_facts SET sent_at = NULL) so the authorizer rebuilds from a complete log",
        wrong.join(", ")
    )
}

/// How far before a record its read starts: a little first, then far (see
/// [`read_at`]). Reading 10,000 records back every time made each restart
/// of a busy cell slower than the last (found by the chaos run: a SIGKILLed
/// shard took 0.1, 3, 4, 11 and then 49 s to replay as its log grew).
const READ_BACKS: [i64; 2] = [200, 10_000];

/// What reading one offset found.
enum Read {
    Found(u64),
    /// A later record: the one asked for was deleted.
    Other,
    /// Past the end the broker reports.
    Beyond,
    /// The read started inside a batch and the broker served from the next
    /// one: read again from further back.
    Skipped,
    /// Nothing at or past the offset arrived in time: a slow or unreachable
    /// broker, which says nothing about the log (found by the chaos run: a
    /// broker slow after a crash made a start-up call the log swapped, and
    /// advise deleting the snapshots).
    TimedOut,
}

/// Reads the record at `offset`, from a little before it, then from further
/// back if the broker skipped it.
async fn read_back(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Read> {
    for back in READ_BACKS {
        match read_at(bootstrap, topic, partition, offset, back).await? {
            Read::Skipped => continue,
            found => return Ok(found),
        }
    }
    Ok(Read::Other)
}

/// Reads the record at `offset`, starting `back` records before it.
async fn read_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
    back: i64,
) -> anyhow::Result<Read> {
    use rdkafka::Message as _;
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bootstrap)
            .set(
                "group.id",
                format!("fingerprint-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "error")
            .create()
            .context("create fingerprint reader")?;
        let (_, end) = c
            .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            .context("fetch watermarks")?;
        if offset >= end {
            return Ok(Read::Beyond);
        }
        // From a little before: a broker may serve from the batch boundary at
        // or after the offset asked for (tansu does), skipping the record we
        // want if it sits inside a batch; batches are far shorter than this.
        let from = offset.saturating_sub(back).max(0);
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, partition, Offset::Offset(from))?;
        c.assign(&tpl).context("assign")?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            match c.poll(Duration::from_millis(200)) {
                Some(Ok(m)) if m.offset() == offset => {
                    return Ok(Read::Found(fingerprint(
                        m.key().unwrap_or_default(),
                        m.payload().unwrap_or_default(),
                    )))
                }
                Some(Ok(m)) if m.offset() < offset => {}
                // a later record: the one asked for was deleted, or (read
                // from inside a batch) skipped
                Some(Ok(_)) if from > 0 => return Ok(Read::Skipped),
                Some(Ok(_)) => return Ok(Read::Other),
                Some(Err(e)) if out_of_range(&e) => return Ok(Read::Beyond),
                // a broker still starting, a connection retried: poll on
                Some(Err(_)) | None => {}
            }
        }
        Ok(Read::TimedOut)
    })
    .await
    .context("join fingerprint reader")?
}

/// The fingerprint of the record at `offset`, `None` if the log has none
/// there. A broker whose high watermark trails its last batch (tansu) serves
/// nothing past it until the next write: a record past it is read again
/// after a lease marker (which every consumer skips) moved it on.
async fn fingerprint_at(
    bootstrap: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<Option<u64>> {
    let read = || read_back(bootstrap, topic, partition, offset);
    let nudge = || async move {
        let p = Producer::new(bootstrap, Duration::from_secs(10))?;
        p.send_to(
            topic,
            Some(partition),
            b"lease",
            b"{}",
            &[(lease::MARKER_HEADER, b"1")],
        )
        .await
        .context("write a marker to read the log's tail")
        .map(drop)
    };
    fingerprint_reading(
        read,
        nudge,
        &format!("{topic}/{partition}: record {offset}"),
    )
    .await
}

/// What the reads of one record say about it: found, gone (`None`), or,
/// when nothing arrived in time even after a nudge, an error that blames
/// the broker and not the log.
async fn fingerprint_reading<R, RF, N, NF>(
    mut read: R,
    mut nudge: N,
    record: &str,
) -> anyhow::Result<Option<u64>>
where
    R: FnMut() -> RF,
    RF: std::future::Future<Output = anyhow::Result<Read>>,
    N: FnMut() -> NF,
    NF: std::future::Future<Output = anyhow::Result<()>>,
{
    for nudged in [false, true] {
        match read().await? {
            Read::Found(f) => return Ok(Some(f)),
            // Nothing in time may be tansu's trailing watermark too: nudge first.
            Read::Beyond | Read::TimedOut if !nudged => nudge().await?,
            Read::TimedOut => anyhow::bail!(
                "{record} could not be read within 10 s; the broker is slow or unreachable \
                 (the log itself is not in question)"
            ),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

fn out_of_range(e: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as Code;
    matches!(
        e.rdkafka_error_code(),
        Some(Code::OffsetOutOfRange | Code::AutoOffsetReset)
    )
}

async fn high_watermarks(bootstrap: &str) -> anyhow::Result<BTreeMap<String, (i64, i64)>> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let c: BaseConsumer = client_config(&bootstrap)
            .create()
            .context("create metadata consumer")?;
        let mut out = BTreeMap::new();
        for t in TOPICS {
            let md = c
                .fetch_metadata(Some(t.name()), Duration::from_secs(10))
                .context("fetch metadata")?;
            for topic in md.topics() {
                for p in topic.partitions() {
                    let (lo, hi) = c
                        .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                        .context("fetch watermarks")?;
                    out.insert(format!("{}/{}", t.name(), p.id()), (lo, hi));
                }
            }
        }
        Ok(out)
    })
    .await
    .context("join watermark task")?
}

/// Stores `offsets` as the new group's committed position, so the runner
/// starts replaying there. If the broker refuses, the runner reads from the
/// beginning and the state skips what it already includes.
async fn seed_group(bootstrap: &str, group: &str, offsets: &BTreeMap<String, i64>) {
    let (bootstrap, group, offsets) = (bootstrap.to_owned(), group.to_owned(), offsets.clone());
    let r = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let c: BaseConsumer = client_config(&bootstrap)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()?;
        let mut tpl = TopicPartitionList::new();
        for (key, next) in &offsets {
            let Some((topic, p)) = key.rsplit_once('/') else {
                continue;
            };
            tpl.add_partition_offset(topic, p.parse()?, Offset::Offset(*next))?;
        }
        c.commit(&tpl, CommitMode::Sync)?;
        Ok(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "seeding authorizer offsets failed; replaying from the start")
        }
        Err(e) => {
            tracing::warn!(error = %e, "seeding authorizer offsets failed; replaying from the start")
        }
    }
}

/// Builds the authorizer's log runner (a fresh group per process, seeded with
/// the snapshot's offsets) and a task that flips readiness once the state has
/// caught up with the log as it was at start.
pub async fn start(
    authorizer: &Authorizer,
    pool: PgPool,
    kafka: &cellbank_shared::config::KafkaSettings,
    group_prefix: &str,
) -> anyhow::Result<(
    Runner<LogHandler>,
    impl std::future::Future<Output = anyhow::Result<()>>,
)> {
    let bootstrap = kafka.bootstrap.as_str();
    let group = format!(
        "{group_prefix}-authorizer-{}",
        uuid::Uuid::new_v4().simple()
    );
    let (offsets, fingerprints) =
        authorizer.with_state(|s| (s.offsets.clone(), s.fingerprints.clone()));
    seed_group(bootstrap, &group, &offsets).await;
    // Facts the ledger committed before we started must be in the log before
    // the watermarks we replay up to are taken.
    let outbox_end: i64 = sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM ledger_facts")
        .fetch_one(&pool)
        .await
        .context("read outbox position")?;
    let topics: Vec<&str> = TOPICS.iter().map(|t| t.name()).collect();
    let mut cfg = RunnerConfig::new(bootstrap, &group, &topics);
    cfg.max_batch = 512;
    cfg.fetch_wait_ms = kafka.fetch_wait_ms;
    let runner = Runner::new(
        cfg,
        LogHandler {
            authorizer: authorizer.clone(),
        },
    )?;
    let caught_up = replay(
        authorizer.clone(),
        pool,
        bootstrap.to_owned(),
        outbox_end,
        (offsets, fingerprints),
    );
    Ok((runner, caught_up))
}

/// Ends once the authorizer has replayed its log up to where it stood at
/// start (after the outbox's facts committed before start were sent), then
/// marks it ready. Refuses a snapshot that does not fit the log.
async fn replay(
    a: Authorizer,
    pool: PgPool,
    bootstrap: String,
    outbox_end: i64,
    (offsets, fingerprints): (BTreeMap<String, i64>, BTreeMap<String, u64>),
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    loop {
        let unsent: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ledger_facts WHERE sent_at IS NULL AND id <= $1",
        )
        .bind(outbox_end)
        .fetch_one(&pool)
        .await
        .context("read outbox")?;
        if unsent == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let outbox_ms = started.elapsed().as_millis() as u64;
    let targets = high_watermarks(&bootstrap).await?;
    refuse_a_log_behind(&offsets, &targets)?;
    refuse_another_log(&bootstrap, &offsets, &fingerprints, &targets).await?;
    let checked_ms = started.elapsed().as_millis() as u64;
    loop {
        let done = a.with_state(|s| {
            targets
                .iter()
                .all(|(k, (lo, hi))| hi <= lo || s.offsets.get(k).copied().unwrap_or(0) >= *hi)
        });
        if done {
            a.set_ready();
            tracing::info!(
                outbox_ms,
                log_checked_ms = checked_ms - outbox_ms,
                replayed_ms = started.elapsed().as_millis() as u64 - checked_ms,
                "authorizer replayed its log: ready"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The retention-gap branch, which the broker used in tests cannot
    /// produce (it deletes no records): a log whose low watermark passed
    /// the snapshot's offset lost records the authorizer never read.
    #[tokio::test]
    async fn a_retention_gap_is_refused_and_a_log_that_kept_everything_is_not() {
        let key = "cellbank.authorizations/0".to_owned();
        let offsets = BTreeMap::from([(key.clone(), 40)]);
        let no_fingerprints = BTreeMap::new();
        let gap = BTreeMap::from([(key.clone(), (55, 90))]);
        let err = refuse_another_log("127.0.0.1:1", &offsets, &no_fingerprints, &gap)
            .await
            .unwrap_err();
        assert!(
            format!("{err}").contains("records 40 to 54 were deleted"),
            "{err}"
        );
        for low in [0, 40] {
            let kept = BTreeMap::from([(key.clone(), (low, 90))]);
            refuse_another_log("127.0.0.1:1", &offsets, &no_fingerprints, &kept)
                .await
                .unwrap();
        }
    }

    /// Replays `reads` in order; counts the nudges.
    async fn reading(reads: Vec<Read>) -> (anyhow::Result<Option<u64>>, usize) {
        let reads = std::sync::Mutex::new(reads.into_iter());
        let nudges = std::sync::atomic::AtomicUsize::new(0);
        let read = || async { Ok(reads.lock().unwrap().next().expect("one read too many")) };
        let nudge = || async {
            nudges.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let got = fingerprint_reading(read, nudge, "t/0: record 600").await;
        (got, nudges.into_inner())
    }

    /// Finding 2 of RELIABILITY.md (chaos run, seed 1, short, fault 13): a
    /// broker too slow to serve the record after a crash is not a log that
    /// lost it. The start-up must fail as transient, naming the broker, and
    /// never report the record gone (which advises deleting the snapshots).
    #[tokio::test]
    async fn a_read_that_times_out_blames_the_broker_not_the_log() {
        let (got, nudges) = reading(vec![Read::TimedOut, Read::TimedOut]).await;
        let err = format!("{:#}", got.unwrap_err());
        assert!(err.contains("slow or unreachable"), "{err}");
        assert!(!err.contains("gone") && !err.contains("swapped"), "{err}");
        assert_eq!(nudges, 1);
        // and a timed-out read that the nudge unblocks finds the record
        let (got, nudges) = reading(vec![Read::TimedOut, Read::Found(7)]).await;
        assert_eq!((got.unwrap(), nudges), (Some(7), 1));
    }

    #[tokio::test]
    async fn a_record_past_the_end_is_read_after_a_nudge_or_else_gone() {
        let (got, nudges) = reading(vec![Read::Beyond, Read::Found(3)]).await;
        assert_eq!((got.unwrap(), nudges), (Some(3), 1));
        let (got, _) = reading(vec![Read::Beyond, Read::Beyond]).await;
        assert_eq!(got.unwrap(), None);
        let (got, nudges) = reading(vec![Read::Other]).await;
        assert_eq!((got.unwrap(), nudges), (None, 0));
    }
}
