//! The consumer runner against a real broker and real Postgres: commit after
//! effect, idempotent redelivery, dead letters, pause on an open breaker and
//! on an operator hold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use cellbank_shared::kafka::dead_letter_headers;
use cellbank_shared::kafka::{
    BreakerConfig, Handler, HandlerError, Producer, Record, Runner, RunnerConfig,
};
use cellbank_shared::testkit::{eventually, fresh_database, Broker};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

async fn produce(broker: &Broker, topic: &str, n: usize, prefix: &str) {
    let p = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for i in 0..n {
        let id = format!("{prefix}-{i}");
        p.send(topic, id.as_bytes(), id.as_bytes(), &[("x-test", b"yes")])
            .await
            .unwrap();
    }
}

/// The pattern every consumer follows: the effect and the processed id in one
/// transaction, so a redelivered message changes nothing.
struct IdempotentHandler {
    pool: PgPool,
    calls: AtomicUsize,
}

#[async_trait]
impl Handler for IdempotentHandler {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| HandlerError::Transient(e.into()))?;
        for r in batch {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let id = String::from_utf8_lossy(&r.payload).into_owned();
            let fresh =
                sqlx::query("INSERT INTO processed (event_id) VALUES ($1) ON CONFLICT DO NOTHING")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| HandlerError::Transient(e.into()))?
                    .rows_affected()
                    == 1;
            if fresh {
                sqlx::query("UPDATE counter SET total = total + 1")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| HandlerError::Transient(e.into()))?;
            }
        }
        tx.commit()
            .await
            .map_err(|e| HandlerError::Transient(e.into()))
    }
}

async fn counter_db() -> PgPool {
    let url = fresh_database("runner").await;
    let pool = PgPool::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE processed (event_id TEXT PRIMARY KEY);
         CREATE TABLE counter (total BIGINT NOT NULL);
         INSERT INTO counter VALUES (0);",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool
}

async fn total(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT total FROM counter")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_effect_and_commit_redelivers_and_the_effect_applies_once() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["events"], 1).await;
    let pool = counter_db().await;
    produce(&broker, "events", 20, "e").await;

    // First member: processes everything but "crashes" before any commit.
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-crash", &["events"]);
    cfg.commit_interval = Duration::from_secs(3600);
    cfg.max_batch = 4;
    let handler = IdempotentHandler {
        pool: pool.clone(),
        calls: AtomicUsize::new(0),
    };
    let runner = Runner::new(cfg.clone(), handler).unwrap();
    let stats = runner.stats();
    let task = tokio::spawn(runner.run(CancellationToken::new()));
    eventually(WAIT, "first member processed all", || async {
        stats.processed.load(Ordering::SeqCst) == 20
    })
    .await;
    task.abort(); // a kill: no graceful commit
    let _ = task.await;
    assert_eq!(total(&pool).await, 20);

    // Second member of the same group gets the uncommitted messages again.
    cfg.commit_interval = Duration::from_millis(100);
    let handler = Arc::new(IdempotentHandler {
        pool: pool.clone(),
        calls: AtomicUsize::new(0),
    });
    struct Shared(Arc<IdempotentHandler>);
    #[async_trait]
    impl Handler for Shared {
        async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
            self.0.handle(batch).await
        }
    }
    let runner = Runner::new(cfg.clone(), Shared(handler.clone())).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    eventually(WAIT, "redelivery after the crash", || async {
        stats.processed.load(Ordering::SeqCst) == 20
    })
    .await;
    assert_eq!(handler.calls.load(Ordering::SeqCst), 20, "all redelivered");
    assert_eq!(total(&pool).await, 20, "but applied once");
    stop.cancel();
    task.await.unwrap().unwrap();

    // After a graceful stop the offsets are committed: a third member sees
    // only what is new.
    produce(&broker, "events", 1, "late").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    struct Collect(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl Handler for Collect {
        async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
            for r in batch {
                self.0
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&r.payload).into_owned());
            }
            Ok(())
        }
    }
    let runner = Runner::new(cfg, Collect(seen.clone())).unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    eventually(WAIT, "third member got the new message", || async {
        !seen.lock().unwrap().is_empty()
    })
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["late-0".to_owned()]);
}

