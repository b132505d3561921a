//! Authorizations that the network neither settles nor reverses stop holding
//! the limit after a business time (`authorizer.hold_expiry_secs`; card
//! networks use days). Every so often the cell books an
//! `authorization_expired` event for each such hold, in the cell's own
//! namespace (idempotent: one per purchase), releasing it in the ledger; its
//! card fact names the authorization, so the authorizer drops the hold too.

use std::time::Duration;

use anyhow::Context as _;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::Currency;
use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::event::{Body, CardRef, LedgerEvent};
use super::store;

#[derive(sqlx::FromRow)]
struct OpenHold {
    customer_id: Uuid,
    card_id: Uuid,
    network_reference: String,
    currency: String,
    epoch: i64,
}

/// Expires holds older than `expiry` until cancelled, looking every `every`.
pub async fn run(
    pool: PgPool,
    expiry: chrono::TimeDelta,
    every: Duration,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match expire_due(&pool, expiry).await {
            Ok(n) if n > 0 => tracing::info!(expired = n, "authorization holds expired"),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "expire authorization holds failed")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Books the expiry of every due hold of an active customer; how many.
pub async fn expire_due(pool: &PgPool, expiry: chrono::TimeDelta) -> anyhow::Result<usize> {
    let due: Vec<OpenHold> = sqlx::query_as(
        "SELECT p.customer_id, p.card_id, p.network_reference, c.currency, u.epoch
         FROM card_purchases p
         JOIN cards c ON c.card_id = p.card_id
         JOIN customers u ON u.customer_id = p.customer_id
         WHERE p.status = 'authorized' AND NOT p.released AND p.authorized_at < $1
           AND u.state = 'active'
         ORDER BY p.authorized_at LIMIT 500",
    )
    .bind(Utc::now() - expiry)
    .fetch_all(pool)
    .await
    .context("find due holds")?;
    let mut expired = 0;
    for hold in &due {
        let mut tx = pool.begin().await?;
        // A customer moved or raised meanwhile refuses it; the next round retries.
        match store::apply(&mut tx, &expiry_event(hold)?).await {
            Ok(_) => {
                tx.commit().await?;
                expired += 1;
            }
            Err(e) => tracing::debug!(error = %e, "hold not expired now"),
        }
    }
    Ok(expired)
}

fn expiry_event(hold: &OpenHold) -> anyhow::Result<LedgerEvent> {
    let currency: Currency = hold.currency.parse().context("card currency")?;
    Ok(LedgerEvent {
        event_id: format!("expire:{}:{}", hold.card_id, hold.network_reference),
        event_type: "authorization_expired".into(),
        customer_id: CustomerId::from_uuid(hold.customer_id),
        epoch: Epoch(hold.epoch),
        occurred_at: Utc::now(),
        source: "expiry",
        partner: None,
        body: Body::HoldReleased {
            card: CardRef {
                card_id: Some(hold.card_id),
                card_hash: None,
            },
            network_reference: hold.network_reference.clone(),
            currency,
            expired: true,
        },
    })
}
