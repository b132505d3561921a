//! Overload: the platform's capacity measured (closed loop), then ten times
//! that offered for a minute (open loop) through global into the shards,
//! while the steady load keeps running. Counts how each request was
//! answered (2xx, 503/429 with or without `Retry-After`, other), samples
//! every process's RSS, and times the return of the steady load's latency
//! to its baseline once the burst stops. What the burst got accepted is
//! recorded like the steady load's, so the usual checks cover it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::load::World;
use crate::record::{quantile_ms, Accepted, Approval};

/// The burst generator's own bound on requests in flight: far above what the
/// servers admit (`server.max_in_flight`), so the servers, not the
/// generator, decide what is shed.
const BURST_IN_FLIGHT: usize = 8192;
/// Workers of the closed loop that measures capacity.
const CAPACITY_WORKERS: usize = 64;
/// One request in this many of the burst is an authorization; the rest
/// are single partner events.
const AUTHORIZATION_EVERY: u64 = 5;

/// How one phase's requests were answered.
#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    shed_with_retry_after: AtomicU64,
    shed_without_retry_after: AtomicU64,
    transport_errors: AtomicU64,
    not_sent: AtomicU64,
    ok_latency_us: Mutex<Vec<u32>>,
    shed_latency_us: Mutex<Vec<u32>>,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub secs: f64,
    pub offered_per_sec: f64,
    pub sent: u64,
    /// Requests the generator could not send (its own in-flight bound).
    pub not_sent: u64,
    pub statuses: BTreeMap<u16, u64>,
    pub ok_per_sec: f64,
    pub shed_with_retry_after: u64,
    pub shed_without_retry_after: u64,
    pub transport_errors: u64,
    pub ok_p50_ms: f64,
    pub ok_p99_ms: f64,
    pub shed_p50_ms: f64,
    pub shed_p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Overload {
    pub capacity: Phase,
    pub burst: Phase,
    /// Peak RSS (MiB) per process before the burst and during it.
    pub rss_mib: BTreeMap<String, (u64, u64)>,
    /// Steady-load p99 (ms) over the 10 s before the capacity phase.
    pub baseline_p99_ms: f64,
    /// The bound the steady load's p99 had to be back under.
    pub normal_p99_ms: f64,
    /// From the burst's end until the steady load's 1 s windows are back
    /// under `normal_p99_ms` without errors, three windows in a row.
    pub recovered_after_ms: Option<u64>,
}

