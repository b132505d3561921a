//! The export benchmark (`bash load-tests/export.sh`): on one tansu broker
//! and one change log of synthetic changes (mostly postings, as a cell's
//! log is), in the same run:
//!
//! 1. raw consume: a bare consumer reads the whole log (the ceiling);
//! 2. export: the exporter binary exports the same log from scratch into a
//!    local directory (rows per second, peak RSS);
//! 3. burst: the exporter follows a steady producer, then a ten times
//!    faster one (RSS sampled throughout, peak per phase, and its lag).
//!
//! Prints one JSON line per measurement. Environment: EXPORTER_BIN (the
//! release binary), RECORDS (200000), RUNS (3), STEADY_RATE (1000/s),
//! PHASE_SECS (10).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cellbank_exporter::checkpoint::Checkpoint;
use cellbank_shared::kafka::{client_config, Topic};
use cellbank_shared::testkit::{free_port, Broker};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 4;

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `i`th synthetic change: a posting leg, every tenth a card update.
fn change(i: i64) -> (String, Vec<u8>) {
    let customer = format!("0190c1d8-8a4b-7cc0-9a3c-{:012x}", i % 5_000);
    let body = if i % 10 == 0 {
        serde_json::json!({"seq": i, "entity": "cards", "op": "update", "customer_id": customer,
            "epoch": 1, "changed_at": "2026-12-05T10:00:00.123456+00:00",
            "row": {"card_id": format!("0190c1d8-8a4b-7cc0-9a3c-{:012x}", i % 7_000), "last4": "4242",
                    "currency": "BRL", "credit_limit": 500_000, "blocked": false, "closing_day": 1,
                    "due_day": 10, "created_at": "2026-12-01T00:00:00+00:00",
                    "limit_set_at": "2026-12-01T00:00:00+00:00"}})
    } else {
        serde_json::json!({"seq": i, "entity": "postings", "op": "insert", "customer_id": customer,
            "epoch": 1, "changed_at": "2026-12-05T10:00:00.123456+00:00",
            "row": {"id": i, "namespace": "partner:3f6c", "event_id": format!("deposit-{}", i / 2),
                    "entry_no": 1, "account_code": "account:0190c1d8-8a4b-7cc0-9a3c-1f0d5b0e2a11",
                    "currency": "BRL", "amount": if i % 2 == 0 { 1250 } else { -1250 },
                    "business_time": format!("2026-12-{:02}T12:00:00+00:00", 1 + i % 5)}})
    };
    (customer, serde_json::to_vec(&body).unwrap())
}

/// Produces changes `from..to` in bursts of 500 (as the cell's relay does).
async fn produce(producer: &FutureProducer, from: i64, to: i64) {
    let topic = Topic::CellChanges.name();
    let mut i = from;
    while i < to {
        let end = (i + 500).min(to);
        let recs: Vec<(String, Vec<u8>)> = (i..end).map(change).collect();
        let sends = recs.iter().map(|(k, v)| {
            producer.send(
                FutureRecord::to(topic).key(k).payload(v),
                Duration::from_secs(30),
            )
        });
        for r in futures::future::join_all(sends).await {
            r.map_err(|(e, _)| e).expect("produce");
        }
        i = end;
    }
}

/// Reads the whole log with a bare consumer: records per second.
async fn raw_consume(bootstrap: &str, records: i64) -> f64 {
    let consumer: StreamConsumer = client_config(bootstrap)
        .set("group.id", "bench-raw")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "20")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(Topic::CellChanges.name(), p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut n = 0;
    while n < records {
        consumer.recv().await.expect("consume");
        n += 1;
    }
    records as f64 / started.elapsed().as_secs_f64()
}

fn start_exporter(bin: &Path, bootstrap: &str, dir: &Path, port: u16) -> Child {
    Command::new(bin)
        .env("CELLBANK__SHARD__ID", "shard-1")
        .env("CELLBANK__KAFKA__BOOTSTRAP", bootstrap)
        .env("CELLBANK__KAFKA__FETCH_WAIT_MS", "20")
        .env("CELLBANK__SERVER__PORT", port.to_string())
        .env(
            "CELLBANK__EXPORT__STORE_URL",
            format!("file://{}", dir.display()),
        )
        .env("CELLBANK__TELEMETRY__FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the exporter")
}

