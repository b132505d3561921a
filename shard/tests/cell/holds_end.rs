//! Defect 6: holds that never end. An approval's hold ends when the network
//! settles it, reverses it (`authorization_reversed`), or after the hold
//! expiry's business time; a reversal and an expiry release it both in the
//! ledger and in the authorizer, also for an approval the ledger never booked.

use std::time::Duration;

use cellbank_shard::consumers::CellConsumer;
use cellbank_shared::contract::Decision;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, fresh_database, Broker};
use chrono::Utc;
use serde_json::json;

use crate::support::*;

const LIMIT: i64 = 10_000;

/// A cell whose holds expire after `secs` of business time, with the
/// consumers in `held` held by an operator from its start.
async fn cell_holding(broker: &Broker, secs: u64, held: &[CellConsumer]) -> TestApp {
    let db = fresh_database("shard_holds").await;
    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
    for c in held {
        sqlx::query("INSERT INTO consumer_holds (name, held) VALUES ($1, true)")
            .bind(c.name())
            .execute(&pool)
            .await
            .unwrap();
    }
    let signer = cellbank_shared::token::TokenSigner::from_seed_b64(
        &cellbank_shared::token::TokenSigner::generate_seed_b64(),
    )
    .unwrap();
    let global = jwks_server(&signer).await;
    let mut s = settings(&db, &broker.bootstrap(), &global);
    s.authorizer.hold_expiry_secs = secs;
    TestApp::start(s, signer).await
}

async fn cell(broker: &Broker, secs: u64) -> TestApp {
    cell_holding(broker, secs, &[]).await
}

async fn unsettled(app: &TestApp) -> i64 {
    let pool = app.pool().await;
    scalar(
        &pool,
        "SELECT COALESCE(sum(balance), 0)::bigint FROM book_accounts WHERE code LIKE '%:unsettled'",
    )
    .await
}

fn open_to_buy(app: &TestApp, pan: &str) -> i64 {
    app.state
        .authorizer
        .with_state(|s| s.card(pan).unwrap().open_to_buy())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reversal_releases_the_hold_in_the_ledger_and_the_authorizer() {
    let broker = Broker::start().await;
    let app = cell(&broker, 3600).await;
    let cust = app.create_customer().await;
    let (card, pan) = app.issue_card(cust.customer_id, LIMIT).await;
    app.wait_card_known(&pan).await;
    let d = app
        .authorize(&auth_request(cust.customer_id, &pan, 4_000, "to-reverse"))
        .await;
    assert_eq!(d.decision, Decision::Approved);
    eventually(Duration::from_secs(30), "the hold is booked", || async {
        unsettled(&app).await == 4_000
    })
    .await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    let reversal = envelope(
        "reversal-1",
        cust.customer_id,
        1,
        "authorization_reversed",
        Utc::now(),
        json!({"amount": 4_000, "currency": "BRL", "card_id": card, "network_reference": "to-reverse"}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &reversal)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the ledger released it",
        || async { unsettled(&app).await == 0 },
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the authorizer released it",
        || async { open_to_buy(&app, &pan) == LIMIT },
    )
    .await;
    // A settlement of the reversed reference books the purchase, holds nothing.
    let settled = envelope(
        "late-settlement",
        cust.customer_id,
        1,
        "purchase_settled",
        Utc::now(),
        json!({"amount": 4_000, "currency": "BRL", "card_id": card, "network_reference": "to-reverse"}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &settled)
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the bill has it", || async {
        open_to_buy(&app, &pan) == LIMIT - 4_000
    })
    .await;
    assert_eq!(unsettled(&app).await, 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsettled_hold_expires_in_the_ledger_and_the_authorizer() {
    let broker = Broker::start().await;
    let app = cell(&broker, 2).await;
    let cust = app.create_customer().await;
    let (_card, pan) = app.issue_card(cust.customer_id, LIMIT).await;
    app.wait_card_known(&pan).await;
    let d = app
        .authorize(&auth_request(
            cust.customer_id,
            &pan,
            6_000,
            "never-settled",
        ))
        .await;
    assert_eq!(d.decision, Decision::Approved);
    assert_eq!(open_to_buy(&app, &pan), LIMIT - 6_000);
    let pool = app.pool().await;
    eventually(Duration::from_secs(30), "the ledger expired it", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE event_type = 'authorization_expired'",
        )
        .await
            == 1
            && unsettled(&app).await == 0
    })
    .await;
    eventually(
        Duration::from_secs(30),
        "the authorizer dropped it",
        || async { open_to_buy(&app, &pan) == LIMIT },
    )
    .await;
    app.stop().await;
}

/// An approval the ledger never books (here: its consumer is held) still
/// stops holding the limit in the authorizer after the expiry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_never_booked_expires_in_the_authorizer() {
    let broker = Broker::start().await;
    let app = cell_holding(&broker, 2, &[CellConsumer::LedgerAuthorizations]).await;
    let cust = app.create_customer().await;
    let (_card, pan) = app.issue_card(cust.customer_id, LIMIT).await;
    app.wait_card_known(&pan).await;
    let all = app
        .authorize(&auth_request(cust.customer_id, &pan, LIMIT, "unbooked"))
        .await;
    assert_eq!(all.decision, Decision::Approved);
    let none_left = app
        .authorize(&auth_request(cust.customer_id, &pan, 10, "while-held"))
        .await;
    assert_eq!(none_left.reason, "insufficient_limit");
    eventually(
        Duration::from_secs(30),
        "a later decision finds the limit free",
        || async {
            let nr = format!("after-{}", Utc::now().timestamp_micros());
            app.authorize(&auth_request(cust.customer_id, &pan, 10, &nr))
                .await
                .decision
                == Decision::Approved
        },
    )
    .await;
    let pool = app.pool().await;
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM card_purchases").await,
        0,
        "the ledger never booked it: the authorizer released it alone"
    );
    app.stop().await;
}
