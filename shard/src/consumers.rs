//! Operator holds on the cell's consumers: `PUT /admin/v1/consumers/{name}/hold`
//! pauses a consumer's partitions (the backlog waits in the cell's log, nothing
//! is skipped), `DELETE` releases it. For maintenance, customer moves and load
//! tests that measure routing apart from the ledger.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use cellbank_shared::kafka::Hold;
use serde::Serialize;

use crate::error::ApiError;
use crate::state::{AppState, Holds};

/// The inbound events consumer (routed events into the ledger).
pub const LEDGER_INBOUND: &str = "ledger-inbound";
/// The authorization decisions consumer (decisions into the ledger).
pub const LEDGER_AUTHORIZATIONS: &str = "ledger-authorizations";
/// The dead-letter consumer.
pub const MORTICIAN: &str = "mortician";

/// One released hold per consumer an operator may hold.
pub fn holds() -> Holds {
    Arc::new(BTreeMap::from(
        [LEDGER_INBOUND, LEDGER_AUTHORIZATIONS, MORTICIAN].map(|n| (n, Hold::default())),
    ))
}

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/consumers", get(list))
        .route("/admin/v1/consumers/{name}/hold", put(hold).delete(release))
}

#[derive(Serialize)]
struct ConsumerHold {
    name: &'static str,
    held: bool,
}

async fn list(State(s): State<AppState>) -> Json<Vec<ConsumerHold>> {
    Json(
        s.holds
            .iter()
            .map(|(name, h)| ConsumerHold {
                name,
                held: h.is_held(),
            })
            .collect(),
    )
}

fn set(s: &AppState, name: &str, held: bool) -> Result<Json<ConsumerHold>, ApiError> {
    let (name, hold) = s.holds.get_key_value(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "consumer {name}; known: {}",
            s.holds.keys().copied().collect::<Vec<_>>().join(", ")
        ))
    })?;
    hold.set(held);
    tracing::warn!(consumer = name, held, "operator changed a consumer hold");
    Ok(Json(ConsumerHold { name, held }))
}

async fn hold(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConsumerHold>, ApiError> {
    set(&s, &name, true)
}

async fn release(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConsumerHold>, ApiError> {
    set(&s, &name, false)
}
