//! Stragglers: inbound events dead-lettered here for a customer this cell
//! no longer owns (a router replica that missed a move's hold, a stale
//! cache, a partner's retry), the customer's own dead letters left behind by
//! a move, and events a move's fence refused before the move was aborted
//! (the customer is writable here again: they come back here). Global lists them, forwards each to the owner with its
//! event id (so it applies there once) and marks it forwarded here: it then
//! counts at the owner, not here (accepted = applied + dead-lettered).

use axum::extract::{Path, Query, State};
use axum::Json;
use cellbank_shared::contract::moves::Straggler;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::kafka::Topic;
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

/// `GET /internal/v1/stragglers?limit=N`: dead inbound letters of customers
/// that are moved out of here, gone from here, or past their fence marker.
#[tracing::instrument(skip_all)]
pub async fn list(
    State(s): State<AppState>,
    Query(q): Query<Page>,
) -> Result<Json<Vec<Straggler>>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    let rows: Vec<(i64, uuid::Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT d.id, d.customer_id, d.payload FROM dead_letters d
         LEFT JOIN customers c ON c.customer_id = d.customer_id
         WHERE d.status = 'dead' AND d.source_topic = $1 AND d.customer_id IS NOT NULL
           AND (c.customer_id IS NULL OR c.state = 'moved_out'
                OR (c.state = 'fenced' AND c.inbound_fenced)
                -- refused by the fence of a move that was then aborted:
                -- the customer is writable here again
                OR (c.state = 'active' AND d.error LIKE '%is fenced here%'))
         ORDER BY d.id LIMIT $2",
    )
    .bind(Topic::Inbound.name())
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, customer, payload) in rows {
        // Only envelopes can be forwarded; anything else stays dead here.
        let Ok(envelope) = serde_json::from_slice::<serde_json::Value>(&payload) else {
            continue;
        };
        out.push(Straggler {
            id,
            customer_id: CustomerId::from_uuid(customer),
            envelope,
        });
    }
    Ok(Json(out))
}

/// `POST /internal/v1/stragglers/{id}/forwarded`: the owner has it now.
#[tracing::instrument(skip_all, fields(dead_letter = id))]
pub async fn forwarded(
    State(s): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = sqlx::query(
        "UPDATE dead_letters SET status = 'forwarded', forwarded_at = now()
         WHERE id = $1 AND status IN ('dead', 'forwarded')",
    )
    .bind(id)
    .execute(&s.pool)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(ApiError::NotFound(format!("dead letter {id}")));
    }
    Ok(Json(serde_json::json!({ "forwarded": id })))
}
