//! The transfer service's durable state in the directory database: intake
//! (idempotent on the transfer key), claims under a lease, and every change
//! of stage conditioned on holding the lease and on the stage it leaves, so
//! a replica that lost its lease changes nothing.

use std::time::Duration;

use cellbank_shared::contract::HandOffTransfer;
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use super::{Stage, Transfer};

const COLUMNS: &str = "transfer_key, transfer_id, from_customer_id, source_shard, from_account_id, \
    amount, currency, to_account_number, to_login, state, reason, to_customer_id, to_shard, \
    credit_shards, attempts, last_error, traceparent, requested_at, accepted_at, credited_at, finished_at";

#[derive(FromRow)]
struct Row {
    transfer_key: Uuid,
    transfer_id: Uuid,
    from_customer_id: Uuid,
    source_shard: String,
    from_account_id: Uuid,
    amount: i64,
    currency: String,
    to_account_number: Option<String>,
    to_login: Option<String>,
    state: String,
    reason: Option<String>,
    to_customer_id: Option<Uuid>,
    to_shard: Option<String>,
    credit_shards: Vec<String>,
    attempts: i32,
    last_error: Option<String>,
    traceparent: Option<String>,
    requested_at: DateTime<Utc>,
    accepted_at: DateTime<Utc>,
    credited_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<Row> for Transfer {
    fn from(r: Row) -> Self {
        Transfer {
            transfer_key: r.transfer_key,
            transfer_id: r.transfer_id,
            from_customer_id: r.from_customer_id,
            source_shard: r.source_shard,
            from_account_id: r.from_account_id,
            amount: r.amount,
            currency: r.currency,
            to_account_number: r.to_account_number,
            to_login: r.to_login,
            // The column's check allows only known stages.
            state: Stage::parse(&r.state).unwrap_or(Stage::Crediting),
            reason: r.reason,
            to_customer_id: r.to_customer_id,
            to_shard: r.to_shard,
            credit_shards: r.credit_shards,
            attempts: r.attempts,
            last_error: r.last_error,
            traceparent: r.traceparent,
            requested_at: r.requested_at,
            accepted_at: r.accepted_at,
            credited_at: r.credited_at,
            finished_at: r.finished_at,
        }
    }
}

/// What the intake made of a hand-off.
pub enum Intake {
    /// Taken now.
    New(Transfer),
    /// Taken before, with the same details.
    Known(Transfer),
    /// The key is taken by a transfer with other details.
    Differs,
}

/// Takes a hand-off once: a repeat answers the transfer as it stands.
pub async fn insert(
    pool: &PgPool,
    key: Uuid,
    h: &HandOffTransfer,
    traceparent: Option<&str>,
) -> Result<Intake, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "INSERT INTO transfers (transfer_key, transfer_id, from_customer_id, source_shard,
             from_account_id, amount, currency, to_account_number, to_login, traceparent, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (transfer_key) DO NOTHING RETURNING {COLUMNS}"
    ))
    .bind(key)
    .bind(h.transfer_id)
    .bind(h.from_customer_id.as_uuid())
    .bind(&h.source_shard)
    .bind(h.from_account_id)
    .bind(h.amount)
    .bind(h.currency.code())
    .bind(&h.to_account_number)
    .bind(&h.to_login)
    .bind(traceparent)
    .bind(h.requested_at)
    .fetch_optional(pool)
    .await?;
    if let Some(r) = row {
        return Ok(Intake::New(r.into()));
    }
    let Some(t) = find(pool, key).await? else {
        // Deleted in between: nothing deletes transfers.
        return Err(sqlx::Error::RowNotFound);
    };
    let same = t.transfer_id == h.transfer_id
        && t.from_customer_id == h.from_customer_id.as_uuid()
        && t.from_account_id == h.from_account_id
        && t.amount == h.amount
        && t.currency == h.currency.code()
        && t.to_account_number == h.to_account_number
        && t.to_login == h.to_login;
    Ok(if same {
        Intake::Known(t)
    } else {
        Intake::Differs
    })
}

pub async fn find(pool: &PgPool, key: Uuid) -> Result<Option<Transfer>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM transfers WHERE transfer_key = $1"
    ))
    .bind(key)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// The latest transfers, optionally in one stage, newest first.
