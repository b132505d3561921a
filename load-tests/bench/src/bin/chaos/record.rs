//! What the load saw: one sample per request (when, which cell, ok or not,
//! how long), every event a partner got a 2xx for, every approval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;
use uuid::Uuid;

/// The request a sample is of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Event,
    Batch,
    Authorization,
    Login,
}

#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Milliseconds since the run started, when the request was sent.
    pub at_ms: u32,
    pub op: Op,
    /// The shard cell (1-based) the request was for; 0 when not known.
    pub cell: u32,
    pub ok: bool,
    pub latency_us: u32,
}

/// An event a partner got a 2xx for.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub cell: u32,
    pub amount: i64,
}

/// An approval a partner was answered.
#[derive(Clone, Debug)]
pub struct Approval {
    pub card_id: Uuid,
    pub reference: String,
    pub authorization_id: Uuid,
    pub amount: i64,
}

pub struct Recorder {
    pub started: Instant,
    samples: Mutex<Vec<Sample>>,
    accepted: Mutex<HashMap<String, Accepted>>,
    /// Every event sent, accepted or not: (customer, amount).
    sent: Mutex<HashMap<String, (usize, i64)>>,
    approvals: Mutex<Vec<Approval>>,
    /// Events given up on (never a 2xx), by last status.
    gave_up: Mutex<HashMap<String, u64>>,
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            samples: Mutex::new(Vec::with_capacity(1 << 16)),
            accepted: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            approvals: Mutex::new(Vec::new()),
            gave_up: Mutex::new(HashMap::new()),
        }
    }

    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub fn sample(&self, op: Op, cell: u32, sent: Instant, ok: bool) {
        let s = Sample {
            at_ms: sent.duration_since(self.started).as_millis() as u32,
            op,
            cell,
            ok,
            latency_us: sent.elapsed().as_micros().min(u32::MAX as u128) as u32,
        };
        self.samples.lock().unwrap().push(s);
    }

    pub fn accept(&self, event_id: String, a: Accepted) {
        self.accepted.lock().unwrap().insert(event_id, a);
    }

    pub fn sent(&self, event_id: &str, customer: usize, amount: i64) {
        self.sent
            .lock()
            .unwrap()
            .insert(event_id.to_owned(), (customer, amount));
    }

    pub fn sent_events(&self) -> HashMap<String, (usize, i64)> {
        self.sent.lock().unwrap().clone()
    }

    pub fn approve(&self, a: Approval) {
        self.approvals.lock().unwrap().push(a);
    }

    pub fn give_up(&self, why: String) {
        *self.gave_up.lock().unwrap().entry(why).or_default() += 1;
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    pub fn accepted(&self) -> HashMap<String, Accepted> {
        self.accepted.lock().unwrap().clone()
    }

    pub fn approvals(&self) -> Vec<Approval> {
        self.approvals.lock().unwrap().clone()
    }

    pub fn gave_up(&self) -> HashMap<String, u64> {
        self.gave_up.lock().unwrap().clone()
    }
}

/// The `q` quantile (0..1) of latencies in ms; 0 when empty.
pub fn quantile_ms(mut lat_us: Vec<u32>, q: f64) -> f64 {
    if lat_us.is_empty() {
        return 0.0;
    }
    lat_us.sort_unstable();
    let i = ((lat_us.len() as f64 - 1.0) * q).round() as usize;
    f64::from(lat_us[i]) / 1000.0
}
