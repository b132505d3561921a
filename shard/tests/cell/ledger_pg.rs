//! Property test of the real apply path in Postgres: random business events
//! of a customer with cards in two currencies (late, duplicated, batched
//! several per transaction as the consumer does) keep the invariants, checked
//! in SQL per currency, and end with the same balances as one pure ledger per
//! currency fed the same events.

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
    /// Card ops name the card: 0 is the BRL card, 1 the USD card.
    Auth(usize, usize, i64),
    Settle(usize, Option<usize>, i64),
    Reverse(usize, usize),
    Refund(usize, i64),
    Pay(usize, i64),
    Fee(usize, i64),
    Limit(usize, i64),
}

fn op() -> impl Strategy<Value = Op> {
    let amt = 1i64..100_000;
    prop_oneof![
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Credit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Debit(a, m)),
        (0..2usize, amt.clone()).prop_map(|(a, m)| Op::Transfer(a, m)),
        (0..2usize, 0..4usize, amt.clone()).prop_map(|(c, n, m)| Op::Auth(c, n, m)),
        (0..2usize, proptest::option::of(0..4usize), amt.clone())
            .prop_map(|(c, n, m)| Op::Settle(c, n, m)),
        (0..2usize, 0..4usize).prop_map(|(c, n)| Op::Reverse(c, n)),
        (0..2usize, amt.clone()).prop_map(|(c, m)| Op::Refund(c, m)),
        (0..2usize, amt.clone()).prop_map(|(c, m)| Op::Pay(c, m)),
        (0..2usize, 1i64..5_000).prop_map(|(c, m)| Op::Fee(c, m)),
        (0..2usize, amt).prop_map(|(c, m)| Op::Limit(c, m)),
    ]
}

struct Customer {
    id: CustomerId,
    accounts: [(Uuid, String); 2],
    card: Uuid,
}

/// The currencies of the two cards the property test drives.
const CARD_CURRENCIES: [Currency; 2] = [Currency::Brl, Currency::Usd];

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

fn money(m: i64, currency: Currency) -> Money {
    Money::positive(m, currency).unwrap()
}

/// The same event for the database and for the pure ledger of its currency.
fn event(
    c: &Customer,
    cards: &[Uuid; 2],
    i: usize,
    op: &Op,
    at: DateTime<Utc>,
) -> (LedgerEvent, MemEvent, Currency) {
    let (body, mem, currency) = match op.clone() {
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
            Currency::Brl,
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
            Currency::Brl,
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
            Currency::Brl,
        ),
        card_op => card_event(c, cards, i, card_op),
    };
    (
        LedgerEvent {
            event_id: format!("{}-e-{i}", c.id),
            event_type: "test".into(),
            customer_id: c.id,
            epoch: Epoch(1),
            occurred_at: at,
            source: "inbound",
            partner: None,
            body,
        },
        mem,
        currency,
    )
}

fn card_event(c: &Customer, cards: &[Uuid; 2], i: usize, op: Op) -> (Body, MemEvent, Currency) {
    let nr = |k: usize, n: usize| format!("{}-{k}-nr-{n}", c.id);
    let card_ref = |card: Uuid| CardRef {
        card_id: Some(card),
        card_hash: None,
    };
    let (k, body, mem) = match op {
        Op::Auth(k, n, m) => {
            let auth = Uuid::from_u128(i as u128 + 1);
            let (card, ccy) = (cards[k], CARD_CURRENCIES[k]);
            (
                k,
                Body::PurchaseAuthorized {
                    card_id: card,
                    authorization_id: auth,
                    network_reference: nr(k, n),
                    amount: money(m, ccy),
                },
                MemEvent::Authorized {
                    card,
                    authorization_id: auth,
                    network_reference: nr(k, n),
                    amount: m,
                },
            )
        }
        Op::Settle(k, n, m) => (
            k,
            Body::PurchaseSettled {
                card: card_ref(cards[k]),
                network_reference: n.map(|n| nr(k, n)),
                amount: money(m, CARD_CURRENCIES[k]),
            },
            MemEvent::Settled {
                card: cards[k],
                network_reference: n.map(|n| nr(k, n)),
                amount: m,
            },
        ),
        Op::Reverse(k, n) => (
            k,
            Body::HoldReleased {
                card: card_ref(cards[k]),
                network_reference: nr(k, n),
                currency: CARD_CURRENCIES[k],
                expired: false,
            },
            MemEvent::Released {
                card: cards[k],
                network_reference: nr(k, n),
            },
        ),
        Op::Refund(k, m) => (
            k,
            Body::Refund {
                card: card_ref(cards[k]),
                amount: money(m, CARD_CURRENCIES[k]),
            },
            MemEvent::Refund {
                card: cards[k],
                amount: m,
            },
        ),
        Op::Pay(k, m) => (
            k,
            Body::BillPayment {
                card: card_ref(cards[k]),
                amount: money(m, CARD_CURRENCIES[k]),
            },
            MemEvent::BillPayment {
                card: cards[k],
                amount: m,
            },
        ),
        Op::Fee(k, m) => (
            k,
            Body::LateFee {
                card: card_ref(cards[k]),
                amount: money(m, CARD_CURRENCIES[k]),
            },
            MemEvent::LateFee {
                card: cards[k],
                amount: m,
            },
        ),
        Op::Limit(k, m) => (
            k,
            Body::CreditLimit {
                card: card_ref(cards[k]),
                limit: money(m, CARD_CURRENCIES[k]),
            },
            MemEvent::LimitChanged {
                card: cards[k],
                limit: m,
            },
        ),
        account_op => unreachable!("not a card op: {account_op:?}"),
    };
    (body, mem, CARD_CURRENCIES[k])
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
        "SELECT count(*) FROM (SELECT 1 FROM postings GROUP BY customer_id, namespace, event_id, currency
           HAVING sum(amount) <> 0) t",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(bad_movements, 0, "every movement sums to zero");
    let bad_entries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM postings GROUP BY customer_id, namespace, event_id, entry_no
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

