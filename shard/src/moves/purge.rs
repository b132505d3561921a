//! Purging a customer's copy: the target's after an abort (the customer is
//! still importing), the source's once the move is completed (the customer
//! moved out; a marker stays). Deleted in small batches, each in its own
//! transaction under the customer's lock, so a purge never holds long
//! locks, and a purge cut short is finished by repeating it.

use axum::extract::{Path, State};
use axum::Json;
use cellbank_shared::contract::moves::MoveCall;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::problem::ApiJson;
use serde::Serialize;
use uuid::Uuid;

use super::{claim, Role};
use crate::error::ApiError;
use crate::placement::{self, CustomerState, Refused};
use crate::state::AppState;

/// Rows deleted per transaction.
const BATCH: i64 = 5_000;

/// The customer's tables, children first; each `DELETE` takes one batch.
const TABLES: [&str; 7] = [
    "DELETE FROM postings WHERE id IN (SELECT id FROM postings WHERE customer_id = $1 LIMIT $2)",
    "DELETE FROM events WHERE (customer_id, namespace, event_id) IN
       (SELECT customer_id, namespace, event_id FROM events WHERE customer_id = $1 LIMIT $2)",
    "DELETE FROM book_accounts WHERE id IN (SELECT id FROM book_accounts WHERE customer_id = $1 LIMIT $2)",
    "DELETE FROM card_purchases WHERE (card_id, network_reference) IN
       (SELECT card_id, network_reference FROM card_purchases WHERE customer_id = $1 LIMIT $2)",
    // A transfer id is unique per sender only: another customer's transfer
    // with the same id stays.
    "DELETE FROM transfers WHERE (customer_id, transfer_id) IN
       (SELECT customer_id, transfer_id FROM transfers WHERE customer_id = $1 LIMIT $2)",
    "DELETE FROM cards WHERE card_id IN (SELECT card_id FROM cards WHERE customer_id = $1 LIMIT $2)",
    "DELETE FROM accounts WHERE account_id IN (SELECT account_id FROM accounts WHERE customer_id = $1 LIMIT $2)",
];

#[derive(Serialize)]
pub struct Purged {
    pub rows: u64,
}

/// `POST /internal/v1/moves/{id}/purge`.
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %call.customer_id))]
pub async fn purge(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(call): ApiJson<MoveCall>,
) -> Result<Json<Purged>, ApiError> {
    let c = call.customer_id;
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM moves WHERE move_id = $1")
        .bind(move_id)
        .fetch_optional(&s.pool)
        .await?;
    let role = match role.as_deref() {
        Some("source") => Role::Source,
        Some(_) => Role::Target,
        // Never imported here: nothing to purge.
        None => return Ok(Json(Purged { rows: 0 })),
    };
    let keep_marker = role == Role::Source;
    let mut rows = 0;
    loop {
        let mut tx = s.pool.begin().await?;
        claim(&mut tx, move_id, c, role, call.attempt).await?;
        let p = match placement::lock(&mut tx, c).await {
            Err(Refused::UnknownCustomer(_)) => break,
            other => other?,
        };
        let purgeable = match role {
            Role::Target => p.state == CustomerState::Importing,
            Role::Source => p.state == CustomerState::MovedOut,
        };
        if !purgeable {
            return Err(ApiError::Conflict(format!(
                "customer {c} is {} here: its copy is not this move's to purge",
                p.state
            )));
        }
        let deleted = delete_batch(&mut tx, c).await?;
        if deleted == 0 {
            forget_customer(&mut tx, c, move_id, p.epoch.0, keep_marker).await?;
            tx.commit().await?;
            break;
        }
        tx.commit().await?;
        rows += deleted;
    }
    tracing::info!(rows, "customer's copy purged");
    Ok(Json(Purged { rows }))
}

/// Deletes the customer's row once its data is gone, keeping a moved-out
/// marker (the source's copy) that the app's old links are answered from.
async fn forget_customer(
    conn: &mut sqlx::PgConnection,
    c: CustomerId,
    move_id: Uuid,
    epoch: i64,
    keep_marker: bool,
) -> Result<(), sqlx::Error> {
    if keep_marker {
        sqlx::query(
            "INSERT INTO moved_out_customers (customer_id, move_id, epoch, moved_to)
             SELECT $1, $2, $3, moved_to FROM customers WHERE customer_id = $1
             ON CONFLICT (customer_id) DO UPDATE
                 SET move_id = $2, epoch = $3, moved_to = EXCLUDED.moved_to, purged_at = now()",
        )
        .bind(c.as_uuid())
        .bind(move_id)
        .bind(epoch)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("DELETE FROM customers WHERE customer_id = $1")
        .bind(c.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Deletes one batch from the first table that still has rows.
async fn delete_batch(conn: &mut sqlx::PgConnection, c: CustomerId) -> Result<u64, sqlx::Error> {
    for sql in TABLES {
        let n = sqlx::query(sql)
            .bind(c.as_uuid())
            .bind(BATCH)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if n > 0 {
            return Ok(n);
        }
    }
    Ok(0)
}
