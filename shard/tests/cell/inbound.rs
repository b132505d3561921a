//! The inbound consumer applies envelopes once, dead-letters invalid ones, and
//! keeps the books balanced.

use std::time::Duration;

use cellbank_shard::consumers::CellConsumer::{LedgerInbound, Mortician};
use cellbank_shard::lag::group_lag;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, Broker};
use chrono::Utc;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_each_event_once_and_dead_letters_bad_ones() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let pool = app.pool().await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    let deposit = envelope(
        "evt-1",
        cust.customer_id,
        1,
        "deposit",
        Utc::now(),
        serde_json::json!({"amount": 1000, "currency": "BRL", "account_number": cust.account_number}),
    );
    // delivered twice: applied once
    producer
        .send_envelope(Topic::Inbound.name(), &deposit)
        .await
        .unwrap();
    producer
        .send_envelope(Topic::Inbound.name(), &deposit)
        .await
        .unwrap();
    let stale = envelope(
        "evt-2",
        cust.customer_id,
        0,
        "deposit",
        Utc::now(),
        serde_json::json!({"amount": 5, "currency": "BRL"}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &stale)
        .await
        .unwrap();
    let unknown = envelope(
        "evt-3",
        cust.customer_id,
        1,
        "teleport",
        Utc::now(),
        serde_json::json!({}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &unknown)
        .await
        .unwrap();

    eventually(
        Duration::from_secs(30),
        "two dead letters stored",
        || async { scalar(&pool, "SELECT count(*) FROM dead_letters").await == 2 },
    )
    .await;
    eventually(Duration::from_secs(30), "deposit applied", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'inbound'",
        )
        .await
            == 1
    })
    .await;
    let balance = scalar(
        &pool,
        "SELECT -balance FROM book_accounts WHERE code LIKE 'account:%' ORDER BY balance LIMIT 1",
    )
    .await;
    assert_eq!(balance, 1000);
    assert_eq!(
        scalar(
            &pool,
            "SELECT COALESCE(sum(balance),0)::bigint FROM book_accounts"
        )
        .await,
        0
    );
    let errors: Vec<String> = sqlx::query_scalar("SELECT error FROM dead_letters ORDER BY error")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        errors.iter().any(|e| e.contains("stale epoch")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("unknown event type")),
        "{errors:?}"
    );

    // the admin API lists them and republishes one back to the inbound topic
    let list = app.admin_json("/admin/v1/dead-letters?limit=10").await;
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["source_topic"], Topic::Inbound.name());
    assert!(items[0]["headers"]["cellbank-event-id"].is_string());
    let unauth = app
        .client
        .get(app.url("/admin/v1/dead-letters"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauth.status(), 401);
    let id = items[0]["id"].as_i64().unwrap();
    let r = app
        .client
        .post(app.url(&format!("/admin/v1/dead-letters/{id}/republish")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let again = app
        .client
        .post(app.url(&format!("/admin/v1/dead-letters/{id}/republish")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a dead letter is republished once");
    // still invalid, so it comes back as a third dead letter
    eventually(
        Duration::from_secs(30),
        "republished message dead-lettered again",
        || async { scalar(&pool, "SELECT count(*) FROM dead_letters").await == 3 },
    )
    .await;
    let summary = app.admin_json("/admin/v1/summary").await;
    assert_eq!(summary["events_applied"], 1);
    assert_eq!(summary["trial_balance"][0]["balance"], 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_hold_keeps_events_in_the_log_until_released() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let pool = app.pool().await;
    let hold_url = app.url("/admin/v1/consumers/ledger-inbound/hold");

    let unauth = app.client.put(&hold_url).send().await.unwrap();
    assert_eq!(unauth.status(), 401);
    let unknown = app
        .client
        .put(app.url("/admin/v1/consumers/teleporter/hold"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let problem: serde_json::Value = unknown.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("ledger-inbound"),
        "{problem}"
    );

    let held = app
        .client
        .put(&hold_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(held.status(), 200);
    let list = app.admin_json("/admin/v1/consumers").await;
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "ledger-inbound" && c["held"] == true),
        "{list}"
    );

    // The hold is the cell's, not this process's: what another replica (or
    // this one after a restart) loads from the cell's database, at start and
    // every second after.
    let other = cellbank_shard::holds::released();
    cellbank_shard::holds::load(&pool, &other).await.unwrap();
    assert!(other[&LedgerInbound].is_held(), "another replica is held");
    assert!(!other[&Mortician].is_held(), "only what was held");

    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for i in 0..5 {
        let ev = envelope(
            &format!("held-{i}"),
            cust.customer_id,
            1,
            "deposit",
            Utc::now(),
            serde_json::json!({"amount": 100, "currency": "BRL", "account_number": cust.account_number}),
        );
        producer
            .send_envelope(Topic::Inbound.name(), &ev)
            .await
            .unwrap();
    }
    // The five are in the log past the group's committed offsets: there to
    // be consumed, and not consumed.
    let group = LedgerInbound.group(&app.settings, &app.state.shard_id);
    eventually(
        Duration::from_secs(30),
        "the held events wait in the log",
        || async {
            group_lag(&broker.bootstrap(), &group, Topic::Inbound.name())
                .await
                .unwrap_or(0)
                == 5
        },
    )
    .await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'inbound'"
        )
        .await,
        0,
        "nothing applied while held"
    );

    let released = app
        .client
        .delete(&hold_url)
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(released.status(), 200);
    cellbank_shard::holds::load(&pool, &other).await.unwrap();
    assert!(
        !other[&LedgerInbound].is_held(),
        "another replica is released"
    );
    eventually(
        Duration::from_secs(30),
        "all five applied after release",
        || async {
            scalar(
                &pool,
                "SELECT count(*) FROM events WHERE source = 'inbound'",
            )
            .await
                == 5
        },
    )
    .await;
    app.stop().await;
}

/// Defect 10: a dead-lettered decision (no headers, keyed by its customer)
/// was stored without its customer; a dead letter produced twice (a crash
/// between producing it and committing the source offset) was stored twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_keep_their_customer_and_are_stored_once() {
    use cellbank_shared::kafka::dead_letter_headers as dlq;
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let pool = app.pool().await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    // A decision the ledger cannot read: keyed by the customer, no headers.
    let key = cust.customer_id.to_string();
    producer
        .send(
            Topic::Authorizations.name(),
            key.as_bytes(),
            b"{not a decision",
            &[],
        )
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "the decision is dead-lettered",
        || async { scalar(&pool, "SELECT count(*) FROM dead_letters").await == 1 },
    )
    .await;
    let owner: Option<uuid::Uuid> = sqlx::query_scalar("SELECT customer_id FROM dead_letters")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(owner, Some(cust.customer_id.as_uuid()));

    // The same dead letter twice, as a runner that crashed before its commit
    // would produce it: same source position and group, new dead-letter offset.
    let headers: [(&str, &[u8]); 4] = [
        (dlq::SOURCE_TOPIC, b"cellbank.inbound"),
        (dlq::SOURCE_PARTITION, b"1"),
        (dlq::SOURCE_OFFSET, b"4242"),
        (dlq::CONSUMER_GROUP, b"some-group"),
    ];
    for _ in 0..2 {
        producer
            .send(
                Topic::DeadLetters.name(),
                key.as_bytes(),
                b"poison",
                &headers,
            )
            .await
            .unwrap();
    }
    let group = Mortician.group(&app.settings, &app.state.shard_id);
    eventually(
        Duration::from_secs(30),
        "the mortician read both",
        || async {
            group_lag(&broker.bootstrap(), &group, Topic::DeadLetters.name())
                .await
                .is_ok_and(|lag| lag == 0)
                && scalar(&pool, "SELECT count(*) FROM dead_letters").await >= 2
        },
    )
    .await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM dead_letters WHERE source_offset = 4242"
        )
        .await,
        1,
        "one dead letter per source message and consumer"
    );
    app.stop().await;
}

/// Republish-all goes through the dead letters a page at a time, and only
/// those dead when it was asked: the republished ones that fail again are
/// new dead letters, left for the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_all_pages_through_what_was_dead_and_stops() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let pool = app.pool().await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    const N: i64 = 130;
    for i in 0..N {
        let bad = envelope(
            &format!("bad-{i}"),
            cust.customer_id,
            1,
            "teleport",
            Utc::now(),
            serde_json::json!({"amount": 1, "currency": "BRL"}),
        );
        producer
            .send_envelope(Topic::Inbound.name(), &bad)
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(60), "all dead-lettered", || async {
        scalar(&pool, "SELECT count(*) FROM dead_letters").await == N
    })
    .await;
    let r = app
        .client
        .post(app.url("/admin/v1/dead-letters/republish-all"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["republished"], N, "every page, once each");
    eventually(
        Duration::from_secs(60),
        "each failed again, once",
        || async {
            scalar(
                &pool,
                "SELECT count(*) FROM dead_letters WHERE status = 'dead'",
            )
            .await
                == N
        },
    )
    .await;
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM dead_letters WHERE status = 'republished'"
        )
        .await,
        N
    );
    app.stop().await;
}
