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
}

/// Refreshes [`CONSUMER_LAG`] for `groups` (consumer group, topic) every `every`.
pub async fn watch_lag(
    bootstrap: String,
    groups: Vec<(String, &'static str)>,
    every: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let (b, g) = (bootstrap.clone(), groups.clone());
        let r = tokio::task::spawn_blocking(move || measure_lag(&b, &g)).await;
        if let Ok(Err(e)) = r {
            tracing::debug!(error = %format!("{e:#}"), "measure consumer lag failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {},
        }
    }
}

/// Total lag of `group` on `topic` (also updates [`CONSUMER_LAG`]).
pub async fn lag_of(bootstrap: &str, group: &str, topic: &'static str) -> anyhow::Result<i64> {
    let (b, g) = (bootstrap.to_owned(), vec![(group.to_owned(), topic)]);
    tokio::task::spawn_blocking(move || measure_lag(&b, &g)).await?
}

fn measure_lag(bootstrap: &str, groups: &[(String, &'static str)]) -> anyhow::Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Offset, TopicPartitionList};
    use std::time::Duration;
    let mut total = 0;
    for (group, topic) in groups {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()?;
        let md = c.fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let mut tpl = TopicPartitionList::new();
        let mut highs = Vec::new();
        for t in md.topics() {
            for p in t.partitions() {
                tpl.add_partition(topic, p.id());
                let (_, hi) = c.fetch_watermarks(topic, p.id(), Duration::from_secs(5))?;
                highs.push((p.id(), hi));
            }
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(5))?;
        for (p, hi) in highs {
            let pos = committed
                .find_partition(topic, p)
                .and_then(|e| match e.offset() {
                    Offset::Offset(o) => Some(o),
                    _ => None,
                })
                .unwrap_or(0);
            let lag = (hi - pos).max(0);
            total += lag;
            CONSUMER_LAG
                .with_label_values(&[group.as_str(), topic, &p.to_string()])
                .set(lag);
        }
    }
    Ok(total)
}