async fn balances(pool: &PgPool, c: &Customer) -> BTreeMap<(Currency, Book), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT currency, code, balance FROM book_accounts WHERE customer_id = $1 AND balance <> 0",
    )
    .bind(c.id.as_uuid())
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(ccy, code, b)| ((ccy.parse().unwrap(), Book::parse(&code).unwrap()), b))
        .collect()
}

/// The card an op moves.
fn card_of(op: &Op, cards: &[Uuid; 2]) -> Option<Uuid> {
    match op {
        Op::Credit(..) | Op::Debit(..) | Op::Transfer(..) => None,
        Op::Auth(k, ..)
        | Op::Settle(k, ..)
        | Op::Reverse(k, ..)
        | Op::Refund(k, ..)
        | Op::Pay(k, ..)
        | Op::Fee(k, ..)
        | Op::Limit(k, ..) => Some(cards[*k]),
    }
}

async fn last_fact(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM ledger_facts")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The customer's card facts after `after`, in outbox order: (card,
/// available, limit).
async fn card_facts(pool: &PgPool, c: &Customer, after: i64) -> Vec<(Uuid, i64, i64)> {
    let rows: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT (payload->>'card_id')::uuid, (payload->>'available')::bigint,
                (payload->>'credit_limit')::bigint
         FROM ledger_facts WHERE customer_id = $1 AND id > $2 AND payload->>'type' = 'card'
         ORDER BY id",
    )
    .bind(c.id.as_uuid())
    .bind(after)
    .fetch_all(pool)
    .await
    .unwrap();
    rows
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
                let issued = start - Duration::minutes(1);
                let c = customer(&pool, issued).await;
                let cards = [c.card, usd_card(&pool, &c, issued).await];
                let mut mem: BTreeMap<Currency, MemoryLedger> = BTreeMap::new();
                for (card, ccy) in cards.iter().zip(CARD_CURRENCIES) {
                    mem.entry(ccy)
                        .or_default()
                        .issue_card(*card, 50_000, issued);
                }
                // several authorizations of one reference may arrive (a repeat
                // decided after the authorizer's window): the earliest holds
                let ops = events;
                let mut arrival = order.clone();
                for (which, at) in &dups {
                    arrival.insert((*at).min(arrival.len()), *which);
                }
                let mut seen = std::collections::HashSet::new();
                let mut facts = Vec::new();
                let facts_before = last_fact(&pool).await;
                let mut k = 0;
                let mut sizes = batch_sizes.iter().cycle();
                while k < arrival.len() {
                    let size = (*sizes.next().unwrap()).min(arrival.len() - k);
                    let mut batch = Vec::new();
                    for &i in &arrival[k..k + size] {
                        let at = start + Duration::minutes(ops[i].1);
                        let (ev, m, ccy) = event(&c, &cards, i, &ops[i].0, at);
                        let l = mem.get_mut(&ccy).unwrap();
                        if l.apply(&ev.event_id, at, &m).is_some() {
                            if let Some(card) = card_of(&ops[i].0, &cards) {
                                let available = l.balances.get(&Book::CardAvailable(card));
                                let limit = l.limit(card).unwrap();
                                facts.push((card, *available.unwrap_or(&0), limit));
                            }
                        }
                        batch.push((i, ev));
                    }
                    let evs: Vec<LedgerEvent> = batch.iter().map(|(_, e)| e.clone()).collect();
                    let mut tx = pool.begin().await.unwrap();
                    let outcomes = store::apply_each(&mut tx, &evs, store::Writer::Live)
                        .await
                        .unwrap();
                    tx.commit().await.unwrap();
                    for ((i, _), outcome) in batch.iter().zip(outcomes) {
                        let first = seen.insert(*i);
                        assert_eq!(
                            matches!(outcome, Outcome::Applied { .. }),
                            first,
                            "applied exactly once"
                        );
                    }
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
                let pure: BTreeMap<(Currency, Book), i64> = mem
                    .iter()
                    .flat_map(|(ccy, l)| l.balances.iter().map(move |(b, v)| ((*ccy, *b), *v)))
                    .filter(|(_, v)| *v != 0)
                    .collect();
                assert_eq!(
                    balances(&pool, &c).await,
                    pure,
                    "postgres agrees with the pure ledger"
                );
                assert_eq!(
                    card_facts(&pool, &c, facts_before).await,
                    facts,
                    "each card movement's fact carries the card's state after it, in order"
                );
            });
            Ok(())
        })
        .unwrap();
}

