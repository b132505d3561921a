//! After the run, once quiet: what each cell's database holds against what
//! the partners were told, per event id and per approval, and the ledger's
//! own invariants, read straight from each cell's Postgres.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row as _};
use uuid::Uuid;

use crate::load::World;

/// A shard cell and its database.
#[derive(Clone, Debug)]
pub struct CellDb {
    pub cell: u32,
    pub url: String,
}

/// What the checks found; every count but `accepted`, `applied`,
/// `dead_lettered`, `applied_unacknowledged` and `approvals` must be 0.
#[derive(Debug, Default, Serialize)]
pub struct Findings {
    pub accepted: usize,
    pub applied: usize,
    pub dead_lettered: usize,
    pub lost: usize,
    pub lost_examples: Vec<String>,
    pub doubled: usize,
    pub doubled_examples: Vec<String>,
    /// Events applied that the partner never got a 2xx for (allowed: the
    /// answer was lost, the event was not).
    pub applied_unacknowledged: usize,
    pub approvals: usize,
    pub approvals_not_booked: usize,
    pub cards_past_limit: usize,
    pub cards_past_limit_as_answered: usize,
    pub trial_balance_nonzero: Vec<String>,
    pub books_off_postings: usize,
    pub customers_off_their_events: usize,
    pub customer_examples: Vec<String>,
}

impl Findings {
    pub fn violations(&self) -> usize {
        self.lost
            + self.doubled
            + self.approvals_not_booked
            + self.cards_past_limit
            + self.cards_past_limit_as_answered
            + self.trial_balance_nonzero.len()
            + self.books_off_postings
            + self.customers_off_their_events
    }
}

/// One cell's rows that the checks compare.
struct CellRows {
    /// Inbound event id -> its customer.
    applied: HashMap<String, Uuid>,
    dead: HashSet<String>,
    /// Inbound event id -> sum of its debit legs.
    posted: HashMap<String, i64>,
    /// (card, network reference) -> authorization id, amount.
    purchases: HashMap<(Uuid, String), (Option<Uuid>, Option<i64>)>,
    /// Card -> (limit, sum of approved amounts held).
    cards: Vec<(Uuid, i64, i64)>,
    trial: Vec<(String, i64, i64)>,
    books_off: i64,
    /// Customer -> minus the balance of its checking account's book.
    account_balance: HashMap<Uuid, i64>,
}