struct PoisonAware {
    ok: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Handler for PoisonAware {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        for r in batch {
            if r.payload == b"poison" {
                return Err(HandlerError::Permanent(anyhow::anyhow!(
                    "payload is not a valid event"
                )));
            }
        }
        let mut ok = self.ok.lock().unwrap();
        ok.extend(
            batch
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_lands_in_dead_letters_with_its_error_and_headers() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["in", "dlq"], 1).await;
    let p = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for payload in ["a", "b", "poison", "c", "d"] {
        p.send(
            "in",
            b"k",
            payload.as_bytes(),
            &[("x-origin", b"partner-7")],
        )
        .await
        .unwrap();
    }

    let ok = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-poison", &["in"]);
    cfg.dead_letter_topic = Some("dlq".into());
    cfg.max_batch = 8; // the poison one is isolated from its batch
    let runner = Runner::new(cfg, PoisonAware { ok: ok.clone() }).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));

    let dead = Arc::new(Mutex::new(Vec::<Record>::new()));
    struct Keep(Arc<Mutex<Vec<Record>>>);
    #[async_trait]
    impl Handler for Keep {
        async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
            self.0.lock().unwrap().extend_from_slice(batch);
            Ok(())
        }
    }
    let dlq_reader = Runner::new(
        RunnerConfig::new(&broker.bootstrap(), "g-dlq-reader", &["dlq"]),
        Keep(dead.clone()),
    )
    .unwrap();
    let dlq_task = tokio::spawn(dlq_reader.run(stop.clone()));

    eventually(
        WAIT,
        "good messages processed and poison dead-lettered",
        || async { ok.lock().unwrap().len() == 4 && dead.lock().unwrap().len() == 1 },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    dlq_task.await.unwrap().unwrap();

    assert_eq!(*ok.lock().unwrap(), vec!["a", "b", "c", "d"]);
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    let d = dead.lock().unwrap()[0].clone();
    assert_eq!(d.payload, b"poison");
    assert_eq!(d.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(d.header_str("x-origin"), Some("partner-7"));
    assert_eq!(
        d.header_str(dead_letter_headers::ERROR),
        Some("payload is not a valid event")
    );
    assert_eq!(d.header_str(dead_letter_headers::SOURCE_TOPIC), Some("in"));
    assert_eq!(d.header_str(dead_letter_headers::SOURCE_OFFSET), Some("2"));
    assert_eq!(
        d.header_str(dead_letter_headers::CONSUMER_GROUP),
        Some("g-poison")
    );
}

/// Fails transiently while its dependency is "down"; records what succeeded.
struct Flaky {
    healthy: Arc<AtomicBool>,
    done: Arc<Mutex<Vec<(i32, i64, String)>>>,
}

#[async_trait]
impl Handler for Flaky {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        if !self.healthy.load(Ordering::SeqCst) {
            return Err(HandlerError::Transient(anyhow::anyhow!(
                "database unreachable"
            )));
        }
        let mut done = self.done.lock().unwrap();
        for r in batch {
            done.push((
                r.partition,
                r.offset,
                String::from_utf8_lossy(&r.payload).into_owned(),
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_breaker_pauses_consumption_and_resumes_with_nothing_lost() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["work"], 2).await;
    let p = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for i in 0..40 {
        let key = format!("customer-{}", i % 5);
        let v = format!("m-{i}");
        p.send("work", key.as_bytes(), v.as_bytes(), &[])
            .await
            .unwrap();
    }

    let healthy = Arc::new(AtomicBool::new(false));
    let done = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-breaker", &["work"]);
    cfg.breaker = BreakerConfig {
        failure_threshold: 3,
        open_ms: 150,
    };
    cfg.retry_backoff = Duration::from_millis(10);
    let runner = Runner::new(
        cfg,
        Flaky {
            healthy: healthy.clone(),
            done: done.clone(),
        },
    )
    .unwrap();
    let stats = runner.stats();
    let breaker = runner.breaker();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));

    eventually(WAIT, "the breaker opens and consumption pauses", || async {
        stats.pauses.load(Ordering::SeqCst) >= 1
    })
    .await;
    assert!(*breaker.subscribe().borrow(), "breaker is open");
    assert!(
        done.lock().unwrap().is_empty(),
        "nothing succeeded while down"
    );

    healthy.store(true, Ordering::SeqCst);
    eventually(WAIT, "all messages processed after recovery", || async {
        done.lock().unwrap().len() >= 40
    })
    .await;
    assert!(
        stats.resumes.load(Ordering::SeqCst) >= 1,
        "consumption resumed"
    );
    stop.cancel();
    task.await.unwrap().unwrap();

    let done = done.lock().unwrap().clone();
    let mut values: Vec<String> = done.iter().map(|(_, _, v)| v.clone()).collect();
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 40, "every message exactly once, none lost");
    assert_eq!(done.len(), 40, "no message processed twice");
    for part in [0, 1] {
        let offsets: Vec<i64> = done
            .iter()
            .filter(|(p, _, _)| *p == part)
            .map(|(_, o, _)| *o)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "partition {part} processed in order without gaps: {offsets:?}"
        );
    }
}

