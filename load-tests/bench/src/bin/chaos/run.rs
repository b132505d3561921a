//! The fault loop: each scheduled fault after its quiet gap, held, healed,
//! then probed until the cell (or replica) serves again: the recovery time.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::faults::Processes;
use crate::load::World;
use crate::plan::Fault;

/// What happened to one fault.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub fault: Fault,
    /// Run time (ms) the fault started, was healed, and the target served again.
    pub injected_ms: u64,
    pub healed_ms: u64,
    pub recovered_ms: Option<u64>,
    pub error: Option<String>,
}

impl Outcome {
    pub fn recovery_ms(&self) -> Option<u64> {
        self.recovered_ms.map(|r| r - self.healed_ms)
    }
}

/// Restarts every service that exited on its own, as Kubernetes restarts a
/// pod's container: a service may stop itself when a part of it fails (a
/// shard whose broker did not answer in time). The service a fault holds
/// down is left alone. Counts the restarts by service.
pub struct Watchdog {
    pub held: Mutex<Option<String>>,
    pub restarts: Mutex<BTreeMap<String, u32>>,
    /// Set once the checks are done: the watch ends.
    pub done: std::sync::atomic::AtomicBool,
}

impl Watchdog {
    pub fn new() -> Self {
        Self {
            held: Mutex::new(None),
            restarts: Mutex::new(BTreeMap::new()),
            done: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub async fn watch(self: Arc<Self>, procs: Processes) {
        while !self.done.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let held = self.held.lock().unwrap().clone();
            for service in procs.services() {
                if Some(&service) == held.as_ref() || procs.alive(&service) {
                    continue;
                }
                let p = procs.clone();
                let s = service.clone();
                let started = tokio::task::spawn_blocking(move || p.start(&s)).await;
                if matches!(started, Ok(Ok(()))) {
                    eprintln!("[chaos] {service} had exited; restarted it");
                    *self.restarts.lock().unwrap().entry(service).or_default() += 1;
                }
            }
        }
    }
}

/// How long a target may take to serve again before the fault counts as
/// not recovered.
const RECOVERY_BOUND: Duration = Duration::from_secs(120);

pub async fn faults(
    world: Arc<World>,
    procs: Processes,
    schedule: Vec<Fault>,
    dog: Arc<Watchdog>,
) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(schedule.len());
    for f in schedule {
        tokio::time::sleep(Duration::from_millis(f.gap_ms)).await;
        *dog.held.lock().unwrap() = Some(procs.service_of(&f));
        let o = one(&world, &procs, f, &dog).await;
        let took = o
            .recovery_ms()
            .map_or("not recovered".to_owned(), |ms| format!("{ms} ms"));
        eprintln!(
            "[chaos] fault {:>3} {:<32} {:<9} held {:>4} ms, recovered in {took}{}",
            o.fault.index,
            o.fault.kind.name(),
            o.fault.target_name(),
            o.fault.hold_ms,
            o.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        );
        out.push(o);
    }
    out
}

async fn one(world: &World, procs: &Processes, f: Fault, dog: &Watchdog) -> Outcome {
    let injected_ms = world.rec.now_ms();
    let (p, fault) = (procs.clone(), f.clone());
    let pids = tokio::task::spawn_blocking(move || p.inject(&fault))
        .await
        .expect("inject");
    let mut error = None;
    if let Ok(pids) = &pids {
        tokio::time::sleep(Duration::from_millis(f.hold_ms)).await;
        let (p, fault, pids) = (procs.clone(), f.clone(), pids.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || p.heal(&fault, &pids))
            .await
            .expect("heal")
        {
            error = Some(format!("heal: {e:#}"));
        }
    } else if let Err(e) = &pids {
        error = Some(format!("inject: {e:#}"));
    }
    let healed_ms = world.rec.now_ms();
    *dog.held.lock().unwrap() = None;
    let started = Instant::now();
    let mut recovered_ms = None;
    while started.elapsed() < RECOVERY_BOUND {
        if probe(world, &f).await {
            recovered_ms = Some(world.rec.now_ms());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Outcome {
        fault: f,
        injected_ms,
        healed_ms,
        recovered_ms,
        error,
    }
}

/// Whether the fault's target serves again: a cell takes an event, answers
/// an authorization itself and serves an app read; a global replica is
/// ready and routes an event.
async fn probe(world: &World, f: &Fault) -> bool {
    if !f.kind.is_cell() {
        let r = (f.target - 1) as usize;
        let Some(base) = world.globals.get(r) else {
            return false;
        };
        let ready = world.client.get(format!("{base}/readyz")).send().await;
        if !matches!(ready, Ok(resp) if resp.status().is_success()) {
            return false;
        }
        let c = world.next_id() as usize % world.customers.len();
        return world.send_event(c, 100, Some(r), 1).await;
    }
    let customers = world.of_cell(f.target);
    if customers.is_empty() {
        return true;
    }
    let c = customers[world.next_id() as usize % customers.len()];
    world.send_event(c, 100, None, 1).await
        && world.authorize(c, 1, None).await
        && world.login_follow(c, None).await
}
