//! Transactional outboxes relayed to the cell's broker: rows written in the
//! same transaction as the change they describe, published in id order
//! (so per customer in commit order) keyed by customer, then marked sent or
//! deleted.

use std::time::Duration;

use anyhow::Context as _;
use cellbank_shared::kafka::{Producer, Topic};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One outbox table and where it goes.
#[derive(Clone, Copy, Debug)]
pub struct Outbox {
    /// For logs.
    pub name: &'static str,
    /// A table with `id bigserial`, `customer_id uuid`, `sent_at timestamptz`.
    pub table: &'static str,
    /// Joins after `FROM <table> o` that the payload reads (may be empty).
    pub joins_sql: &'static str,
    /// The SQL expression of a record's JSON, over `o` (the table) and the joins.
    pub payload_sql: &'static str,
    pub topic: Topic,
    /// The advisory lock that makes one replica of the cell the relay.
    pub lock: i64,
    /// What becomes of a row once the broker has it.
    pub sent: Sent,
}

/// What the relay does with a row the broker acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Marked (`sent_at`) and kept: readers of the table need them.
    Mark,
    /// Deleted at once: the log keeps them, and a delete writes less than
    /// an update (no new row version).
    Delete,
}

/// How many rows one pass publishes.
const BATCH: i64 = 500;

/// Relays unsent rows until cancelled, on one replica of the cell at a time
/// (the holder of an advisory lock on a connection of its own; if that
/// replica dies, its connection and lock go and another takes over). Two
/// relays would publish the same rows twice and race each other's order.
pub async fn relay(
    outbox: Outbox,
    pool: PgPool,
    producer: Producer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match hold_relay_lock(&pool, outbox.lock).await {
            Ok(Some(conn)) => {
                tracing::info!(outbox = outbox.name, "this replica relays the outbox");
                relay_while_held(&outbox, &pool, &producer, &shutdown, conn).await;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(outbox = outbox.name, error = %e, "take the relay lock failed")
            }
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
}

/// A connection holding the relay lock, or `None` if another replica has it.
/// The connection is detached from the pool: however the relay ends, even
/// dropped mid-flight, closing it releases the lock.
async fn hold_relay_lock(pool: &PgPool, lock: i64) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lock)
        .fetch_one(&mut conn)
        .await?;
    Ok(held.then_some(conn))
}

/// Relays until stopped or until the lock's connection fails.
async fn relay_while_held(
    outbox: &Outbox,
    pool: &PgPool,
    producer: &Producer,
    shutdown: &CancellationToken,
    mut lock: PgConnection,
) {
    loop {
        let sent = match relay_once(outbox, pool, producer).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(outbox = outbox.name, error = %format!("{e:#}"), "relay failed");
                0
            }
        };
        if shutdown.is_cancelled() {
            break;
        }
        if sent == 0 {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(20)) => {},
            }
            // Still ours? A broken connection lost the lock with it.
            if sqlx::query("SELECT 1").execute(&mut lock).await.is_err() {
                tracing::warn!(
                    outbox = outbox.name,
                    "the relay lock's connection failed; giving the relay up"
                );
                return;
            }
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(outbox.lock)
        .execute(&mut lock)
        .await;
}

/// Publishes the oldest unsent rows, then marks them sent. A crash between
/// the two publishes them again: every reader dedupes by the record's `seq`.
async fn relay_once(outbox: &Outbox, pool: &PgPool, producer: &Producer) -> anyhow::Result<usize> {
    let rows: Vec<(i64, Uuid, serde_json::Value)> = sqlx::query_as(&format!(
        "SELECT o.id, o.customer_id, {} FROM {} o {} WHERE o.sent_at IS NULL ORDER BY o.id LIMIT {BATCH}",
        outbox.payload_sql, outbox.table, outbox.joins_sql
    ))
    .fetch_all(pool)
    .await
    .context("read outbox")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let payloads: Vec<(String, Vec<u8>)> = rows
        .iter()
        .map(|(_, customer, payload)| {
            let bytes = serde_json::to_vec(payload).expect("JSON serializes");
            (customer.to_string(), bytes)
        })
        .collect();
    // Polled in order by join_all, so enqueued (and kept by the idempotent producer) in order.
    let topic = outbox.topic.name();
    let sends = payloads
        .iter()
        .map(|(k, v)| producer.send(topic, k.as_bytes(), v, &[]));
    for r in futures::future::join_all(sends).await {
        r.context("produce outbox record")?;
    }
    let ids: Vec<i64> = rows.iter().map(|(id, _, _)| *id).collect();
    let done = match outbox.sent {
        Sent::Mark => format!(
            "UPDATE {} SET sent_at = now() WHERE id = ANY($1)",
            outbox.table
        ),
        Sent::Delete => format!("DELETE FROM {} WHERE id = ANY($1)", outbox.table),
    };
    sqlx::query(&done)
        .bind(&ids)
        .execute(pool)
        .await
        .context("mark rows sent")?;
    Ok(rows.len())
}
