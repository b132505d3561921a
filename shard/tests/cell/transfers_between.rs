//! Transfers to another customer of the same cell, over HTTP against a real
//! cell (Postgres, broker): by account number, in one transaction over both
//! customers' books, idempotent on transfer_id, refused whole when the sender
//! cannot cover it, and free of deadlocks
//! when customers send to each other at the same time.

use std::time::Duration;

use crate::support::*;
use cellbank_shared::contract::CustomerCreated;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, Broker};
use chrono::Utc;
use serde_json::{json, Value};

pub(crate) async fn post(app: &TestApp, c: &CustomerCreated, body: &Value) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/v1/customers/{}/transfers", c.customer_id)))
        .bearer_auth(app.token(c.customer_id, 1))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

pub(crate) async fn checking(app: &TestApp, c: &CustomerCreated) -> i64 {
    let r = app
        .client
        .get(app.url(&format!(
            "/v1/customers/{}/accounts/{}",
            c.customer_id, c.account_id
        )))
        .bearer_auth(app.token(c.customer_id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json::<Value>().await.unwrap()["balance"]
        .as_i64()
        .unwrap()
}

/// Deposits `amount` into each customer's checking account through the log.
pub(crate) async fn fund(
    app: &TestApp,
    broker: &Broker,
    customers: &[&CustomerCreated],
    amount: i64,
) {
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for (i, c) in customers.iter().enumerate() {
        let e = envelope(
            &format!("fund-{i}"),
            c.customer_id,
            1,
            "deposit",
            Utc::now(),
            json!({"amount": amount, "currency": "BRL", "account_number": c.account_number}),
        );
        producer
            .send_envelope(Topic::Inbound.name(), &e)
            .await
            .unwrap();
    }
    let pool = app.pool().await;
    eventually(Duration::from_secs(30), "deposits applied", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'inbound'",
        )
        .await
            == customers.len() as i64
    })
    .await;
}

/// The cell's books balance, and nothing is pending or in the clearing.
pub(crate) async fn settled_books(app: &TestApp) {
    let pool = app.pool().await;
    let sum = |code: &'static str| {
        let pool = pool.clone();
        async move {
            scalar(&pool, &format!(
                "SELECT coalesce(sum(balance), 0)::bigint FROM book_accounts WHERE code LIKE '{code}'"
            ))
            .await
        }
    };
    assert_eq!(sum("%").await, 0, "trial balance");
    assert_eq!(sum("transfers_pending").await, 0, "nothing pending");
    assert_eq!(
        sum("transfer_clearing").await,
        0,
        "the clearing nets to zero in one cell"
    );
}

#[tokio::test]
async fn a_transfer_to_another_customer_of_the_cell_settles_at_once() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let (a, b) = (app.create_customer().await, app.create_customer().await);
    fund(&app, &broker, &[&a, &b], 10_000).await;
    eventually(Duration::from_secs(30), "keys loaded", || async {
        checking(&app, &a).await == 10_000
    })
    .await;

    let tid = uuid::Uuid::new_v4();
    let body = json!({"transfer_id": tid, "from_account_id": a.account_id,
                      "to_account_number": b.account_number, "amount": 3_000, "currency": "BRL"});
    let (status, t) = post(&app, &a, &body).await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["state"], "completed");
    assert_eq!(t["to_account_number"], b.account_number.as_str());
    assert!(
        t["_links"].get("to").is_none(),
        "another customer's account is not a link of the sender's"
    );
    assert_eq!(
        (checking(&app, &a).await, checking(&app, &b).await),
        (7_000, 13_000)
    );
    let (status, _) = post(&app, &a, &body).await;
    assert_eq!(status, 200, "a repeated transfer_id changes nothing");
    assert_eq!(
        (checking(&app, &a).await, checking(&app, &b).await),
        (7_000, 13_000)
    );
    settled_books(&app).await;

    // Refused whole: more than the sender holds; two recipients.
    let (status, p) = post(
        &app,
        &a,
        &json!({"from_account_id": a.account_id,
        "to_account_number": b.account_number, "amount": 1_000_000, "currency": "BRL"}),
    )
    .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (422, Some("amount"))
    );
    let (status, p) = post(
        &app,
        &a,
        &json!({"from_account_id": a.account_id, "to_account_id": a.account_id,
        "to_account_number": b.account_number, "amount": 1, "currency": "BRL"}),
    )
    .await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (422, Some("to_account_id"))
    );
    assert_eq!(
        (checking(&app, &a).await, checking(&app, &b).await),
        (7_000, 13_000)
    );

    // The transfer resource, and only its sender sees it.
    let href = t["_links"]["self"]["href"].as_str().unwrap();
    let path = &href[href.find("/v1/").unwrap()..];
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(app.token(a.customer_id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .client
        .get(app.url(path))
        .bearer_auth(app.token(b.customer_id, 1))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}

#[tokio::test]
async fn customers_sending_to_each_other_at_once_neither_deadlock_nor_lose_money() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let (a, b) = (app.create_customer().await, app.create_customer().await);
    fund(&app, &broker, &[&a, &b], 50_000).await;
    eventually(Duration::from_secs(30), "funded", || async {
        checking(&app, &b).await == 50_000
    })
    .await;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (from, to) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let body = json!({"from_account_id": from.account_id, "to_account_number": to.account_number,
                          "amount": 100 + i, "currency": "BRL"});
        let (app, from) = (&app, from);
        tasks.push(async move { post(app, from, &body).await.0 });
    }
    let statuses = futures::future::join_all(tasks).await;
    assert!(
        statuses.iter().all(|s| *s == 201),
        "every transfer booked: {statuses:?}"
    );
    let (sent_by_a, sent_by_b): (i64, i64) = (
        (0..40).filter(|i| i % 2 == 0).map(|i| 100 + i).sum(),
        (0..40).filter(|i| i % 2 == 1).map(|i| 100 + i).sum(),
    );
    assert_eq!(checking(&app, &a).await, 50_000 - sent_by_a + sent_by_b);
    assert_eq!(
        checking(&app, &a).await + checking(&app, &b).await,
        100_000,
        "no money made or lost"
    );
    settled_books(&app).await;
}

