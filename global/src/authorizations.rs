//! Card authorizations from the network: looks up the card's shard and
//! forwards the request to that shard's authorizer with a deadline. When the
//! shard cannot answer in time global stands in with a decline, logged and
//! counted, so the network always gets a decision.

use std::time::Instant;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest, Decision, Merchant};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::pan::Pan;
use cellbank_shared::problem::Problem;

use crate::cell_client::CellError;
use crate::directory::{DirectoryError, IdentifierKind};
use crate::error::ApiResult;
use crate::metrics;
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/authorizations", post(authorize))
}

#[derive(Deserialize)]
struct NetworkRequest {
    pan: String,
    amount: i64,
    currency: Currency,
    merchant: Merchant,
    network_reference: String,
}

fn validate_merchant(m: &Merchant) -> Result<(), Problem> {
    if m.name.trim().is_empty() || m.name.len() > 200 {
        return Err(Problem::invalid(
            "merchant.name",
            "must be 1 to 200 characters",
        ));
    }
    if m.mcc.len() != 4 || !m.mcc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Problem::invalid("merchant.mcc", "must be 4 digits"));
    }
    if m.country.len() != 2 || !m.country.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Problem::invalid(
            "merchant.country",
            "must be an ISO 3166-1 alpha-2 code, e.g. BR",
        ));
    }
    Ok(())
}

fn stand_in(reason: &str) -> Json<AuthorizationDecision> {
    Json(AuthorizationDecision {
        decision: Decision::Declined,
        reason: reason.to_owned(),
        authorization_id: uuid::Uuid::now_v7(),
    })
}

/// The hot path records onto the request's span (customer, shard) rather than
/// opening a span of its own.
async fn authorize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NetworkRequest>,
) -> ApiResult<impl IntoResponse> {
    let started = Instant::now();
    let pan = Pan::parse(&body.pan).map_err(|e| Problem::invalid("pan", e.to_string()))?;
    Money::positive(body.amount, body.currency)
        .map_err(|e| Problem::invalid("amount", e.to_string()))?;
    validate_merchant(&body.merchant)?;
    let reference = body.network_reference.trim();
    if reference.is_empty() || reference.len() > 64 {
        return Err(Problem::invalid("network_reference", "must be 1 to 64 characters").into());
    }
    let span = tracing::Span::current();
    let pan_hash = state.pan_hasher.hash(&pan);
    let placement = match state
        .directory
        .resolve(IdentifierKind::Card, &pan_hash)
        .await
    {
        Ok(p) => p,
        Err(DirectoryError::NotFound(_)) => return Ok(stand_in("unknown_card")),
        Err(e) => return Err(e.into()),
    };
    span.record(
        "customer_id",
        tracing::field::display(&placement.customer_id),
    );
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    let shard = state.directory.shard(&placement.shard_id).await?;
    let request = AuthorizationRequest {
        customer_id: placement.customer_id,
        epoch: placement.epoch,
        pan_hash,
        amount: body.amount,
        currency: body.currency,
        merchant: body.merchant,
        network_reference: reference.to_owned(),
    };
    let deadline = state.settings.routing.authorization_timeout();
    let answer: Result<AuthorizationDecision, CellError> = state
        .cell_client
        .call(&shard, "/internal/v1/authorizations", &request, deadline)
        .await;
    metrics::observe_routing("authorization", started.elapsed().as_secs_f64());
    match answer {
        Ok(decision) => Ok(Json(decision)),
        Err(CellError::Timeout { .. }) => {
            metrics::stand_in(shard.id.as_str(), "stand_in_timeout");
            tracing::warn!(shard_id = %shard.id, network_reference = reference, "authorization stand-in: shard did not answer in time");
            Ok(stand_in("stand_in_timeout"))
        }
        Err(e) => {
            metrics::stand_in(shard.id.as_str(), "shard_unavailable");
            tracing::warn!(shard_id = %shard.id, network_reference = reference, error = %e, "authorization stand-in: shard unavailable");
            Ok(stand_in("shard_unavailable"))
        }
    }
}
