//! Bad input gets a 4xx problem naming the field, never a 500.

use reqwest::Method;
use serde_json::{json, Value};

use crate::support::{event, Base, Cell, TestGlobal, ADMIN_TOKEN};

async fn expect_problem(r: reqwest::Response, status: u16, field: Option<&str>, case: &str) {
    assert_eq!(r.status().as_u16(), status, "{case}");
    assert_eq!(
        r.headers()["content-type"],
        "application/problem+json",
        "{case}"
    );
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["status"], status, "{case}");
    if let Some(f) = field {
        assert_eq!(p["errors"][0]["field"], f, "{case}: {p}");
        assert!(
            !p["errors"][0]["reason"].as_str().unwrap().is_empty(),
            "{case}"
        );
    }
}

#[tokio::test]
async fn bad_input_gets_problems_naming_the_field() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    g.add_shard("shard-1", &one, 10).await;
    let acct = g.onboard("valid").await["account_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let good = event("e-1", &acct, 100);
    let with = |k: &str, v: Value| {
        let mut e = good.clone();
        e[k] = v;
        e
    };
    let without = |k: &str| {
        let mut e = good.clone();
        e.as_object_mut().unwrap().remove(k);
        e
    };

    let r = g
        .post_raw("/v1/events", "application/json", "{\"event_id\": ")
        .await;
    expect_problem(r, 400, None, "malformed json").await;
    let r = g
        .post_raw("/v1/events", "text/plain", &good.to_string())
        .await;
    expect_problem(r, 415, None, "wrong content type").await;
    let raw = good
        .to_string()
        .replace("\"amount\":100", "\"amount\":99999999999999999999");
    assert!(raw.contains("99999999999999999999"));
    let r = g.post_raw("/v1/events", "application/json", &raw).await;
    expect_problem(r, 422, Some("amount"), "amount overflowing 64 bits").await;
    let r = g.post_raw("/v1/events", "application/json", "[1, 2]").await;
    expect_problem(r, 422, Some("body"), "not an object").await;

    let cases: Vec<(&str, Value, &str)> = vec![
        ("missing event_id", without("event_id"), "event_id"),
        ("missing type", without("type"), "type"),
        ("missing amount", without("amount"), "amount"),
        ("missing currency", without("currency"), "currency"),
        ("missing occurred_at", without("occurred_at"), "occurred_at"),
        (
            "missing identifier",
            without("account_number"),
            "account_number",
        ),
        ("negative amount", with("amount", json!(-5)), "amount"),
        ("zero amount", with("amount", json!(0)), "amount"),
        (
            "overflowing amount",
            with("amount", json!(99999999999999999999u128 as f64)),
            "amount",
        ),
        (
            "beyond i64",
            with("amount", json!(18446744073709551615u64)),
            "amount",
        ),
        (
            "above the maximum",
            with("amount", json!(1_000_000_000_000_000_001i64)),
            "amount",
        ),
        ("fractional amount", with("amount", json!(10.5)), "amount"),
        ("amount as text", with("amount", json!("100")), "amount"),
        (
            "unknown currency",
            with("currency", json!("XYZ")),
            "currency",
        ),
        ("unknown type", with("type", json!("teleport")), "type"),
        (
            "bad event id",
            with("event_id", json!("has space")),
            "event_id",
        ),
        (
            "bad timestamp",
            with("occurred_at", json!("yesterday")),
            "occurred_at",
        ),
        (
            "bad pan",
            {
                let mut e = without("account_number");
                e["pan"] = json!("4111111111111112");
                e
            },
            "pan",
        ),
        (
            "both identifiers",
            with("pan", json!("4111111111111111")),
            "account_number",
        ),
        ("reserved field", with("card_hash", json!("x")), "card_hash"),
    ];
    for (case, body, field) in cases {
        let r = g.post("/v1/events", &body).await;
        expect_problem(r, 422, Some(field), case).await;
    }

    // Batches.
    let many: Vec<Value> = (0..1001)
        .map(|i| event(&format!("b-{i}"), &acct, 1))
        .collect();
    let r = g.post("/v1/events/batch", &json!({"events": many})).await;
    expect_problem(r, 422, Some("events"), "oversized batch").await;
    let r = g.post("/v1/events/batch", &json!({"events": []})).await;
    expect_problem(r, 422, Some("events"), "empty batch").await;
    let r = g.post("/v1/events/batch", &json!({"items": [good]})).await;
    expect_problem(r, 422, Some("events"), "batch without events").await;
    let r = g
        .post(
            "/v1/events/batch",
            &json!({"events": [with("amount", json!(-1))]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let res: Value = r.json().await.unwrap();
    assert_eq!(res["results"][0]["status"], 422);
    assert_eq!(
        res["results"][0]["problem"]["errors"][0]["field"],
        "events[0].amount"
    );

    // A body over the server's limit.
    let huge = format!("{{\"events\": [\"{}\"]}}", "x".repeat(1024 * 1024 + 10));
    let r = g
        .post_raw("/v1/events/batch", "application/json", &huge)
        .await;
    expect_problem(r, 413, None, "oversized body").await;

    // Onboarding, login, cards, authorizations, ops.
    let r = g
        .post(
            "/v1/customers",
            &json!({"login": "x1x", "password": "long enough"}),
        )
        .await;
    expect_problem(r, 422, Some("name"), "onboarding without name").await;
    let r = g
        .post(
            "/v1/customers",
            &json!({"name": "N", "login": "x1x", "password": "short"}),
        )
        .await;
    expect_problem(r, 422, Some("password"), "short password").await;
    let r = g
        .post(
            "/v1/customers",
            &json!({"name": "N", "login": "a b", "password": "long enough"}),
        )
        .await;
    expect_problem(r, 422, Some("login"), "bad login").await;
    let r = g
        .post(
            "/v1/customers",
            &json!({"name": "N", "login": "xyz", "password": "long enough", "currency": "ABC"}),
        )
        .await;
    expect_problem(r, 422, Some("currency"), "bad currency").await;
    let r = g.post("/v1/login", &json!({"login": "valid"})).await;
    expect_problem(r, 422, Some("password"), "login without password").await;
    let r = g
        .post(
            &format!("/v1/customers/{}/cards", "not-a-uuid"),
            &json!({"credit_limit": 1, "currency": "BRL"}),
        )
        .await;
    expect_problem(r, 422, Some("customer_id"), "bad customer id").await;
    let r = g
        .post_as(
            ADMIN_TOKEN,
            &format!("/v1/customers/{}/cards", uuid::Uuid::new_v4()),
            &json!({"credit_limit": -1, "currency": "BRL"}),
        )
        .await;
    expect_problem(
        r,
        422,
        Some("credit_limit"),
        "a credit limit is never requested",
    )
    .await;
    let r = g
        .post_as(
            ADMIN_TOKEN,
            &format!("/v1/customers/{}/cards", uuid::Uuid::new_v4()),
            &json!({"currency": "XYZ"}),
        )
        .await;
    expect_problem(r, 422, Some("currency"), "bad card currency").await;
    let auth = json!({"pan": "4111111111111111", "amount": 100, "currency": "BRL",
                      "merchant": {"name": "M", "mcc": "5411", "country": "BR"}, "network_reference": "n-1"});
    let mut bad = auth.clone();
    bad["merchant"]["mcc"] = json!("54");
    expect_problem(
        g.post("/v1/authorizations", &bad).await,
        422,
        Some("merchant.mcc"),
        "bad mcc",
    )
    .await;
    let mut bad = auth.clone();
    bad["amount"] = json!(-100);
    expect_problem(
        g.post("/v1/authorizations", &bad).await,
        422,
        Some("amount"),
        "negative authorization",
    )
    .await;
    let mut bad = auth.clone();
    bad["currency"] = json!("XXX");
    expect_problem(
        g.post("/v1/authorizations", &bad).await,
        422,
        Some("currency"),
        "authorization currency",
    )
    .await;
    let mut bad = auth.clone();
    bad.as_object_mut().unwrap().remove("merchant");
    expect_problem(
        g.post("/v1/authorizations", &bad).await,
        422,
        Some("merchant"),
        "authorization without merchant",
    )
    .await;

    let r = g
        .http
        .get(format!("{}/ops/v1/shards", g.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    expect_problem(r, 404, None, "the ops API is not on the public port").await;
    let r = g
        .http
        .get(format!("{}/ops/v1/shards", g.ops_url))
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, None, "ops without a token").await;
    let r = g
        .http
        .get(format!("{}/ops/v1/shards", g.ops_url))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    expect_problem(r, 401, None, "ops with a wrong token").await;
    let r = g
        .admin(Method::POST, "/ops/v1/shards", Some(json!({"id": "shard-0", "public_url": "http://x", "internal_url": "http://y", "broker_bootstrap": "h:1", "capacity": 1})))
        .await;
    expect_problem(r, 422, Some("id"), "bad shard id").await;
    let r = g
        .admin(Method::POST, "/ops/v1/shards", Some(json!({"id": "shard-7", "public_url": "x", "internal_url": "http://y", "broker_bootstrap": "h:1", "capacity": 1})))
        .await;
    expect_problem(r, 422, Some("public_url"), "bad shard url").await;
    let r = g
        .admin(Method::GET, "/ops/v1/lookup?kind=planet&value=x", None)
        .await;
    expect_problem(r, 422, Some("kind"), "bad lookup kind").await;
    let r = g.get("/v1/nothing-here").await.unwrap();
    expect_problem(r, 404, None, "unknown route").await;
}

/// The moves API: bad ids, unknown customers and shards, a move to where
/// the customer already lives, a second open move, bad filters and abort
/// bodies each get a problem naming the field or the conflict; nothing is
/// planned by a refused request.
#[tokio::test]
async fn the_moves_api_refuses_bad_requests_with_problems() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::without_broker(1).await;
    g.add_shard("shard-1", &one, 10).await;
    let customer = g.onboard("mover").await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let plan = |body: Value| g.admin(Method::POST, "/ops/v1/moves", Some(body));
    let cases: Vec<(Value, u16, Option<&str>, &str)> = vec![
        (
            json!({"customer_id": "nope", "to": "shard-1"}),
            422,
            Some("customer_id"),
            "not a uuid",
        ),
        (
            json!({"customer_id": customer, "to": "Shard 9!"}),
            422,
            Some("to"),
            "not a shard id",
        ),
        (json!({"customer_id": customer}), 422, None, "no target"),
        (
            json!({"customer_id": uuid::Uuid::nil(), "to": "shard-1"}),
            404,
            None,
            "unknown customer",
        ),
        (
            json!({"customer_id": customer, "to": "shard-9"}),
            404,
            None,
            "unknown shard",
        ),
        (
            json!({"customer_id": customer, "to": "shard-1"}),
            409,
            None,
            "already lives there",
        ),
    ];
    for (body, status, field, case) in cases {
        expect_problem(plan(body).await, status, field, case).await;
    }
    for (path, field) in [
        ("/ops/v1/moves/not-a-uuid", "id"),
        ("/ops/v1/moves?phase=bogus", "phase"),
        ("/ops/v1/moves?limit=0", "limit"),
        ("/ops/v1/moves?customer_id=x", "customer_id"),
    ] {
        expect_problem(
            g.admin(Method::GET, path, None).await,
            422,
            Some(field),
            path,
        )
        .await;
    }
    let unknown = format!("/ops/v1/moves/{}", uuid::Uuid::nil());
    expect_problem(
        g.admin(Method::GET, &unknown, None).await,
        404,
        None,
        "unknown move",
    )
    .await;
    let abort = format!("{unknown}/abort");
    let r = g
        .http
        .post(format!("{}{abort}", g.ops_url))
        .bearer_auth(ADMIN_TOKEN)
        .body("4111111111111111")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("4111111111111111"),
        "the body is not echoed: {text}"
    );
    let listed: Value = g
        .admin(Method::GET, "/ops/v1/moves", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["count"], 0, "nothing planned: {listed}");
}
