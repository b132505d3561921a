//! Global's intake of transfers between cells (`POST /internal/v1/transfers`)
//! and its ops views: only a cell's own token, only for that cell's own
//! customers, idempotent, refused whole when malformed; a recipient nobody
//! has sends the transfer to be returned, with the reason, at once.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use cellbank_shared::contract::transfer_key;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::testkit::eventually;

use crate::support::{internal_token, Base, Cell, TestGlobal};

async fn hand_off(g: &TestGlobal, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = g
        .http
        .post(format!("{}/internal/v1/transfers", g.url))
        .json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    if status >= 400 {
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert_eq!(ct, "application/problem+json", "{status}");
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_cell_hands_over_only_its_own_customers_transfers_once() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cells = [Cell::without_broker(1).await, Cell::without_broker(2).await];
    for c in &cells {
        g.add_shard(&format!("shard-{}", c.number), c, 100).await;
    }
    let doc = g.onboard("sender@example.com").await;
    let (customer, shard) = (
        doc["customer_id"].as_str().unwrap().to_owned(),
        doc["shard"].as_str().unwrap().to_owned(),
    );
    let n: u32 = shard.trim_start_matches("shard-").parse().unwrap();
    let (own, other) = (internal_token(n), internal_token(3 - n));
    let transfer_id = Uuid::new_v4();
    let body = json!({
        "transfer_id": transfer_id, "source_shard": shard, "from_customer_id": customer,
        "from_account_id": Uuid::new_v4(), "amount": 2_500, "currency": "BRL",
        "to_account_number": "5550000000", "requested_at": "2026-12-05T10:00:00Z",
    });

    assert_eq!(hand_off(&g, None, &body).await.0, 401);
    assert_eq!(hand_off(&g, Some("not-a-cell"), &body).await.0, 401);
    assert_eq!(
        hand_off(&g, Some(&other), &body).await.0,
        403,
        "another cell's token"
    );
    let mut elsewhere = body.clone();
    elsewhere["source_shard"] = json!(format!("shard-{}", 3 - n));
    assert_eq!(
        hand_off(&g, Some(&other), &elsewhere).await.0,
        403,
        "not that cell's customer"
    );

    let (status, t) = hand_off(&g, Some(&own), &body).await;
    assert_eq!(status, 201, "{t}");
    let key = transfer_key(
        CustomerId::from_uuid(customer.parse().unwrap()),
        transfer_id,
    );
    assert_eq!(t["transfer_key"], key.to_string());
    assert_eq!(hand_off(&g, Some(&own), &body).await.0, 200, "once");
    let mut more = body.clone();
    more["amount"] = json!(2_501);
    assert_eq!(hand_off(&g, Some(&own), &more).await.0, 409);

    for (field, value) in [
        ("amount", json!(0)),
        ("to_login", json!("Not@Normalised.COM")),
        ("to_account_number", json!("12ab")),
        ("currency", json!("XXX")),
        ("surprise", json!(true)),
    ] {
        let mut bad = body.clone();
        bad["transfer_id"] = json!(Uuid::new_v4());
        bad[field] = value;
        if field == "to_login" {
            bad.as_object_mut().unwrap().remove("to_account_number");
        }
        let (status, p) = hand_off(&g, Some(&own), &bad).await;
        assert!(status == 400 || status == 422, "{field}: {status} {p}");
    }

    // Nobody has that number: the transfer goes to be returned, with why.
    let path = format!("/ops/v1/transfers/{key}");
    eventually(Duration::from_secs(20), "returning", || async {
        let v: Value = g
            .admin(Method::GET, &path, None)
            .await
            .json()
            .await
            .unwrap();
        v["state"] == "returning" && v["reason"] == "no customer has this account number"
    })
    .await;
    let listed: Value = g
        .admin(Method::GET, "/ops/v1/transfers?state=returning", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 1, "{listed}");
    let r = g
        .admin(Method::GET, "/ops/v1/transfers?state=lost", None)
        .await;
    assert_eq!(r.status(), 422);
}