/// Defect 2: one transaction's lookups once cached book accounts by code
/// alone, so a USD card's bill payment between two BRL deposits of the same
/// customer posted into the BRL cash account.
#[tokio::test]
async fn a_batch_mixing_currencies_books_each_in_its_own_currency() {
    let url = fresh_database("shard_ledger_ccy").await;
    let pool = PgPool::connect(&url).await.unwrap();
    cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
    let start = Utc::now();
    let c = customer(&pool, start - Duration::minutes(1)).await;
    let usd_card = usd_card(&pool, &c, start - Duration::minutes(1)).await;
    let deposit = |i: usize| LedgerEvent {
        event_id: format!("dep-{i}"),
        event_type: "deposit".into(),
        customer_id: c.id,
        epoch: Epoch(1),
        occurred_at: start,
        source: "inbound",
        partner: None,
        body: Body::Account {
            credit: true,
            account_number: Some(c.accounts[0].1.clone()),
            amount: brl(1_000),
        },
    };
    let payment = LedgerEvent {
        event_id: "pay-usd".into(),
        event_type: "bill_payment".into(),
        customer_id: c.id,
        epoch: Epoch(1),
        occurred_at: start,
        source: "inbound",
        partner: None,
        body: Body::BillPayment {
            card: CardRef {
                card_id: Some(usd_card),
                card_hash: None,
            },
            amount: Money::positive(700, Currency::Usd).unwrap(),
        },
    };
    let mut tx = pool.begin().await.unwrap();
    store::apply_batch(&mut tx, &[deposit(1), payment, deposit(2)])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    check_invariants(&pool).await;
    let misplaced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM postings p JOIN book_accounts b ON b.id = p.book_account_id
         WHERE b.currency <> p.currency",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        misplaced, 0,
        "every posting is in a book account of its currency"
    );
    let usd_cash: i64 = sqlx::query_scalar(
        "SELECT balance FROM book_accounts WHERE customer_id = $1 AND code = 'cash' AND currency = 'USD'",
    )
    .bind(c.id.as_uuid())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(usd_cash.abs(), 700, "the USD payment moved USD cash");
}

/// A second card for `c`, in USD, its limit in force from `issued_at`.
async fn usd_card(pool: &PgPool, c: &Customer, issued_at: DateTime<Utc>) -> Uuid {
    let mut tx = pool.begin().await.unwrap();
    let card = Uuid::new_v4();
    issue_card(
        &mut tx,
        c.id,
        &IssueCard {
            card_id: card,
            epoch: Epoch(1),
            pan_hash: format!("h-{card}"),
            last4: "0002".into(),
            credit_limit: 50_000,
            currency: Currency::Usd,
        },
    )
    .await
    .unwrap();
    sqlx::query("UPDATE cards SET limit_set_at = $2 WHERE card_id = $1")
        .bind(card)
        .bind(issued_at)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    card
}

