//! Events are routed to the owning shard's broker, enveloped and keyed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{event, read_inbound, Base, Cell, TestGlobal};

#[tokio::test]
async fn events_for_customers_of_two_shards_land_on_their_own_brokers() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::with_broker(1).await;
    let two = Cell::with_broker(2).await;
    g.add_shard("shard-1", &one, 10).await;
    g.add_shard("shard-2", &two, 10).await;
    let a = g.onboard("ana").await;
    let b = g.onboard("bia").await;
    assert_eq!(a["shard"], "shard-1");
    assert_eq!(b["shard"], "shard-2");
    let a_id = a["customer_id"].as_str().unwrap().to_owned();
    let b_id = b["customer_id"].as_str().unwrap().to_owned();
    let a_acct = a["account_number"].as_str().unwrap();
    let card = g.issue_card(&b_id).await;
    let pan = card["pan"].as_str().unwrap().to_owned();

    let r = g.post("/v1/events", &event("a-1", a_acct, 1500)).await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["event_id"], "a-1");
    assert_eq!(body["shard"], "shard-1");

    let r = g
        .post(
            "/v1/events",
            &json!({"event_id": "b-1", "type": "purchase_settled", "pan": pan, "amount": 990,
                    "currency": "BRL", "occurred_at": "2026-11-28T10:00:00-03:00"}),
        )
        .await;
    assert_eq!(r.status(), 202);

    let batch = json!({"events": [
        event("a-2", a_acct, 10),
        {"event_id": "b-2", "type": "refund", "pan": pan, "amount": 5, "currency": "BRL", "occurred_at": "2026-11-28T11:00:00Z"},
        event("x-1", "0999999999", 10),
    ]});
    let r = g.post("/v1/events/batch", &batch).await;
    assert_eq!(r.status(), 200);
    let res: Value = r.json().await.unwrap();
    assert_eq!(res["accepted"], 2);
    assert_eq!(res["rejected"], 1);
    let statuses: Vec<i64> = res["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![202, 202, 404]);
    assert_eq!(res["results"][2]["problem"]["status"], 404);

    let on_one = read_inbound(
        &one.bootstrap,
        2,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    let on_two = read_inbound(
        &two.bootstrap,
        2,
        Duration::from_secs(20),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(on_one.len(), 2, "{on_one:?}");
    assert_eq!(on_two.len(), 2, "{on_two:?}");
    for (key, env) in &on_one {
        assert_eq!(key, &a_id);
        assert_eq!(env.customer_id.to_string(), a_id);
        assert_eq!(env.epoch.0, 1);
        assert_eq!(env.payload["account_number"], a_acct);
        assert_eq!(env.event_type, "deposit");
    }
    let mut ids: Vec<&str> = on_one.iter().map(|(_, e)| e.event_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, vec!["a-1", "a-2"]);
    let first = on_one
        .iter()
        .find(|(_, e)| e.event_id.as_str() == "a-1")
        .unwrap();
    assert_eq!(first.1.payload["amount"], 1500);
    assert_eq!(first.1.payload["currency"], "BRL");
    assert!(
        first
            .1
            .namespace
            .as_deref()
            .is_some_and(|n| n.starts_with("partner:")),
        "the event travels in its partner's idempotency namespace: {:?}",
        first.1.namespace
    );

    for (key, env) in &on_two {
        assert_eq!(key, &b_id);
        assert_eq!(env.customer_id.to_string(), b_id);
        assert_eq!(env.payload["card_last4"], &pan[12..]);
        assert!(env.payload["card_hash"].as_str().unwrap().len() == 64);
        let raw = serde_json::to_string(env).unwrap();
        assert!(!raw.contains(&pan), "the pan never travels: {raw}");
    }
    let b1 = on_two
        .iter()
        .find(|(_, e)| e.event_id.as_str() == "b-1")
        .unwrap();
    assert_eq!(b1.1.event_type, "purchase_settled");
    assert_eq!(b1.1.occurred_at.to_rfc3339(), "2026-11-28T13:00:00+00:00");
    assert!(b1.1.payload.get("merchant").is_none());
}

#[tokio::test]
async fn a_repeated_event_id_is_accepted_twice_and_carries_the_same_identity() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::with_broker(1).await;
    g.add_shard("shard-1", &one, 10).await;
    let a = g.onboard("dup").await;
    let acct = a["account_number"].as_str().unwrap();

    let ev = event("dup-1", acct, 700);
    assert_eq!(g.post("/v1/events", &ev).await.status(), 202);
    assert_eq!(
        g.post("/v1/events", &ev).await.status(),
        202,
        "a retry is accepted again"
    );

    let seen = read_inbound(
        &one.bootstrap,
        2,
        Duration::from_secs(20),
        Duration::from_millis(750),
    )
    .await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (k1, e1) = &seen[0];
    let (k2, e2) = &seen[1];
    // The shard's idempotent consumer dedupes on (customer, event id): both
    // copies must carry the same identity and effect so it applies once.
    assert_eq!(k1, k2);
    assert_eq!(e1.event_id, e2.event_id);
    assert_eq!(e1.event_id.as_str(), "dup-1");
    assert_eq!(e1.customer_id, e2.customer_id);
    assert_eq!(e1.epoch, e2.epoch);
    assert_eq!(e1.payload, e2.payload);
    assert_eq!(e1.occurred_at, e2.occurred_at);
}
