//! The authorizer: no double spending under concurrency, duplicates answer the
//! first decision, and a restarted replica (snapshot + replay) reaches the
//! state of one that never stopped.

use std::time::Duration;

use crate::support::*;
use cellbank_shared::contract::Decision;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, Broker};
use chrono::Utc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_authorizations_never_exceed_the_limit() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let (_card, pan) = app.issue_card(cust.customer_id, 10_000).await;
    app.wait_card_known(&pan).await;

    let mut tasks = Vec::new();
    for i in 0..150 {
        let client = app.client.clone();
        let url = app.url("/internal/v1/authorizations");
        let req = auth_request(cust.customer_id, &pan, 100 + (i % 7), &format!("nr-{i}"));
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .bearer_auth(INTERNAL)
                .json(&req)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let d: cellbank_shared::contract::AuthorizationDecision = r.json().await.unwrap();
            (req.amount, d)
        }));
    }
    let mut approved = 0;
    let mut approved_count = 0;
    for t in tasks {
        let (amount, d) = t.await.unwrap();
        if d.decision == Decision::Approved {
            approved += amount;
            approved_count += 1;
        } else {
            assert_eq!(d.reason, "insufficient_limit");
        }
    }
    assert!(
        approved <= 10_000,
        "approved {approved} over a limit of 10000"
    );
    assert!(approved > 10_000 - 107, "the limit was used up: {approved}");

    // a repeated network reference answers the first decision again
    let first = app
        .authorize(&auth_request(cust.customer_id, &pan, 1, "nr-0"))
        .await;
    let again = app
        .authorize(&auth_request(cust.customer_id, &pan, 1, "nr-0"))
        .await;
    assert_eq!(first, again);
    let unknown = app
        .authorize(&auth_request(cust.customer_id, "nope", 1, "nr-x"))
        .await;
    assert_eq!(
        (unknown.decision, unknown.reason.as_str()),
        (Decision::Declined, "unknown_card")
    );

    // the ledger books every approved authorization as an unsettled purchase
    let pool = app.pool().await;
    eventually(Duration::from_secs(30), "authorizations booked", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'authorization'",
        )
        .await
            == approved_count
    })
    .await;
    let unsettled = scalar(
        &pool,
        "SELECT balance FROM book_accounts WHERE code LIKE '%:unsettled'",
    )
    .await;
    assert_eq!(unsettled, approved);
    // and the authorizer's open-to-buy follows the ledger's available limit
    eventually(
        Duration::from_secs(30),
        "pending authorizations booked",
        || async {
            app.state.authorizer.with_state(|s| {
                let c = s.card(&pan).unwrap();
                c.pending.is_empty() && c.available == 10_000 - approved
            })
        },
    )
    .await;

    // a blocked card is declined
    let card_id = app
        .state
        .authorizer
        .with_state(|s| s.card(&pan).unwrap().card_id);
    let r = app
        .client
        .post(app.url(&format!("/admin/v1/cards/{card_id}/block")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    eventually(
        Duration::from_secs(30),
        "authorizer sees the block",
        || async {
            app.state
                .authorizer
                .with_state(|s| s.card(&pan).unwrap().blocked)
        },
    )
    .await;
    let d = app
        .authorize(&auth_request(cust.customer_id, &pan, 1, "nr-blocked"))
        .await;
    assert_eq!(
        (d.decision, d.reason.as_str()),
        (Decision::Declined, "card_blocked")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_replica_converges_with_one_that_never_stopped() {
    let broker = Broker::start().await;
    let steady = TestApp::spawn(&broker).await;
    // a second replica of the same shard: same database, same broker
    let replica = TestApp::start(steady.settings.clone(), steady.signer.clone()).await;
    let cust = steady.create_customer().await;
    let (card, pan) = steady.issue_card(cust.customer_id, 50_000).await;
    steady.wait_card_known(&pan).await;
    replica.wait_card_known(&pan).await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();

    for i in 0..20 {
        let app = if i % 2 == 0 { &steady } else { &replica };
        app.authorize(&auth_request(
            cust.customer_id,
            &pan,
            1_000,
            &format!("a-{i}"),
        ))
        .await;
    }
    let settle = envelope(
        "settle-a-0",
        cust.customer_id,
        1,
        "purchase_settled",
        Utc::now(),
        serde_json::json!({"amount": 900, "currency": "BRL", "card_id": card, "network_reference": "a-0"}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &settle)
        .await
        .unwrap();
    let pool = steady.pool().await;
    eventually(
        Duration::from_secs(30),
        "replica snapshot written",
        || async { scalar(&pool, "SELECT count(*) FROM authorizer_snapshots").await > 0 },
    )
    .await;
    let snapshots_before = scalar(&pool, "SELECT max(id) FROM authorizer_snapshots").await;
    let settings = replica.settings.clone();
    let signer = replica.signer.clone();
    // crash: no final snapshot
    replica.abort().await;

    // life goes on while it is down
    for i in 20..40 {
        steady
            .authorize(&auth_request(
                cust.customer_id,
                &pan,
                1_500,
                &format!("a-{i}"),
            ))
            .await;
    }
    let pay = envelope(
        "pay-1",
        cust.customer_id,
        1,
        "bill_payment",
        Utc::now(),
        serde_json::json!({"amount": 5_000, "currency": "BRL", "card_id": card}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &pay)
        .await
        .unwrap();
    let limit = envelope(
        "limit-1",
        cust.customer_id,
        1,
        "credit_limit_changed",
        Utc::now(),
        serde_json::json!({"amount": 60_000, "currency": "BRL", "card_id": card}),
    );
    producer
        .send_envelope(Topic::Inbound.name(), &limit)
        .await
        .unwrap();
    eventually(
        Duration::from_secs(30),
        "steady replica saw the limit change",
        || async {
            steady
                .state
                .authorizer
                .with_state(|s| s.card(&pan).unwrap().credit_limit == 60_000)
        },
    )
    .await;

    let restarted = TestApp::start(settings, signer).await;
    assert!(snapshots_before > 0);
    // ready means replayed: the state equals the steady one's once both are quiet
    eventually(
        Duration::from_secs(30),
        "restarted replica converges",
        || async {
            let a = steady.state.authorizer.state();
            let b = restarted.state.authorizer.state();
            a.cards == b.cards
                && a.decisions == b.decisions
                && a.epochs == b.epochs
                && a.offsets == b.offsets
        },
    )
    .await;
    let a = steady.state.authorizer.state();
    assert_eq!(a.decisions.len(), 40);
    assert_eq!(a.card(&pan).unwrap().credit_limit, 60_000);
    restarted.stop().await;
    steady.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_behind_the_snapshot_stops_the_cell_and_says_why() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    app.wait_ready().await;
    let settings = app.settings.clone();
    let pool = app.pool().await;
    app.abort().await;

    // A snapshot that has seen far more of the decisions log than this broker
    // holds: what a cell finds after its broker's log was reset.
    let mut state = cellbank_shard::authorizer::state::AuthorizerState::default();
    let key = format!("{}/0", Topic::Authorizations.name());
    state.offsets.insert(key.clone(), 1_000_000);
    cellbank_shard::authorizer::decision_log::save_snapshot(&pool, state)
        .await
        .unwrap();

    let app = cellbank_shard::Application::build(settings).await.unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        app.run_until_stopped(std::future::pending()),
    )
    .await
    .expect("the cell stops by itself");
    let err = format!(
        "{:#}",
        stopped.expect_err("a log behind the snapshot is refused")
    );
    assert!(err.contains("behind the authorizer snapshot"), "{err}");
    assert!(err.contains(&key), "{err}");
}

/// Defect 4: a network reference was global. Customer B's authorization that
/// reused A's reference got A's answer back with no hold, and the ledger
/// booked it without postings; a retry with a different amount got the first
/// answer. A reference is now scoped by card, and a repeat with different
/// content is refused with its own reason and no effect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_references_are_scoped_by_card() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let a = app.create_customer().await;
    let b = app.create_customer().await;
    let (_, pan_a) = app.issue_card(a.customer_id, 10_000).await;
    let (_, pan_b) = app.issue_card(b.customer_id, 10_000).await;
    app.wait_card_known(&pan_a).await;
    app.wait_card_known(&pan_b).await;

    let first = app
        .authorize(&auth_request(a.customer_id, &pan_a, 1_000, "shared-ref"))
        .await;
    assert_eq!(first.decision, Decision::Approved);
    let other = app
        .authorize(&auth_request(b.customer_id, &pan_b, 700, "shared-ref"))
        .await;
    assert_eq!(other.decision, Decision::Approved, "{other:?}");
    assert_ne!(other.authorization_id, first.authorization_id);
    let open_to_buy = |pan: &str| {
        app.state
            .authorizer
            .with_state(|s| s.card(pan).unwrap().open_to_buy())
    };
    assert_eq!(open_to_buy(&pan_b), 9_300, "B's hold is placed");

    // Same reference, same content: the first answer again.
    let repeat = app
        .authorize(&auth_request(a.customer_id, &pan_a, 1_000, "shared-ref"))
        .await;
    assert_eq!(repeat, first);
    // Same reference, other content: refused, nothing held.
    let reused = app
        .authorize(&auth_request(a.customer_id, &pan_a, 5_000, "shared-ref"))
        .await;
    assert_eq!(
        (reused.decision, reused.reason.as_str()),
        (Decision::Declined, "reference_reused")
    );
    assert_eq!(
        open_to_buy(&pan_a),
        9_000,
        "the refused repeat held nothing"
    );

    // The ledger books each with its own postings.
    let pool = app.pool().await;
    eventually(Duration::from_secs(30), "both purchases booked", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM book_accounts WHERE code LIKE '%:unsettled' AND balance > 0",
        )
        .await
            == 2
    })
    .await;
    let unsettled = scalar(
        &pool,
        "SELECT sum(balance)::bigint FROM book_accounts WHERE code LIKE '%:unsettled'",
    )
    .await;
    assert_eq!(unsettled, 1_700);
    app.stop().await;
}

/// Defect 8: the snapshot check tripped only far past the log's end. Now the
/// snapshot records the fingerprint of the last record it read per
/// partition, and a cell refuses a log that lacks that record (reset or
/// shortened, even by one) or holds another one there (swapped), while the
/// log it was built from restarts fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_shortened_or_swapped_log_stops_the_cell_exactly() {
    use cellbank_shard::authorizer::decision_log;
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let cust = app.create_customer().await;
    let (_card, pan) = app.issue_card(cust.customer_id, 10_000).await;
    app.wait_card_known(&pan).await;
    for i in 0..3 {
        let nr = format!("fp-{i}");
        app.authorize(&auth_request(cust.customer_id, &pan, 10, &nr))
            .await;
    }
    let key = format!("{}/", Topic::Authorizations.name());
    eventually(
        Duration::from_secs(30),
        "the decisions read back",
        || async {
            app.state.authorizer.with_state(|s| {
                s.fingerprints
                    .keys()
                    .filter(|k| k.starts_with(&key))
                    .count()
                    > 0
            })
        },
    )
    .await;
    let (settings, pool, signer) = (app.settings.clone(), app.pool().await, app.signer.clone());
    app.stop().await; // the final snapshot
    let snapshot = decision_log::load_latest(&pool).await.unwrap();
    assert!(!snapshot.fingerprints.is_empty());

    // The same log: the cell starts and is ready.
    let same = TestApp::start(settings.clone(), signer).await;
    same.stop().await;

    // Another broker holding as many records, other ones: swapped.
    let swapped = log_like(&snapshot.offsets, 0).await;
    let err = refused(&settings, &swapped).await;
    assert!(err.contains("is not the one the snapshot read"), "{err}");
    // One record short in every partition: reset or shortened.
    let shortened = log_like(&snapshot.offsets, 1).await;
    let err = refused(&settings, &shortened).await;
    assert!(
        err.contains("is gone") || err.contains("is not the one the snapshot read"),
        "{err}"
    );
}

