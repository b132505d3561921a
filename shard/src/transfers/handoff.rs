//! The hand-off of reserved transfers to global's transfer service: each is
//! written to the cell's outbox in the transaction that reserves it, sent as
//! soon as the relay is woken (right after the commit) and again after any
//! failure, with backoff, until global acknowledges it. Global's intake is
//! idempotent on the transfer, so a hand-off sent twice (a crash between the
//! acknowledgement and the mark, two replicas) changes nothing. The cell
//! authenticates with its own internal token (per-cell credentials).

use std::sync::Arc;
use std::time::Duration;

use cellbank_shared::contract::HandOffTransfer;
use futures::StreamExt as _;
use sqlx::{PgConnection, PgPool};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::settings::Settings;

/// Hand-offs sent per relay pass, and at once.
const BATCH: i64 = 64;
const IN_FLIGHT: usize = 16;

/// A cheap handle on the relay's client and its wake-up call.
#[derive(Clone)]
pub struct Handoff {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    url: String,
    token: cellbank_shared::secret::Secret,
    wake: Notify,
}

impl Handoff {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let http = cellbank_shared::http_client::builder(&settings.tls)?
            .timeout(Duration::from_secs(3))
            .build()?;
        let url = cellbank_shared::hal::href(&settings.global.url, "/internal/v1/transfers");
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                url,
                token: settings.auth.internal_token.clone(),
                wake: Notify::new(),
            }),
        })
    }

    /// Tells the relay a hand-off is waiting.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// Sends one hand-off, continuing the sender's trace; Ok once global
    /// holds it durably (201 new, 200 known).
    async fn send(
        &self,
        request: &serde_json::Value,
        traceparent: Option<&str>,
    ) -> Result<(), String> {
        let mut req = self
            .inner
            .http
            .post(&self.inner.url)
            .bearer_auth(self.inner.token.expose())
            .json(request);
        if let Some(tp) = traceparent {
            req = req.header("traceparent", tp);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("global did not answer: {e}"))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(format!("global answered {status}: {body}"))
    }
}

/// Writes a hand-off to the outbox (the caller's transaction), with the
/// current trace for global to continue.
pub async fn enqueue(conn: &mut PgConnection, h: &HandOffTransfer) -> Result<(), sqlx::Error> {
    let traceparent = cellbank_shared::telemetry::current_trace_headers().remove("traceparent");
    let request = serde_json::to_value(h).expect("a hand-off encodes");
    sqlx::query(
        "INSERT INTO transfer_handoffs (customer_id, transfer_id, request, traceparent)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(h.from_customer_id.as_uuid())
    .bind(h.transfer_id)
    .bind(request)
    .bind(traceparent)
    .execute(conn)
    .await?;
    Ok(())
}

/// Runs the relay until `stop`: a pass when woken, every second anyway, and
/// after a failure with a backoff growing to 5 s.
pub async fn relay(pool: PgPool, handoff: Handoff, stop: CancellationToken) -> anyhow::Result<()> {
    let mut failures: u32 = 0;
    loop {
        let wait = match failures {
            0 => Duration::from_secs(1),
            n => Duration::from_millis(100u64 << n.min(6)).min(Duration::from_secs(5)),
        };
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = handoff.inner.wake.notified(), if failures == 0 => {}
            () = tokio::time::sleep(wait) => {}
        }
        match pass(&pool, &handoff).await {
            Ok(0) => failures = 0,
            Ok(_) => failures += 1,
            Err(e) => {
                tracing::warn!(error = %e, "reading the transfer outbox failed");
                failures += 1;
            }
        }
    }
}

type Waiting = (Uuid, Uuid, serde_json::Value, Option<String>);

/// Sends what waits, a batch at a time; answers how many sends failed
/// (then stops, to back off).
async fn pass(pool: &PgPool, handoff: &Handoff) -> Result<usize, sqlx::Error> {
    loop {
        let rows: Vec<Waiting> = sqlx::query_as(
            "SELECT customer_id, transfer_id, request, traceparent FROM transfer_handoffs
             WHERE handed_at IS NULL ORDER BY created_at LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        let full = rows.len() as i64 == BATCH;
        let sent: Vec<(Uuid, Uuid, Result<(), String>)> = futures::stream::iter(rows)
            .map(|(c, t, req, tp)| async move { (c, t, handoff.send(&req, tp.as_deref()).await) })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        let failed = mark(pool, &sent).await?;
        if failed > 0 || !full {
            return Ok(failed);
        }
    }
}

/// Marks the acknowledged hand-offs and counts the attempts of the others.
async fn mark(
    pool: &PgPool,
    sent: &[(Uuid, Uuid, Result<(), String>)],
) -> Result<usize, sqlx::Error> {
    let (mut ok_c, mut ok_t, mut bad_c, mut bad_t) = (vec![], vec![], vec![], vec![]);
    for (c, t, r) in sent {
        match r {
            Ok(()) => {
                ok_c.push(*c);
                ok_t.push(*t);
            }
            Err(why) => {
                tracing::warn!(transfer_id = %t, error = %why, "handing a transfer to global failed; will retry");
                bad_c.push(*c);
                bad_t.push(*t);
            }
        }
    }
    let metric = &crate::metrics::TRANSFER_HANDOFFS;
    metric
        .with_label_values(&["handed"])
        .inc_by(ok_c.len() as u64);
    metric
        .with_label_values(&["failed"])
        .inc_by(bad_c.len() as u64);
    for (cs, ts, set) in [
        (&ok_c, &ok_t, "handed_at = now(), attempts = attempts + 1"),
        (&bad_c, &bad_t, "attempts = attempts + 1"),
    ] {
        if cs.is_empty() {
            continue;
        }
        sqlx::query(&format!(
            "UPDATE transfer_handoffs SET {set}
             WHERE (customer_id, transfer_id) IN (SELECT * FROM unnest($1::uuid[], $2::uuid[]))"
        ))
        .bind(cs)
        .bind(ts)
        .execute(pool)
        .await?;
    }
    Ok(bad_c.len())
}
