//! Login with HAL links to the customer's shard and a verifiable token.

use serde_json::{json, Value};

use cellbank_shared::token::TokenVerifier;

use crate::support::{Base, Cell, TestGlobal};

#[tokio::test]
async fn login_links_point_at_the_customers_shard_and_the_token_verifies() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    let two = Cell::without_broker(2).await;
    g.add_shard("shard-1", &one, 10).await;
    g.add_shard("shard-2", &two, 10).await;
    let a = g.onboard("alice@example.com").await;
    let b = g.onboard("bob@example.com").await;
    assert_eq!(a["shard"], "shard-1");
    assert_eq!(b["shard"], "shard-2");

    let jwks: Value = g
        .get("/.well-known/jwks.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verifier = TokenVerifier::from_jwks(&jwks).expect("a usable jwks");

    for (doc, cell, login) in [
        (&a, &one, " Alice@Example.com"),
        (&b, &two, "bob@example.com"),
    ] {
        let r = g
            .post(
                "/v1/login",
                &json!({"login": login, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/hal+json");
        let body: Value = r.json().await.unwrap();
        let id = doc["customer_id"].as_str().unwrap();
        assert_eq!(body["customer_id"], id);
        let customer = format!("{}/v1/customers/{id}", cell.public_url);
        assert_eq!(body["_links"]["self"]["href"], customer);
        assert_eq!(body["_links"]["customer"]["href"], customer);
        for rel in ["accounts", "cards", "transfers"] {
            assert_eq!(body["_links"][rel]["href"], format!("{customer}/{rel}"));
        }
        let now = chrono::Utc::now().timestamp();
        let claims = verifier
            .verify(body["access_token"].as_str().unwrap(), now)
            .expect("token verifies with the published key");
        assert_eq!(claims.sub.to_string(), id);
        assert_eq!(claims.shard.as_str(), doc["shard"].as_str().unwrap());
        assert_eq!(claims.epoch.0, 1);
        assert!(claims.exp > now && claims.exp <= now + 900);
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_login_look_the_same_and_failures_are_rate_limited() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    g.add_shard("shard-1", &one, 10).await;
    g.onboard("carol").await;

    let wrong = g
        .post(
            "/v1/login",
            &json!({"login": "carol", "password": "not the password"}),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let wrong: Value = wrong.json().await.unwrap();
    let unknown = g
        .post(
            "/v1/login",
            &json!({"login": "nobody", "password": "not the password"}),
        )
        .await;
    assert_eq!(unknown.status(), 401);
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(wrong, unknown, "no hint whether the login exists");

    // Settings allow 3 failures per login within the window.
    let r = g
        .post(
            "/v1/login",
            &json!({"login": "carol", "password": "still wrong"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = g
        .post(
            "/v1/login",
            &json!({"login": "carol", "password": "wrong again"}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = g
        .post(
            "/v1/login",
            &json!({"login": "carol", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(
        r.status(),
        429,
        "even the right password waits out the window"
    );
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}
