//! Property test of the real apply path in Postgres: random business events
//! (late, duplicated, batched several per transaction as the consumer does)
//! keep the invariants, checked in SQL, and end with the same balances as the
//! pure ledger fed the same events.

use std::collections::BTreeMap;

use cellbank_shard::cards::issue_card;
use cellbank_shard::customers::create_customer;
use cellbank_shard::ledger::event::{Body, CardRef, LedgerEvent};
use cellbank_shard::ledger::memory::{MemEvent, MemoryLedger};
use cellbank_shard::ledger::rulebook::Book;
use cellbank_shard::ledger::store::{self, Outcome};
use cellbank_shared::contract::{CreateCustomer, IssueCard};
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::testkit::fresh_database;
use chrono::{DateTime, Duration, Utc};
use proptest::prelude::*;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Clone, Debug)]
enum Op {
    Credit(usize, i64),
    Debit(usize, i64),
    Transfer(usize, i64),
    Auth(usize, i64),
    Settle(Option<usize>, i64),
    Refund(i64),
    Pay(i64),
    Fee(i64),
    Limit(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let amt = 1i64..100_000;
    prop_oneof![
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Credit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Debit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Transfer(a, m)),
        (0..4usize, amt.clone()).prop_map(|(n, m)| Op::Auth(n, m)),
        (proptest::option::of(0..4usize), amt.clone()).prop_map(|(n, m)| Op::Settle(n, m)),
        amt.clone().prop_map(Op::Refund),
        amt.clone().prop_map(Op::Pay),
        (1i64..5_000).prop_map(Op::Fee),
        amt.prop_map(Op::Limit),
    ]
}

struct Customer {
    id: CustomerId,
    accounts: [(Uuid, String); 2],
    card: Uuid,
}

async fn customer(pool: &PgPool, issued_at: DateTime<Utc>) -> Customer {
    let mut tx = pool.begin().await.unwrap();
    let id = CustomerId::new();
    let created = create_customer(
        &mut tx,
        "03",
        &CreateCustomer {
            customer_id: id,
            name: "prop".into(),
            epoch: Epoch(1),
            currency: Currency::Brl,
        },
    )
    .await
    .unwrap();
    let card = Uuid::new_v4();
    issue_card(
        &mut tx,
        id,
        &IssueCard {
            card_id: card,
            epoch: Epoch(1),
            pan_hash: format!("h-{card}"),
            last4: "0001".into(),
            credit_limit: 50_000,
            currency: Currency::Brl,
        },
    )
    .await
    .unwrap();
    // the card's limit is in force from `issued_at` (before every generated event)
    sqlx::query("UPDATE cards SET limit_set_at = $2 WHERE card_id = $1")
        .bind(card)
        .bind(issued_at)
        .execute(&mut *tx)
        .await
        .unwrap();
    let savings: (Uuid, String) = sqlx::query_as(
        "SELECT account_id, number FROM accounts WHERE customer_id = $1 AND kind = 'savings'",
    )
    .bind(id.as_uuid())
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    Customer {
        id,
        accounts: [(created.account_id, created.account_number), savings],
        card,
    }
}

fn brl(m: i64) -> Money {
    Money::positive(m, Currency::Brl).unwrap()
}

/// The same event for the database and for the pure ledger.
fn event(c: &Customer, i: usize, op: &Op, at: DateTime<Utc>) -> (LedgerEvent, MemEvent) {
    let nr = |n: usize| format!("{}-nr-{n}", c.id);
    let card = c.card;
    let card_ref = CardRef {
        card_id: Some(card),
        card_hash: None,
    };
    let (body, mem) = match op.clone() {
        Op::Credit(a, m) => (
            Body::Account {
                credit: true,
                account_number: Some(c.accounts[a].1.clone()),
                amount: brl(m),
            },
            MemEvent::Credit {
                account: c.accounts[a].0,
                amount: m,
            },
        ),
        Op::Debit(a, m) => (
            Body::Account {
                credit: false,
                account_number: Some(c.accounts[a].1.clone()),
                amount: brl(m),
            },
            MemEvent::Debit {
                account: c.accounts[a].0,
                amount: m,
            },
        ),
        Op::Transfer(a, m) => (
            Body::OwnTransfer {
                from: c.accounts[a].0,
                to: c.accounts[1 - a].0,
                amount: brl(m),
            },
            MemEvent::OwnTransfer {
                from: c.accounts[a].0,
                to: c.accounts[1 - a].0,
                amount: m,
            },
        ),
        Op::Auth(n, m) => {
            let auth = Uuid::from_u128(i as u128 + 1);
            (
                Body::PurchaseAuthorized {
                    card_id: card,
                    authorization_id: auth,
                    network_reference: nr(n),
                    amount: brl(m),
                },
                MemEvent::Authorized {
                    card,
                    authorization_id: auth,
                    network_reference: nr(n),
                    amount: m,
                },
            )
        }
        Op::Settle(n, m) => (
            Body::PurchaseSettled {
                card: card_ref,
                network_reference: n.map(nr),
                amount: brl(m),
            },
            MemEvent::Settled {
                card,
                network_reference: n.map(nr),
                amount: m,
            },
        ),
        Op::Refund(m) => (
            Body::Refund {
                card: card_ref,
                amount: brl(m),
            },
            MemEvent::Refund { card, amount: m },
        ),
        Op::Pay(m) => (
            Body::BillPayment {
                card: card_ref,
                amount: brl(m),
            },
            MemEvent::BillPayment { card, amount: m },
        ),
        Op::Fee(m) => (
            Body::LateFee {
                card: card_ref,
                amount: brl(m),
            },
            MemEvent::LateFee { card, amount: m },
        ),
        Op::Limit(m) => (
            Body::CreditLimit {
                card: card_ref,
                limit: brl(m),
            },
            MemEvent::LimitChanged { card, limit: m },
        ),
    };
    (
        LedgerEvent {
            event_id: format!("{}-e-{i}", c.id),
            event_type: "test".into(),
            customer_id: c.id,
            epoch: Epoch(1),
            occurred_at: at,
            source: "inbound",
            body,
        },
        mem,
    )
}

