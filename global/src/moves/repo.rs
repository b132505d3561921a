//! The moves table: creating a move after its preflight in the directory,
//! reading and listing them, an operator's abort, and the lease a mover
//! holds. Every write of a mover is conditioned on its attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, ShardId};

use super::{Move, MoveError, Phase};
use crate::directory::DirectoryError;

pub const COLUMNS: &str = "id, customer_id, from_shard, to_shard, from_epoch, phase, reason,
    abort_requested, copied_version, copied_events, rounds, attempt, requested_by, source_copy,
    created_at, updated_at, frozen_at, flipped_at, finished_at, freeze_ms, timings";

#[derive(FromRow)]
pub struct MoveRow {
    id: Uuid,
    customer_id: Uuid,
    from_shard: String,
    to_shard: String,
    from_epoch: i64,
    phase: String,
    reason: Option<String>,
    abort_requested: Option<String>,
    copied_version: i64,
    copied_events: i64,
    rounds: i32,
    attempt: i64,
    requested_by: String,
    source_copy: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    frozen_at: Option<DateTime<Utc>>,
    flipped_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    freeze_ms: Option<f64>,
    timings: sqlx::types::Json<serde_json::Map<String, serde_json::Value>>,
}

impl TryFrom<MoveRow> for Move {
    type Error = DirectoryError;
    fn try_from(r: MoveRow) -> Result<Self, DirectoryError> {
        let corrupt = |what: &str| DirectoryError::Corrupt(format!("move {}: {what}", r.id));
        Ok(Move {
            id: r.id,
            customer_id: CustomerId::from_uuid(r.customer_id),
            from: ShardId::parse(&r.from_shard).map_err(|_| corrupt("from_shard"))?,
            to: ShardId::parse(&r.to_shard).map_err(|_| corrupt("to_shard"))?,
            from_epoch: r.from_epoch,
            phase: Phase::parse(&r.phase).ok_or_else(|| corrupt("phase"))?,
            reason: r.reason,
            abort_requested: r.abort_requested,
            copied_version: r.copied_version,
            copied_events: r.copied_events,
            rounds: r.rounds,
            attempt: r.attempt,
            requested_by: r.requested_by,
            source_copy: r.source_copy,
            created_at: r.created_at,
            updated_at: r.updated_at,
            frozen_at: r.frozen_at,
            flipped_at: r.flipped_at,
            finished_at: r.finished_at,
            freeze_ms: r.freeze_ms,
            timings: r.timings.0,
        })
    }
}

/// Plans a move of `customer` to `to` after checking, under the customer's
/// row lock, that it is active elsewhere and that `to` is an active shard.
/// One open move per customer (a unique index says so too).
pub async fn create(
    pool: &PgPool,
    customer: CustomerId,
    to: &ShardId,
    requested_by: &str,
) -> Result<Move, DirectoryError> {
    let mut tx = pool.begin().await?;
    let placed: Option<(String, i64, String)> = sqlx::query_as(
        "SELECT shard_id, epoch, state FROM customers WHERE customer_id = $1 FOR UPDATE",
    )
    .bind(customer.as_uuid())
    .fetch_optional(&mut *tx)
    .await?;
    let (from, epoch, state) =
        placed.ok_or_else(|| DirectoryError::NotFound(format!("customer {customer}")))?;
    if state != "active" {
        return Err(DirectoryError::Conflict(format!(
            "customer {customer} is {state}: only an active customer can move"
        )));
    }
    if from == to.as_str() {
        return Err(DirectoryError::Conflict(format!(
            "customer {customer} already lives on {to}"
        )));
    }
    let target: Option<String> = sqlx::query_scalar("SELECT state FROM shards WHERE id = $1")
        .bind(to.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    match target.as_deref() {
        None => return Err(DirectoryError::NotFound(format!("shard {to}"))),
        Some("active") => {}
        Some(s) => {
            return Err(DirectoryError::Conflict(format!(
                "shard {to} is {s}: customers move only to an active shard"
            )))
        }
    }
    let row: MoveRow = sqlx::query_as(&format!(
        "INSERT INTO moves (id, customer_id, from_shard, to_shard, from_epoch, phase, requested_by)
         VALUES ($1, $2, $3, $4, $5, 'planned', $6) RETURNING {COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(customer.as_uuid())
    .bind(&from)
    .bind(to.as_str())
    .bind(epoch)
    .bind(requested_by)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| match DirectoryError::from(e) {
        DirectoryError::Conflict(_) => DirectoryError::Conflict(format!(
            "customer {customer} already has a move in progress"
        )),
        other => other,
    })?;
    tx.commit().await?;
    row.try_into()
}

pub async fn get(pool: &PgPool, id: Uuid) -> Result<Move, DirectoryError> {
    let row: Option<MoveRow> =
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM moves WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.ok_or_else(|| DirectoryError::NotFound(format!("move {id}")))?
        .try_into()
}

/// The newest moves first, optionally of one phase or one customer.
pub async fn list(
    pool: &PgPool,
    phase: Option<Phase>,
    customer: Option<CustomerId>,
    limit: i64,
) -> Result<Vec<Move>, DirectoryError> {
    let rows: Vec<MoveRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM moves
         WHERE ($1::text IS NULL OR phase = $1) AND ($2::uuid IS NULL OR customer_id = $2)
         ORDER BY created_at DESC LIMIT $3"
    ))
    .bind(phase.map(Phase::as_str))
    .bind(customer.map(|c| c.as_uuid()))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Move::try_from).collect()
}

