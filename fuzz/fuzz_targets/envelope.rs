//! The envelope decoder on outside bytes: what a shard's inbound consumer
//! reads from its broker (a record anyone with produce rights could have
//! written), decoded and turned into a ledger event as the consumer does.
//!
//! Properties: nothing panics; a decoded envelope re-encodes to bytes that
//! decode to an equal envelope (and encode to the same bytes again); its
//! Kafka headers and key mirror its identity fields; a ledger event made
//! from it keeps its identity and carries a positive amount.
#![no_main]

use libfuzzer_sys::fuzz_target;

use cellbank_shard::ledger::event::LedgerEvent;
use cellbank_shared::envelope::{headers, Envelope};

fuzz_target!(|data: &[u8]| {
    let Ok(env) = Envelope::decode(data) else {
        return;
    };
    let bytes = env.encode();
    let again = Envelope::decode(&bytes).expect("an encoded envelope decodes");
    assert_eq!(again, env, "an envelope changes through encode and decode");
    assert_eq!(again.encode(), bytes, "encoding is not stable");
    mirrors(&env);
    if let Ok(ev) = LedgerEvent::from_envelope(&env) {
        assert_eq!(ev.event_id, env.event_id.as_str());
        assert_eq!(ev.customer_id, env.customer_id);
        assert_eq!(ev.epoch, env.epoch);
        assert_eq!(ev.occurred_at, env.occurred_at);
        assert_eq!(ev.partner, env.namespace);
        assert_eq!(ev.source, "inbound");
        // The currency is the payload's, whatever the body.
        let currency = env.payload["currency"].as_str().unwrap_or_default();
        assert_eq!(ev.currency().code(), currency);
    }
});

/// The headers and the key say what the envelope says.
fn mirrors(env: &Envelope) {
    let hs = env.headers();
    let get = |name: &str| {
        let v = &hs
            .iter()
            .find(|(k, _)| *k == name)
            .expect("header present")
            .1;
        String::from_utf8(v.clone()).expect("a header is utf-8")
    };
    assert_eq!(get(headers::EVENT_ID), env.event_id.as_str());
    assert_eq!(get(headers::CUSTOMER_ID), env.customer_id.to_string());
    assert_eq!(get(headers::EPOCH), env.epoch.0.to_string());
    assert_eq!(get(headers::EVENT_TYPE), env.event_type);
    assert_eq!(get(headers::CORRELATION_ID), env.correlation_id);
    assert_eq!(env.key(), env.customer_id.to_string());
}