/// Defect 3: idempotency was keyed by the partner's `event_id` alone, so
/// customer B's event reusing A's id was silently taken for a duplicate, and
/// a partner id could take the cell's internal `transfer:` prefix.
#[tokio::test]
async fn event_ids_are_scoped_by_customer_and_namespace() {
    let url = fresh_database("shard_ledger_ids").await;
    let pool = PgPool::connect(&url).await.unwrap();
    cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
    let now = Utc::now();
    let a = customer(&pool, now).await;
    let b = customer(&pool, now).await;
    let deposit = |c: &Customer, id: &str, source: &'static str| LedgerEvent {
        event_id: id.to_owned(),
        event_type: "deposit".into(),
        customer_id: c.id,
        epoch: Epoch(1),
        occurred_at: now,
        source,
        partner: None,
        body: Body::Account {
            credit: true,
            account_number: Some(c.accounts[0].1.clone()),
            amount: brl(500),
        },
    };
    let apply = |ev: LedgerEvent| {
        let pool = pool.clone();
        async move {
            let mut tx = pool.begin().await.unwrap();
            let outcome = store::apply(&mut tx, &ev).await.unwrap();
            tx.commit().await.unwrap();
            outcome
        }
    };
    let applied = |o: Outcome| matches!(o, Outcome::Applied { .. });
    assert!(applied(apply(deposit(&a, "partner-1", "inbound")).await));
    assert!(
        applied(apply(deposit(&b, "partner-1", "inbound")).await),
        "another customer's event with the same id is a new event"
    );
    assert_eq!(
        apply(deposit(&b, "partner-1", "inbound")).await,
        Outcome::Duplicate,
        "the same customer's repeat is a duplicate"
    );
    let internal = format!("transfer:{}", Uuid::new_v4());
    assert!(applied(apply(deposit(&a, &internal, "transfer")).await));
    assert!(
        applied(apply(deposit(&a, &internal, "inbound")).await),
        "a partner id shaped like an internal one is the partner's own"
    );
    check_invariants(&pool).await;
    let cash = |c: CustomerId| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT -balance FROM book_accounts WHERE customer_id = $1 AND code LIKE 'account:%'
                 AND balance <> 0",
            )
            .bind(c.as_uuid())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(cash(a.id).await, 1_500);
    assert_eq!(cash(b.id).await, 500);
}

/// Defect 10: a batch locked its customers in arrival order, so two batches
/// touching the same two customers in opposite orders could deadlock (and
/// each deadlock counted towards the consumer's breaker). Batches now lock
/// all their customers first, in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_in_opposite_orders_do_not_deadlock() {
    let url = fresh_database("shard_ledger_locks").await;
    let pool = PgPool::connect(&url).await.unwrap();
    cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
    let now = Utc::now();
    let (a, b) = (customer(&pool, now).await, customer(&pool, now).await);
    let deposit = |c: &Customer, id: String| LedgerEvent {
        event_id: id,
        event_type: "deposit".into(),
        customer_id: c.id,
        epoch: Epoch(1),
        occurred_at: now,
        source: "inbound",
        partner: None,
        body: Body::Account {
            credit: true,
            account_number: Some(c.accounts[0].1.clone()),
            amount: brl(1),
        },
    };
    let mut runs = Vec::new();
    for side in 0..2 {
        let pool = pool.clone();
        let (first, second) = if side == 0 { (&a, &b) } else { (&b, &a) };
        let batches: Vec<Vec<LedgerEvent>> = (0..40)
            .map(|i| {
                vec![
                    deposit(first, format!("s{side}-{i}-1")),
                    deposit(second, format!("s{side}-{i}-2")),
                ]
            })
            .collect();
        runs.push(tokio::spawn(async move {
            for batch in batches {
                let mut tx = pool.begin().await.unwrap();
                store::apply_batch(&mut tx, &batch).await?;
                // hold the locks a little, as a real batch does
                sqlx::query("SELECT pg_sleep(0.002)")
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Ok::<(), store::ApplyError>(())
        }));
    }
    for r in runs {
        r.await
            .unwrap()
            .expect("no batch failed (a deadlock would)");
    }
    check_invariants(&pool).await;
}

/// Invariant 6, over the schema rather than examples: every table that holds
/// a customer's data carries a non-null `customer_id` (what makes a customer
/// movable). The few tables of the cell itself are named, with why.
#[tokio::test]
async fn every_customer_table_carries_its_customer() {
    const CELL_TABLES: &[(&str, &str)] = &[
        ("_sqlx_migrations", "the schema's own history"),
        (
            "authorizer_snapshots",
            "the whole authorizer's state, rebuilt per cell",
        ),
        ("authorizer_lease", "which replica decides"),
        ("consumer_holds", "operator holds on the cell's consumers"),
        (
            "dead_letters",
            "a poison message may name no customer; kept when it does",
        ),
        (
            "transfer_voids",
            "this cell's promise never to credit a transfer key, whoever it was for; global voids in every cell it sent the credit to",
        ),
    ];
    let url = fresh_database("shard_schema").await;
    let pool = PgPool::connect(&url).await.unwrap();
    cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
    let tables: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT t.table_name::text, c.is_nullable::text
         FROM information_schema.tables t
         LEFT JOIN information_schema.columns c ON c.table_schema = t.table_schema
              AND c.table_name = t.table_name AND c.column_name = 'customer_id'
         WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
         ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(tables.len() > CELL_TABLES.len(), "{tables:?}");
    let missing: Vec<&str> = tables
        .iter()
        .filter(|(t, _)| !CELL_TABLES.iter().any(|(c, _)| c == t))
        .filter(|(_, nullable)| nullable.as_deref() != Some("NO"))
        .map(|(t, _)| t.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "tables without a non-null customer_id: {missing:?}"
    );
}