async fn read_cell(pool: &PgPool) -> anyhow::Result<CellRows> {
    let mut applied = HashMap::new();
    for r in sqlx::query("SELECT event_id, customer_id FROM events WHERE source = 'inbound'")
        .fetch_all(pool)
        .await?
    {
        applied.insert(r.get::<String, _>(0), r.get::<Uuid, _>(1));
    }
    let dead = sqlx::query_scalar::<_, String>(
        "SELECT event_id FROM dead_letters WHERE event_id IS NOT NULL AND status <> 'republished'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let mut posted = HashMap::new();
    for r in sqlx::query(
        "SELECT p.event_id, sum(p.amount) FILTER (WHERE p.amount > 0)::bigint FROM postings p
         JOIN events e ON e.customer_id = p.customer_id AND e.namespace = p.namespace AND e.event_id = p.event_id
         WHERE e.source = 'inbound' GROUP BY p.event_id",
    )
    .fetch_all(pool)
    .await?
    {
        posted.insert(r.get::<String, _>(0), r.get::<Option<i64>, _>(1).unwrap_or(0));
    }
    let (purchases, cards) = read_cards(pool).await?;
    let (trial, books_off, account_balance) = read_books(pool).await?;
    Ok(CellRows {
        applied,
        dead,
        posted,
        purchases,
        cards,
        trial,
        books_off,
        account_balance,
    })
}

/// Purchases by card and reference, and each card's limit and held sum.
type Cards = (
    HashMap<(Uuid, String), (Option<Uuid>, Option<i64>)>,
    Vec<(Uuid, i64, i64)>,
);

async fn read_cards(pool: &PgPool) -> anyhow::Result<Cards> {
    let mut purchases = HashMap::new();
    for r in sqlx::query("SELECT card_id, network_reference, authorization_id, authorized_amount FROM card_purchases")
        .fetch_all(pool)
        .await?
    {
        purchases.insert((r.get(0), r.get(1)), (r.get(2), r.get(3)));
    }
    let cards = sqlx::query_as::<_, (Uuid, i64, i64)>(
        "SELECT c.card_id, c.credit_limit, COALESCE(sum(p.authorized_amount) FILTER (WHERE p.authorization_id IS NOT NULL AND NOT p.released), 0)::bigint
         FROM cards c LEFT JOIN card_purchases p ON p.card_id = c.card_id GROUP BY c.card_id, c.credit_limit",
    )
    .fetch_all(pool)
    .await?;
    Ok((purchases, cards))
}

/// The trial balance, books off their postings, checking balances.
type Books = (Vec<(String, i64, i64)>, i64, HashMap<Uuid, i64>);

async fn read_books(pool: &PgPool) -> anyhow::Result<Books> {
    let trial = sqlx::query_as::<_, (String, i64, i64)>(
        "SELECT b.currency, COALESCE(sum(b.balance), 0)::bigint,
                COALESCE((SELECT sum(p.amount) FROM postings p WHERE p.currency = b.currency), 0)::bigint
         FROM book_accounts b GROUP BY b.currency",
    )
    .fetch_all(pool)
    .await?;
    let books_off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM book_accounts b
         LEFT JOIN (SELECT book_account_id, sum(amount) AS s FROM postings GROUP BY 1) p ON p.book_account_id = b.id
         WHERE b.balance <> COALESCE(p.s, 0)",
    )
    .fetch_one(pool)
    .await?;
    let account_balance = sqlx::query_as::<_, (Uuid, i64)>(
        "SELECT a.customer_id, -b.balance FROM accounts a
         JOIN book_accounts b ON b.code = 'account:' || a.account_id::text AND b.currency = a.currency
         WHERE a.kind = 'checking'",
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    Ok((trial, books_off, account_balance))
}

/// Reads every cell and compares.
pub async fn check(world: &World, cells: &[CellDb], credit_limit: i64) -> anyhow::Result<Findings> {
    let mut rows = Vec::new();
    for c in cells {
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect(&c.url)
            .await?;
        rows.push((c.cell, read_cell(&pool).await?));
        pool.close().await;
    }
    let mut f = Findings::default();
    events(world, &rows, &mut f);
    approvals(world, &rows, credit_limit, &mut f);
    ledger(world, &rows, &mut f);
    Ok(f)
}

/// Every accepted event applied exactly once (in one cell, its amount
/// posted once) or dead-lettered.
fn events(world: &World, rows: &[(u32, CellRows)], f: &mut Findings) {
    let accepted = world.rec.accepted();
    f.accepted = accepted.len();
    for (id, a) in &accepted {
        let cells: Vec<&CellRows> = rows
            .iter()
            .filter(|(_, r)| r.applied.contains_key(id))
            .map(|(_, r)| r)
            .collect();
        let dead = rows.iter().any(|(_, r)| r.dead.contains(id));
        match cells.as_slice() {
            [] if dead => f.dead_lettered += 1,
            [] => {
                f.lost += 1;
                if f.lost_examples.len() < 10 {
                    f.lost_examples.push(format!("{id} (shard-{})", a.cell));
                }
            }
            [one] => {
                f.applied += 1;
                if one.posted.get(id).copied().unwrap_or(0) != a.amount {
                    f.doubled += 1;
                    if f.doubled_examples.len() < 10 {
                        f.doubled_examples.push(format!(
                            "{id}: posted {:?}, sent {}",
                            one.posted.get(id),
                            a.amount
                        ));
                    }
                }
            }
            _ => {
                f.doubled += 1;
                if f.doubled_examples.len() < 10 {
                    f.doubled_examples
                        .push(format!("{id}: applied in {} cells", cells.len()));
                }
            }
        }
    }
    f.applied_unacknowledged = rows
        .iter()
        .flat_map(|(_, r)| r.applied.keys())
        .filter(|id| id.starts_with("chaos-") && !accepted.contains_key(*id))
        .count();
}

/// No card held past its limit; every approval a partner got is booked.
fn approvals(world: &World, rows: &[(u32, CellRows)], credit_limit: i64, f: &mut Findings) {
    let approvals = world.rec.approvals();
    f.approvals = approvals.len();
    let mut answered: HashMap<Uuid, i64> = HashMap::new();
    for a in &approvals {
        *answered.entry(a.card_id).or_default() += a.amount;
        let booked = rows.iter().any(|(_, r)| {
            r.purchases
                .get(&(a.card_id, a.reference.clone()))
                .is_some_and(|(id, amount)| {
                    *id == Some(a.authorization_id) && *amount == Some(a.amount)
                })
        });
        if !booked {
            f.approvals_not_booked += 1;
        }
    }
    f.cards_past_limit_as_answered = answered.values().filter(|s| **s > credit_limit).count();
    f.cards_past_limit = rows
        .iter()
        .flat_map(|(_, r)| r.cards.iter())
        .filter(|(_, limit, held)| held > limit)
        .count();
}

/// Trial balance zero per currency, books equal to their postings, and each
/// customer's checking balance equal to the sum of its applied deposits.
fn ledger(world: &World, rows: &[(u32, CellRows)], f: &mut Findings) {
    let sent = world.rec.sent_events();
    for (cell, r) in rows {
        for (currency, books, postings) in &r.trial {
            if *books != 0 || *postings != 0 {
                f.trial_balance_nonzero.push(format!(
                    "shard-{cell} {currency}: books {books}, postings {postings}"
                ));
            }
        }
        f.books_off_postings += r.books_off as usize;
        let mut rebuilt: HashMap<Uuid, i64> = HashMap::new();
        for (id, customer) in &r.applied {
            if let Some((_, amount)) = sent.get(id) {
                *rebuilt.entry(*customer).or_default() += amount;
            }
        }
        for c in world.customers.iter().filter(|c| c.cell() == *cell) {
            let live = r.account_balance.get(&c.customer_id).copied().unwrap_or(0);
            let want = rebuilt.get(&c.customer_id).copied().unwrap_or(0);
            if live != want {
                f.customers_off_their_events += 1;
                if f.customer_examples.len() < 10 {
                    f.customer_examples.push(format!(
                        "{}: live {live}, from events {want}",
                        c.customer_id
                    ));
                }
            }
        }
    }
}
