//! Memory stays bounded when the producer is far faster than the consumer:
//! the runner stops polling instead of buffering the backlog. Its own test
//! binary, so the process's memory is this test's alone.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use cellbank_shared::kafka::{Handler, HandlerError, Producer, Record, Runner, RunnerConfig};
use cellbank_shared::testkit::{eventually, Broker};
use tokio_util::sync::CancellationToken;

struct Slow;

#[async_trait]
impl Handler for Slow {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(batch.len() as u64)).await;
        Ok(())
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_stays_bounded_when_the_producer_is_ten_times_faster() {
    cellbank_shared::telemetry::init_for_tests();
    let broker = Broker::start().await;
    broker.create_topics(&["firehose"], 2).await;

    const MSGS: usize = 48_000;
    const SIZE: usize = 1024;
    let started = std::time::Instant::now();
    {
        // A backlog of ~48 MiB, produced as fast as the broker takes it.
        let p = Producer::with_linger(&broker.bootstrap(), Duration::from_secs(30), 5).unwrap();
        let payload = vec![b'x'; SIZE];
        let mut inflight = futures::stream::FuturesUnordered::new();
        use futures::StreamExt;
        for i in 0..MSGS {
            let key = format!("k{}", i % 64);
            let p = p.clone();
            let payload = payload.clone();
            inflight.push(async move { p.send("firehose", key.as_bytes(), &payload, &[]).await });
            if inflight.len() >= 5_000 {
                inflight.next().await.unwrap().unwrap();
            }
        }
        while let Some(r) = inflight.next().await {
            r.unwrap();
        }
        p.flush(Duration::from_secs(10));
    }
    let produce_rate = MSGS as f64 / started.elapsed().as_secs_f64();

    let base = rss_kib();
    let mut cfg = RunnerConfig::new(&broker.bootstrap(), "g-slow", &["firehose"]);
    cfg.max_in_flight = 64;
    cfg.prefetch_kbytes = 256;
    let runner = Runner::new(cfg, Slow).unwrap();
    let stats = runner.stats();
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(stop.clone()));

    let consume_started = std::time::Instant::now();
    eventually(Duration::from_secs(30), "consumer is busy", || async {
        stats.processed.load(Ordering::SeqCst) >= 1_000
    })
    .await;
    let mut peak = base;
    for _ in 0..40 {
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let processed = stats.processed.load(Ordering::SeqCst);
    let consume_rate = processed as f64 / consume_started.elapsed().as_secs_f64();
    stop.cancel();
    task.await.unwrap().unwrap();

    let growth_kib = peak.saturating_sub(base);
    let backlog_kib = ((MSGS as u64 - processed) * SIZE as u64) / 1024;
    eprintln!(
        "produce {produce_rate:.0} msg/s, consume {consume_rate:.0} msg/s, \
         backlog {backlog_kib} KiB, rss growth {growth_kib} KiB, max in flight {}",
        stats.max_in_flight.load(Ordering::SeqCst)
    );
    assert!(
        produce_rate > 10.0 * consume_rate,
        "the producer must outrun the consumer tenfold for this test to mean anything"
    );
    assert!(
        backlog_kib > 30 * 1024,
        "a large backlog remained unconsumed"
    );
    assert!(
        stats.max_in_flight.load(Ordering::SeqCst) <= 2 * 64 + 2,
        "in-flight work is bounded by the per-partition queues"
    );
    assert!(
        growth_kib < 16 * 1024,
        "memory grew {growth_kib} KiB while a {backlog_kib} KiB backlog waited"
    );
}
