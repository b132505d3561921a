//! Defect 9 / invariant 5: every state change of a customer is an event kept
//! with its payload. A random workload through the live cell (routed events,
//! authorizations, transfers, card issues and blocks, a placement change),
//! then every customer is replayed from its events into a fresh database:
//! balances, accounts, cards, purchases, transfers and placements agree.

use std::time::Duration;

use cellbank_shard::consumers::CellConsumer;
use cellbank_shard::history;
use cellbank_shard::lag::group_lag;
use cellbank_shared::contract::CustomerCreated;
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::testkit::{eventually, fresh_database, Broker};
use chrono::Utc;
use serde_json::json;
use sqlx::PgPool;

use crate::support::*;

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

struct Who {
    created: CustomerCreated,
    card: uuid::Uuid,
    pan: String,
    epoch: i64,
    accounts: [String; 2],
}

async fn accounts_of(app: &TestApp, c: &CustomerCreated) -> [String; 2] {
    let r: serde_json::Value = app
        .client
        .get(app.url(&format!("/v1/customers/{}/accounts", c.customer_id)))
        .bearer_auth(app.token(c.customer_id, 1))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<String> = r["_embedded"]["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap().to_owned())
        .collect();
    [ids[0].clone(), ids[1].clone()]
}

/// One random step of the workload for `w`.
async fn step(app: &TestApp, producer: &Producer, rng: &mut Rng, w: &Who, i: u64) {
    let amount = 1 + rng.below(3_000) as i64;
    let nr = format!("nr-{}", rng.below(6));
    let routed = |kind: &str, payload: serde_json::Value, late_days: i64| {
        envelope(
            &format!("w-{i}"),
            w.created.customer_id,
            w.epoch,
            kind,
            Utc::now() - chrono::Duration::days(late_days),
            payload,
        )
    };
    let card = json!({"amount": amount, "currency": "BRL", "card_id": w.card});
    let env = match rng.below(9) {
        0 | 1 => routed(
            "deposit",
            json!({"amount": amount, "currency": "BRL", "account_number": w.created.account_number}),
            rng.below(3) as i64,
        ),
        2 => routed(
            "withdrawal",
            json!({"amount": amount / 3 + 1, "currency": "BRL", "account_number": w.created.account_number}),
            0,
        ),
        3 => {
            let mut p = card.clone();
            p["network_reference"] = json!(nr);
            routed("purchase_settled", p, rng.below(2) as i64)
        }
        4 => routed("bill_payment", card, 0),
        5 => routed("refund", card, 0),
        6 => routed(
            "credit_limit_changed",
            json!({"amount": 10_000 + amount, "currency": "BRL", "card_id": w.card}),
            rng.below(2) as i64,
        ),
        7 => {
            let req = auth_request_at(w.created.customer_id, &w.pan, amount, &nr, w.epoch);
            let _ = app.authorize(&req).await;
            return;
        }
        _ => {
            let body = json!({"from_account_id": w.accounts[0], "to_account_id": w.accounts[1],
                              "amount": 1 + amount / 100, "currency": "BRL"});
            app.client
                .post(app.url(&format!(
                    "/v1/customers/{}/transfers",
                    w.created.customer_id
                )))
                .bearer_auth(app.token(w.created.customer_id, w.epoch))
                .json(&body)
                .send()
                .await
                .unwrap();
            return;
        }
    };
    producer
        .send_envelope(Topic::Inbound.name(), &env)
        .await
        .unwrap();
}

/// The rows that make up the customers' state, comparable across databases.
async fn state(pool: &PgPool) -> Vec<String> {
    let queries = [
        "SELECT customer_id::text || ' ' || epoch || ' ' || state FROM customers",
        "SELECT account_id::text || ' ' || customer_id || ' ' || kind || ' ' || number || ' ' || currency FROM accounts",
        "SELECT customer_id::text || ' ' || code || ' ' || currency || ' ' || balance FROM book_accounts",
        "SELECT card_id::text || ' ' || credit_limit || ' ' || blocked || ' ' || limit_event || ' ' || pan_hash FROM cards",
        "SELECT card_id::text || ' ' || network_reference || ' ' || COALESCE(authorization_id::text, '-')
                || ' ' || COALESCE(authorized_amount, 0) || ' ' || settled_amount || ' ' || status FROM card_purchases",
        "SELECT transfer_id::text || ' ' || amount || ' ' || from_account || ' ' || to_account FROM transfers",
        "SELECT customer_id::text || ' ' || namespace || ' ' || event_id || ' ' || epoch FROM events",
    ];
    let mut rows = Vec::new();
    for q in queries {
        let mut got: Vec<String> = sqlx::query_scalar(q).fetch_all(pool).await.unwrap();
        got.sort();
        rows.extend(got);
    }
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_customer_replays_from_its_events_to_the_same_state() {
    let broker = Broker::start().await;
    let app = TestApp::spawn(&broker).await;
    let producer = Producer::new(&broker.bootstrap(), Duration::from_secs(10)).unwrap();
    let mut who = Vec::new();
    for _ in 0..5 {
        let created = app.create_customer().await;
        let (card, pan) = app.issue_card(created.customer_id, 20_000).await;
        app.wait_card_known(&pan).await;
        let accounts = accounts_of(&app, &created).await;
        who.push(Who {
            created,
            card,
            pan,
            epoch: 1,
            accounts,
        });
    }
    let mut rng = Rng(0x00c0_ffee_5eed);
    for i in 0..200u64 {
        let k = rng.below(who.len() as u64) as usize;
        if i == 100 {
            // one customer is placed at a higher epoch midway, one card blocked
            app.place(who[k].created.customer_id, "active", 2).await;
            who[k].epoch = 2;
            let card = who[(k + 1) % who.len()].card;
            app.client
                .post(app.url(&format!("/admin/v1/cards/{card}/block")))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
        }
        step(&app, &producer, &mut rng, &who[k], i).await;
    }
    for c in [
        CellConsumer::LedgerInbound,
        CellConsumer::LedgerAuthorizations,
    ] {
        let group = c.group(&app.settings, &app.state.shard_id);
        eventually(Duration::from_secs(60), "the ledger is quiet", || async {
            group_lag(&broker.bootstrap(), &group, c.topic().name())
                .await
                .is_ok_and(|lag| lag == 0)
        })
        .await;
    }

    let live = app.pool().await;
    let url = fresh_database("shard_replay").await;
    let rebuilt = PgPool::connect(&url).await.unwrap();
    cellbank_shard::MIGRATOR.run(&rebuilt).await.unwrap();
    let mut replayed = 0;
    for w in &who {
        let mut tx = rebuilt.begin().await.unwrap();
        replayed += history::replay(&live, w.created.customer_id, &mut tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }
    assert!(
        replayed > 200,
        "the workload made history: {replayed} events"
    );
    let (before, after) = (state(&live).await, state(&rebuilt).await);
    let missing: Vec<&String> = before.iter().filter(|r| !after.contains(r)).collect();
    let extra: Vec<&String> = after.iter().filter(|r| !before.contains(r)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "replay differs: missing {missing:#?}, extra {extra:#?}"
    );
    app.stop().await;
}