pub(crate) async fn credit(
    app: &TestApp,
    transfer_id: uuid::Uuid,
    body: &Value,
    token: &str,
) -> u16 {
    app.client
        .post(app.url(&format!("/internal/v1/transfers/{transfer_id}/credit")))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The recipient's side of a transfer between cells, as global's transfer
/// service calls it: received once, into the account with that number.
#[tokio::test]
async fn a_transfer_from_another_cell_is_received_once() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let b = app.create_customer().await;
    let tid = uuid::Uuid::new_v4();
    let body = json!({"to_account_number": b.account_number, "amount": 2_500, "currency": "BRL"});
    assert_eq!(credit(&app, tid, &body, "not-the-token").await, 401);
    assert_eq!(credit(&app, tid, &body, INTERNAL).await, 201);
    assert_eq!(
        credit(&app, tid, &body, INTERNAL).await,
        200,
        "a repeat books nothing"
    );
    let c = app.create_customer().await;
    let elsewhere =
        json!({"to_account_number": c.account_number, "amount": 2_500, "currency": "BRL"});
    assert_eq!(
        credit(&app, tid, &elsewhere, INTERNAL).await,
        409,
        "one transfer, one recipient"
    );
    let more = json!({"to_account_number": b.account_number, "amount": 2_600, "currency": "BRL"});
    assert_eq!(
        credit(&app, tid, &more, INTERNAL).await,
        409,
        "one transfer, one amount"
    );
    eventually(Duration::from_secs(30), "keys loaded", || async {
        checking(&app, &b).await == 2_500
    })
    .await;
    let pool = app.pool().await;
    let clearing = scalar(&pool, "SELECT coalesce(sum(balance), 0)::bigint FROM book_accounts WHERE code = 'transfer_clearing'").await;
    assert_eq!(
        clearing, 2_500,
        "the cell's share of the clearing until the sender's cell delivers it"
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT coalesce(sum(balance), 0)::bigint FROM book_accounts"
        )
        .await,
        0
    );
    let unknown = json!({"to_account_number": "9999999999", "amount": 1, "currency": "BRL"});
    assert_eq!(
        credit(&app, uuid::Uuid::new_v4(), &unknown, INTERNAL).await,
        404
    );
    let zero = json!({"to_account_number": b.account_number, "amount": 0, "currency": "BRL"});
    assert_eq!(
        credit(&app, uuid::Uuid::new_v4(), &zero, INTERNAL).await,
        422
    );
    let other = json!({"to_account_number": b.account_number, "amount": 1, "currency": "USD"});
    assert_eq!(
        credit(&app, uuid::Uuid::new_v4(), &other, INTERNAL).await,
        422
    );
    assert_eq!(checking(&app, &b).await, 2_500);
}
