//! Directory changes reach every replica through the feed.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{Base, Cell, TestGlobal};

#[tokio::test]
async fn a_directory_change_is_seen_by_a_second_replica_within_a_second() {
    let base = Base::new().await;
    let first = TestGlobal::spawn(base.settings()).await;
    let second = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    let two = Cell::without_broker(2).await;
    first.add_shard("shard-1", &one, 10).await;
    first.add_shard("shard-2", &two, 10).await;
    let doc = first.onboard("mover").await;
    let id = doc["customer_id"].as_str().unwrap().to_owned();
    let account = doc["account_number"].as_str().unwrap().to_owned();
    assert_eq!(doc["shard"], "shard-1");

    // The second replica learns the route and caches it.
    for _ in 0..2 {
        let seen = second.lookup_account(&account).await;
        assert_eq!(seen["shard"], "shard-1");
        assert_eq!(seen["epoch"], 1);
    }

    // A flip that moves no data is refused unless forced (moves move data).
    let r = first
        .admin(
            Method::PUT,
            &format!("/ops/v1/customers/{id}/placement"),
            Some(json!({"shard": "shard-2"})),
        )
        .await;
    assert_eq!(r.status(), 409);
    let problem: Value = r.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("/ops/v1/moves"),
        "{problem}"
    );
    let r = first
        .admin(
            Method::PUT,
            &format!("/ops/v1/customers/{id}/placement"),
            Some(json!({"shard": "shard-2", "force": true})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let flipped = Instant::now();
    let placed: Value = r.json().await.unwrap();
    assert_eq!(placed["epoch"], 2);

    loop {
        let seen = second.lookup_account(&account).await;
        if seen["shard"] == "shard-2" {
            assert_eq!(seen["epoch"], 2);
            break;
        }
        assert!(
            flipped.elapsed() < Duration::from_secs(1),
            "the second replica still routes to {} after a second",
            seen["shard"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // And the login it hands out now names the new shard and epoch.
    let r = second
        .post(
            "/v1/login",
            &json!({"login": "mover", "password": "correct horse battery"}),
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["shard"], "shard-2");
    assert_eq!(body["epoch"], 2);
    assert!(body["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .starts_with(&two.public_url));
}