/// Asks the mover to roll the move back at its next step; refused once the
/// directory has flipped (then a move back is the way).
pub async fn request_abort(pool: &PgPool, id: Uuid, reason: &str) -> Result<Move, DirectoryError> {
    let n = sqlx::query(
        "UPDATE moves SET abort_requested = $2, updated_at = now()
         WHERE id = $1 AND phase IN ('planned', 'copying', 'cutover')",
    )
    .bind(id)
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected();
    let mv = get(pool, id).await?;
    if n == 0 && !matches!(mv.phase, Phase::Aborting | Phase::Aborted) {
        return Err(DirectoryError::Conflict(format!(
            "move {id} is {}: past the flip it cannot be aborted; move the customer back instead",
            mv.phase.as_str()
        )));
    }
    Ok(mv)
}

/// Takes over one open move whose lease is free or ran out, raising its
/// attempt (which fences out the previous mover).
pub async fn claim(pool: &PgPool, me: Uuid, ttl: Duration) -> Result<Option<Move>, MoveError> {
    let row: Option<MoveRow> = sqlx::query_as(&format!(
        "UPDATE moves SET lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
             attempt = attempt + 1, updated_at = now()
         WHERE id = (SELECT id FROM moves
                     WHERE phase NOT IN ('completed', 'aborted')
                       AND (lease_owner IS NULL OR lease_until < now())
                     ORDER BY created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(me)
    .bind(ttl.as_millis() as f64)
    .fetch_optional(pool)
    .await?;
    row.map(Move::try_from)
        .transpose()
        .map_err(|e| MoveError::Retry(e.to_string()))
}

/// Renews the mover's lease and reads the move back (an operator's abort
/// shows here); a newer attempt means this mover stops.
pub async fn renew(pool: &PgPool, mv: &Move, ttl: Duration) -> Result<Move, MoveError> {
    let row: Option<MoveRow> = sqlx::query_as(&format!(
        "UPDATE moves SET lease_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND attempt = $2 RETURNING {COLUMNS}"
    ))
    .bind(mv.id)
    .bind(mv.attempt)
    .bind(ttl.as_millis() as f64)
    .fetch_optional(pool)
    .await?;
    let row = row.ok_or(MoveError::Superseded(mv.id))?;
    Move::try_from(row).map_err(|e| MoveError::Retry(e.to_string()))
}

/// Keeps the lease of `attempt` alive; false once a newer attempt took the
/// move over.
pub async fn extend(
    pool: &PgPool,
    id: Uuid,
    attempt: i64,
    ttl: Duration,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE moves SET lease_until = now() + $3 * interval '1 millisecond'
         WHERE id = $1 AND attempt = $2",
    )
    .bind(id)
    .bind(attempt)
    .bind(ttl.as_millis() as f64)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n == 1)
}

/// Lets the lease go (the move is over, or this replica stops).
pub async fn release(pool: &PgPool, mv: &Move) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE moves SET lease_owner = NULL WHERE id = $1 AND attempt = $2")
        .bind(mv.id)
        .bind(mv.attempt)
        .execute(pool)
        .await?;
    Ok(())
}

/// A write conditioned on the mover's attempt changed nothing: a newer
/// attempt holds the move.
fn held(rows: u64, mv: &Move) -> Result<(), MoveError> {
    if rows == 0 {
        return Err(MoveError::Superseded(mv.id));
    }
    Ok(())
}

/// Moves the state machine on, as this attempt.
pub async fn set_phase(
    pool: &PgPool,
    mv: &Move,
    phase: Phase,
    reason: Option<&str>,
) -> Result<(), MoveError> {
    let n = sqlx::query(
        "UPDATE moves SET phase = $3, reason = coalesce($4, reason), updated_at = now(),
             finished_at = CASE WHEN $3 IN ('completed', 'aborted') THEN now() ELSE finished_at END
         WHERE id = $1 AND attempt = $2",
    )
    .bind(mv.id)
    .bind(mv.attempt)
    .bind(phase.as_str())
    .bind(reason)
    .execute(pool)
    .await?
    .rows_affected();
    held(n, mv)
}

/// Records the copy's progress (a resumed move copies on from here) and
/// the step timings so far.
pub async fn record_copy(pool: &PgPool, mv: &Move) -> Result<(), MoveError> {
    let n = sqlx::query(
        "UPDATE moves SET copied_version = $3, copied_events = $4, rounds = $5, timings = $6,
             updated_at = now()
         WHERE id = $1 AND attempt = $2",
    )
    .bind(mv.id)
    .bind(mv.attempt)
    .bind(mv.copied_version)
    .bind(mv.copied_events)
    .bind(mv.rounds)
    .bind(sqlx::types::Json(&mv.timings))
    .execute(pool)
    .await?
    .rows_affected();
    held(n, mv)
}

/// Completed moves whose source copy is older than `retention` and still
/// kept, each its customer's latest move (a customer that moved back lives
/// on that source again).
pub async fn expired_source_copies(
    pool: &PgPool,
    retention: Duration,
) -> Result<Vec<Move>, DirectoryError> {
    let rows: Vec<MoveRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM moves m
         WHERE phase = 'completed' AND source_copy = 'kept'
           AND finished_at < now() - $1 * interval '1 second'
           AND NOT EXISTS (SELECT 1 FROM moves l WHERE l.customer_id = m.customer_id
                           AND l.created_at > m.created_at)
         ORDER BY finished_at LIMIT 50"
    ))
    .bind(retention.as_secs_f64())
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(Move::try_from).collect()
}
