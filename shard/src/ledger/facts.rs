//! Ledger facts: what the authorizer needs to know from the ledger (card state
//! after each card movement, customer epochs). Written to an outbox table in
//! the same transaction as the entries, then relayed to Topic::LedgerFacts in
//! id order (so per customer in commit order) and marked sent.

use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::money::Currency;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::outbox::{Outbox, Sent};
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

/// The facts' outbox: relayed by one replica at a time, as `FactRecord`s.
pub const OUTBOX: Outbox = Outbox {
    name: "ledger facts",
    table: "ledger_facts",
    joins_sql: "",
    payload_sql: "o.payload || jsonb_build_object('seq', o.id)",
    topic: Topic::LedgerFacts,
    lock: 0x6365_6c6c_6661_6374, // "cellfact"
    // The authorizer's replay and the tests read what was relayed.
    sent: Sent::Mark,
};

/// Relays unsent facts until cancelled (see `outbox::relay`).
pub async fn relay(
    pool: PgPool,
    producer: Producer,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::outbox::relay(OUTBOX, pool, producer, shutdown).await
}
