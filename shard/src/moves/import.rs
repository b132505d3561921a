//! The target's import: a customer's history replayed, in version order,
//! through the same functions the live write paths use, while the customer
//! is `importing` here (nothing but the move writes it). Each event keeps
//! its source version, so a repeated or resumed import skips what it has:
//! the import is idempotent, batch by batch.

use axum::extract::{Path, State};
use axum::Json;
use cellbank_shared::contract::moves::{HistoryEvent, ImportBatch, Imported};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::problem::ApiJson;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{claim, Role};
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::store;
use crate::placement::{self, CustomerState, Placement, Refused};
use crate::state::AppState;

/// `POST /internal/v1/moves/{move_id}/import`: one batch, one transaction.
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %b.customer_id, events = b.events.len()))]
pub async fn import(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(b): ApiJson<ImportBatch>,
) -> Result<Json<Imported>, ApiError> {
    let mut tx = s.pool.begin().await?;
    claim(&mut tx, move_id, b.customer_id, Role::Target, b.attempt).await?;
    let mut placed = begin(&mut tx, b.customer_id).await?;
    let mut applied = 0;
    // What this cell holds of the customer's history (not its counter, which
    // a duplicate delivered here may have moved past its last event).
    let mut version: i64 =
        sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM events WHERE customer_id = $1")
            .bind(b.customer_id.as_uuid())
            .fetch_one(&mut *tx)
            .await?;
    for ev in &b.events {
        if ev.version <= version {
            continue;
        }
        placed = Some(import_one(&mut tx, b.customer_id, placed, ev).await?);
        version = ev.version;
        applied += 1;
    }
    sqlx::query("UPDATE moves SET imported = $2, updated_at = now() WHERE move_id = $1")
        .bind(move_id)
        .bind(version)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(Imported { version, applied }))
}

/// Locks the customer for the import: new here, importing already, or
/// coming back after moving out. A customer this cell owns is refused.
async fn begin(conn: &mut PgConnection, c: CustomerId) -> Result<Option<Placement>, ApiError> {
    match placement::lock(conn, c).await {
        Err(Refused::UnknownCustomer(_)) => {
            // Coming back after its copy here was purged: the marker goes.
            sqlx::query("DELETE FROM moved_out_customers WHERE customer_id = $1")
                .bind(c.as_uuid())
                .execute(&mut *conn)
                .await?;
            Ok(None)
        }
        Err(e) => Err(e.into()),
        Ok(p) => match p.state {
            CustomerState::Importing => Ok(Some(p)),
            CustomerState::MovedOut => Ok(Some(
                placement::set_for_move(conn, &p, CustomerState::Importing, None).await?,
            )),
            state => Err(ApiError::Conflict(format!(
                "customer {c} is {state} here: a move cannot import it"
            ))),
        },
    }
}

/// Replays one event and gives it its source version.
async fn import_one(
    conn: &mut PgConnection,
    c: CustomerId,
    placed: Option<Placement>,
    ev: &HistoryEvent,
) -> Result<Placement, ApiError> {
    let change: Change = serde_json::from_value(ev.payload.clone())
        .map_err(|e| ApiError::invalid("events", format!("event {}: {e}", ev.event_id)))?;
    let created = matches!(change, Change::CustomerCreated { .. });
    if placed.is_none() != created {
        return Err(ApiError::Conflict(format!(
            "event {} at version {}: a customer's history here starts with its creation, once",
            ev.event_id, ev.version
        )));
    }
    let invalid =
        |e: anyhow::Error| ApiError::invalid("events", format!("event {}: {e:#}", ev.event_id));
    if let Some(le) = history::ledger_event(c, ev.epoch, &ev.event_id, &change).map_err(invalid)? {
        store::apply_import(conn, &le).await?;
    } else if let Change::Placement { .. } = change {
        // The placement steps of the customer's past belong to the cells
        // that made them: recorded, not replayed.
        history::record(conn, c, ev.epoch, &ev.event_id, &change).await?;
    } else {
        history::apply(conn, c, ev.epoch, &ev.event_id, &change).await?;
    }
    sqlx::query(
        "UPDATE events SET version = $4 WHERE customer_id = $1 AND namespace = $2 AND event_id = $3",
    )
    .bind(c.as_uuid())
    .bind(&ev.namespace)
    .bind(&ev.event_id)
    .bind(ev.version)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE customers SET version = $2 WHERE customer_id = $1")
        .bind(c.as_uuid())
        .bind(ev.version)
        .execute(&mut *conn)
        .await?;
    match placed {
        // The row the creation made, locked once and marked importing.
        None => {
            let p = placement::lock(conn, c).await?;
            Ok(placement::set_for_move(conn, &p, CustomerState::Importing, None).await?)
        }
        Some(p) => Ok(Placement {
            version: ev.version,
            ..p
        }),
    }
}
