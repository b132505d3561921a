//! Authorizations are forwarded to the card's shard, with a stand-in decline
//! when the shard does not answer in time.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use cellbank_shared::pan::{Pan, PanHasher};

use crate::support::{Base, Cell, TestGlobal, PAN_KEY};

fn request(pan: &str, amount: i64, reference: &str) -> Value {
    json!({"pan": pan, "amount": amount, "currency": "BRL",
           "merchant": {"name": "Mercado", "mcc": "5411", "country": "BR"},
           "network_reference": reference})
}

#[tokio::test]
async fn authorizations_go_to_the_cards_shard_and_stand_in_on_timeout() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    let two = Cell::without_broker(2).await;
    g.add_shard("shard-1", &one, 10).await;
    g.add_shard("shard-2", &two, 10).await;
    g.onboard("first").await;
    let b = g.onboard("second").await;
    assert_eq!(b["shard"], "shard-2");
    let b_id = b["customer_id"].as_str().unwrap();
    let card = g.issue_card(b_id).await;
    let pan = card["pan"].as_str().unwrap().to_owned();

    let r = g
        .post("/v1/authorizations", &request(&pan, 1_000, "net-1"))
        .await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(d["decision"], "approved", "{d}");
    assert!(d["authorization_id"].as_str().is_some());
    let seen = two.shard.authorizations();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].customer_id.to_string(), b_id);
    assert_eq!(seen[0].epoch.0, 1);
    assert_eq!(seen[0].network_reference, "net-1");
    assert_eq!(
        seen[0].pan_hash,
        PanHasher::new(PAN_KEY.as_bytes()).hash(&Pan::parse(&pan).unwrap())
    );
    assert!(one.shard.authorizations().is_empty());

    let d: Value = g
        .post("/v1/authorizations", &request(&pan, 10_000_000, "net-2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["decision"], "declined");
    assert_eq!(d["reason"], "insufficient_limit");

    let d: Value = g
        .post(
            "/v1/authorizations",
            &request("4111111111111111", 100, "net-3"),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["decision"], "declined");
    assert_eq!(d["reason"], "unknown_card");

    // The shard answers after the 300 ms deadline: global stands in.
    two.shard.delay_authorizations(Duration::from_millis(1500));
    let started = Instant::now();
    let r = g
        .post("/v1/authorizations", &request(&pan, 1_000, "net-4"))
        .await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1200),
        "answered near the deadline"
    );
    assert_eq!(d["decision"], "declined");
    assert_eq!(d["reason"], "stand_in_timeout");
    let metrics = g.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("global_authorization_stand_ins_total")
                && l.contains("reason=\"stand_in_timeout\"")
                && l.contains("shard=\"shard-2\"")),
        "stand-ins are counted"
    );
}
