//! The HTTP API over real sockets: internal (global), admin and the app's HAL
//! resources with tokens verified against global's JWKS.

use std::time::Duration;

use crate::support::*;
use cellbank_shared::contract::{CreateCustomer, CustomerCreated};
use cellbank_shared::ids::{CustomerId, Epoch, ShardId};
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::money::Currency;
use cellbank_shared::testkit::{eventually, Broker};
use cellbank_shared::token::{Claims, ISSUER};
use chrono::{Duration as Days, Utc};
use serde_json::{json, Value};

async fn get(app: &TestApp, path: &str, token: &str) -> (u16, Value, String) {
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, r.json().await.unwrap_or(Value::Null), ct)
}

fn path_of(href: &Value) -> String {
    href.as_str()
        .unwrap()
        .trim_start_matches("http://shard-3.test")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hal_api_with_tokens_accounts_entries_cards_and_transfers() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let c = cust.customer_id;
    assert!(cust.account_number.starts_with("03") && cust.account_number.len() == 10);
    let (card, _pan) = app.issue_card(c, 100_000).await;
    let token = app.token(c, 1);
    eventually(Duration::from_secs(30), "keys loaded", || async {
        get(&app, &format!("/v1/customers/{c}"), &token).await.0 == 200
    })
    .await;

    // deposits, some dated in the past (late arrivals), and a card purchase settled
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for i in 0..5 {
        let e = envelope(
            &format!("dep-{i}"),
            c,
            1,
            "deposit",
            Utc::now() - Days::days(5 - i),
            json!({"amount": 1000 * (i + 1), "currency": "BRL", "account_number": cust.account_number}),
        );
        producer
            .send_envelope(Topic::Inbound.name(), &e)
            .await
            .unwrap();
    }
    let settled = envelope(
        "buy-1",
        c,
        1,
        "purchase_settled",
        Utc::now(),
        json!({"amount": 2500, "currency": "BRL", "card_id": card, "network_reference": "n-1"}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &settled)
        .await
        .unwrap();
    let pool = app.pool().await;
    eventually(Duration::from_secs(30), "events applied", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'inbound'",
        )
        .await
            == 6
    })
    .await;

    // customer -> accounts -> account -> entries, following links only
    let (status, customer, ct) = get(&app, &format!("/v1/customers/{c}"), &token).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/hal+json");
    let (_, accounts, _) = get(
        &app,
        &path_of(&customer["_links"]["accounts"]["href"]),
        &token,
    )
    .await;
    let list = accounts["_embedded"]["accounts"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let checking = list.iter().find(|a| a["kind"] == "checking").unwrap();
    let savings = list.iter().find(|a| a["kind"] == "savings").unwrap();
    assert_eq!(checking["balance"], 15_000);
    let (_, entries, _) = get(
        &app,
        &format!(
            "{}?limit=2",
            path_of(&checking["_links"]["entries"]["href"])
        ),
        &token,
    )
    .await;
    let page1 = entries["_embedded"]["entries"].as_array().unwrap();
    assert_eq!(page1.len(), 2);
    assert_eq!(page1[0]["amount"], 5000, "newest business time first");
    let (_, entries2, _) = get(&app, &path_of(&entries["_links"]["next"]["href"]), &token).await;
    let page2 = entries2["_embedded"]["entries"].as_array().unwrap();
    assert_eq!(page2[0]["amount"], 3000);
    // balance as of a past business time
    let as_of = (Utc::now() - Days::days(3) + Days::hours(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, past, _) = get(
        &app,
        &format!(
            "{}?as_of={}",
            path_of(&checking["_links"]["self"]["href"]),
            as_of
        ),
        &token,
    )
    .await;
    assert_eq!(past["balance"], 1000 + 2000 + 3000);

    // cards: last four digits only, available limit and current bill
    let (_, cards, _) = get(&app, &path_of(&customer["_links"]["cards"]["href"]), &token).await;
    let card0 = &cards["_embedded"]["cards"][0];
    assert_eq!(card0["last4"], "1234");
    assert_eq!(card0["current_bill"], 2500);
    assert_eq!(card0["available_limit"], 100_000 - 2500);
    assert!(card0.get("pan_hash").is_none());

    // transfers between own accounts
    let transfers = path_of(&customer["_links"]["transfers"]["href"]);
    let tid = uuid::Uuid::new_v4();
    let body = json!({"transfer_id": tid, "from_account_id": checking["account_id"], "to_account_id": savings["account_id"],
                      "amount": 4000, "currency": "BRL", "description": "rainy day"});
    let post = |b: Value| {
        let (client, url, token) = (app.client.clone(), app.url(&transfers), token.clone());
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&b)
                .send()
                .await
                .unwrap()
        }
    };
    let r = post(body.clone()).await;
    assert_eq!(r.status(), 201);
    let r = post(body.clone()).await;
    assert_eq!(r.status(), 200, "repeating a transfer_id changes nothing");
    let too_much = json!({"from_account_id": checking["account_id"], "to_account_id": savings["account_id"],
                          "amount": 1_000_000, "currency": "BRL"});
    let r = post(too_much).await;
    assert_eq!(r.status(), 422);
    let r = post(json!({"from_account_id": "nope"})).await;
    assert_eq!(r.status(), 422);
    let problem: Value = r.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "from_account_id");
    let (_, after, _) = get(
        &app,
        &path_of(&customer["_links"]["accounts"]["href"]),
        &token,
    )
    .await;
    let bal = |kind: &str| {
        after["_embedded"]["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["kind"] == kind)
            .unwrap()["balance"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((bal("checking"), bal("savings")), (11_000, 4_000));
    let (_, tlist, _) = get(&app, &transfers, &token).await;
    assert_eq!(tlist["_embedded"]["transfers"].as_array().unwrap().len(), 1);

    // tokens: missing, another shard, another customer, an older epoch
    let (status, p, ct) = get(&app, &format!("/v1/customers/{c}"), "garbage").await;
    assert_eq!((status, ct.as_str()), (401, "application/problem+json"));
    assert!(p["_links"]["login"]["href"]
        .as_str()
        .unwrap()
        .ends_with("/v1/login"));
    let now = Utc::now().timestamp();
    let other_shard = app.signer.sign(&Claims {
        sub: c,
        shard: ShardId::parse("shard-9").unwrap(),
        epoch: Epoch(1),
        iat: now,
        exp: now + 60,
        iss: ISSUER.into(),
    });
    assert_eq!(
        get(&app, &format!("/v1/customers/{c}"), &other_shard)
            .await
            .0,
        401
    );
    let stranger = app.token(CustomerId::new(), 1);
    assert_eq!(
        get(&app, &format!("/v1/customers/{c}"), &stranger).await.0,
        403
    );
    // the explicit placement change raises the epoch: epoch-1 tokens are stale
    app.place(c, "active", 2).await;
    assert_eq!(
        get(&app, &format!("/v1/customers/{c}"), &token).await.0,
        409
    );
    let (_, p, _) = get(&app, &format!("/v1/customers/{c}"), &token).await;
    assert!(p["_links"]["login"]["href"].is_string());
    assert_eq!(
        get(&app, &format!("/v1/customers/{c}"), &app.token(c, 2))
            .await
            .0,
        200
    );

    // metrics and openapi
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("shard_ledger_postings_total"));
    assert!(metrics.contains("shard_consumer_lag"));
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/customers/{customer_id}/transfers"]["post"].is_object());
    assert!(doc["paths"]["/admin/v1/consumers/{name}/hold"]["put"].is_object());
    assert!(metrics.contains("shard_authorizer_snapshot_seconds"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_api_is_authenticated_validated_and_idempotent() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let body = CreateCustomer {
        customer_id: CustomerId::new(),
        name: "Grace".into(),
        epoch: Epoch(1),
        currency: Currency::Brl,
    };
    let url = app.url("/internal/v1/customers");
    let r = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app
        .client
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let first: CustomerCreated = app
        .client
        .post(&url)
        .bearer_auth(INTERNAL)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = app
        .client
        .post(&url)
        .bearer_auth(INTERNAL)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 201);
    let again: CustomerCreated = again.json().await.unwrap();
    assert_eq!(
        (first.account_id, &first.account_number),
        (again.account_id, &again.account_number)
    );

    let r = app
        .client
        .post(&url)
        .bearer_auth(INTERNAL)
        .json(
            &json!({"customer_id": CustomerId::new(), "name": " ", "epoch": 1, "currency": "BRL"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["errors"][0]["field"], "name");
    // Found by schemathesis: a NUL in a name was a 500 (Postgres text
    // refuses it).
    let r = app
        .client
        .post(&url)
        .bearer_auth(INTERNAL)
        .json(&json!({"customer_id": CustomerId::new(), "name": "a\u{0}b", "epoch": 1, "currency": "BRL"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app
        .client
        .post(&url)
        .bearer_auth(INTERNAL)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);

    let cards = app.url(&format!(
        "/internal/v1/customers/{}/cards",
        body.customer_id
    ));
    let bad = json!({"card_id": uuid::Uuid::new_v4(), "epoch": 1, "pan_hash": "h", "last4": "12a4", "credit_limit": 100, "currency": "BRL"});
    let r = app
        .client
        .post(&cards)
        .bearer_auth(INTERNAL)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let unknown = app.url(&format!(
        "/internal/v1/customers/{}/cards",
        CustomerId::new()
    ));
    let ok = json!({"card_id": uuid::Uuid::new_v4(), "epoch": 1, "pan_hash": "h", "last4": "1234", "credit_limit": 100, "currency": "BRL"});
    let r = app
        .client
        .post(&unknown)
        .bearer_auth(INTERNAL)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(&cards)
        .bearer_auth(INTERNAL)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .client
        .post(&cards)
        .bearer_auth(INTERNAL)
        .json(&ok)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "issuing the same card again answers the same"
    );
    let clash = json!({"card_id": uuid::Uuid::new_v4(), "epoch": 1, "pan_hash": "h", "last4": "1234", "credit_limit": 100, "currency": "BRL"});
    let r = app
        .client
        .post(&cards)
        .bearer_auth(INTERNAL)
        .json(&clash)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let stale = json!({"card_id": uuid::Uuid::new_v4(), "epoch": 0, "pan_hash": "h2", "last4": "1234", "credit_limit": 100, "currency": "BRL"});
    let r = app
        .client
        .post(&cards)
        .bearer_auth(INTERNAL)
        .json(&stale)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);

    let auth = app.url("/internal/v1/authorizations");
    let mut req = serde_json::to_value(auth_request(body.customer_id, "h", 0, "n")).unwrap();
    let r = app
        .client
        .post(&auth)
        .bearer_auth(INTERNAL)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422, "amount must be positive");
    req["amount"] = json!(50);
    req["network_reference"] = json!("");
    let r = app
        .client
        .post(&auth)
        .bearer_auth(INTERNAL)
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = app.client.post(&auth).json(&req).send().await.unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}