struct Recording(Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Handler for Recording {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let mut seen = self.0.lock().unwrap();
        seen.extend(
            batch
                .iter()
                .map(|r| String::from_utf8_lossy(&r.payload).into_owned()),
        );
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hold_pauses_consumption_until_released_with_nothing_lost() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["held"], 2).await;
    produce(&broker, "held", 30, "a").await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let cfg = RunnerConfig::new(&broker.bootstrap(), "g-hold", &["held"]);
    let hold = cfg.hold.clone();
    hold.set(true);
    let runner = Runner::new(cfg, Recording(seen.clone())).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    // A witness group, never held, reads the same topic: once it has read a
    // message, that message was there to be read by the held one too.
    let witnessed = Arc::new(Mutex::new(Vec::new()));
    let witness = Runner::new(
        RunnerConfig::new(&broker.bootstrap(), "g-hold-witness", &["held"]),
        Recording(witnessed.clone()),
    )
    .unwrap();
    let witness_task = tokio::spawn(witness.run(stop.clone()));

    // Held from the start: joining the group and being assigned must not
    // start consumption.
    eventually(
        WAIT,
        "assigned while held, and the witness read all",
        || async {
            stats.workers.load(Ordering::SeqCst) == 2 && witnessed.lock().unwrap().len() == 30
        },
    )
    .await;
    assert_eq!(seen.lock().unwrap().len(), 0, "nothing consumed while held");

    hold.set(false);
    eventually(WAIT, "the backlog is consumed once released", || async {
        seen.lock().unwrap().len() >= 30
    })
    .await;

    // Held again mid-life: new messages wait in the log.
    let pauses = stats.pauses.load(Ordering::SeqCst);
    hold.set(true);
    eventually(WAIT, "the hold took effect", || async {
        stats.pauses.load(Ordering::SeqCst) > pauses
    })
    .await;
    produce(&broker, "held", 30, "b").await;
    eventually(WAIT, "the witness read the new messages", || async {
        witnessed.lock().unwrap().len() == 60
    })
    .await;
    assert_eq!(
        seen.lock().unwrap().len(),
        30,
        "nothing new consumed while held"
    );

    hold.set(false);
    eventually(
        WAIT,
        "the second backlog is consumed once released",
        || async { seen.lock().unwrap().len() >= 60 },
    )
    .await;
    assert!(stats.pauses.load(Ordering::SeqCst) >= 2);
    assert!(stats.resumes.load(Ordering::SeqCst) >= 2);
    stop.cancel();
    task.await.unwrap().unwrap();
    witness_task.await.unwrap().unwrap();
    let mut values = seen.lock().unwrap().clone();
    assert_eq!(values.len(), 60, "no message processed twice");
    values.sort();
    values.dedup();
    assert_eq!(values.len(), 60, "every message once, none lost");
}

