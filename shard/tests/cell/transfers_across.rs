//! The cell's side of transfers between cells, over HTTP against a real cell
//! (Postgres, broker): a transfer to a number this cell does not hold, or to
//! a login, reserves the sender's money (pending), is written to the
//! hand-off outbox with it, and settles exactly one way when global says so
//! — delivered or returned, each idempotent, the other then refused. On the
//! recipient's side, a void answers whether the credit was booked and, if
//! not, makes sure it never will be.

use std::time::Duration;

use crate::support::*;
use crate::transfers_between::{checking, credit, fund, post};
use cellbank_shared::contract::{transfer_key, CustomerCreated};
use cellbank_shared::testkit::{eventually, Broker};
use serde_json::{json, Value};
use uuid::Uuid;

async fn internal(app: &TestApp, path: &str, body: &Value, token: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn book(app: &TestApp, code: &str) -> i64 {
    let pool = app.pool().await;
    scalar(
        &pool,
        &format!(
            "SELECT coalesce(sum(balance), 0)::bigint FROM book_accounts WHERE code LIKE '{code}'"
        ),
    )
    .await
}

async fn show(app: &TestApp, c: &CustomerCreated, id: Uuid) -> Value {
    let r = app
        .client
        .get(app.url(&format!("/v1/customers/{}/transfers/{id}", c.customer_id)))
        .bearer_auth(app.token(c.customer_id, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

fn settle_body(c: &CustomerCreated, reason: Option<&str>) -> Value {
    match reason {
        Some(r) => json!({"customer_id": c.customer_id, "reason": r}),
        None => json!({"customer_id": c.customer_id}),
    }
}

/// Starts a transfer of `amount` to a number of no account here: pending.
async fn send_away(app: &TestApp, a: &CustomerCreated, amount: i64) -> Uuid {
    let id = Uuid::new_v4();
    let body = json!({"transfer_id": id, "from_account_id": a.account_id,
                      "to_account_number": "9999999999", "amount": amount, "currency": "BRL"});
    let (status, t) = post(app, a, &body).await;
    assert_eq!(status, 202, "{t}");
    assert_eq!(t["state"], "pending");
    assert_eq!(post(app, a, &body).await.0, 200, "a repeat books nothing");
    let mut other = body.clone();
    other["amount"] = json!(amount + 1);
    let (status, p) = post(app, a, &other).await;
    assert_eq!(status, 409, "the id names another transfer: {p}");
    id
}

#[tokio::test]
async fn a_transfer_to_another_cell_is_reserved_then_settled_exactly_one_way() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let a = app.create_customer().await;
    fund(&app, &broker, &[&a], 10_000).await;
    eventually(Duration::from_secs(30), "keys loaded", || async {
        checking(&app, &a).await == 10_000
    })
    .await;

    let sent = send_away(&app, &a, 1_500).await;
    assert_eq!(checking(&app, &a).await, 8_500, "the money is reserved");
    assert_eq!(book(&app, "transfers_pending").await, -1_500, "and pending");
    let pool = app.pool().await;
    let handoffs = scalar(
        &pool,
        &format!("SELECT count(*) FROM transfer_handoffs WHERE transfer_id = '{sent}'"),
    )
    .await;
    assert_eq!(handoffs, 1, "written to the outbox with the reservation");
    // This test's global is only a key server: the relay keeps retrying.
    eventually(Duration::from_secs(20), "hand-off tried", || async {
        scalar(&pool, &format!(
            "SELECT coalesce(max(attempts), 0)::bigint FROM transfer_handoffs WHERE transfer_id = '{sent}' AND handed_at IS NULL"
        )).await >= 1
    })
    .await;

    let deliver = format!("/internal/v1/transfers/{sent}/deliver");
    let give_back = format!("/internal/v1/transfers/{sent}/return");
    let body = settle_body(&a, None);
    assert_eq!(
        internal(&app, &deliver, &body, "not-the-token").await.0,
        401
    );
    let (status, p) = internal(&app, &give_back, &body, INTERNAL).await;
    assert_eq!(
        (status, p["errors"][0]["field"].as_str()),
        (422, Some("reason"))
    );
    let (status, d) = internal(&app, &deliver, &body, INTERNAL).await;
    assert_eq!(
        (status, d["state"].as_str()),
        (200, Some("completed")),
        "{d}"
    );
    assert_eq!(
        internal(&app, &deliver, &body, INTERNAL).await.0,
        200,
        "once"
    );
    let back = settle_body(&a, Some("too late"));
    assert_eq!(
        internal(&app, &give_back, &back, INTERNAL).await.0,
        409,
        "one way only"
    );
    assert_eq!(checking(&app, &a).await, 8_500);
    assert_eq!(book(&app, "transfers_pending").await, 0);
    assert_eq!(
        book(&app, "transfer_clearing").await,
        -1_500,
        "owed to the recipient's cell"
    );
    assert_eq!(show(&app, &a, sent).await["state"], "completed");

    let failed = send_away(&app, &a, 2_000).await;
    assert_eq!(checking(&app, &a).await, 6_500);
    let give_back = format!("/internal/v1/transfers/{failed}/return");
    let why = settle_body(&a, Some("no customer has this account number"));
    let (status, r) = internal(&app, &give_back, &why, INTERNAL).await;
    assert_eq!((status, r["state"].as_str()), (200, Some("failed")), "{r}");
    assert_eq!(
        internal(&app, &give_back, &why, INTERNAL).await.0,
        200,
        "once"
    );
    let deliver = format!("/internal/v1/transfers/{failed}/deliver");
    assert_eq!(
        internal(&app, &deliver, &body, INTERNAL).await.0,
        409,
        "one way only"
    );
    assert_eq!(checking(&app, &a).await, 8_500, "the money came back");
    let t = show(&app, &a, failed).await;
    assert_eq!(t["state"], "failed");
    assert_eq!(t["reason"], "no customer has this account number");
    assert_eq!(book(&app, "transfers_pending").await, 0);
    assert_eq!(book(&app, "%").await, 0, "trial balance");
    let movements = scalar(&pool, &format!(
        "SELECT count(*) FROM events WHERE event_id LIKE 'transfer:{failed}%' AND event_type LIKE 'transfer_%'"
    )).await;
    assert_eq!(movements, 2, "sent and returned, once each");
}

#[tokio::test]
async fn a_transfer_to_a_login_is_reserved_for_global_to_resolve() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let a = app.create_customer().await;
    fund(&app, &broker, &[&a], 5_000).await;
    eventually(Duration::from_secs(30), "keys loaded", || async {
        checking(&app, &a).await == 5_000
    })
    .await;
    let body = json!({"from_account_id": a.account_id, "to_login": "  Someone@Example.COM ",
                      "amount": 700, "currency": "BRL"});
    let (status, t) = post(&app, &a, &body).await;
    assert_eq!(status, 202, "{t}");
    assert_eq!(t["to_login"], "someone@example.com");
    assert_eq!(checking(&app, &a).await, 4_300);
    for (bad, field) in [
        (
            json!({"from_account_id": a.account_id, "to_login": "x", "amount": 1, "currency": "BRL"}),
            "to_login",
        ),
        (
            json!({"from_account_id": a.account_id, "to_login": "a@b.c", "to_account_number": "123",
                "amount": 1, "currency": "BRL"}),
            "to_account_id",
        ),
        (
            json!({"from_account_id": a.account_id, "to_login": "a@b.c", "amount": 1_000_000,
                "currency": "BRL"}),
            "amount",
        ),
    ] {
        let (status, p) = post(&app, &a, &bad).await;
        assert_eq!(
            (status, p["errors"][0]["field"].as_str()),
            (422, Some(field)),
            "{p}"
        );
    }
    assert_eq!(checking(&app, &a).await, 4_300, "refused whole");
}

#[tokio::test]
async fn a_void_reports_a_booked_credit_or_forbids_it_for_ever() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let b = app.create_customer().await;
    let sender = cellbank_shared::ids::CustomerId::new();
    let credited = transfer_key(sender, Uuid::new_v4());
    let body = json!({"to_account_number": b.account_number, "amount": 900, "currency": "BRL"});
    assert_eq!(credit(&app, credited, &body, INTERNAL).await, 201);
    let void = |key: Uuid| format!("/internal/v1/transfers/{key}/void");
    assert_eq!(
        internal(&app, &void(credited), &json!({}), "nope").await.0,
        401
    );
    let (status, v) = internal(&app, &void(credited), &json!({}), INTERNAL).await;
    assert_eq!(
        (status, v["state"].as_str()),
        (200, Some("received")),
        "{v}"
    );

    let never = transfer_key(sender, Uuid::new_v4());
    let (status, v) = internal(&app, &void(never), &json!({}), INTERNAL).await;
    assert_eq!((status, v["state"].as_str()), (200, Some("voided")), "{v}");
    let r = app
        .client
        .post(app.url(&format!("/internal/v1/transfers/{never}/credit")))
        .bearer_auth(INTERNAL)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let p: Value = r.json().await.unwrap();
    assert!(
        p["type"].as_str().unwrap().ends_with("/transfer-refused"),
        "{p}"
    );
    let again = internal(&app, &void(never), &json!({}), INTERNAL).await.1;
    assert_eq!(again["state"], "voided", "a void is idempotent");
    assert_eq!(
        checking(&app, &b).await,
        900,
        "credited once, the voided one never"
    );

    // By customer (a transfer to a login): the customer's account in the currency.
    let by_customer = json!({"to_customer_id": b.customer_id, "amount": 100, "currency": "BRL"});
    assert_eq!(
        credit(
            &app,
            transfer_key(sender, Uuid::new_v4()),
            &by_customer,
            INTERNAL
        )
        .await,
        201
    );
    assert_eq!(checking(&app, &b).await, 1_000);
    let nobody = json!({"to_customer_id": Uuid::new_v4(), "amount": 100, "currency": "BRL"});
    assert_eq!(credit(&app, Uuid::new_v4(), &nobody, INTERNAL).await, 404);
    let both = json!({"to_customer_id": b.customer_id, "to_account_number": b.account_number,
                      "amount": 100, "currency": "BRL"});
    assert_eq!(credit(&app, Uuid::new_v4(), &both, INTERNAL).await, 422);
}

#[tokio::test]
async fn a_settlement_for_a_transfer_or_customer_not_here_is_not_found() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let a = app.create_customer().await;
    let path = format!("/internal/v1/transfers/{}/deliver", Uuid::new_v4());
    assert_eq!(
        internal(&app, &path, &settle_body(&a, None), INTERNAL)
            .await
            .0,
        404
    );
    let stranger = json!({"customer_id": Uuid::new_v4()});
    assert_eq!(internal(&app, &path, &stranger, INTERNAL).await.0, 404);
}
