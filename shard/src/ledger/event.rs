//! Business events as the ledger applies them: parsed and validated from
//! inbound envelopes (or built by the cell itself), targets not yet resolved.

use cellbank_shared::contract::{RoutedEvent, EVENT_TYPES, MAX_FUTURE};
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::{Currency, Money};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Why an event cannot be applied; it is dead-lettered with this message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidEvent {
    #[error("envelope is not valid: {0}")]
    Envelope(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("payload is not valid: {0}")]
    Payload(String),
    #[error("{0}")]
    Rule(String),
    #[error("stale epoch: event has {event}, customer is at {current}")]
    StaleEpoch { event: i64, current: i64 },
    #[error("unknown customer {0}")]
    UnknownCustomer(CustomerId),
    /// The customer is not writable here (another epoch, fenced, moved out).
    #[error("{0}")]
    NotHere(String),
}

/// Which card an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct CardRef {
    pub card_id: Option<Uuid>,
    pub card_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Body {
    /// deposit, transfer_in (`credit` = true) or withdrawal, transfer_out.
    Account {
        credit: bool,
        account_number: Option<String>,
        amount: Money,
    },
    OwnTransfer {
        from: Uuid,
        to: Uuid,
        amount: Money,
    },
    /// A transfer to another customer leaves `from` and waits as pending.
    TransferSent {
        transfer_id: Uuid,
        from: Uuid,
        amount: Money,
    },
    /// The sender's pending transfer was delivered to the recipient.
    TransferDelivered {
        transfer_id: Uuid,
        amount: Money,
    },
    /// A transfer from another customer arrives in `to`.
    TransferReceived {
        transfer_id: Uuid,
        to: Uuid,
        amount: Money,
    },
    /// The transfer could not be delivered: the pending amount goes back to `from`.
    TransferReturned {
        transfer_id: Uuid,
        from: Uuid,
        amount: Money,
    },
    PurchaseAuthorized {
        card_id: Uuid,
        authorization_id: Uuid,
        network_reference: String,
        amount: Money,
    },
    PurchaseSettled {
        card: CardRef,
        network_reference: Option<String>,
        amount: Money,
    },
    /// The hold of an authorization ends unsettled: the network reversed it
    /// (`authorization_reversed`) or it expired (the cell's own event).
    HoldReleased {
        card: CardRef,
        network_reference: String,
        currency: Currency,
        expired: bool,
    },
    /// refund or chargeback
    Refund {
        card: CardRef,
        amount: Money,
    },
    BillPayment {
        card: CardRef,
        amount: Money,
    },
    LateFee {
        card: CardRef,
        amount: Money,
    },
    /// A new absolute limit.
    CreditLimit {
        card: CardRef,
        limit: Money,
    },
    /// A card was issued with its first limit (the card row exists already).
    CardIssued {
        card_id: Uuid,
        limit: Money,
    },
}

impl Body {
    /// The card network's reference of the purchase this event names.
    pub fn network_reference(&self) -> Option<&str> {
        match self {
            Body::PurchaseAuthorized {
                network_reference, ..
            }
            | Body::HoldReleased {
                network_reference, ..
            } => Some(network_reference),
            Body::PurchaseSettled {
                network_reference, ..
            } => network_reference.as_deref(),
            _ => None,
        }
    }
}

/// One business event for one customer at its business time.
#[derive(Clone, Debug, PartialEq)]
pub struct LedgerEvent {
    pub event_id: String,
    pub event_type: String,
    pub customer_id: CustomerId,
    pub epoch: Epoch,
    pub occurred_at: DateTime<Utc>,
    /// `inbound`, `authorization`, `transfer`, `card`.
    pub source: &'static str,
    /// The idempotency namespace global assigned a partner's event
    /// (`partner:<id>`); `None` for the cell's own events.
    pub partner: Option<String>,
    pub body: Body,
}

impl LedgerEvent {
    /// Validates an inbound envelope (its payload is a [`RoutedEvent`]).
    /// Where this event's id is unique (with its customer): a partner's ids
    /// and the cell's own never meet.
    pub fn namespace(&self) -> &str {
        match (self.source, &self.partner) {
            ("inbound", Some(ns)) => ns,
            ("inbound", None) => "partner",
            _ => "cell",
        }
    }

    pub fn from_envelope(env: &Envelope) -> Result<Self, InvalidEvent> {
        if !EVENT_TYPES.contains(&env.event_type.as_str()) {
            return Err(InvalidEvent::UnknownType(env.event_type.clone()));
        }
        // Past the end of time there is no future: nothing is later.
        let latest = env.accepted_at.checked_add_signed(MAX_FUTURE);
        if latest.is_some_and(|latest| env.occurred_at > latest) {
            return Err(InvalidEvent::Rule(
                "occurred_at is in the future of accepted_at".into(),
            ));
        }
        let p: RoutedEvent = serde_json::from_value(env.payload.clone())
            .map_err(|e| InvalidEvent::Payload(e.to_string()))?;
        Ok(Self {
            event_id: env.event_id.as_str().to_owned(),
            event_type: env.event_type.clone(),
            customer_id: env.customer_id,
            epoch: env.epoch,
            occurred_at: env.occurred_at,
            source: "inbound",
            partner: env.namespace.clone(),
            body: routed_body(&env.event_type, &p)?,
        })
    }