/// A partition handed to another member takes its worker with it: after the
/// second member joins, each partition has exactly one live worker across
/// the group, and what follows is processed exactly once in effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_drops_its_worker_and_the_group_carries_on() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["spread"], 4).await;
    let pool = counter_db().await;
    let member = |pool: &PgPool| {
        let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-revoke", &["spread"]);
        cfg.commit_interval = Duration::from_millis(100);
        let handler = IdempotentHandler {
            pool: pool.clone(),
            calls: AtomicUsize::new(0),
        };
        Runner::new(cfg, handler).unwrap()
    };
    let stop = CancellationToken::new();
    let a = member(&pool);
    let a_stats = a.stats();
    let a_task = tokio::spawn(a.run(stop.clone()));
    produce(&broker, "spread", 40, "before").await;
    eventually(
        WAIT,
        "the only member works all four partitions",
        || async { total(&pool).await == 40 && a_stats.workers.load(Ordering::SeqCst) == 4 },
    )
    .await;

    let b = member(&pool);
    let b_stats = b.stats();
    let b_task = tokio::spawn(b.run(stop.clone()));
    eventually(
        WAIT,
        "the partitions are split, one worker each",
        || async {
            let (wa, wb) = (
                a_stats.workers.load(Ordering::SeqCst),
                b_stats.workers.load(Ordering::SeqCst),
            );
            wa > 0 && wb > 0 && wa + wb == 4
        },
    )
    .await;
    produce(&broker, "spread", 40, "after").await;
    eventually(
        WAIT,
        "everything after the rebalance is applied",
        || async { total(&pool).await == 80 },
    )
    .await;
    stop.cancel();
    a_task.await.unwrap().unwrap();
    b_task.await.unwrap().unwrap();
    assert_eq!(total(&pool).await, 80);
}

/// A handler that panics on one message: the panic is a permanent failure,
/// that message is dead-lettered with the panic's text and the partition
/// carries on (it used to stall silently with its worker gone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_dead_letters_the_message_and_the_partition_carries_on() {
    cellbank_shared::telemetry::init_for_tests();
    struct Panicky(Arc<Mutex<Vec<String>>>);
    #[async_trait]
    impl Handler for Panicky {
        async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
            for r in batch {
                if r.payload == b"p-3" {
                    panic!("cannot handle p-3");
                }
            }
            Recording(self.0.clone()).handle(batch).await
        }
    }
    let broker = Broker::start().await;
    broker.create_topics(&["panicky", "panicky-dlq"], 1).await;
    produce(&broker, "panicky", 10, "p").await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-panic", &["panicky"]);
    cfg.max_batch = 4;
    cfg.dead_letter_topic = Some("panicky-dlq".into());
    let runner = Runner::new(cfg, Panicky(seen.clone())).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    eventually(WAIT, "every other message handled", || async {
        seen.lock().unwrap().len() == 9
    })
    .await;
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert!(!seen.lock().unwrap().contains(&"p-3".to_owned()));
    stop.cancel();
    task.await.unwrap().unwrap();
}

/// A message over the producer's size limit is refused as too large — its
/// own error, which callers do not count against the broker's breaker — and
/// the producer goes on delivering normal messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_too_large_is_its_own_error_and_the_producer_carries_on() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["big"], 1).await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    let huge = vec![b'x'; 2 * 1024 * 1024];
    let err = producer.send("big", b"k", &huge, &[]).await.unwrap_err();
    assert!(
        matches!(err, cellbank_shared::kafka::ProduceError::TooLarge(_)),
        "{err}"
    );
    producer.send("big", b"k", b"small", &[]).await.unwrap();
}