async fn check_invariants(pool: &PgPool) {
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT currency FROM book_accounts GROUP BY currency HAVING sum(balance) <> 0) t",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "trial balance is zero per currency");
    let bad_movements: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT event_id FROM postings GROUP BY event_id, currency HAVING sum(amount) <> 0) t",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad_movements, 0, "every movement sums to zero");
    let bad_entries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT event_id, entry_no FROM postings GROUP BY event_id, entry_no
           HAVING count(*) <> 2 OR sum(amount) <> 0) t",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad_entries, 0, "every entry is one debit and one credit");
    let drift: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM book_accounts b
         WHERE b.balance <> (SELECT COALESCE(sum(p.amount), 0) FROM postings p WHERE p.book_account_id = b.id)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(drift, 0, "balances equal the replayed sum of postings");
}

async fn balances(pool: &PgPool, c: &Customer) -> BTreeMap<Book, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT code, balance FROM book_accounts WHERE customer_id = $1 AND balance <> 0",
    )
    .bind(c.id.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(code, b)| (Book::parse(&code).unwrap(), b))
        .collect()
}

#[test]
fn random_event_streams_keep_the_invariants_in_postgres() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pool = rt.block_on(async {
        let url = fresh_database("shard_ledger_pg").await;
        let pool = PgPool::connect(&url).await.unwrap();
        cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
        pool
    });
    let strategy = prop::collection::vec((op(), 1i64..10_000), 1..30).prop_flat_map(|events| {
        let n = events.len();
        (
            Just(events),
            Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
            prop::collection::vec((0..n, 0..n + 1), 0..10),
            prop::collection::vec(1usize..6, 1..10),
        )
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
    runner
        .run(&strategy, |(events, order, dups, batch_sizes)| {
            rt.block_on(async {
                let start = Utc::now() + Duration::minutes(1);
                let c = customer(&pool, start - Duration::minutes(1)).await;
                let mut mem = MemoryLedger::new();
                mem.issue_card(c.card, 50_000, start - Duration::minutes(1));
                // one authorization per network reference (the authorizer decides each once)
                let mut used = std::collections::HashSet::new();
                let ops: Vec<(Op, i64)> = events
                    .into_iter()
                    .map(|(op, t)| match op {
                        Op::Auth(n, m) if !used.insert(n) => (Op::Settle(Some(n), m), t),
                        other => (other, t),
                    })
                    .collect();
                let mut arrival = order.clone();
                for (which, at) in &dups {
                    arrival.insert((*at).min(arrival.len()), *which);
                }
                let mut seen = std::collections::HashSet::new();
                let mut k = 0;
                let mut sizes = batch_sizes.iter().cycle();
                while k < arrival.len() {
                    let size = (*sizes.next().unwrap()).min(arrival.len() - k);
                    let mut tx = pool.begin().await.unwrap();
                    let mut batch = store::TxLookups::default();
                    for &i in &arrival[k..k + size] {
                        let at = start + Duration::minutes(ops[i].1);
                        let (ev, m) = event(&c, i, &ops[i].0, at);
                        let outcome = store::apply_in(&mut tx, &ev, &mut batch).await.unwrap();
                        let first = seen.insert(i);
                        assert_eq!(
                            matches!(outcome, Outcome::Applied { .. }),
                            first,
                            "applied exactly once"
                        );
                        mem.apply(&ev.event_id, at, &m);
                    }
                    tx.commit().await.unwrap();
                    k += size;
                    check_invariants(&pool).await;
                }
                let applied: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM events WHERE customer_id = $1 AND source = 'inbound'",
                )
                .bind(c.id.as_uuid())
                .fetch_one(&pool)
                .await
                .unwrap();
                assert_eq!(applied as usize, seen.len(), "each event id recorded once");
                let pure: BTreeMap<Book, i64> = mem
                    .balances
                    .iter()
                    .filter(|(_, v)| **v != 0)
                    .map(|(k, v)| (*k, *v))
                    .collect();
                assert_eq!(
                    balances(&pool, &c).await,
                    pure,
                    "postgres agrees with the pure ledger"
                );
            });
            Ok(())
        })
        .unwrap();
}
