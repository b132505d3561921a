//! The ops API over the shard registry: list, add and drain shards.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};

use cellbank_shared::ids::ShardId;
use cellbank_shared::problem::Problem;

use crate::directory::{self, Change, NewShard, ShardState};
use crate::error::ApiResult;
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/shards", get(list).post(add))
        .route("/ops/v1/shards/{id}/drain", post(drain))
        .route("/ops/v1/shards/{id}/customers", get(customers))
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://")) && s.len() > 8 && !s.contains(' ')
}

fn validate(s: &NewShard) -> Result<(), Problem> {
    if !is_http_url(&s.public_url) {
        return Err(Problem::invalid(
            "public_url",
            "must be an absolute http(s) url",
        ));
    }
    if !is_http_url(&s.internal_url) {
        return Err(Problem::invalid(
            "internal_url",
            "must be an absolute http(s) url",
        ));
    }
    let b = s.broker_bootstrap.trim();
    if b.is_empty() || b.contains(' ') || !b.contains(':') {
        return Err(Problem::invalid(
            "broker_bootstrap",
            "must be host:port[,host:port...]",
        ));
    }
    if s.capacity <= 0 {
        return Err(Problem::invalid(
            "capacity",
            "must be a positive number of customers",
        ));
    }
    Ok(())
}

#[tracing::instrument(skip_all)]
async fn list(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let shards = state.directory.refresh_shards().await?;
    Ok(Json(serde_json::json!({ "items": shards })))
}

#[tracing::instrument(skip_all, fields(shard_id))]
async fn add(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewShard>,
) -> ApiResult<impl IntoResponse> {
    tracing::Span::current().record("shard_id", tracing::field::display(&body.id));
    validate(&body)?;
    let mut conn = state
        .directory
        .pool()
        .acquire()
        .await
        .map_err(directory::DirectoryError::Unavailable)?;
    let shard = directory::insert_shard(&mut conn, &body).await?;
    state
        .feed
        .announce(Change::Shard {
            shard_id: shard.id.clone(),
        })
        .await;
    tracing::info!(shard_id = %shard.id, "shard registered");
    Ok((StatusCode::CREATED, Json(shard)))
}

#[tracing::instrument(skip_all, fields(shard_id = %id))]
async fn drain(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = ShardId::parse(&id).map_err(|e| Problem::invalid("id", e.to_string()))?;
    let mut conn = state
        .directory
        .pool()
        .acquire()
        .await
        .map_err(directory::DirectoryError::Unavailable)?;
    let shard = directory::set_shard_state(&mut conn, &id, ShardState::Draining).await?;
    state
        .feed
        .announce(Change::Shard {
            shard_id: shard.id.clone(),
        })
        .await;
    tracing::info!(shard_id = %shard.id, "shard draining");
    Ok(Json(shard))
}

#[derive(serde::Deserialize)]
struct CustomersQuery {
    limit: Option<i64>,
}

/// `GET /ops/v1/shards/{id}/customers?limit=N`: the shard's active
/// customers, oldest first (what a rebalance picks from).
async fn customers(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<CustomersQuery>,
) -> ApiResult<impl IntoResponse> {
    let shard = ShardId::parse(&id).map_err(|e| Problem::invalid("id", e.to_string()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=100_000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be 1 to 100000").into());
    }
    state.directory.shard(&shard).await?;
    let ids: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT customer_id FROM customers WHERE shard_id = $1 AND state = 'active'
         ORDER BY created_at, customer_id LIMIT $2",
    )
    .bind(shard.as_str())
    .bind(limit)
    .fetch_all(state.directory.pool())
    .await
    .map_err(directory::DirectoryError::from)?;
    Ok(Json(serde_json::json!({
        "shard": shard,
        "count": ids.len(),
        "customers": ids,
    })))
}
