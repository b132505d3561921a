//! The ledger's consumers: inbound events (envelopes routed in by global) and
//! the authorizer's approved decisions, each batch applied in one Postgres
//! transaction together with the idempotency records.

use async_trait::async_trait;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::kafka::{Handler, HandlerError, Record};
use sqlx::PgPool;

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

    fn decode(&self, r: &Record) -> Result<Option<LedgerEvent>, InvalidEvent> {
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
        let mut events = Vec::with_capacity(batch.len());
        for r in batch {
            match self.decode(r) {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => {}
                Err(e) => return Err(HandlerError::Permanent(anyhow::Error::new(e))),
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| HandlerError::Transient(anyhow::Error::new(e).context("begin")))?;
        let done = store::apply_batch(&mut tx, &events)
            .await
            .map_err(classify)?;
        tx.commit()
            .await
            .map_err(|e| HandlerError::Transient(anyhow::Error::new(e).context("commit")))?;
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
