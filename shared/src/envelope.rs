//! The event envelope: what global wraps every routed event in, and what every
//! shard consumer reads. Identity fields are mirrored in Kafka headers so that
//! tools (and the mortician) can see them without decoding the payload.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, Epoch, EventId};

/// Header names carried on every enveloped Kafka message.
pub mod headers {
    pub const EVENT_ID: &str = "cellbank-event-id";
    pub const CUSTOMER_ID: &str = "cellbank-customer-id";
    pub const EPOCH: &str = "cellbank-epoch";
    pub const EVENT_TYPE: &str = "cellbank-event-type";
    pub const CORRELATION_ID: &str = "cellbank-correlation-id";
}

/// One business event addressed to one customer at one placement epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub event_id: EventId,
    pub customer_id: CustomerId,
    pub epoch: Epoch,
    #[serde(rename = "type")]
    pub event_type: String,
    /// Business time: when it happened, not when it arrived.
    pub occurred_at: DateTime<Utc>,
    /// When global accepted it.
    pub accepted_at: DateTime<Utc>,
    pub correlation_id: String,
    /// Where `event_id` is unique: the sending partner's namespace
    /// (`partner:<id>`), so two partners' ids never collide. Absent on
    /// envelopes written before partners existed (then `partner`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The event's own fields, as the type defines them.
    pub payload: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("envelope is not valid json: {0}")]
    Decode(#[from] serde_json::Error),
}

impl Envelope {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("envelope serializes")
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        Ok(serde_json::from_slice(bytes)?)
    }

    /// The Kafka headers that mirror the identity fields.
    pub fn headers(&self) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                headers::EVENT_ID,
                self.event_id.as_str().as_bytes().to_vec(),
            ),
            (
                headers::CUSTOMER_ID,
                self.customer_id.to_string().into_bytes(),
            ),
            (headers::EPOCH, self.epoch.to_string().into_bytes()),
            (headers::EVENT_TYPE, self.event_type.clone().into_bytes()),
            (
                headers::CORRELATION_ID,
                self.correlation_id.clone().into_bytes(),
            ),
        ]
    }

    /// The partitioning key: per-customer ordering.
    pub fn key(&self) -> String {
        self.customer_id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let e = Envelope {
            event_id: EventId::parse("e-1").unwrap(),
            customer_id: CustomerId::new(),
            epoch: Epoch(2),
            event_type: "deposit".into(),
            occurred_at: Utc::now(),
            accepted_at: Utc::now(),
            correlation_id: "c".into(),
            namespace: None,
            payload: serde_json::json!({"amount": 10}),
        };
        assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
        assert!(Envelope::decode(b"{}").is_err());
        assert_eq!(e.headers().len(), 5);
    }

    /// Found by fuzz/ (target envelope): the default float parser read
    /// this payload number one ulp off what it re-encodes to, so every
    /// hop changed the envelope. Decoding is now correctly rounded.
    #[test]
    fn a_payload_float_survives_every_hop() {
        let bytes = br#"{"event_id":"e-3","customer_id":"0190a0b0-0000-7000-8000-000000000001","epoch":1,"type":"late_fee","occurred_at":"2026-11-28T12:00:00Z","accepted_at":"2026-11-28T12:00:00Z","correlation_id":"c","payload":{"amount":1,"currency":"USD","epoch":92233720.6854575807}}"#;
        let once = Envelope::decode(bytes).unwrap();
        let twice = Envelope::decode(&once.encode()).unwrap();
        assert_eq!(twice, once);
        assert_eq!(twice.encode(), once.encode());
    }
}