/// A broker whose partitions hold as many records as `offsets` say, less
/// `short`, none of them the cell's.
async fn log_like(offsets: &std::collections::BTreeMap<String, i64>, short: i64) -> Broker {
    let broker = Broker::start().await;
    let names: Vec<&str> = Topic::SHARD.iter().map(|t| t.name()).collect();
    broker.create_topics(&names, 2).await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    for (k, next) in offsets {
        let (topic, partition) = k.rsplit_once('/').unwrap();
        for i in 0..(next - short).max(0) {
            producer
                .send_to(
                    topic,
                    Some(partition.parse().unwrap()),
                    b"x",
                    format!("other-{i}").as_bytes(),
                    &[],
                )
                .await
                .unwrap();
        }
    }
    broker
}

/// Starts the cell on `broker`; the error it stops with.
async fn refused(settings: &cellbank_shard::Settings, broker: &Broker) -> String {
    let mut s = settings.clone();
    s.kafka.bootstrap = broker.bootstrap();
    let app = cellbank_shard::Application::build(s).await.unwrap();
    let stopped = tokio::time::timeout(
        Duration::from_secs(60),
        app.run_until_stopped(std::future::pending()),
    )
    .await
    .expect("the cell stops by itself");
    format!("{:#}", stopped.expect_err("another log is refused"))
}
