//! The ledger's consumers: inbound events (envelopes routed in by global) and
//! the authorizer's approved decisions, each batch applied in one Postgres
//! transaction together with the idempotency records.

use async_trait::async_trait;
use cellbank_shared::contract::moves::FENCE_HEADER;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::kafka::{Handler, HandlerError, Record};
use sqlx::PgPool;
use uuid::Uuid;

use super::event::{InvalidEvent, LedgerEvent};
use super::store::{self, ApplyError};
use crate::authorizer::lease::MARKER_HEADER;
use crate::authorizer::AuthorizationRecord;
use crate::metrics;

/// Which log a [`LedgerIntake`] reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Topic::Inbound: envelopes.
    Inbound,
    /// Topic::Authorizations: the authorizer's decisions (approved ones are booked).
    Authorizations,
}

pub struct LedgerIntake {
    pool: PgPool,
    source: Source,
}

impl LedgerIntake {
    pub fn new(pool: PgPool, source: Source) -> Self {
        Self { pool, source }
    }

    fn decode(&self, r: &Record) -> Result<Option<Item>, InvalidEvent> {
        if let (Source::Inbound, Some(m)) = (self.source, r.header(FENCE_HEADER)) {
            return fence_marker(m, &r.payload).map(Some);
        }
        self.decode_event(r).map(|e| e.map(Item::Event))
    }

    fn decode_event(&self, r: &Record) -> Result<Option<LedgerEvent>, InvalidEvent> {
        match self.source {
            Source::Inbound => {
                let env = Envelope::decode(&r.payload)
                    .map_err(|e| InvalidEvent::Envelope(e.to_string()))?;
                LedgerEvent::from_envelope(&env).map(Some)
            }
            Source::Authorizations if r.header(MARKER_HEADER).is_some() => Ok(None),
            Source::Authorizations => {
                let rec: AuthorizationRecord = serde_json::from_slice(&r.payload)
                    .map_err(|e| InvalidEvent::Payload(e.to_string()))?;
                rec.ledger_event()
            }
        }
    }
}

/// What a record of the ledger's logs asks.
enum Item {
    Event(LedgerEvent),
    /// A move's fence marker: the customer's inbound history here ends.
    Fence {
        customer: CustomerId,
        move_id: Uuid,
    },
}

fn fence_marker(header: &[u8], payload: &[u8]) -> Result<Item, InvalidEvent> {
    #[derive(serde::Deserialize)]
    struct Marker {
        customer_id: CustomerId,
    }
    let bad = |e: String| InvalidEvent::Payload(format!("fence marker: {e}"));
    let move_id = std::str::from_utf8(header)
        .ok()
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| bad("the header is not a move id".into()))?;
    let m: Marker = serde_json::from_slice(payload).map_err(|e| bad(e.to_string()))?;
    Ok(Item::Fence {
        customer: m.customer_id,
        move_id,
    })
}

/// Notes that the inbound consumer read the fence marker of the move that
/// fenced the customer (a marker of an older, aborted move changes nothing).
async fn reach_fence(
    conn: &mut sqlx::PgConnection,
    customer: CustomerId,
    move_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET inbound_fenced = true
         WHERE customer_id = $1 AND state = 'fenced' AND fence_move = $2",
    )
    .bind(customer.as_uuid())
    .bind(move_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Postgres errors that retrying cannot fix (bad data, constraint violations).
pub fn is_permanent(e: &sqlx::Error) -> bool {
    cellbank_shared::db::classify(e).is_permanent()
}

pub fn classify(e: ApplyError) -> HandlerError {
    match e {
        ApplyError::Invalid(i) => HandlerError::Permanent(anyhow::Error::new(i)),
        ApplyError::Db(db) if is_permanent(&db) => {
            HandlerError::Permanent(anyhow::Error::new(db).context("apply event"))
        }
        ApplyError::Db(db) => {
            HandlerError::Transient(anyhow::Error::new(db).context("apply event"))
        }
    }
}

#[async_trait]
impl Handler for LedgerIntake {
    async fn handle(&self, batch: &[Record]) -> Result<(), HandlerError> {
        let mut items = Vec::with_capacity(batch.len());
        for r in batch {
            match self.decode(r) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => {}
                Err(e) => return Err(HandlerError::Permanent(anyhow::Error::new(e))),
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        let transient = |what: &'static str| {
            move |e: sqlx::Error| HandlerError::Transient(anyhow::Error::new(e).context(what))
        };
        let mut tx = self.pool.begin().await.map_err(transient("begin"))?;
        let mut done = store::BatchOutcome::default();
        // Events before a fence marker apply; the marker ends the customer's
        // inbound history here; events after it are refused as stragglers.
        let mut events = Vec::new();
        for item in items {
            match item {
                Item::Event(ev) => events.push(ev),
                Item::Fence { customer, move_id } => {
                    done += apply(&mut tx, &std::mem::take(&mut events)).await?;
                    reach_fence(&mut tx, customer, move_id)
                        .await
                        .map_err(transient("reach fence"))?;
                }
            }
        }
        done += apply(&mut tx, &events).await?;
        tx.commit().await.map_err(transient("commit"))?;
        metrics::POSTINGS.inc_by(done.postings);
        metrics::EVENTS_APPLIED
            .with_label_values(&["applied"])
            .inc_by(done.applied);
        metrics::EVENTS_APPLIED
            .with_label_values(&["duplicate"])
            .inc_by(done.duplicates);
        Ok(())
    }
}

async fn apply(
    conn: &mut sqlx::PgConnection,
    events: &[LedgerEvent],
) -> Result<store::BatchOutcome, HandlerError> {
    if events.is_empty() {
        return Ok(store::BatchOutcome::default());
    }
    store::apply_batch(conn, events).await.map_err(classify)
}
