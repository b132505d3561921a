//! Ledger facts: what the authorizer needs to know from the ledger (card state
//! after each card movement, customer epochs). Written to an outbox table in
//! the same transaction as the entries, then relayed to Topic::LedgerFacts in
//! id order (so per customer in commit order) and marked sent.

use std::time::Duration;

use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::money::Currency;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// One fact, keyed by customer on the topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fact {
    /// A customer exists here at this epoch, in this state (absent: active,
    /// as facts written before states existed).
    Customer {
        customer_id: CustomerId,
        epoch: Epoch,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        state: Option<crate::placement::CustomerState>,
    },
    /// A card's state after a movement (absolute values: a redelivery is harmless).
    Card {
        customer_id: CustomerId,
        card_id: Uuid,
        pan_hash: String,
        currency: Currency,
        credit_limit: i64,
        blocked: bool,
        /// The ledger's available limit: limit − unsettled − bill.
        available: i64,
        /// An authorization this movement booked (or found already settled).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        authorization_id: Option<Uuid>,
    },
}

/// A fact as relayed: `seq` is its outbox id (increasing in commit order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub fact: Fact,
}

impl Fact {
    pub fn customer_id(&self) -> CustomerId {
        match self {
            Fact::Customer { customer_id, .. } | Fact::Card { customer_id, .. } => *customer_id,
        }
    }
}

/// Adds a fact to the outbox (inside the caller's transaction).
pub async fn record(conn: &mut PgConnection, fact: &Fact) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO ledger_facts (customer_id, payload) VALUES ($1, $2)")
        .bind(fact.customer_id().as_uuid())
        .bind(sqlx::types::Json(fact))
        .execute(conn)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: i64,
    customer_id: Uuid,
    payload: sqlx::types::Json<Fact>,
}

/// The advisory lock that makes one replica of the cell the relay.
const RELAY_LOCK: i64 = 0x6365_6c6c_6661_6374; // "cellfact"

/// Relays unsent facts until cancelled, on one replica of the cell at a time
/// (the holder of an advisory lock on a connection of its own; if that
/// replica dies, its connection and lock go and another takes over). Two
/// relays would publish the same facts twice and race each other's order.
pub async fn relay(
    pool: PgPool,
    producer: Producer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        match hold_relay_lock(&pool).await {
            Ok(Some(conn)) => {
                tracing::info!("this replica relays the ledger's facts");
                relay_while_held(&pool, &producer, &shutdown, conn).await;
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "take the relay lock failed"),
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
async fn hold_relay_lock(pool: &PgPool) -> Result<Option<PgConnection>, sqlx::Error> {
    let mut conn = pool.acquire().await?.detach();
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(RELAY_LOCK)
        .fetch_one(&mut conn)
        .await?;
    Ok(held.then_some(conn))
}

/// Relays until stopped or until the lock's connection fails.
async fn relay_while_held(
    pool: &PgPool,
    producer: &Producer,
    shutdown: &CancellationToken,
    mut lock: PgConnection,
) {
    let topic = Topic::LedgerFacts.name();
    loop {
        let sent = match relay_once(pool, producer, topic).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "relay ledger facts failed");
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
                tracing::warn!("the relay lock's connection failed; giving the relay up");
                return;
            }
        }
    }
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(RELAY_LOCK)
        .execute(&mut lock)
        .await;
}

async fn relay_once(pool: &PgPool, producer: &Producer, topic: &str) -> anyhow::Result<usize> {
    use anyhow::Context as _;
    let rows: Vec<Pending> = sqlx::query_as(
        "SELECT id, customer_id, payload FROM ledger_facts WHERE sent_at IS NULL ORDER BY id LIMIT 500",
    )
    .fetch_all(pool)
    .await
    .context("read outbox")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let payloads: Vec<(String, Vec<u8>)> = rows
        .iter()
        .map(|r| {
            let rec = FactRecord {
                seq: r.id,
                fact: r.payload.0.clone(),
            };
            (
                r.customer_id.to_string(),
                serde_json::to_vec(&rec).expect("fact serializes"),
            )
        })
        .collect();
    // Polled in order by join_all, so enqueued (and kept by the idempotent producer) in order.
    let sends = payloads
        .iter()
        .map(|(k, v)| producer.send(topic, k.as_bytes(), v, &[]));
    for r in futures::future::join_all(sends).await {
        r.context("produce ledger fact")?;
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    sqlx::query("UPDATE ledger_facts SET sent_at = now() WHERE id = ANY($1)")
        .bind(&ids)
        .execute(pool)
        .await
        .context("mark facts sent")?;
    Ok(rows.len())
}