impl Tally {
    fn phase(&self, secs: f64, offered_per_sec: f64) -> Phase {
        let statuses = self.statuses.lock().unwrap().clone();
        let ok: u64 = statuses
            .iter()
            .filter(|(s, _)| (200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let ok_lat = self.ok_latency_us.lock().unwrap().clone();
        let shed_lat = self.shed_latency_us.lock().unwrap().clone();
        Phase {
            secs,
            offered_per_sec,
            sent: statuses.values().sum::<u64>() + self.transport_errors.load(Ordering::Relaxed),
            not_sent: self.not_sent.load(Ordering::Relaxed),
            ok_per_sec: ok as f64 / secs,
            shed_with_retry_after: self.shed_with_retry_after.load(Ordering::Relaxed),
            shed_without_retry_after: self.shed_without_retry_after.load(Ordering::Relaxed),
            transport_errors: self.transport_errors.load(Ordering::Relaxed),
            ok_p50_ms: quantile_ms(ok_lat.clone(), 0.5),
            ok_p99_ms: quantile_ms(ok_lat, 0.99),
            shed_p50_ms: quantile_ms(shed_lat.clone(), 0.5),
            shed_p99_ms: quantile_ms(shed_lat, 0.99),
            statuses,
        }
    }

    fn answer(&self, status: u16, retry_after: bool, sent: Instant) {
        let us = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
        if (200..300).contains(&status) {
            self.ok_latency_us.lock().unwrap().push(us);
        } else if matches!(status, 429 | 503) {
            self.shed_latency_us.lock().unwrap().push(us);
            let n = if retry_after {
                &self.shed_with_retry_after
            } else {
                &self.shed_without_retry_after
            };
            n.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One request of the mix, sent once (a partner would retry after the
/// `Retry-After`; the burst stays ten times the capacity without that).
async fn one(world: &World, tally: &Tally, n: u64, rng_pick: (usize, i64)) {
    let (customer, amount) = rng_pick;
    let c = &world.customers[customer];
    let (path, body, event) = if n.is_multiple_of(AUTHORIZATION_EVERY) {
        let Some(card) = c.cards.first() else { return };
        let reference = format!("chaos-{}-o{n}", world.run);
        let body = json!({
            "pan": card.pan, "amount": amount, "currency": "BRL", "network_reference": reference,
            "merchant": {"name": "Overload Padaria", "mcc": "5411", "country": "BR"},
        });
        ("/v1/authorizations", body, None)
    } else {
        let id = format!("chaos-{}-o{n}", world.run);
        world.rec.sent(&id, customer, amount / 5);
        let body = world.deposit(&id, c, amount / 5);
        ("/v1/events", body, Some(id))
    };
    let url = format!("{}{path}", world.globals[n as usize % world.globals.len()]);
    let sent = Instant::now();
    let r = world
        .client
        .post(&url)
        .bearer_auth(&world.partner_key)
        .json(&body)
        .send()
        .await;
    let resp = match r {
        Ok(resp) => resp,
        Err(_) => {
            tally.transport_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let status = resp.status().as_u16();
    let retry_after = resp.headers().contains_key(reqwest::header::RETRY_AFTER);
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    tally.answer(status, retry_after, sent);
    if !(200..300).contains(&status) {
        return;
    }
    match event {
        Some(id) => world.rec.accept(
            id,
            Accepted {
                cell: c.cell(),
                amount: amount / 5,
            },
        ),
        None if v["reason"] == "approved" => world.rec.approve(Approval {
            card_id: c.cards[0].card_id,
            reference: body["network_reference"].as_str().unwrap_or("").to_owned(),
            authorization_id: v["authorization_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default(),
            amount,
        }),
        None => {}
    }
}

fn pick(rng: &mut StdRng, customers: usize) -> (usize, i64) {
    (rng.gen_range(0..customers), rng.gen_range(100..=5_000))
}

/// Closed loop: `CAPACITY_WORKERS` each sending the next request as soon as
/// the last is answered, for `secs`. The 2xx per second is the capacity.
async fn capacity(world: &Arc<World>, secs: u64, next: &Arc<AtomicU64>) -> Phase {
    let tally = Arc::new(Tally::default());
    let until = Instant::now() + Duration::from_secs(secs);
    let workers: Vec<_> = (0..CAPACITY_WORKERS)
        .map(|w| {
            let (world, tally, next) = (world.clone(), tally.clone(), next.clone());
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(w as u64);
                while Instant::now() < until {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    one(&world, &tally, n, pick(&mut rng, world.customers.len())).await;
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.await;
    }
    tally.phase(secs as f64, 0.0)
}

/// Open loop at `rate` per second for `secs`, within `BURST_IN_FLIGHT`.
async fn burst(world: &Arc<World>, rate: f64, secs: u64, next: &Arc<AtomicU64>) -> Phase {
    let tally = Arc::new(Tally::default());
    let gate = Arc::new(Semaphore::new(BURST_IN_FLIGHT));
    let mut rng = StdRng::seed_from_u64(7);
    let started = Instant::now();
    let total = (rate * secs as f64) as u64;
    // Ticks of 1 ms, each sending the requests due by then (a timer per
    // request cannot keep up with tens of thousands per second).
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sent = 0u64;
    while sent < total {
        tick.tick().await;
        let due = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < due {
            sent += 1;
            let Ok(permit) = gate.clone().try_acquire_owned() else {
                tally.not_sent.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let n = next.fetch_add(1, Ordering::Relaxed);
            let p = pick(&mut rng, world.customers.len());
            let (world, tally) = (world.clone(), tally.clone());
            tokio::spawn(async move {
                one(&world, &tally, n, p).await;
                drop(permit);
            });
        }
    }
    let _all = gate.acquire_many(BURST_IN_FLIGHT as u32).await;
    tally.phase(started.elapsed().as_secs_f64(), rate)
}

/// Samples the RSS of every process with a pid file under `state/pids`
/// (global's replicas, shards, brokers, links) every 500 ms until `stop`;
/// peaks per process, before `burst_from` is set and after.
async fn sample_rss(
    state: PathBuf,
    stop: Arc<AtomicBool>,
    bursting: Arc<AtomicBool>,
) -> BTreeMap<String, (u64, u64)> {
    let mut peaks: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        let during = bursting.load(Ordering::Relaxed);
        for (name, kib) in rss_now(&state.join("pids")) {
            let p = peaks.entry(name).or_default();
            let slot = if during { &mut p.1 } else { &mut p.0 };
            *slot = (*slot).max(kib / 1024);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    peaks
}

fn rss_now(pids: &Path) -> Vec<(String, u64)> {
    let Ok(dir) = std::fs::read_dir(pids) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = std::fs::read_to_string(e.path()).ok()?;
            let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).ok()?;
            let kib = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()?;
            Some((name, kib))
        })
        .collect()
}

/// Steady-load p99 and errors in 1 s windows from `from_ms`; the first
/// window from which three in a row are under `bound_ms` without errors.
fn recovery(world: &World, from_ms: u64, bound_ms: f64) -> Option<u64> {
    let samples = world.rec.samples();
    let last = samples.iter().map(|s| s.at_ms as u64).max()?;
    let windows: Vec<bool> = (from_ms / 1000..=last / 1000)
        .map(|w| {
            let inside: Vec<_> = samples
                .iter()
                .filter(|s| s.at_ms as u64 / 1000 == w)
                .collect();
            let errors = inside.iter().any(|s| !s.ok);
            let lat = inside.iter().map(|s| s.latency_us).collect();
            !inside.is_empty() && !errors && quantile_ms(lat, 0.99) <= bound_ms
        })
        .collect();
    let first = windows.windows(3).position(|w| w.iter().all(|ok| *ok))?;
    Some(((from_ms / 1000 + first as u64) * 1000).saturating_sub(from_ms))
}

/// The whole overload phase, with the steady load already running.
pub async fn run(world: Arc<World>, state: PathBuf, factor: f64, secs: u64) -> Overload {
    let steady = |from: u64, to: u64| -> Vec<u32> {
        world
            .rec
            .samples()
            .into_iter()
            .filter(|s| (from..to).contains(&(s.at_ms as u64)))
            .map(|s| s.latency_us)
            .collect()
    };
    let now = world.rec.now_ms();
    let baseline_p99_ms = quantile_ms(steady(now.saturating_sub(10_000), now), 0.99);
    let (stop, bursting) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let rss = tokio::spawn(sample_rss(state, stop.clone(), bursting.clone()));
    let next = Arc::new(AtomicU64::new(0));
    eprintln!("[overload] measuring capacity (closed loop, {CAPACITY_WORKERS} workers, 15 s)");
    let capacity = capacity(&world, 15, &next).await;
    let rate = (capacity.ok_per_sec * factor).max(1.0);
    eprintln!(
        "[overload] capacity {:.0}/s; offering {rate:.0}/s for {secs} s",
        capacity.ok_per_sec
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    bursting.store(true, Ordering::Relaxed);
    let burst = burst(&world, rate, secs, &next).await;
    let ended_ms = world.rec.now_ms();
    stop.store(true, Ordering::Relaxed);
    let rss_mib = rss.await.unwrap_or_default();
    // Back to normal: p99 within twice the baseline (at least 50 ms more
    // than it, for a noisy 2-core machine), for three seconds in a row.
    let normal_p99_ms = (baseline_p99_ms * 2.0).max(baseline_p99_ms + 50.0);
    tokio::time::sleep(Duration::from_secs(30)).await;
    Overload {
        recovered_after_ms: recovery(&world, ended_ms, normal_p99_ms),
        capacity,
        burst,
        rss_mib,
        baseline_p99_ms,
        normal_p99_ms,
    }
}

/// The overload's section of report.md.
pub fn markdown(o: &Overload) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("\n## Overload\n\n");
    s.push_str("| phase | offered/s | sent | not sent | 2xx/s | 503/429 with Retry-After | without | other statuses | transport errors | 2xx p50 / p99 ms | shed p50 / p99 ms |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|\n");
    for (name, p) in [("capacity (closed loop)", &o.capacity), ("burst", &o.burst)] {
        let other: BTreeMap<_, _> = p
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s) && !matches!(s, 429 | 503))
            .collect();
        let _ = writeln!(
            s,
            "| {name} | {:.0} | {} | {} | {:.0} | {} | {} | {other:?} | {} | {:.1} / {:.1} | {:.1} / {:.1} |",
            p.offered_per_sec,
            p.sent,
            p.not_sent,
            p.ok_per_sec,
            p.shed_with_retry_after,
            p.shed_without_retry_after,
            p.transport_errors,
            p.ok_p50_ms,
            p.ok_p99_ms,
            p.shed_p50_ms,
            p.shed_p99_ms
        );
    }
    s.push_str("\n| process | peak RSS before the burst (MiB) | peak RSS during it (MiB) |\n|---|---:|---:|\n");
    for (name, (before, during)) in &o.rss_mib {
        let _ = writeln!(s, "| {name} | {before} | {during} |");
    }
    let _ = writeln!(
        s,
        "\nSteady load p99 before: {:.1} ms; back under {:.1} ms (3 s in a row, no errors) {} after the burst.",
        o.baseline_p99_ms,
        o.normal_p99_ms,
        o.recovered_after_ms
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "not within 30 s".into())
    );
    s
}
