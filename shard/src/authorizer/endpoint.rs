//! `POST /internal/v1/authorizations`: global asks the authorizer to decide a purchase.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest};
use cellbank_shared::money::Money;
use cellbank_shared::problem::ApiJson;

use crate::authorizer::AuthorizeError;
use crate::error::ApiError;
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new().route("/internal/v1/authorizations", post(authorize))
}

#[tracing::instrument(skip_all, fields(customer_id = %req.customer_id, shard_id = %s.shard_id))]
async fn authorize(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<AuthorizationRequest>,
) -> Result<Json<AuthorizationDecision>, ApiError> {
    Money::positive(req.amount, req.currency)
        .map_err(|e| ApiError::invalid("amount", e.to_string()))?;
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
    match s.authorizer.authorize(&req).await {
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
