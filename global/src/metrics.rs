//! The router's own Prometheus metrics: routing latency, cache hits and
//! misses, produce failures and stand-in decisions per shard.

use std::sync::LazyLock;

use prometheus::{
    register_gauge_vec, register_histogram_vec, register_int_counter_vec, GaugeVec, HistogramVec,
    IntCounterVec,
};

use cellbank_shared::metrics::LATENCY_BUCKETS;

static ROUTING_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "global_routing_duration_seconds",
        "Time from a routed request's arrival to the shard's answer or acknowledgement",
        &["path"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register global_routing_duration_seconds")
});

static CACHE_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_directory_cache_lookups_total",
        "Directory cache lookups by cache and result (hit ratio = hit / (hit + miss))",
        &["cache", "result"]
    )
    .expect("register global_directory_cache_lookups_total")
});

static HIT_RATIO: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "global_directory_cache_hit_ratio",
        "Share of directory lookups answered from the cache since start",
        &["cache"]
    )
    .expect("register global_directory_cache_hit_ratio")
});

static ROUTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_events_routed_total",
        "Events acknowledged by a shard broker",
        &["shard"]
    )
    .expect("register global_events_routed_total")
});

static PRODUCE_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_produce_failures_total",
        "Events a shard broker did not acknowledge, or refused while its breaker was open",
        &["shard", "reason"]
    )
    .expect("register global_produce_failures_total")
});

static STAND_INS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_authorization_stand_ins_total",
        "Authorizations global declined on a shard's behalf",
        &["shard", "reason"]
    )
    .expect("register global_authorization_stand_ins_total")
});

static FEED_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_directory_feed_publish_failures_total",
        "Directory changes that could not be announced on the feed",
        &["change"]
    )
    .expect("register global_directory_feed_publish_failures_total")
});

static TRANSFERS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_transfers_finished_total",
        "Transfers between cells settled by the transfer service, by final state (completed, failed)",
        &["state"]
    )
    .expect("register global_transfers_finished_total")
});

static TRANSFER_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "global_transfer_duration_seconds",
        "End-to-end time of a transfer between cells, from the sender's request to its settlement in the sender's cell, by final state",
        &["state"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register global_transfer_duration_seconds")
});

static TRANSFERS_OPEN: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        "global_transfers_open",
        "Transfers the service holds by state (crediting, voiding, delivering, returning), as last counted",
        &["state"]
    )
    .expect("register global_transfers_open")
});

static TRANSFER_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_transfer_step_retries_total",
        "Transfer steps that could not be made and wait to be retried, by state",
        &["state"]
    )
    .expect("register global_transfer_step_retries_total")
});

/// A transfer reached its final `state` `seconds` after it was asked for.
pub fn transfer_finished(state: &str, seconds: f64) {
    TRANSFERS_FINISHED.with_label_values(&[state]).inc();
    TRANSFER_LATENCY
        .with_label_values(&[state])
        .observe(seconds);
}

pub fn transfers_open(state: &str, n: i64) {
    TRANSFERS_OPEN.with_label_values(&[state]).set(n as f64);
}

pub fn transfer_retry(state: &str) {
    TRANSFER_RETRIES.with_label_values(&[state]).inc();
}

pub fn observe_routing(path: &str, seconds: f64) {
    ROUTING_LATENCY.with_label_values(&[path]).observe(seconds);
}

pub fn cache_hit(cache: &str) {
    CACHE_LOOKUPS.with_label_values(&[cache, "hit"]).inc();
}

pub fn cache_miss(cache: &str) {
    CACHE_LOOKUPS.with_label_values(&[cache, "miss"]).inc();
}

pub fn routed(shard: &str) {
    ROUTED.with_label_values(&[shard]).inc();
}

pub fn produce_failed(shard: &str, reason: &str) {
    PRODUCE_FAILURES.with_label_values(&[shard, reason]).inc();
}

pub fn stand_in(shard: &str, reason: &str) {
    STAND_INS.with_label_values(&[shard, reason]).inc();
}
static REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "global_requests_refused_total",
        "Requests global refused to protect others: a partner over its rate, a login burst",
        &["reason"]
    )
    .expect("register global_requests_refused_total")
});

/// A request refused to protect the others (`login_busy`, `partner_rate`, ...).
pub fn refused(reason: &str) {
    REFUSED.with_label_values(&[reason]).inc();
}

pub fn feed_publish_failed(change: &str) {
    FEED_FAILURES.with_label_values(&[change]).inc();
}

/// Recomputes the hit-ratio gauges from the lookup counters.
pub fn update_hit_ratio() {
    for cache in ["identifier", "placement"] {
        let hits = CACHE_LOOKUPS.with_label_values(&[cache, "hit"]).get() as f64;
        let misses = CACHE_LOOKUPS.with_label_values(&[cache, "miss"]).get() as f64;
        let ratio = if hits + misses > 0.0 {
            hits / (hits + misses)
        } else {
            0.0
        };
        HIT_RATIO.with_label_values(&[cache]).set(ratio);
    }
}

/// Registers every metric so `/metrics` lists them before first use.
pub fn register() {
    for path in ["event", "batch", "authorization"] {
        ROUTING_LATENCY.with_label_values(&[path]);
    }
    for cache in ["identifier", "placement"] {
        for result in ["hit", "miss"] {
            CACHE_LOOKUPS.with_label_values(&[cache, result]);
        }
    }
    update_hit_ratio();
    LazyLock::force(&ROUTED);
    LazyLock::force(&PRODUCE_FAILURES);
    LazyLock::force(&STAND_INS);
    LazyLock::force(&FEED_FAILURES);
    LazyLock::force(&REFUSED);
    LazyLock::force(&TRANSFERS_FINISHED);
    LazyLock::force(&TRANSFER_LATENCY);
    LazyLock::force(&TRANSFERS_OPEN);
    LazyLock::force(&TRANSFER_RETRIES);
}
