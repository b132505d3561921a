//! `GET /admin/v1/summary`: what the cell holds, and its trial balance.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

pub fn admin_router() -> Router<AppState> {
    Router::new().route("/admin/v1/summary", get(summary))
}

#[derive(Serialize, sqlx::FromRow)]
struct TrialBalance {
    currency: String,
    balance: i64,
}

async fn summary(State(s): State<AppState>) -> Result<Json<serde_json::Value>, ApiError> {
    let (customers, events, auths, dead): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM customers WHERE state = 'active'), (SELECT count(*) FROM events WHERE source = 'inbound'),
                (SELECT count(*) FROM events WHERE source = 'authorization'),
                (SELECT count(*) FROM dead_letters)",
    )
    .fetch_one(&s.pool)
    .await?;
    let trial: Vec<TrialBalance> = sqlx::query_as(
        "SELECT currency, COALESCE(sum(balance), 0)::bigint AS balance FROM book_accounts GROUP BY currency ORDER BY currency",
    )
    .fetch_all(&s.pool)
    .await?;
    let decided = s.authorizer.with_state(|st| st.decisions.len());
    Ok(Json(serde_json::json!({
        "shard_id": s.shard_id,
        "customers": customers,
        "events_applied": events,
        "authorizations": decided,
        "authorizations_booked": auths,
        "dead_letters": dead,
        "trial_balance": trial,
    })))
}