    pub fn currency(&self) -> Currency {
        match &self.body {
            Body::Account { amount, .. }
            | Body::OwnTransfer { amount, .. }
            | Body::TransferSent { amount, .. }
            | Body::TransferDelivered { amount, .. }
            | Body::TransferReceived { amount, .. }
            | Body::TransferReturned { amount, .. }
            | Body::PurchaseAuthorized { amount, .. }
            | Body::PurchaseSettled { amount, .. }
            | Body::Refund { amount, .. }
            | Body::BillPayment { amount, .. }
            | Body::LateFee { amount, .. } => amount.currency,
            Body::CreditLimit { limit, .. } | Body::CardIssued { limit, .. } => limit.currency,
            Body::HoldReleased { currency, .. } => *currency,
        }
    }
}

/// An optional short string field of a routed event's type-specific part.
fn short_text(p: &RoutedEvent, name: &str) -> Result<Option<String>, InvalidEvent> {
    match p.extra.get(name) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= 128 => {
            Ok(Some(s.clone()))
        }
        Some(_) => Err(InvalidEvent::Payload(format!(
            "{name}: must be a non-empty string of at most 128 characters"
        ))),
    }
}

/// The card a routed event names (by id or by PAN hash; neither means the
/// customer's only card).
fn card_ref(p: &RoutedEvent) -> Result<CardRef, InvalidEvent> {
    let card_id = match short_text(p, "card_id")? {
        None => None,
        Some(s) => Some(
            Uuid::parse_str(&s)
                .map_err(|_| InvalidEvent::Payload("card_id: must be a uuid".into()))?,
        ),
    };
    Ok(CardRef {
        card_id,
        card_hash: p.card_hash.clone(),
    })
}

/// The body of a routed event of `event_type`.
fn routed_body(event_type: &str, p: &RoutedEvent) -> Result<Body, InvalidEvent> {
    let amount = Money::positive(p.amount, p.currency)
        .map_err(|e| InvalidEvent::Payload(format!("amount: {e}")))?;
    let card = card_ref(p)?;
    let account_number = p.account_number.clone();
    Ok(match event_type {
        "deposit" | "transfer_in" => Body::Account {
            credit: true,
            account_number,
            amount,
        },
        "withdrawal" | "transfer_out" => Body::Account {
            credit: false,
            account_number,
            amount,
        },
        "purchase_settled" => Body::PurchaseSettled {
            card,
            network_reference: short_text(p, "network_reference")?,
            amount,
        },
        "refund" | "chargeback" => Body::Refund { card, amount },
        "authorization_reversed" => Body::HoldReleased {
            card,
            network_reference: short_text(p, "network_reference")?
                .ok_or_else(|| InvalidEvent::Payload("network_reference: is required".into()))?,
            currency: amount.currency,
            expired: false,
        },
        "bill_payment" => Body::BillPayment { card, amount },
        "late_fee" => Body::LateFee { card, amount },
        "credit_limit_changed" => Body::CreditLimit {
            card,
            limit: amount,
        },
        other => return Err(InvalidEvent::UnknownType(other.to_owned())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbank_shared::ids::EventId;

    fn env(t: &str, payload: serde_json::Value) -> Envelope {
        Envelope {
            event_id: EventId::parse("e-1").unwrap(),
            customer_id: CustomerId::new(),
            epoch: Epoch(1),
            event_type: t.into(),
            occurred_at: Utc::now(),
            accepted_at: Utc::now(),
            correlation_id: "c".into(),
            namespace: None,
            payload,
        }
    }

    #[test]
    fn parses_and_refuses() {
        let ok = LedgerEvent::from_envelope(&env(
            "deposit",
            serde_json::json!({"amount": 100, "currency": "BRL", "account_number": "0100000001"}),
        ))
        .unwrap();
        assert!(matches!(ok.body, Body::Account { credit: true, .. }));
        let bad = LedgerEvent::from_envelope(&env(
            "deposit",
            serde_json::json!({"amount": -1, "currency": "BRL"}),
        ));
        assert!(matches!(bad, Err(InvalidEvent::Payload(_))));
        let unknown = LedgerEvent::from_envelope(&env("teleport", serde_json::json!({})));
        assert!(matches!(unknown, Err(InvalidEvent::UnknownType(_))));
    }

    /// An envelope accepted at the end of time (chrono's last instant) is
    /// judged, not a panic of the consumer: nothing lies past it.
    #[test]
    fn an_acceptance_at_the_end_of_time_does_not_overflow() {
        let payload = serde_json::json!({"amount": 1, "currency": "BRL"});
        let mut e = env("deposit", payload);
        e.accepted_at = DateTime::<Utc>::MAX_UTC;
        assert!(LedgerEvent::from_envelope(&e).is_ok());
        e.accepted_at = Utc::now();
        e.occurred_at = DateTime::<Utc>::MAX_UTC;
        assert!(matches!(
            LedgerEvent::from_envelope(&e),
            Err(InvalidEvent::Rule(_))
        ));
    }
}
