//! The mortician: stores dead-lettered messages (with their error and headers)
//! in the cell's database, lists them, and republishes one or all to their
//! source topic after a fix.

use async_trait::async_trait;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use cellbank_shared::envelope::headers::{CUSTOMER_ID, EVENT_ID};
use cellbank_shared::kafka::dead_letter_headers as dlq;
use cellbank_shared::kafka::{Handler, HandlerError, Record, Topic};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::metrics;
use crate::state::AppState;

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/dead-letters", get(list))
        .route("/admin/v1/dead-letters/{id}/republish", post(republish_one))
        .route("/admin/v1/dead-letters/republish-all", post(republish_all))
}

/// Consumes Topic::DeadLetters into the `dead_letters` table, once per dead
/// letter position, per source message and consumer, and per event id while
/// the event is dead.
pub struct Mortician {
    pool: PgPool,
}

impl Mortician {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

#[async_trait]
impl Handler for Mortician {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let transient = |e: sqlx::Error| {
            HandlerError::Transient(anyhow::Error::new(e).context("store dead letter"))
        };
        let mut tx = self.pool.begin().await.map_err(transient)?;
        let mut stored = 0;
        for r in batch {
            let headers: serde_json::Map<String, serde_json::Value> = r
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
                    )
                })
                .collect();
            let n = sqlx::query(
                "INSERT INTO dead_letters (dl_partition, dl_offset, customer_id, source_topic, source_partition,
                                           source_offset, msg_key, error, headers, payload, source_group, event_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
            )
            .bind(r.partition)
            .bind(r.offset)
            .bind(customer_of(r))
            .bind(r.header_str(dlq::SOURCE_TOPIC).unwrap_or("unknown"))
            .bind(r.header_str(dlq::SOURCE_PARTITION).and_then(|p| p.parse::<i32>().ok()))
            .bind(r.header_str(dlq::SOURCE_OFFSET).and_then(|p| p.parse::<i64>().ok()))
            .bind(r.key.as_deref())
            .bind(r.header_str(dlq::ERROR).unwrap_or("unknown"))
            .bind(serde_json::Value::Object(headers))
            .bind(&r.payload)
            .bind(r.header_str(dlq::CONSUMER_GROUP))
            .bind(r.header_str(EVENT_ID))
            .execute(&mut *tx)
            .await
            .map_err(transient)?
            .rows_affected();
            stored += n;
        }
        tx.commit().await.map_err(transient)?;
        metrics::DEAD_LETTERS.inc_by(stored);
        Ok(())
    }
}

/// The customer a dead letter belongs to: its header, or else its key (the
/// authorizer's decisions carry no headers and are keyed by customer).
fn customer_of(r: &Record) -> Option<uuid::Uuid> {
    r.header_str(CUSTOMER_ID)
        .or_else(|| r.key.as_deref().and_then(|k| std::str::from_utf8(k).ok()))
        .and_then(|c| uuid::Uuid::parse_str(c).ok())
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    source_topic: String,
    source_partition: Option<i32>,
    source_offset: Option<i64>,
    msg_key: Option<Vec<u8>>,
    error: String,
    headers: serde_json::Value,
    payload: Vec<u8>,
    status: String,
    dead_lettered_at: DateTime<Utc>,
}

#[derive(Serialize)]
struct Item {
    id: i64,
    source_topic: String,
    partition: Option<i32>,
    offset: Option<i64>,
    key: Option<String>,
    error: String,
    headers: serde_json::Value,
    payload: String,
    payload_encoding: &'static str,
    status: String,
    dead_lettered_at: DateTime<Utc>,
}

impl From<Row> for Item {
    fn from(r: Row) -> Self {
        let (payload, payload_encoding) = match String::from_utf8(r.payload) {
            Ok(s) => (s, "utf8"),
            Err(e) => (
                base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                "base64",
            ),
        };
        Item {
            id: r.id,
            source_topic: r.source_topic,
            partition: r.source_partition,
            offset: r.source_offset,
            key: r.msg_key.map(|k| String::from_utf8_lossy(&k).into_owned()),
            error: r.error,
            headers: r.headers,
            payload,
            payload_encoding,
            status: r.status,
            dead_lettered_at: r.dead_lettered_at,
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<String>,
    status: Option<String>,
}

const COLUMNS: &str = "id, source_topic, source_partition, source_offset, msg_key, error, headers, payload, status, dead_lettered_at";

async fn list(
    State(s): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let limit = match q.limit.as_deref() {
        None => 100,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 1000"))?,
    };
    if let Some(st) = q.status.as_deref() {
        if !["dead", "republished", "forwarded"].contains(&st) {
            return Err(ApiError::invalid(
                "status",
                "must be dead, republished or forwarded",
            ));
        }
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM dead_letters WHERE ($1::text IS NULL OR status = $1) ORDER BY id DESC LIMIT $2"
    ))
    .bind(q.status)
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    let items: Vec<Item> = rows.into_iter().map(Item::from).collect();
    Ok(Json(serde_json::json!({ "items": items })))
}

/// Sends the original message back to its source topic (without the dlq headers).
async fn republish(s: &AppState, r: &Row) -> Result<(), ApiError> {
    let Some(topic) = Topic::from_name(&r.source_topic) else {
        return Err(ApiError::Conflict(format!(
            "dead letter {} has an unknown source topic {}",
            r.id, r.source_topic
        )));
    };
    let headers: Vec<(String, Vec<u8>)> = r
        .headers
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| !k.starts_with("dlq-"))
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.as_bytes().to_vec())))
                .collect()
        })
        .unwrap_or_default();
    let refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    // Marked republished in the same transaction that holds the row while the
    // message is produced: a failure of the republished message waits for
    // this transaction and is stored as a new dead letter, never dropped as
    // a duplicate of this one; a failed produce leaves it dead.
    let mut tx = s.pool.begin().await?;
    let claimed = sqlx::query(
        "UPDATE dead_letters SET status = 'republished', republished_at = now()
         WHERE id = $1 AND status = 'dead'",
    )
    .bind(r.id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        return Err(ApiError::Conflict(format!(
            "dead letter {} was republished already",
            r.id
        )));
    }
    s.producer
        .send(
            topic.name(),
            r.msg_key.as_deref().unwrap_or_default(),
            &r.payload,
            &refs,
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("republish failed: {e}")))?;
    tx.commit().await?;
    Ok(())
}

async fn republish_one(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: i64 = raw
        .parse()
        .map_err(|_| ApiError::invalid("id", "must be an integer"))?;
    let row: Row = sqlx::query_as(&format!("SELECT {COLUMNS} FROM dead_letters WHERE id = $1"))
        .bind(id)
        .fetch_optional(&s.pool)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("dead letter {id}")))?;
    republish(&s, &row).await?;
    Ok(Json(serde_json::json!({ "republished": 1 })))
}

async fn republish_all(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    // A page at a time: memory stays bounded however many there are. Only
    // what was dead when the request came: a republished message that fails
    // again is a new dead letter, for the next request, not this loop.
    let last: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM dead_letters")
        .fetch_one(&s.pool)
        .await?;
    let last = last.unwrap_or(0);
    let mut after = 0i64;
    let mut n = 0;
    loop {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM dead_letters WHERE status = 'dead' AND id > $1 AND id <= $2
             ORDER BY id LIMIT 100"
        ))
        .bind(after)
        .bind(last)
        .fetch_all(&s.pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for r in &rows {
            match republish(&s, r).await {
                Ok(()) => n += 1,
                // republished meanwhile by another request
                Err(ApiError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(Json(serde_json::json!({ "republished": n })))
}
