//! Consumer lag: how far each of the cell's consumer groups is behind its
//! topic's high watermarks, read from the cell's broker into
//! [`CONSUMER_LAG`] every few seconds.

use crate::metrics::CONSUMER_LAG;

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

/// Total lag of `group` on `topic`: records in the log past its committed
/// offsets (also updates [`CONSUMER_LAG`]).
pub async fn group_lag(bootstrap: &str, group: &str, topic: &'static str) -> anyhow::Result<i64> {
    let (b, g) = (bootstrap.to_owned(), vec![(group.to_owned(), topic)]);
    tokio::task::spawn_blocking(move || measure_lag(&b, &g)).await?
}

fn measure_lag(bootstrap: &str, groups: &[(String, &'static str)]) -> anyhow::Result<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{Offset, TopicPartitionList};
    use std::time::Duration;
    let mut total = 0;
    for (group, topic) in groups {
        let c: BaseConsumer = cellbank_shared::kafka::client_config(bootstrap)
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

/// `GET /internal/v1/lag`: each consumer's lag now (a move's preflight
/// bounds the source's; tests wait for zero).
pub async fn current(
    axum::extract::State(s): axum::extract::State<crate::state::AppState>,
) -> Result<axum::Json<serde_json::Value>, crate::error::ApiError> {
    use crate::consumers::CellConsumer;
    let mut out = Vec::new();
    let mut total = 0;
    for c in CellConsumer::ALL {
        let group = c.group(&s.settings, &s.shard_id);
        let lag = group_lag(&s.settings.kafka.bootstrap, &group, c.topic().name())
            .await
            .map_err(|e| {
                crate::error::ApiError::Unavailable(format!(
                    "the broker did not say the lag: {e:#}"
                ))
            })?;
        total += lag;
        out.push(serde_json::json!({"consumer": c.name(), "group": group, "lag": lag}));
    }
    Ok(axum::Json(
        serde_json::json!({"total": total, "consumers": out}),
    ))
}
