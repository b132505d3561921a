//! Global's partner event parser on outside bytes: a body of `POST
//! /v1/events` or `POST /v1/events/batch`, decoded as the handlers decode
//! it, then validated event by event.
//!
//! Properties: nothing panics; a refused body or event answers a 400 or
//! 422 problem that never repeats the submitted PAN; an accepted event is
//! well formed (positive amount in a known currency, a valid event id,
//! exactly one owner, the PAN replaced by its hash and last four digits
//! and absent from what travels), its payload survives the trip through
//! the envelope, and the shard that receives it applies it (global never
//! answers 202 for an event the shard is bound to dead-letter).
#![no_main]

use std::sync::LazyLock;

use chrono::Utc;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

use cellbank_global::directory::IdentifierKind;
use cellbank_global::events::{batch_events, parse_event, Inbound};
use cellbank_shard::ledger::event::LedgerEvent;
use cellbank_shared::contract::RoutedEvent;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch, EventId};
use cellbank_shared::money::Money;
use cellbank_shared::pan::{Pan, PanHasher};
use cellbank_shared::problem::{decode_json, Problem};

static HASHER: LazyLock<PanHasher> =
    LazyLock::new(|| PanHasher::new(b"fuzz-pan-hmac-key-0123456789abcd"));

fuzz_target!(|data: &[u8]| {
    // What `ApiJson<Value>` does with the body.
    let body: Value = match decode_json(data) {
        Ok(v) => v,
        Err(p) => return refused(&p, None),
    };
    check_one(body.clone(), "");
    match batch_events(body) {
        Ok(events) => {
            assert!(!events.is_empty() && events.len() <= cellbank_global::events::MAX_BATCH);
            for (i, v) in events.into_iter().enumerate() {
                check_one(v, &format!("events[{i}]."));
            }
        }
        Err(p) => refused(&p, None),
    }
});

fn check_one(v: Value, prefix: &str) {
    let pan = v
        .get("pan")
        .and_then(Value::as_str)
        .and_then(|p| Pan::parse(p).ok());
    match parse_event(v, prefix, &HASHER) {
        Ok(ev) => accepted(&ev, pan.as_ref()),
        Err(p) => {
            refused(&p, pan.as_ref());
            assert!(p
                .errors
                .iter()
                .all(|e| e.field.starts_with(prefix.trim_end_matches('.'))));
        }
    }
}

/// A refusal is a 400 or 422 problem naming a field, without the PAN.
fn refused(p: &Problem, pan: Option<&Pan>) {
    assert!(p.status == 400 || p.status == 422, "status {}", p.status);
    assert!(
        p.status == 400 || !p.errors.is_empty(),
        "a 422 names its field"
    );
    if let Some(pan) = pan {
        let text = serde_json::to_string(p).unwrap();
        assert!(
            !text.contains(pan.expose()),
            "the problem repeats the PAN: {text}"
        );
    }
}

fn accepted(ev: &Inbound, pan: Option<&Pan>) {
    let p = &ev.payload;
    Money::positive(p.amount, p.currency).expect("an accepted amount is positive");
    EventId::parse(ev.event_id.as_str()).expect("an accepted event id parses");
    let (kind, key) = &ev.identifier;
    match kind {
        IdentifierKind::Card => {
            let pan = pan.expect("a card-addressed event had a valid PAN");
            assert_eq!(p.card_hash.as_deref(), Some(key.as_str()));
            assert_eq!(*key, HASHER.hash(pan));
            assert_eq!(p.card_last4.as_deref(), Some(pan.last4()));
            assert!(p.account_number.is_none());
        }
        IdentifierKind::Account => {
            assert_eq!(p.account_number.as_deref(), Some(key.as_str()));
            assert!((1..=34).contains(&key.len()));
            assert!(key.bytes().all(|b| b.is_ascii_alphanumeric()));
            assert!(p.card_hash.is_none() && p.card_last4.is_none());
        }
        IdentifierKind::Login => panic!("events are never addressed by login"),
    }
    let travels = serde_json::to_value(p).unwrap();
    if let Some(pan) = pan {
        assert!(
            !travels.to_string().contains(pan.expose()),
            "the PAN travels: {travels}"
        );
    }
    let back: RoutedEvent = serde_json::from_value(travels.clone()).unwrap();
    assert_eq!(&back, p, "the payload changes on its way to the shard");
    let env = Envelope {
        event_id: ev.event_id.clone(),
        customer_id: CustomerId::from_uuid(uuid::Uuid::nil()),
        epoch: Epoch(1),
        event_type: ev.event_type.clone(),
        occurred_at: ev.occurred_at,
        accepted_at: Utc::now(),
        correlation_id: "fuzz".into(),
        namespace: Some("partner:fuzz".into()),
        payload: travels,
    };
    let decoded = Envelope::decode(&env.encode()).unwrap();
    if let Err(e) = LedgerEvent::from_envelope(&decoded) {
        panic!("global accepts what the shard dead-letters ({e}): {env:?}");
    }
}
