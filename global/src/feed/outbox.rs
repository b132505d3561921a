//! The directory outbox: changes kept in the directory database until the
//! global broker acknowledged their announcement.

use std::future::Future;

use sqlx::PgPool;

use crate::directory::Change;

/// Keeps a change until it is announced; answers its sequence number.
pub(super) async fn keep(pool: &PgPool, change: &Change) -> Result<i64, sqlx::Error> {
    let kept =
        sqlx::query_scalar("INSERT INTO directory_outbox (change) VALUES ($1) RETURNING seq")
            .bind(sqlx::types::Json(change))
            .fetch_one(pool)
            .await;
    if let Err(e) = &kept {
        tracing::warn!(error = %e, "could not keep a directory change in the outbox");
    }
    kept
}

/// Forgets an announced change (a failure leaves it to the relay, which
/// announces it again: invalidations are idempotent).
pub(super) async fn forget(pool: &PgPool, seq: i64) {
    if let Err(e) = sqlx::query("DELETE FROM directory_outbox WHERE seq = $1")
        .bind(seq)
        .execute(pool)
        .await
    {
        tracing::warn!(error = %e, seq, "could not clear an announced directory change");
    }
}

/// Publishes the changes left in the outbox for over two seconds, oldest
/// first, and deletes those the broker acknowledged. Replicas relay side by
/// side: each takes rows the others have not locked. Stops at the first
/// failure (the broker is down; the rest waits for the next round).
pub(super) async fn relay<F, Fut>(pool: &PgPool, publish: F) -> anyhow::Result<usize>
where
    F: Fn(Change) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, sqlx::types::Json<Change>)> = sqlx::query_as(
        "SELECT seq, change FROM directory_outbox
          WHERE created_at < now() - interval '2 seconds'
          ORDER BY seq LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut sent = Vec::new();
    let mut failure = None;
    for (seq, change) in rows {
        match publish(change.0).await {
            Ok(()) => sent.push(seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    sqlx::query("DELETE FROM directory_outbox WHERE seq = ANY($1)")
        .bind(&sent)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    if !sent.is_empty() {
        tracing::info!(announced = sent.len(), "directory outbox relayed changes");
    }
    match failure {
        Some(e) => Err(e.context("publish a kept directory change")),
        None => Ok(sent.len()),
    }
}