pub async fn list(
    pool: &PgPool,
    stage: Option<Stage>,
    limit: i64,
) -> Result<Vec<Transfer>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM transfers WHERE ($1::text IS NULL OR state = $1)
         ORDER BY accepted_at DESC LIMIT $2"
    ))
    .bind(stage.map(Stage::as_str))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// Claims up to `n` open transfers that are due and not leased (new ones,
/// ones waiting for a retry, ones whose driver died) for `me`.
pub async fn claim(
    pool: &PgPool,
    me: Uuid,
    ttl: Duration,
    n: i64,
) -> Result<Vec<Transfer>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "UPDATE transfers SET lease_owner = $1, lease_until = now() + make_interval(secs => $2)
         WHERE transfer_key IN (
             SELECT transfer_key FROM transfers
             WHERE state NOT IN ('completed', 'failed') AND next_at <= now()
               AND (lease_until IS NULL OR lease_until < now())
             ORDER BY next_at LIMIT $3 FOR UPDATE SKIP LOCKED)
         RETURNING {COLUMNS}"
    ))
    .bind(me)
    .bind(ttl.as_secs_f64())
    .bind(n)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// A change of stage and what it learned.
#[derive(Default)]
pub struct Advance<'a> {
    pub reason: Option<&'a str>,
    pub to_customer_id: Option<Uuid>,
    pub to_shard: Option<&'a str>,
    pub credited: bool,
}

/// Moves `t` from its stage to `to`, renewing the lease (released at a
/// final stage); `None` when `me` no longer holds it or it moved on.
pub async fn advance(
    pool: &PgPool,
    t: &Transfer,
    me: Uuid,
    ttl: Duration,
    to: Stage,
    what: Advance<'_>,
) -> Result<Option<Transfer>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE transfers SET state = $4, reason = coalesce($5, reason),
             to_customer_id = coalesce($6, to_customer_id), to_shard = coalesce($7, to_shard),
             credited_at = CASE WHEN $8 THEN now() ELSE credited_at END,
             finished_at = CASE WHEN $9 THEN now() ELSE finished_at END,
             attempts = 0, last_error = NULL, next_at = now(),
             lease_owner = CASE WHEN $9 THEN NULL ELSE lease_owner END,
             lease_until = CASE WHEN $9 THEN NULL ELSE now() + make_interval(secs => $10) END
         WHERE transfer_key = $1 AND lease_owner = $2 AND state = $3
         RETURNING {COLUMNS}"
    ))
    .bind(t.transfer_key)
    .bind(me)
    .bind(t.state.as_str())
    .bind(to.as_str())
    .bind(what.reason)
    .bind(what.to_customer_id)
    .bind(what.to_shard)
    .bind(what.credited)
    .bind(to.is_final())
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Records, before the call, that a credit goes to `shard` (and renews the
/// lease); `None` when `me` no longer holds the transfer or it moved on.
pub async fn note_credit_shard(
    pool: &PgPool,
    t: &Transfer,
    me: Uuid,
    ttl: Duration,
    shard: &str,
) -> Result<Option<Transfer>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(&format!(
        "UPDATE transfers SET
             credit_shards = CASE WHEN $4 = ANY(credit_shards) THEN credit_shards
                                  ELSE array_append(credit_shards, $4) END,
             lease_until = now() + make_interval(secs => $5)
         WHERE transfer_key = $1 AND lease_owner = $2 AND state = $3
         RETURNING {COLUMNS}"
    ))
    .bind(t.transfer_key)
    .bind(me)
    .bind(t.state.as_str())
    .bind(shard)
    .bind(ttl.as_secs_f64())
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Into::into))
}

/// Leaves `t` in its stage to be retried after `after`, with the error,
/// and gives up the lease.
pub async fn retry(
    pool: &PgPool,
    t: &Transfer,
    me: Uuid,
    after: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE transfers SET attempts = attempts + 1, last_error = $3,
             next_at = now() + make_interval(secs => $4), lease_owner = NULL, lease_until = NULL
         WHERE transfer_key = $1 AND lease_owner = $2",
    )
    .bind(t.transfer_key)
    .bind(me)
    .bind(error.chars().take(500).collect::<String>())
    .bind(after.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(())
}

/// How many transfers are in each open stage.
pub async fn open_counts(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT state, count(*) FROM transfers WHERE state NOT IN ('completed', 'failed')
         GROUP BY state",
    )
    .fetch_all(pool)
    .await
}
