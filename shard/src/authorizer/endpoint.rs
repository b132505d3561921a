//! `POST /internal/v1/authorizations`: global asks the authorizer to decide a
//! purchase. The replica holding the lease decides; any other forwards to it
//! (see [`super::lease`]).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Json, Router};
use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest};
use cellbank_shared::money::Money;
use cellbank_shared::problem::ApiJson;

use crate::authorizer::lease::Route;
use crate::authorizer::state::CustomerStatus;
use crate::authorizer::{AuthorizationRecord, AuthorizeError};
use crate::error::ApiError;
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/authorizations", post(authorize))
        .route(
            "/internal/v1/authorizer/customers/{customer_id}",
            get(customer_status),
        )
        .route(
            "/internal/v1/authorizer/customers/{customer_id}/decisions",
            get(decisions),
        )
        .route("/internal/v1/authorizer/carried", post(carried))
        .route(
            "/internal/v1/authorizer/customers/{customer_id}/placement",
            post(placement),
        )
}

/// `GET /internal/v1/authorizer/customers/{id}`: the deciding replica's view
/// of a customer (a move waits on it: approvals stopped, holds booked).
#[tracing::instrument(skip_all, fields(customer_id = %raw))]
async fn customer_status(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<CustomerStatus>, ApiError> {
    let customer = crate::access::parse_customer(&raw)?;
    let path = format!("/internal/v1/authorizer/customers/{customer}");
    let local = async { Ok(s.authorizer.with_state(|st| st.customer_status(customer))) };
    at_leader(&s, &headers, &path, None, local).await
}

/// `GET /internal/v1/authorizer/customers/{id}/decisions`: the customer's
/// decisions within the dedupe window (a move carries them over).
#[tracing::instrument(skip_all, fields(customer_id = %raw))]
async fn decisions(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Json<Vec<AuthorizationRecord>>, ApiError> {
    let customer = crate::access::parse_customer(&raw)?;
    let path = format!("/internal/v1/authorizer/customers/{customer}/decisions");
    let local = async { Ok(s.authorizer.with_state(|st| st.decisions_of(customer))) };
    at_leader(&s, &headers, &path, None, local).await
}

/// `POST /internal/v1/authorizer/carried`: decisions a move carries in
/// from the customer's old cell.
#[tracing::instrument(skip_all, fields(records = recs.len()))]
async fn carried(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(recs): ApiJson<Vec<AuthorizationRecord>>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = serde_json::to_value(&recs).map_err(anyhow::Error::from)?;
    let local = async {
        let n = s.authorizer.carry(recs.clone()).await.map_err(|e| {
            ApiError::Unavailable(format!("the carried decisions were not recorded: {e}"))
        })?;
        Ok(serde_json::json!({ "carried": n }))
    };
    at_leader(
        &s,
        &headers,
        "/internal/v1/authorizer/carried",
        Some(body),
        local,
    )
    .await
}

/// What a move tells the deciding replica directly.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct MovePlacement {
    /// `fenced`, `released` (the fence of an aborted move) or `active`.
    pub state: String,
    pub epoch: i64,
}

/// `POST /internal/v1/authorizer/customers/{id}/placement`: a move's fence,
/// its release, or the customer's activation here, applied at once by the
/// deciding replica (the fact follows through the log).
#[tracing::instrument(skip_all, fields(customer_id = %raw, state = %body.state))]
async fn placement(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<MovePlacement>,
) -> Result<Json<CustomerStatus>, ApiError> {
    let customer = crate::access::parse_customer(&raw)?;
    let path = format!("/internal/v1/authorizer/customers/{customer}/placement");
    let forward = serde_json::to_value(&body).map_err(anyhow::Error::from)?;
    let local = async {
        s.authorizer.with_state(|st| match body.state.as_str() {
            "fenced" => st.fence_for_move(customer, body.epoch, true),
            "released" => st.fence_for_move(customer, body.epoch, false),
            "active" => st.activate(customer, body.epoch),
            _ => {}
        });
        Ok(s.authorizer.with_state(|st| st.customer_status(customer)))
    };
    if !["fenced", "released", "active"].contains(&body.state.as_str()) {
        return Err(ApiError::invalid(
            "state",
            "must be fenced, released or active",
        ));
    }
    at_leader(&s, &headers, &path, Some(forward), local).await
}

/// Runs `local` on the replica holding the lease, or hands the same request
/// (`body`: a POST, else a GET) to that replica and answers what it answered.
async fn at_leader<T, F>(
    s: &AppState,
    headers: &HeaderMap,
    path: &str,
    body: Option<serde_json::Value>,
    local: F,
) -> Result<Json<T>, ApiError>
where
    T: serde::de::DeserializeOwned,
    F: std::future::Future<Output = Result<T, ApiError>>,
{
    let forwarded = headers.contains_key(FORWARDED);
    let leader = match s.lease.route() {
        Route::Decide if s.authorizer.is_ready() => return local.await.map(Json),
        Route::Forward(leader) if !forwarded => leader,
        _ => {
            return Err(ApiError::Unavailable(
                "no replica decides authorizations right now; retry".into(),
            ))
        }
    };
    let url = cellbank_shared::hal::href(&leader, path);
    let req = match body {
        Some(b) => s.forwarder.post(&url).json(&b),
        None => s.forwarder.get(&url),
    };
    let unavailable = |e: reqwest::Error| {
        tracing::warn!(leader = %leader, error = %e, "call to the lease holder failed");
        ApiError::Unavailable("the replica deciding authorizations did not answer; retry".into())
    };
    let resp = req
        .bearer_auth(s.settings.auth.internal_token.expose())
        .header(FORWARDED, s.lease.replica().to_string())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(unavailable)?;
    Ok(Json(resp.json().await.map_err(unavailable)?))
}

#[tracing::instrument(skip_all, fields(customer_id = %req.customer_id, shard_id = %s.shard_id))]
async fn authorize(
    State(s): State<AppState>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AuthorizationRequest>,
) -> Result<Json<AuthorizationDecision>, ApiError> {
    Money::positive(req.amount, req.currency).map_err(|e| ApiError::bad_amount("amount", &e))?;
    let nr = &req.network_reference;
    if nr.is_empty() || nr.len() > 128 {
        return Err(ApiError::invalid(
            "network_reference",
            "must be 1 to 128 characters",
        ));
    }
    if req.pan_hash.is_empty() || req.pan_hash.len() > 128 {
        return Err(ApiError::invalid("pan_hash", "must be 1 to 128 characters"));
    }
    let forwarded = headers.contains_key(FORWARDED);
    match s.lease.route() {
        Route::Decide => decide(&s, &req).await,
        Route::Forward(leader) if !forwarded => forward(&s, &leader, &req).await,
        Route::Forward(_) | Route::NoLeader => Err(ApiError::Unavailable(
            "no replica decides authorizations right now (the lease is changing hands); retry"
                .into(),
        )),
    }
}

/// Marks an authorization one replica forwarded to the lease holder; a
/// replica that is not the holder (any more) answers 503 instead of passing
/// it on again.
pub const FORWARDED: &str = "x-cellbank-forwarded-by";

async fn decide(
    s: &AppState,
    req: &AuthorizationRequest,
) -> Result<Json<AuthorizationDecision>, ApiError> {
    match s.authorizer.authorize(req).await {
        Ok(d) => Ok(Json(d)),
        Err(AuthorizeError::NotReady) => Err(ApiError::Unavailable(
            "the authorizer is replaying its log".into(),
        )),
        Err(e @ AuthorizeError::Publish(_)) => {
            tracing::warn!(error = %e, "authorization not published");
            Err(ApiError::Unavailable(
                "the decision could not be recorded".into(),
            ))
        }
    }
}

/// Hands the authorization to the replica holding the lease, with the
/// cell's internal token, and answers what it answered.
async fn forward(
    s: &AppState,
    leader: &str,
    req: &AuthorizationRequest,
) -> Result<Json<AuthorizationDecision>, ApiError> {
    let url = cellbank_shared::hal::href(leader, "/internal/v1/authorizations");
    let sent = s
        .forwarder
        .post(&url)
        .bearer_auth(s.settings.auth.internal_token.expose())
        .header(FORWARDED, s.lease.replica().to_string())
        .json(req)
        .send()
        .await;
    let unavailable = |why: String| {
        tracing::warn!(leader = %leader, why = %why, "forward to the authorizer lease holder failed");
        ApiError::Unavailable("the replica deciding authorizations did not answer; retry".into())
    };
    let resp = sent.map_err(|e| unavailable(e.to_string()))?;
    if resp.status() != reqwest::StatusCode::OK {
        return Err(unavailable(format!("answered {}", resp.status())));
    }
    let decision = resp
        .json::<AuthorizationDecision>()
        .await
        .map_err(|e| unavailable(e.to_string()))?;
    Ok(Json(decision))
}
