//! Customer moves, measured on this machine with the release binaries: one
//! global and two cells, each with its own database and broker.
//!
//! 1. The latency of partner requests (deposits and authorizations) to a set
//!    of customers under a fixed load, first with nothing moving (the
//!    baseline), then while those customers move one after another; the
//!    moves' freeze durations (p50, p99, max) and where the freeze goes.
//! 2. The time to move one customer with 1,000 and with 10,000 entries.
//! 3. 1,000 customers rebalanced from shard-1 to shard-2, `PARALLEL` moves
//!    in flight: the total time.
//!
//! ```text
//! cargo build --release -p cellbank-global -p cellbank-shard --bins --example move_bench
//! ./target/release/examples/move_bench
//! ```
//! Settings: `MOVING` (customers moved under load, 20), `RATE` (requests/s,
//! 100), `REBALANCE` (1000), `PARALLEL` (16).

#[path = "../tests/processes/mod.rs"]
mod processes;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};

use processes::cluster::{Cluster, Customer};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `q` quantile of sorted `xs` (nearest rank).
fn quantile(xs: &[f64], q: f64) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    let i = ((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1;
    xs[i]
}

fn summary(mut ms: Vec<f64>) -> String {
    ms.sort_by(|a, b| a.total_cmp(b));
    format!(
        "n={} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms.len(),
        quantile(&ms, 0.5),
        quantile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    )
}

/// Signs up `n` customers, 8 at a time; those placed on shard-1 get a card.
async fn customers_on_shard1(c: &Cluster, tag: &str, n: usize) -> Vec<(Customer, String)> {
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < n {
        let want = (n - out.len()) * 2;
        let signed: Vec<Vec<Customer>> = futures::stream::iter(0..want.div_ceil(8))
            .map(|k| async move { c.sign_up(&format!("{tag}{round}x{k}"), 8).await })
            .buffer_unordered(4)
            .collect()
            .await;
        for who in signed
            .into_iter()
            .flatten()
            .filter(|w| w.shard == "shard-1")
        {
            if out.len() < n {
                let (_, pan) = c.issue_card(&who).await;
                out.push((who, pan));
            }
        }
        round += 1;
    }
    out
}

/// Fixed-rate traffic to `targets` until `stop`: a deposit or an
/// authorization each tick; answers each request's latency in ms.
async fn traffic(
    c: Arc<Cluster>,
    targets: Vec<(Customer, String)>,
    rate: usize,
    stop: Arc<AtomicBool>,
) -> Vec<f64> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut tasks = Vec::new();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let (who, pan) = targets[i % targets.len()].clone();
        let c = c.clone();
        let n = i;
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            if n.is_multiple_of(2) {
                c.deposit(&format!("bench-{n}"), &who.account_number, 10)
                    .await;
            } else {
                c.try_authorize(&pan, 1, &format!("bench-{n}")).await;
            }
            t.elapsed().as_secs_f64() * 1000.0
        }));
        i += 1;
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Moves `who` to `to` and waits: the finished move.
async fn move_one(c: &Cluster, who: &str, to: &str) -> Value {
    let mv = c.start_move(who, to).await;
    c.finished_move(mv["id"].as_str().unwrap(), Duration::from_secs(300))
        .await
}

/// Part 1: the baseline load, then the same load while the targets move.
async fn under_load(c: Arc<Cluster>, moving: usize, rate: usize) {
    let targets = customers_on_shard1(&c, "load", moving).await;
    c.quiet().await;
    let secs = 10;
    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(traffic(c.clone(), targets.clone(), rate, stop.clone()));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    println!(
        "baseline ({rate}/s for {secs} s, nothing moving): {}",
        summary(run.await.unwrap())
    );

    let stop = Arc::new(AtomicBool::new(false));
    let run = tokio::spawn(traffic(c.clone(), targets.clone(), rate, stop.clone()));
    let started = Instant::now();
    let mut freezes = Vec::new();
    let mut steps: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for (who, _) in &targets {
        let done = move_one(&c, &who.id, "shard-2").await;
        assert_eq!(done["phase"], "completed", "{done}");
        freezes.push(done["freeze_ms"].as_f64().unwrap());
        for (k, v) in done["timings"].as_object().unwrap() {
            steps
                .entry(k.clone())
                .or_default()
                .push(v.as_f64().unwrap_or(0.0));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let moved_in = started.elapsed();
    println!(
        "while moving ({moving} customers one after another in {moved_in:.1?}): {}",
        summary(run.await.unwrap())
    );
    println!("freeze per move: {}", summary(freezes));
    for (k, v) in steps {
        println!("  step {k}: {}", summary(v));
    }
}

/// Part 2: one customer with `entries` deposits (one entry each), moved.
async fn one_big_customer(c: &Cluster, entries: usize) {
    let (who, _) = customers_on_shard1(c, &format!("big{entries}"), 1)
        .await
        .remove(0);
    let key = c.partner_key.clone();
    for chunk in 0..entries.div_ceil(500) {
        let events: Vec<Value> = (0..500.min(entries - chunk * 500))
            .map(|i| {
                json!({"event_id": format!("big-{chunk}-{i}"), "type": "deposit",
                "account_number": who.account_number, "amount": 1, "currency": "BRL",
                "occurred_at": "2026-11-28T12:00:00Z"})
            })
            .collect();
        let url = format!("{}/v1/events/batch", c.global_url);
        let (status, body) =
            processes::cluster::send(c.http.post(url).json(&json!({"events": events})), &key).await;
        assert!(
            status == 202 || status == 200 || status == 207,
            "{status} {body}"
        );
    }
    c.quiet().await;
    let t = Instant::now();
    let done = move_one(c, &who.id, "shard-2").await;
    assert_eq!(done["phase"], "completed", "{done}");
    println!(
        "one customer with {entries} entries: moved in {:.2?} ({} events copied in {} rounds), freeze {:.1} ms",
        t.elapsed(),
        done["copied_events"],
        done["rounds"],
        done["freeze_ms"].as_f64().unwrap_or(f64::NAN)
    );
}

/// Part 3: `n` customers rebalanced, `parallel` moves in flight.
async fn rebalance(c: &Cluster, n: usize, parallel: usize) {
    let who = customers_on_shard1(c, "rebal", n).await;
    c.quiet().await;
    let t = Instant::now();
    let done: Vec<Value> = futures::stream::iter(who)
        .map(|(w, _)| async move { move_one(c, &w.id, "shard-2").await })
        .buffer_unordered(parallel)
        .collect()
        .await;
    let elapsed = t.elapsed();
    let completed = done.iter().filter(|d| d["phase"] == "completed").count();
    let freezes: Vec<f64> = done
        .iter()
        .filter_map(|d| d["freeze_ms"].as_f64())
        .collect();
    println!(
        "rebalance: {completed}/{n} customers moved in {elapsed:.1?} ({:.1} moves/s, {parallel} in flight); freeze {}",
        n as f64 / elapsed.as_secs_f64(),
        summary(freezes)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let parallel = setting("PARALLEL", 16).to_string();
    let env = [
        ("CELLBANK__MOVES__MAX_PARALLEL", parallel.as_str()),
        ("CELLBANK__TELEMETRY__FILTER", "warn"),
    ];
    let c = Arc::new(Cluster::start(2, &env).await);
    under_load(c.clone(), setting("MOVING", 20), setting("RATE", 100)).await;
    for entries in [1_000, 10_000] {
        one_big_customer(&c, entries).await;
    }
    rebalance(&c, setting("REBALANCE", 1000), setting("PARALLEL", 16)).await;
}
