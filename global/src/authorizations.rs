//! Card authorizations from the network: looks up the card's shard and
//! forwards the request to that shard's authorizer with a deadline. When the
//! shard cannot answer in time global stands in with a decline, logged and
//! counted, so the network always gets a decision. Only partners with the
//! `authorizations` scope are answered.

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest, Decision, Merchant};
use cellbank_shared::http::WaitedOnAFailure;
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::pan::Pan;
use cellbank_shared::problem::Problem;

use crate::cell_client::CellError;
use crate::directory::{DirectoryError, IdentifierKind, Placement};
use crate::error::ApiResult;
use crate::metrics;
use crate::partners::extract::PartnerCaller;
use crate::partners::Scope;
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

/// A decision and, when it is the shard's, the shard's answer as it came:
/// relayed byte for byte instead of encoded again.
struct Decided {
    decision: AuthorizationDecision,
    relayed: Option<bytes::Bytes>,
}

impl IntoResponse for Decided {
    fn into_response(self) -> Response {
        match self.relayed {
            Some(body) => {
                ([(http::header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            None => Json(self.decision).into_response(),
        }
    }
}

fn stand_in(reason: &str) -> Decided {
    Decided {
        decision: AuthorizationDecision {
            decision: Decision::Declined,
            reason: reason.to_owned(),
            authorization_id: uuid::Uuid::now_v7(),
        },
        relayed: None,
    }
}

/// A validated network request, before its card is looked up.
struct Checked {
    pan_hash: String,
    body: NetworkRequest,
    reference: String,
}

fn check(state: &AppState, body: NetworkRequest) -> Result<Checked, Problem> {
    let pan = Pan::parse(&body.pan).map_err(|e| Problem::invalid("pan", e.to_string()))?;
    Money::positive(body.amount, body.currency).map_err(|e| Problem::bad_money("amount", &e))?;
    validate_merchant(&body.merchant)?;
    let reference = body.network_reference.trim().to_owned();
    if reference.is_empty() || reference.len() > 64 {
        return Err(Problem::invalid(
            "network_reference",
            "must be 1 to 64 characters",
        ));
    }
    Ok(Checked {
        pan_hash: state.pan_hasher.hash(&pan),
        body,
        reference,
    })
}

/// Only partners with the `authorizations` scope are answered. Everything
/// after validation, the directory lookup included, runs inside the
/// authorization deadline: past it the network gets a stand-in decline.
async fn authorize(
    State(state): State<AppState>,
    partner: PartnerCaller,
    ApiJson(body): ApiJson<NetworkRequest>,
) -> ApiResult<impl IntoResponse> {
    let started = Instant::now();
    state.partners.admit(&partner.0, Scope::Authorizations, 1)?;
    let checked = check(&state, body)?;
    let deadline = tokio::time::Instant::now() + state.settings.routing.authorization_timeout();
    let reference = checked.reference.clone();
    let answer = tokio::time::timeout_at(deadline, decide(&state, checked, deadline)).await;
    metrics::observe_routing("authorization", started.elapsed().as_secs_f64());
    let decision = answer.unwrap_or_else(|_| {
        metrics::stand_in("-", "stand_in_timeout");
        tracing::warn!(network_reference = %reference, "authorization stand-in: no answer within the deadline");
        stand_in("stand_in_timeout")
    });
    // A stand-in for a cell (or the directory) that did not answer: its
    // wait says nothing about global's own capacity.
    let waited = matches!(
        decision.decision.reason.as_str(),
        "stand_in_timeout" | "shard_unavailable" | "directory_unavailable"
    );
    let mut resp = decision.into_response();
    if waited {
        resp.extensions_mut().insert(WaitedOnAFailure);
    }
    Ok(resp)
}

/// Looks the card up and asks its shard; when the shard says the customer
/// is no longer there at that epoch (a lost directory invalidation), drops
/// the cached placement and asks the owner once more.
async fn decide(state: &AppState, checked: Checked, deadline: tokio::time::Instant) -> Decided {
    let mut stale = None;
    for _ in 0..2 {
        let placement = match state
            .directory
            .resolve(IdentifierKind::Card, &checked.pan_hash)
            .await
        {
            Ok(p) if p.state == "frozen" => match hold(state, &p, deadline).await {
                Some(p) => p,
                None => return stand_in("customer_moving"),
            },
            Ok(p) => p,
            Err(DirectoryError::NotFound(_)) => return stand_in("unknown_card"),
            Err(e) => {
                tracing::warn!(error = %e, "authorization stand-in: directory unavailable");
                metrics::stand_in("-", "directory_unavailable");
                return stand_in("directory_unavailable");
            }
        };
        if stale.as_ref() == Some(&(placement.shard_id.clone(), placement.epoch)) {
            break;
        }
        let decision = forward(state, &checked, &placement, deadline).await;
        let reason = decision.decision.reason.as_str();
        if !MOVED.contains(&reason) {
            return decision;
        }
        tracing::info!(customer_id = %placement.customer_id, shard_id = %placement.shard_id, reason, "stale placement; looking the customer up again");
        state.directory.forget_customer(placement.customer_id).await;
        stale = Some((placement.shard_id.clone(), placement.epoch));
    }
    stand_in("stale_epoch")
}

/// Holds an authorization while a move's cutover freezes its customer, up
/// to a margin before the deadline (so the network gets the stand-in
/// decline `customer_moving`, not a timeout).
async fn hold(
    state: &AppState,
    p: &Placement,
    deadline: tokio::time::Instant,
) -> Option<Placement> {
    let margin = state.settings.routing.authorization_timeout() / 5;
    let until = deadline.checked_sub(margin).unwrap_or(deadline);
    match state.directory.unfrozen(p.customer_id, until).await {
        Ok(Some(p)) => Some(p),
        Ok(None) => {
            metrics::stand_in(p.shard_id.as_str(), "customer_moving");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "authorization held for a move: directory unavailable");
            None
        }
    }
}

/// The shard's answer, checked to be a decision (global reads its reason)
/// and relayed as it came.
fn relay(shard: &crate::directory::Shard, body: bytes::Bytes) -> Result<Decided, CellError> {
    match serde_json::from_slice::<AuthorizationDecision>(&body) {
        Ok(decision) => Ok(Decided {
            decision,
            relayed: Some(body),
        }),
        Err(e) => Err(CellError::Rejected {
            shard: shard.id.clone(),
            status: 200,
            body: format!("undecodable answer: {e}"),
        }),
    }
}

/// How much sooner than the authorization's deadline the shard's call ends.
const CALL_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);

/// What a shard answers when the placement global used is no longer current.
const MOVED: &[&str] = &["stale_epoch", "customer_not_here"];

async fn forward(
    state: &AppState,
    checked: &Checked,
    placement: &Placement,
    deadline: tokio::time::Instant,
) -> Decided {
    let span = tracing::Span::current();
    span.record(
        "customer_id",
        tracing::field::display(&placement.customer_id),
    );
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    let shard = match state.directory.shard(&placement.shard_id).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "authorization stand-in: shard not in the registry");
            return stand_in("shard_unavailable");
        }
    };
    let body = &checked.body;
    let request = AuthorizationRequest {
        customer_id: placement.customer_id,
        epoch: placement.epoch,
        pan_hash: checked.pan_hash.clone(),
        amount: body.amount,
        currency: body.currency,
        merchant: body.merchant.clone(),
        network_reference: checked.reference.clone(),
    };
    // The call ends a little before the authorization's own deadline, so a
    // shard that does not answer is the one named in the stand-in's metric
    // (both timers firing at once left it to chance which one won).
    let left = deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .saturating_sub(CALL_MARGIN);
    let Ok(encoded) = serde_json::to_vec(&request) else {
        return stand_in("shard_unavailable");
    };
    let answer = state
        .cell_client
        .call_raw(&shard, "/internal/v1/authorizations", encoded, left)
        .await
        .and_then(|body| relay(&shard, body));
    let reference = &checked.reference;
    match answer {
        Ok(decided) => decided,
        Err(CellError::Timeout { .. }) => {
            metrics::stand_in(shard.id.as_str(), "stand_in_timeout");
            tracing::warn!(shard_id = %shard.id, network_reference = %reference, "authorization stand-in: shard did not answer in time");
            stand_in("stand_in_timeout")
        }
        Err(e) => {
            metrics::stand_in(shard.id.as_str(), "shard_unavailable");
            tracing::warn!(shard_id = %shard.id, network_reference = %reference, error = %e, "authorization stand-in: shard unavailable");
            stand_in("shard_unavailable")
        }
    }
}
