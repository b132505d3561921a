//! `POST /internal/v1/authorizations`: global asks the authorizer to decide a
//! purchase. The replica holding the lease decides; any other forwards to it
//! (see [`super::lease`]).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest};
use cellbank_shared::money::Money;
use cellbank_shared::problem::ApiJson;

use crate::authorizer::lease::Route;
use crate::authorizer::AuthorizeError;
use crate::error::ApiError;
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new().route("/internal/v1/authorizations", post(authorize))
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
