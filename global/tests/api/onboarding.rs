//! Placement and onboarding, card issuing.

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};

use cellbank_shared::pan::{Pan, PanHasher};

use crate::support::{Base, Cell, TestGlobal, PAN_KEY};

#[tokio::test]
async fn onboarding_places_customers_only_on_active_shards_and_spreads_them() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cells = [
        Cell::without_broker(1).await,
        Cell::without_broker(2).await,
        Cell::without_broker(3).await,
    ];
    for c in &cells {
        g.add_shard(&format!("shard-{}", c.number), c, 100).await;
    }
    let r = g
        .admin(Method::POST, "/ops/v1/shards/shard-3/drain", None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["state"], "draining");

    let mut per_shard: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let doc = g.onboard(&format!("spread{i}@example.com")).await;
        let shard = doc["shard"].as_str().unwrap().to_owned();
        let n: u32 = shard.trim_start_matches("shard-").parse().unwrap();
        let cell = &cells[n as usize - 1];
        let id = doc["customer_id"].as_str().unwrap();
        assert_eq!(
            doc["_links"]["accounts"]["href"],
            format!("{}/v1/customers/{id}/accounts", cell.public_url)
        );
        assert!(doc["account_number"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{n:02}")));
        assert_eq!(doc["epoch"], 1);
        *per_shard.entry(shard).or_default() += 1;
    }
    assert_eq!(per_shard.get("shard-1"), Some(&3), "{per_shard:?}");
    assert_eq!(per_shard.get("shard-2"), Some(&3), "{per_shard:?}");
    assert_eq!(
        per_shard.get("shard-3"),
        None,
        "never placed on a draining shard"
    );
    assert_eq!(cells[0].shard.customers().len(), 3);
    assert_eq!(cells[1].shard.customers().len(), 3);
    assert!(cells[2].shard.customers().is_empty());

    let list: Value = g
        .admin(Method::GET, "/ops/v1/shards", None)
        .await
        .json()
        .await
        .unwrap();
    let counts: Vec<(String, i64)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["customers"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        vec![
            ("shard-1".into(), 3),
            ("shard-2".into(), 3),
            ("shard-3".into(), 0)
        ]
    );

    // The login is taken now.
    let r = g
        .post(
            "/v1/customers",
            &json!({"name": "Again", "login": "SPREAD0@example.com ", "password": "long enough pw"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "login");

    // With every shard draining there is nowhere to go.
    for id in ["shard-1", "shard-2"] {
        let r = g
            .admin(Method::POST, &format!("/ops/v1/shards/{id}/drain"), None)
            .await;
        assert_eq!(r.status(), 200);
    }
    let r = g
        .post(
            "/v1/customers",
            &json!({"name": "Nowhere", "login": "nowhere@example.com", "password": "long enough pw"}),
        )
        .await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn a_card_pan_is_shown_once_and_only_its_hash_is_kept() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 10).await;
    let doc = g.onboard("cardholder").await;
    let id = doc["customer_id"].as_str().unwrap();

    let card = g.issue_card(id).await;
    let pan_text = card["pan"].as_str().unwrap();
    let pan = Pan::parse(pan_text).expect("a luhn-valid pan");
    assert_eq!(pan_text.len(), 16);
    assert!(pan_text.starts_with(cellbank_global::cards::BIN));
    assert_eq!(card["last4"], pan.last4());

    // The shard got the keyed hash, never the PAN.
    let hash = PanHasher::new(PAN_KEY.as_bytes()).hash(&pan);
    assert_eq!(cell.shard.card_hashes(), vec![hash]);

    // The directory shows the card by its last four digits only.
    let shown = g
        .admin(Method::GET, &format!("/ops/v1/customers/{id}"), None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!shown.contains(pan_text), "{shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    let kinds: Vec<&str> = shown["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["account", "card", "login"]);
    let card_id = shown["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["kind"] == "card")
        .unwrap();
    assert_eq!(card_id["hint"], pan.last4());

    // A second card gets a different PAN.
    let other = g.issue_card(id).await;
    assert_ne!(other["pan"], card["pan"]);

    // An unknown customer has no cards to issue.
    let r = g
        .post_as(
            crate::support::ADMIN_TOKEN,
            &format!("/v1/customers/{}/cards", uuid::Uuid::new_v4()),
            &json!({"currency": "BRL"}),
        )
        .await;
    assert_eq!(r.status(), 404);
}
