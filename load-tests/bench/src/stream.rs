//! The event stream under test: deposits to seeded customers' checking
//! accounts, enveloped the way global envelopes a routed event (same
//! fields, same payload shape, same headers and key).

use chrono::Utc;

use cellbank_shared::contract::RoutedEvent;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch, EventId};
use cellbank_shared::money::Currency;

/// The deposit event `n` of a run, addressed to one customer.
pub fn deposit(customer_id: CustomerId, epoch: Epoch, account_number: &str, n: u64) -> Envelope {
    let payload = RoutedEvent {
        amount: 100 + (n % 900) as i64,
        currency: Currency::Brl,
        account_number: Some(account_number.to_owned()),
        card_hash: None,
        card_last4: None,
        extra: serde_json::Map::new(),
    };
    let now = Utc::now();
    Envelope {
        event_id: EventId::generate(),
        customer_id,
        epoch,
        event_type: "deposit".to_owned(),
        occurred_at: now,
        accepted_at: now,
        correlation_id: uuid::Uuid::now_v7().to_string(),
        namespace: None,
        payload: serde_json::to_value(&payload).expect("a routed event serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deposits_round_trip_as_routed_events() {
        let c = CustomerId::new();
        let e = deposit(c, Epoch(3), "0100000001", 7);
        let back = Envelope::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.key(), c.to_string());
        let routed: RoutedEvent = serde_json::from_value(back.payload).unwrap();
        assert_eq!(routed.amount, 107);
        assert_eq!(routed.account_number.as_deref(), Some("0100000001"));
        assert_ne!(deposit(c, Epoch(3), "0100000001", 7).event_id, e.event_id);
    }
}
