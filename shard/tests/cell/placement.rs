//! Defects 5 and 7: every write to a customer goes through one locked,
//! fenced path. A write at another epoch, or to a fenced or moved-out
//! customer, is refused; nothing but the explicit placement change raises an
//! epoch; blocking a card takes the customer's lock like every other writer.

use std::time::Duration;

use cellbank_shared::contract::Decision;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, Broker};
use chrono::Utc;
use serde_json::json;

use crate::support::*;

/// Sends a deposit routed at `epoch` and waits until it was applied or
/// dead-lettered; true when applied.
async fn deposit(
    app: &TestApp,
    producer: &Producer,
    c: &cellbank_shared::contract::CustomerCreated,
    id: &str,
    epoch: i64,
) -> bool {
    let e = envelope(
        id,
        c.customer_id,
        epoch,
        "deposit",
        Utc::now(),
        json!({"amount": 100, "currency": "BRL", "account_number": c.account_number}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &e)
        .await
        .unwrap();
    let pool = app.pool().await;
    let (applied, dead) = (
        format!("SELECT count(*) FROM events WHERE event_id = '{id}'"),
        format!("SELECT count(*) FROM dead_letters WHERE event_id = '{id}'"),
    );
    eventually(
        Duration::from_secs(30),
        "deposit applied or dead",
        || async { scalar(&pool, &applied).await + scalar(&pool, &dead).await == 1 },
    )
    .await;
    scalar(&pool, &applied).await == 1
}

async fn epoch_of(app: &TestApp, c: CustomerId) -> i64 {
    let pool = app.pool().await;
    scalar(
        &pool,
        &format!("SELECT epoch FROM customers WHERE customer_id = '{c}'"),
    )
    .await
}

async fn transfer(
    app: &TestApp,
    c: &cellbank_shared::contract::CustomerCreated,
    token: &str,
) -> u16 {
    let accounts = app
        .client
        .get(app.url(&format!("/v1/customers/{}/accounts", c.customer_id)))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = match accounts.status().as_u16() {
        200 => accounts.json().await.unwrap(),
        other => return other,
    };
    let ids: Vec<&str> = body["_embedded"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    app.client
        .post(app.url(&format!("/v1/customers/{}/transfers", c.customer_id)))
        .bearer_auth(token)
        .json(&json!({"from_account_id": ids[0], "to_account_id": ids[1], "amount": 1, "currency": "BRL"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_fenced_by_state_and_epoch() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let c = cust.customer_id;
    let (card, pan) = app.issue_card(c, 10_000).await;
    app.wait_card_known(&pan).await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    eventually(Duration::from_secs(30), "keys loaded", || async {
        transfer(&app, &cust, &app.token(c, 1)).await != 503
    })
    .await;
    assert!(deposit(&app, &producer, &cust, "at-1", 1).await);

    // An event or a token from a newer epoch raises nothing: refused.
    assert!(
        !deposit(&app, &producer, &cust, "ahead", 2).await,
        "an event ahead is refused"
    );
    assert_eq!(epoch_of(&app, c).await, 1, "and the epoch did not move");
    assert_eq!(
        transfer(&app, &cust, &app.token(c, 2)).await,
        409,
        "a token ahead is refused"
    );
    assert_eq!(transfer(&app, &cust, &app.token(c, 1)).await, 201);

    // Only the explicit operation raises it; then epoch 1 is stale.
    app.place(c, "active", 2).await;
    assert!(!deposit(&app, &producer, &cust, "stale", 1).await);
    assert!(deposit(&app, &producer, &cust, "at-2", 2).await);

    // Fenced: nothing is written, whoever writes.
    app.place(c, "fenced", 2).await;
    assert!(!deposit(&app, &producer, &cust, "while-fenced", 2).await);
    assert_eq!(transfer(&app, &cust, &app.token(c, 2)).await, 409);
    let block = app
        .client
        .post(app.url(&format!("/admin/v1/cards/{card}/block")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(block.status(), 409, "an operator's write is fenced too");
    let issue = app
        .client
        .post(app.url(&format!("/internal/v1/customers/{c}/cards")))
        .bearer_auth(INTERNAL)
        .json(
            &json!({"card_id": uuid::Uuid::new_v4(), "epoch": 2, "pan_hash": "h-new",
                      "last4": "0009", "credit_limit": 100, "currency": "BRL"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(issue.status(), 409);
    eventually(
        Duration::from_secs(30),
        "the authorizer declines",
        || async {
            let d = app
                .authorize(&auth_request_at(c, &pan, 10, "fenced-1", 2))
                .await;
            d.decision == Decision::Declined && d.reason == "customer_not_here"
        },
    )
    .await;

    // Released (a move rolled back): writable again at the same epoch.
    app.place(c, "active", 2).await;
    assert_eq!(transfer(&app, &cust, &app.token(c, 2)).await, 201);
    // Transitions the state machine does not have are refused.
    assert_eq!(app.try_place(c, "moved_out", 2).await.status(), 409);
    assert_eq!(app.try_place(c, "active", 1).await.status(), 409);
    app.place(c, "fenced", 2).await;
    app.place(c, "moved_out", 2).await;
    assert_eq!(app.try_place(c, "fenced", 2).await.status(), 409);
    assert!(!deposit(&app, &producer, &cust, "moved", 2).await);
    app.stop().await;
}

/// Defect 5: blocking a card wrote its fact without the customer's lock, so
/// facts could reach the authorizer out of commit order. Now the block waits
/// for a writer that holds the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_a_card_takes_the_customer_lock() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let (card, _pan) = app.issue_card(cust.customer_id, 10_000).await;
    let pool = app.pool().await;
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM customers WHERE customer_id = $1 FOR UPDATE")
        .bind(cust.customer_id.as_uuid())
        .execute(&mut *holder)
        .await
        .unwrap();
    let (client, url) = (
        app.client.clone(),
        app.url(&format!("/admin/v1/cards/{card}/block")),
    );
    let block = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
    });
    eventually(
        Duration::from_secs(30),
        "the block waits for the customer lock",
        || async {
            scalar(
                &pool,
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'
               AND query LIKE '%FROM customers WHERE customer_id%FOR UPDATE%'",
            )
            .await
                == 1
        },
    )
    .await;
    assert!(!block.is_finished());
    holder.commit().await.unwrap();
    assert_eq!(block.await.unwrap(), 200);
    app.stop().await;
}