/// How far the export is: the checkpoint's offsets, summed.
fn exported(dir: &Path) -> i64 {
    std::fs::read(dir.join("_checkpoints/shard-1.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).ok())
        .map_or(0, |c| c.partitions.values().map(|p| p.next).sum())
}

/// (current, peak) resident memory of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |key: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}

/// Exports the whole log from scratch: (rows per second, peak RSS MiB).
async fn export_all(bin: &Path, bootstrap: &str, records: i64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut child = start_exporter(bin, bootstrap, dir.path(), free_port());
    while exported(dir.path()) < records {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "export stalled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    let (_, peak) = rss_mib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    (rate, peak)
}

/// Produces at `rate` per second for `secs`, sampling the exporter: the
/// rate reached, peak RSS and peak lag (records produced, not exported).
async fn phase(
    producer: &FutureProducer,
    pid: u32,
    dir: &Path,
    next: &mut i64,
    rate: i64,
    secs: u64,
) -> BTreeMap<&'static str, f64> {
    let started = Instant::now();
    let (mut peak_rss, mut peak_lag) = (0f64, 0i64);
    let first = *next;
    while started.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        let batch = (rate / 10).max(1);
        produce(producer, *next, *next + batch).await;
        *next += batch;
        peak_rss = peak_rss.max(rss_mib(pid).0);
        peak_lag = peak_lag.max(*next - exported(dir));
        if let Some(rest) = Duration::from_millis(100).checked_sub(tick.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    let reached = (*next - first) as f64 / started.elapsed().as_secs_f64();
    BTreeMap::from([
        ("target_per_sec", rate as f64),
        ("produced_per_sec", reached),
        ("peak_rss_mib", peak_rss),
        ("peak_lag_records", peak_lag as f64),
    ])
}

async fn burst(bin: &Path, records: i64) {
    let steady: i64 = env_or("STEADY_RATE", 1_000);
    let secs: u64 = env_or("PHASE_SECS", 10);
    let broker = Broker::start().await;
    let bootstrap = broker.bootstrap();
    broker
        .create_topics(&[Topic::CellChanges.name()], PARTITIONS)
        .await;
    let producer: FutureProducer = client_config(&bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_exporter(bin, &bootstrap, dir.path(), free_port());
    let mut next = 1;
    let calm = phase(&producer, child.id(), dir.path(), &mut next, steady, secs).await;
    let burst = phase(
        &producer,
        child.id(),
        dir.path(),
        &mut next,
        steady * 10,
        secs,
    )
    .await;
    let drain = Instant::now();
    while exported(dir.path()) < next - 1 && drain.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, hwm) = rss_mib(child.id());
    println!(
        "{}",
        serde_json::json!({"measure": "burst", "steady": calm, "burst": burst,
            "drained_after_secs": drain.elapsed().as_secs_f64(), "peak_rss_mib_overall": hwm,
            "records": next - 1, "backlog_records_before": records})
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::main]
async fn main() {
    let bin = PathBuf::from(std::env::var("EXPORTER_BIN").expect("EXPORTER_BIN"));
    let records: i64 = env_or("RECORDS", 200_000);
    let runs: usize = env_or("RUNS", 3);
    let broker = Broker::start().await;
    let bootstrap = broker.bootstrap();
    broker
        .create_topics(&[Topic::CellChanges.name()], PARTITIONS)
        .await;
    let producer: FutureProducer = client_config(&bootstrap)
        .set("linger.ms", "5")
        .create()
        .unwrap();
    let t = Instant::now();
    produce(&producer, 1, records + 1).await;
    eprintln!(
        "produced {records} changes in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for run in 1..=runs {
        let raw = raw_consume(&bootstrap, records).await;
        let (rate, rss) = export_all(&bin, &bootstrap, records).await;
        println!(
            "{}",
            serde_json::json!({"measure": "throughput", "run": run, "records": records,
                "raw_consume_per_sec": raw, "export_rows_per_sec": rate,
                "ratio": rate / raw, "export_peak_rss_mib": rss})
        );
    }
    drop(broker);
    burst(&bin, records).await;
}
