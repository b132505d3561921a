//! The card authorizer: decides purchases from memory, publishes each decision
//! to the cell's log, follows that log and the ledger's facts to keep every
//! card's open-to-buy, and snapshots its state with the offsets it includes.

pub mod decision_log;
pub mod endpoint;
pub mod lease;
pub mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use cellbank_shared::contract::{AuthorizationDecision, AuthorizationRequest, Decision};
use cellbank_shared::kafka::{Producer, Topic};
use chrono::Utc;

pub use state::{AuthorizationRecord, AuthorizerState};

use crate::ledger::event::{Body, InvalidEvent, LedgerEvent};
use crate::metrics;

#[derive(Debug, thiserror::Error)]
pub enum AuthorizeError {
    #[error("the authorizer is still replaying its log")]
    NotReady,
    #[error("publishing the decision failed: {0}")]
    Publish(String),
}

/// Shared handle on the authorizer (cheap to clone).
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<AuthorizerState>,
    producer: Producer,
    ready: AtomicBool,
}

impl Authorizer {
    pub fn new(state: AuthorizerState, producer: Producer) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                producer,
                ready: AtomicBool::new(false),
            }),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    pub(crate) fn set_ready(&self) {
        self.inner.ready.store(true, Ordering::Release);
    }

    /// Runs `f` on the state under its lock.
    pub fn with_state<T>(&self, f: impl FnOnce(&mut AuthorizerState) -> T) -> T {
        let mut g = self.inner.state.lock().expect("authorizer state lock");
        f(&mut g)
    }

    /// A copy of the state (snapshots, tests).
    pub fn state(&self) -> AuthorizerState {
        self.with_state(|s| s.clone())
    }

    /// Decides under the state lock (so concurrent requests for one card cannot
    /// spend the same limit), then publishes the decision before answering.
    pub async fn authorize(
        &self,
        req: &AuthorizationRequest,
    ) -> Result<AuthorizationDecision, AuthorizeError> {
        if !self.is_ready() {
            return Err(AuthorizeError::NotReady);
        }
        let start = Instant::now();
        let (answer, record) = self.with_state(|s| s.decide(req, Utc::now()));
        if let Some(rec) = record {
            let payload = serde_json::to_vec(&rec).expect("record serializes");
            let key = rec.customer_id.to_string();
            let sent = self
                .inner
                .producer
                .send(Topic::Authorizations.name(), key.as_bytes(), &payload, &[])
                .await;
            if let Err(e) = sent {
                self.with_state(|s| s.forget(&rec, &req.pan_hash));
                return Err(AuthorizeError::Publish(e.to_string()));
            }
            metrics::DECISIONS
                .with_label_values(&[
                    if answer.decision == Decision::Approved {
                        "approved"
                    } else {
                        "declined"
                    },
                    &answer.reason,
                ])
                .inc();
        }
        metrics::AUTH_LATENCY.observe(start.elapsed().as_secs_f64());
        Ok(answer)
    }
}

impl Authorizer {
    /// Keeps decisions a move carried from the customer's old cell (now, so
    /// the next request sees them) and logs them (for the other replicas
    /// and a replay), marked carried.
    pub async fn carry(&self, recs: Vec<AuthorizationRecord>) -> Result<usize, AuthorizeError> {
        if !self.is_ready() {
            return Err(AuthorizeError::NotReady);
        }
        self.with_state(|s| s.carry(&recs));
        // Logged concurrently: the cutover waits for this.
        let sends = recs.iter().map(|r| {
            let carried = AuthorizationRecord {
                carried: true,
                ..r.clone()
            };
            let payload = serde_json::to_vec(&carried).expect("record serializes");
            let key = carried.customer_id.to_string();
            async move {
                self.inner
                    .producer
                    .send(Topic::Authorizations.name(), key.as_bytes(), &payload, &[])
                    .await
            }
        });
        futures::future::try_join_all(sends)
            .await
            .map_err(|e| AuthorizeError::Publish(e.to_string()))?;
        Ok(recs.len())
    }
}

impl AuthorizationRecord {
    /// The ledger event an approved decision books; declines book nothing.
    pub fn ledger_event(&self) -> Result<Option<LedgerEvent>, InvalidEvent> {
        if self.decision != Decision::Approved || self.carried {
            return Ok(None);
        }
        let card_id = self.card_id.ok_or_else(|| {
            InvalidEvent::Payload("approved authorization without card_id".into())
        })?;
        let amount = cellbank_shared::money::Money::positive(self.amount, self.currency)
            .map_err(|e| InvalidEvent::Payload(format!("amount: {e}")))?;
        Ok(Some(LedgerEvent {
            event_id: format!("auth:{}", self.authorization_id),
            event_type: "purchase_authorized".into(),
            customer_id: self.customer_id,
            epoch: self.epoch,
            occurred_at: self.decided_at,
            source: "authorization",
            partner: None,
            body: Body::PurchaseAuthorized {
                card_id,
                authorization_id: self.authorization_id,
                network_reference: self.network_reference.clone(),
                amount,
            },
        }))
    }
}
