//! This cell's side of a customer move, driven by global's mover over the
//! internal API: the source exports the customer's history and fences it,
//! the target imports the history and is activated at the next epoch, both
//! answer a digest to compare. Every step is idempotent, and each names the
//! mover's attempt: a step from an older attempt than one already seen (a
//! mover that was paused and replaced) is refused, so it cannot act.

pub mod export;
pub mod fence;
pub mod import;
pub mod purge;
pub mod stragglers;

use axum::routing::{get, post};
use axum::Router;
use sqlx::PgConnection;
use uuid::Uuid;

use cellbank_shared::ids::CustomerId;

use crate::error::ApiError;
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route(
            "/internal/v1/customers/{customer_id}/history",
            get(export::history),
        )
        .route(
            "/internal/v1/customers/{customer_id}/digest",
            get(export::digest),
        )
        .route(
            "/internal/v1/customers/{customer_id}/drain",
            get(fence::drain_status),
        )
        .route("/internal/v1/moves/{move_id}/import", post(import::import))
        .route("/internal/v1/moves/{move_id}/fence", post(fence::fence))
        .route("/internal/v1/moves/{move_id}/unfence", post(fence::unfence))
        .route(
            "/internal/v1/moves/{move_id}/moved-out",
            post(fence::moved_out),
        )
        .route(
            "/internal/v1/moves/{move_id}/activate",
            post(fence::activate),
        )
        .route("/internal/v1/moves/{move_id}/purge", post(purge::purge))
        .route("/internal/v1/stragglers", get(stragglers::list))
        .route("/internal/v1/lag", get(crate::lag::current))
        .route(
            "/internal/v1/stragglers/{id}/forwarded",
            post(stragglers::forwarded),
        )
}

/// This cell's part in a move.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Source,
    Target,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

/// Records the move (before its first effect here) and checks the caller's
/// attempt is the newest seen, under the move row's lock until the caller's
/// transaction ends (so two attempts never act here at once). Answers the
/// source version imported so far (target).
pub async fn claim(
    conn: &mut PgConnection,
    move_id: Uuid,
    customer: CustomerId,
    role: Role,
    attempt: i64,
) -> Result<i64, ApiError> {
    let row: Option<(i64, String, Uuid)> = sqlx::query_as(
        "INSERT INTO moves (move_id, customer_id, role, attempt) VALUES ($1, $2, $3, $4)
         ON CONFLICT (move_id) DO UPDATE SET attempt = EXCLUDED.attempt, updated_at = now()
             WHERE moves.attempt <= EXCLUDED.attempt
         RETURNING imported, role, customer_id",
    )
    .bind(move_id)
    .bind(customer.as_uuid())
    .bind(role.as_str())
    .bind(attempt)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((imported, r, c)) = row else {
        return Err(ApiError::Conflict(format!(
            "move {move_id}: attempt {attempt} was superseded by a newer attempt"
        )));
    };
    if r != role.as_str() || c != customer.as_uuid() {
        return Err(ApiError::Conflict(format!(
            "move {move_id} is this cell's {r} move of customer {c}"
        )));
    }
    Ok(imported)
}
