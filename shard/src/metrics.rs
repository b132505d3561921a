//! The cell's own Prometheus metrics (served with the shared ones on `/metrics`).

use std::sync::LazyLock;

use cellbank_shared::metrics::LATENCY_BUCKETS;
use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge_vec,
    Histogram, IntCounter, IntCounterVec, IntGaugeVec,
};

pub static POSTINGS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shard_ledger_postings_total",
        "Ledger postings (entry legs) written"
    )
    .expect("register")
});

pub static EVENTS_APPLIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "shard_ledger_events_total",
        "Business events by outcome (applied, duplicate)",
        &["outcome"]
    )
    .expect("register")
});

pub static AUTH_LATENCY: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "shard_authorization_duration_seconds",
        "Authorization decision latency, including publishing the decision",
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register")
});

pub static DECISIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "shard_authorization_decisions_total",
        "Authorization decisions by reason",
        &["decision", "reason"]
    )
    .expect("register")
});

pub static DEAD_LETTERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shard_dead_letters_stored_total",
        "Dead-lettered messages the mortician stored"
    )
    .expect("register")
});

pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "shard_consumer_lag",
        "Messages behind the high watermark, by consumer group, topic and partition",
        &["group", "topic", "partition"]
    )
    .expect("register")
});

pub static SNAPSHOT_SECONDS: LazyLock<prometheus::Gauge> = LazyLock::new(|| {
    prometheus::register_gauge!(
        "shard_authorizer_snapshot_seconds",
        "How long the last authorizer snapshot took (the next waits ten times as long)"
    )
    .expect("register")
});

/// Transfers started here, by where they settle (`within_cell`, `between_cells`).
pub static TRANSFERS_STARTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "shard_transfers_started_total",
        "Transfers booked by the cell's customers, by where they settle",
        &["route"]
    )
    .expect("register")
});

/// Pending transfers settled here by global, by outcome (`completed`, `failed`).
pub static TRANSFERS_SETTLED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "shard_transfers_settled_total",
        "Transfers between cells settled back in the sender's cell, by outcome",
        &["state"]
    )
    .expect("register")
});

/// Hand-offs of transfers to global, by outcome (`handed`, `failed`).
pub static TRANSFER_HANDOFFS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "shard_transfer_handoffs_total",
        "Hand-offs of transfers to global's transfer service, by outcome",
        &["outcome"]
    )
    .expect("register")
});

pub fn transfer_started(route: &str) {
    TRANSFERS_STARTED.with_label_values(&[route]).inc();
}

pub fn observe_snapshot(seconds: f64) {
    SNAPSHOT_SECONDS.set(seconds);
}

/// Registers every metric so `/metrics` lists them before first use.
pub fn init() {
    LazyLock::force(&SNAPSHOT_SECONDS);
    LazyLock::force(&POSTINGS);
    LazyLock::force(&EVENTS_APPLIED);
    LazyLock::force(&AUTH_LATENCY);
    LazyLock::force(&DECISIONS);
    LazyLock::force(&DEAD_LETTERS);
    LazyLock::force(&CONSUMER_LAG);
    LazyLock::force(&TRANSFERS_STARTED);
    LazyLock::force(&TRANSFERS_SETTLED);
    LazyLock::force(&TRANSFER_HANDOFFS);
}