/// Takes a little time per batch, more on some partitions than others.
struct Uneven(Arc<Mutex<Vec<(i32, i64)>>>);

#[async_trait]
impl Handler for Uneven {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let p = batch[0].partition as u64;
        tokio::time::sleep(Duration::from_micros(200 * (p + 1))).await;
        let mut done = self.0.lock().unwrap();
        done.extend(batch.iter().map(|r| (r.partition, r.offset)));
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_of_uneven_speed_are_parked_and_resumed_with_nothing_lost_or_stalled() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["uneven"], 4).await;
    let p = Producer::with_linger(&broker.bootstrap(), Duration::from_secs(10), 5).unwrap();
    let sends = (0..4000).map(|i| {
        let p = p.clone();
        async move {
            let id = format!("u-{i}");
            let b = id.as_bytes();
            p.send("uneven", b, b, &[]).await.unwrap();
        }
    });
    futures::future::join_all(sends).await;

    let done = Arc::new(Mutex::new(Vec::new()));
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-uneven", &["uneven"]);
    cfg.max_in_flight = 8;
    cfg.max_batch = 4;
    let runner = Runner::new(cfg, Uneven(done.clone())).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    eventually(
        Duration::from_secs(60),
        "every record processed",
        || async { done.lock().unwrap().len() >= 4000 },
    )
    .await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let done = done.lock().unwrap().clone();
    assert_eq!(done.len(), 4000, "none processed twice");
    for part in 0..4 {
        let offsets: Vec<i64> = done.iter().filter(|r| r.0 == part).map(|r| r.1).collect();
        assert!(
            offsets.windows(2).all(|w| w[1] == w[0] + 1),
            "partition {part} in order without gaps"
        );
    }
    let held = stats.max_in_flight.load(Ordering::SeqCst);
    assert!(held <= 4 * (8 + 4 + 2), "in flight bounded: {held}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_starting_inside_a_producer_batch_gets_every_later_record_once() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _};
    use rdkafka::{Offset, TopicPartitionList};
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["mid"], 1).await;
    // One producer batch of 100 records (sent at once, 50 ms linger), then one more.
    let p = Producer::with_linger(&broker.bootstrap(), Duration::from_secs(10), 50).unwrap();
    let sends = (0..100).map(|i| {
        let p = p.clone();
        async move {
            let v = format!("a-{i:03}");
            p.send("mid", b"k", v.as_bytes(), &[]).await.unwrap()
        }
    });
    futures::future::join_all(sends).await;
    p.send("mid", b"k", b"b-000", &[]).await.unwrap();
    // The group's committed offset lies inside the batch (a restart after
    // a handler batch that ended there).
    let c: BaseConsumer = cellbank_shared::kafka::client_config(&broker.bootstrap())
        .set("group.id", "g-mid")
        .create()
        .unwrap();
    let mut at = TopicPartitionList::new();
    at.add_partition_offset("mid", 0, Offset::Offset(50))
        .unwrap();
    c.commit(&at, CommitMode::Sync).unwrap();
    drop(c);

    let seen = Arc::new(Mutex::new(Vec::new()));
    let cfg = RunnerConfig::new(&broker.bootstrap(), "g-mid", &["mid"]);
    let runner = Runner::new(cfg, Recording(seen.clone())).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));
    eventually(WAIT, "offsets 50 to 100 processed", || async {
        seen.lock().unwrap().iter().any(|v| v == "b-000")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    task.await.unwrap().unwrap();
    let seen = seen.lock().unwrap().clone();
    let want: Vec<String> = (50..100)
        .map(|i| format!("a-{i:03}"))
        .chain(["b-000".to_owned()])
        .collect();
    assert_eq!(
        seen, want,
        "every record from the committed offset on, once, in order"
    );
    eprintln!(
        "rewinds {} repeats dropped {}",
        stats.rewinds.load(Ordering::SeqCst),
        stats.repeats.load(Ordering::SeqCst)
    );
}
