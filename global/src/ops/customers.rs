//! The ops API over customers: show a customer, resolve an identifier through
//! the same cache the router uses, and flip a customer's placement.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;

use cellbank_shared::ids::ShardId;
use cellbank_shared::problem::Problem;

use crate::cards::parse_customer_id;
use crate::directory::{self, Change, IdentifierKind};
use crate::error::ApiResult;
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/customers/{customer_id}", get(show))
        .route("/ops/v1/customers/{customer_id}/placement", put(place))
        .route("/ops/v1/lookup", get(lookup))
}

#[tracing::instrument(skip_all, fields(customer_id = %id, shard_id))]
async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let customer_id = parse_customer_id(&id)?;
    let placement = state.directory.placement(customer_id).await?;
    tracing::Span::current().record("shard_id", tracing::field::display(&placement.shard_id));
    let identifiers = directory::identifiers_of(state.directory.pool(), customer_id).await?;
    Ok(Json(serde_json::json!({
        "customer_id": placement.customer_id,
        "shard": placement.shard_id,
        "epoch": placement.epoch,
        "state": placement.state,
        "identifiers": identifiers,
    })))
}

#[derive(Deserialize)]
struct LookupQuery {
    kind: Option<String>,
    value: Option<String>,
}

#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn lookup(
    State(state): State<AppState>,
    Query(q): Query<LookupQuery>,
) -> ApiResult<impl IntoResponse> {
    let kind: IdentifierKind = q
        .kind
        .as_deref()
        .ok_or_else(|| Problem::invalid("kind", "is required (account or login)"))?
        .parse()
        .map_err(|e: String| Problem::invalid("kind", e))?;
    if kind == IdentifierKind::Card {
        return Err(Problem::invalid("kind", "cards cannot be looked up by value").into());
    }
    let value = q
        .value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Problem::invalid("value", "is required"))?;
    let value = match kind {
        IdentifierKind::Login => crate::credentials::normalise_login(&value),
        _ => value.trim().to_owned(),
    };
    let p = state.directory.resolve(kind, &value).await?;
    let span = tracing::Span::current();
    span.record("customer_id", tracing::field::display(&p.customer_id));
    span.record("shard_id", tracing::field::display(&p.shard_id));
    Ok(Json(serde_json::json!({
        "customer_id": p.customer_id,
        "shard": p.shard_id,
        "epoch": p.epoch,
        "state": p.state,
    })))
}

#[derive(Deserialize)]
struct PlacementBody {
    shard: ShardId,
    /// Flip without moving any data: only to repair a directory that points
    /// at the wrong cell (the data already lives on `shard`).
    #[serde(default)]
    force: bool,
}

/// Points the customer at `shard` under the next epoch without moving any
/// data: refused unless forced (`POST /ops/v1/moves` moves a customer).
#[tracing::instrument(skip_all, fields(customer_id = %id, shard_id))]
async fn place(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PlacementBody>,
) -> ApiResult<impl IntoResponse> {
    let customer_id = parse_customer_id(&id)?;
    if !body.force {
        return Err(Problem::conflict(
            "a placement change moves no data: move the customer with POST /ops/v1/moves \
             (or set \"force\": true to repair a directory entry whose data already lives on that shard)",
        )
        .into());
    }
    tracing::warn!(customer_id = %customer_id, "forced placement change: no data moves");
    tracing::Span::current().record("shard_id", tracing::field::display(&body.shard));
    let mut tx = state
        .directory
        .pool()
        .begin()
        .await
        .map_err(directory::DirectoryError::Unavailable)?;
    let p = directory::reassign(&mut tx, customer_id, &body.shard).await?;
    tx.commit()
        .await
        .map_err(directory::DirectoryError::Unavailable)?;
    state.feed.announce(Change::Customer { customer_id }).await;
    tracing::info!(customer_id = %customer_id, shard_id = %p.shard_id, epoch = %p.epoch, "customer placement changed");
    Ok(Json(serde_json::json!({
        "customer_id": p.customer_id,
        "shard": p.shard_id,
        "epoch": p.epoch,
        "state": p.state,
    })))
}
