//! `POST /internal/v1/transfers`: a cell hands over a transfer whose
//! sender's money it reserved. The caller authenticates with its own cell's
//! internal token (per-cell credentials) and may only hand over transfers of
//! customers it holds or held. Idempotent on the transfer's key: a repeat
//! answers the transfer as it stands, other details under the same key 409.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

use cellbank_shared::contract::{transfer_key, HandOffTransfer};
use cellbank_shared::money::Money;
use cellbank_shared::problem::{ApiJson, Problem};

use super::{repo, Transfer};
use crate::credentials::{normalise_login, validate_login};
use crate::directory::DirectoryError;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/internal/v1/transfers", post(hand_off))
}

/// The cell whose internal token the request bears.
pub struct CellCaller(pub String);

impl FromRequestParts<AppState> for CellCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Problem> {
        let token = cellbank_shared::access::bearer(&parts.headers)
            .ok_or_else(|| Problem::unauthorized("a cell's internal token is required"))?;
        // Every token is compared, in constant time, whichever matches.
        let mut found = None;
        for (shard, secret) in &s.settings.auth.shard_tokens {
            if secret.matches(token) {
                found = Some(shard.clone());
            }
        }
        found
            .map(CellCaller)
            .ok_or_else(|| Problem::unauthorized("not a cell's internal token"))
    }
}

#[tracing::instrument(skip_all, fields(transfer_id = %h.transfer_id, source_shard = %caller.0))]
async fn hand_off(
    State(s): State<AppState>,
    caller: CellCaller,
    headers: HeaderMap,
    ApiJson(h): ApiJson<HandOffTransfer>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if h.source_shard != caller.0 {
        return Err(Problem::forbidden("a cell hands over only its own transfers").into());
    }
    validate(&h)?;
    sender_held_by(&s, &h).await?;
    let key = transfer_key(h.from_customer_id, h.transfer_id);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 128);
    let pool = s.directory.pool();
    let intake = repo::insert(pool, key, &h, traceparent)
        .await
        .map_err(DirectoryError::Unavailable)?;
    match intake {
        repo::Intake::New(t) => {
            s.transfers.wake();
            tracing::info!(transfer_key = %key, "transfer handed over");
            Ok((StatusCode::CREATED, Json(view(&t))))
        }
        repo::Intake::Known(t) => Ok((StatusCode::OK, Json(view(&t)))),
        repo::Intake::Differs => {
            Err(Problem::conflict("this transfer was handed over before with other details").into())
        }
    }
}

fn view(t: &Transfer) -> Value {
    json!({
        "transfer_key": t.transfer_key,
        "transfer_id": t.transfer_id,
        "state": t.state,
    })
}

/// The hand-off's own rules: a positive amount and exactly one recipient,
/// well formed (a login as global keeps it).
fn validate(h: &HandOffTransfer) -> Result<(), Problem> {
    Money::positive(h.amount, h.currency).map_err(|e| Problem::bad_money("amount", &e))?;
    match (&h.to_account_number, &h.to_login) {
        (Some(n), None) => {
            if n.is_empty() || n.len() > 34 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Problem::invalid(
                    "to_account_number",
                    "must be an account number: 1 to 34 digits",
                ));
            }
        }
        (None, Some(login)) => {
            if normalise_login(login) != *login {
                return Err(Problem::invalid("to_login", "must be normalised"));
            }
            validate_login(login)?;
        }
        _ => {
            return Err(Problem::invalid(
                "to_account_number",
                "exactly one of to_account_number or to_login is required",
            ))
        }
    }
    Ok(())
}

/// A cell hands over transfers of customers it holds, or held before a move
/// (a transfer reserved before the move, handed over after it).
async fn sender_held_by(s: &AppState, h: &HandOffTransfer) -> ApiResult<()> {
    for fresh in [false, true] {
        if fresh {
            // The cache may hold the placement before a move in.
            s.directory.forget_customer(h.from_customer_id).await;
        }
        match s.directory.placement(h.from_customer_id).await {
            Ok(p) if p.shard_id.as_str() == h.source_shard => return Ok(()),
            Ok(_) | Err(DirectoryError::NotFound(_)) => {}
            Err(e) => return Err(ApiError::Directory(e)),
        }
    }
    let moved_from: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM moves WHERE customer_id = $1 AND from_shard = $2)",
    )
    .bind(h.from_customer_id.as_uuid())
    .bind(&h.source_shard)
    .fetch_one(s.directory.pool())
    .await
    .map_err(DirectoryError::Unavailable)?;
    if moved_from {
        return Ok(());
    }
    Err(Problem::forbidden("the sender is not a customer of this cell").into())
}
