//! The ledger in Postgres: applies a batch of business events in the
//! caller's transaction as a set — the customers locked and their placements
//! checked in one statement, the idempotency records inserted in one, what
//! the customers hold loaded once, every event decided in memory
//! (`batch`), then one statement per table for the legs, the balances, the
//! purchases, the limits and the outbox facts.

use std::collections::{BTreeMap, HashMap, HashSet};

use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::{Currency, Money};
use sqlx::PgConnection;
use uuid::Uuid;

use super::batch::{self, BookKey, Changes, Holdings};
use super::event::{InvalidEvent, LedgerEvent};
use super::rulebook::Book;
use crate::placement::{self, Refused, WriteAt};

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Invalid(#[from] InvalidEvent),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now; `postings` legs written.
    Applied { postings: usize },
    /// Its id was applied before: nothing changed.
    Duplicate,
}

fn rule(msg: impl Into<String>) -> ApplyError {
    ApplyError::Invalid(InvalidEvent::Rule(msg.into()))
}

/// What applying a batch did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: u64,
    pub duplicates: u64,
    pub postings: u64,
}

impl std::ops::AddAssign for BatchOutcome {
    fn add_assign(&mut self, o: Self) {
        self.applied += o.applied;
        self.duplicates += o.duplicates;
        self.postings += o.postings;
    }
}

impl BatchOutcome {
    fn of(outcomes: &[Outcome]) -> Self {
        let mut b = BatchOutcome::default();
        for o in outcomes {
            match o {
                Outcome::Applied { postings } => {
                    b.applied += 1;
                    b.postings += *postings as u64;
                }
                Outcome::Duplicate => b.duplicates += 1,
            }
        }
        b
    }
}

/// Who writes: the live paths, or a move replaying a customer's history
/// into this cell (which writes the customer while it is importing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writer {
    Live,
    Import,
}

/// Applies consecutive events in the caller's transaction, as one set.
pub async fn apply_batch(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
) -> Result<BatchOutcome, ApplyError> {
    Ok(BatchOutcome::of(
        &apply_each(conn, events, Writer::Live).await?,
    ))
}

/// Applies `ev` in the caller's transaction. A duplicate id changes nothing.
pub async fn apply(conn: &mut PgConnection, ev: &LedgerEvent) -> Result<Outcome, ApplyError> {
    Ok(apply_each(conn, std::slice::from_ref(ev), Writer::Live).await?[0])
}

/// [`apply`] for a move's import.
pub async fn apply_import(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
) -> Result<Outcome, ApplyError> {
    Ok(apply_each(conn, std::slice::from_ref(ev), Writer::Import).await?[0])
}

/// Applies `events` as one set and says what each did. An id seen earlier
/// (before, or earlier in the batch) is a duplicate; any event the rules or
/// the customer's placement refuse fails the whole batch (the caller's
/// transaction then rolls back and the consumer isolates it).
pub async fn apply_each(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
    writer: Writer,
) -> Result<Vec<Outcome>, ApplyError> {
    let customers = customers_of(events.iter());
    let placements = placement::lock_all(conn, &customers).await?;
    let fresh = insert_events(conn, events).await?;
    let new: Vec<(usize, &LedgerEvent)> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| fresh[*i])
        .collect();
    for (_, ev) in &new {
        let p = placements
            .get(&ev.customer_id)
            .ok_or(Refused::UnknownCustomer(ev.customer_id))?;
        placement::check_write(p, write_at(ev, writer))?;
    }
    if new.is_empty() {
        return Ok(vec![Outcome::Duplicate; events.len()]);
    }
    let held = load(conn, &new).await?;
    let changes = batch::decide(held, events.len(), &new)?;
    write(conn, events, &changes).await?;
    Ok(fresh
        .iter()
        .zip(&changes.legs)
        .map(|(fresh, legs)| match fresh {
            true => Outcome::Applied { postings: *legs },
            false => Outcome::Duplicate,
        })
        .collect())
}

fn write_at(ev: &LedgerEvent, writer: Writer) -> WriteAt {
    match ev.source {
        _ if writer == Writer::Import => WriteAt::Import,
        "inbound" => WriteAt::Inbound(ev.epoch),
        "authorization" => WriteAt::Booking(ev.epoch),
        _ => WriteAt::Epoch(ev.epoch),
    }
}

/// The distinct customers of `events`, sorted.
fn customers_of<'a>(events: impl Iterator<Item = &'a LedgerEvent>) -> Vec<Uuid> {
    let mut customers: Vec<Uuid> = events.map(|e| e.customer_id.as_uuid()).collect();
    customers.sort();
    customers.dedup();
    customers
}

impl From<Refused> for ApplyError {
    fn from(r: Refused) -> Self {
        match r {
            Refused::Db(e) => ApplyError::Db(e),
            Refused::UnknownCustomer(c) => InvalidEvent::UnknownCustomer(c).into(),
            Refused::Stale { write, current } => InvalidEvent::StaleEpoch {
                event: write,
                current,
            }
            .into(),
            other => InvalidEvent::NotHere(other.to_string()).into(),
        }
    }
}

/// Inserts the idempotency records (with the payloads a replay needs) in
/// batch order, in one statement; says which events are new. A second
/// occurrence of an id in the batch is a duplicate of the first.
async fn insert_events(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
) -> Result<Vec<bool>, ApplyError> {
    let mut seen = HashSet::new();
    let first: Vec<bool> = events
        .iter()
        .map(|e| seen.insert((e.customer_id, e.namespace(), e.event_id.as_str())))
        .collect();
    let rows: Vec<&LedgerEvent> = events
        .iter()
        .zip(&first)
        .filter(|(_, f)| **f)
        .map(|(e, _)| e)
        .collect();
    let payloads = rows
        .iter()
        .map(|e| payload(e))
        .collect::<Result<Vec<_>, _>>()?;
    let inserted: Vec<(Uuid, String, String)> = sqlx::query_as(
        "INSERT INTO events (event_id, customer_id, namespace, epoch, event_type, occurred_at, source, payload)
         SELECT i, c, n, e, t, o, s, p
         FROM unnest($1::text[], $2::uuid[], $3::text[], $4::bigint[], $5::text[], $6::timestamptz[],
                     $7::text[], $8::jsonb[]) WITH ORDINALITY AS x(i, c, n, e, t, o, s, p, k)
         ORDER BY k
         ON CONFLICT DO NOTHING
         RETURNING customer_id, namespace, event_id",
    )
    .bind(rows.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.customer_id.as_uuid()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.namespace()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.epoch.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.occurred_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|e| e.source).collect::<Vec<_>>())
    .bind(payloads)
    .fetch_all(&mut *conn)
    .await?;
    let new: HashSet<(Uuid, String, String)> = inserted.into_iter().collect();
    Ok(events
        .iter()
        .zip(first)
        .map(|(e, first)| {
            let key = (
                e.customer_id.as_uuid(),
                e.namespace().to_owned(),
                e.event_id.clone(),
            );
            first && new.contains(&key)
        })
        .collect())
}

/// What the history keeps of a ledger event, for a replay.
fn payload(e: &LedgerEvent) -> Result<serde_json::Value, ApplyError> {
    serde_json::to_value(crate::history::Change::Ledger {
        event_type: e.event_type.clone(),
        occurred_at: e.occurred_at,
        source: e.source.to_owned(),
        partner: e.partner.clone(),
        body: e.body.clone(),
    })
    .map_err(|e| rule(format!("payload: {e}")))
}

/// Loads what the customers of the new events hold: four statements.
async fn load(
    conn: &mut PgConnection,
    new: &[(usize, &LedgerEvent)],
) -> Result<Holdings, ApplyError> {
    let customers = customers_of(new.iter().map(|(_, e)| *e));
    let accounts = sqlx::query_as(
        "SELECT account_id, customer_id, number, kind, currency FROM accounts
         WHERE customer_id = ANY($1) ORDER BY created_at, account_id",
    )
    .bind(&customers)
    .fetch_all(&mut *conn)
    .await?;
    let cards = sqlx::query_as(
        "SELECT card_id, customer_id, pan_hash, credit_limit, limit_set_at, limit_event, currency, blocked
         FROM cards WHERE customer_id = ANY($1)",
    )
    .bind(&customers)
    .fetch_all(&mut *conn)
    .await?;
    let mut refs: Vec<&str> = new
        .iter()
        .filter_map(|(_, e)| e.body.network_reference())
        .collect();
    refs.sort_unstable();
    refs.dedup();
    let purchases = if refs.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT customer_id, network_reference, card_id, authorization_id, authorized_amount,
                    settled_amount, status, released
             FROM card_purchases WHERE customer_id = ANY($1) AND network_reference = ANY($2)",
        )
        .bind(&customers)
        .bind(&refs)
        .fetch_all(&mut *conn)
        .await?
    };
    let books = sqlx::query_as(
        "SELECT id, customer_id, code, currency, balance FROM book_accounts WHERE customer_id = ANY($1)",
    )
    .bind(&customers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(Holdings::new(accounts, cards, purchases, books))
}

/// Writes what the batch changed: at most six statements, whatever its size.
async fn write(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
    changes: &Changes,
) -> Result<(), ApplyError> {
    let ids = book_ids(conn, &changes.books).await?;
    insert_postings(conn, events, changes, &ids).await?;
    move_balances(conn, changes, &ids).await?;
    save_purchases(conn, changes).await?;
    save_limits(conn, changes).await?;
    insert_facts(conn, changes).await?;
    Ok(())
}

/// The ids of the book accounts touched, creating the missing ones in one
/// statement.
async fn book_ids(
    conn: &mut PgConnection,
    books: &BTreeMap<BookKey, Option<i64>>,
) -> Result<HashMap<BookKey, i64>, ApplyError> {
    let mut ids: HashMap<BookKey, i64> = books
        .iter()
        .filter_map(|(k, id)| id.map(|id| (*k, id)))
        .collect();
    let missing: Vec<&BookKey> = books
        .iter()
        .filter(|(_, id)| id.is_none())
        .map(|(k, _)| k)
        .collect();
    if missing.is_empty() {
        return Ok(ids);
    }
    let created: Vec<(i64, Uuid, String, String)> = sqlx::query_as(
        "INSERT INTO book_accounts (customer_id, code, currency)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
         ON CONFLICT (customer_id, code, currency) DO UPDATE SET code = EXCLUDED.code
         RETURNING id, customer_id, code, currency",
    )
    .bind(missing.iter().map(|k| k.0.as_uuid()).collect::<Vec<_>>())
    .bind(missing.iter().map(|k| k.1.code()).collect::<Vec<_>>())
    .bind(missing.iter().map(|k| k.2.code()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    for (id, customer, code, currency) in created {
        let (Some(book), Ok(ccy)) = (Book::parse(&code), currency.parse::<Currency>()) else {
            return Err(rule("book account missing"));
        };
        ids.insert((CustomerId::from_uuid(customer), book, ccy), id);
    }
    Ok(ids)
}

async fn insert_postings(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
    changes: &Changes,
    ids: &HashMap<BookKey, i64>,
) -> Result<(), ApplyError> {
    let n = changes.postings.len();
    if n == 0 {
        return Ok(());
    }
    let (mut book_ids, mut amounts, mut entry_nos) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for p in &changes.postings {
        book_ids.push(
            *ids.get(&p.book)
                .ok_or_else(|| rule("book account missing"))?,
        );
        amounts.push(p.amount);
        entry_nos.push(p.entry_no);
    }
    let of = |p: &batch::Posting| &events[p.event];
    let legs = &changes.postings;
    sqlx::query(
        "INSERT INTO postings (event_id, namespace, entry_no, customer_id, epoch, book_account_id, currency, amount, business_time)
         SELECT i, n, e, c, p, b, y, a, t
         FROM unnest($1::text[], $2::text[], $3::int[], $4::uuid[], $5::bigint[], $6::bigint[],
                     $7::text[], $8::bigint[], $9::timestamptz[]) WITH ORDINALITY AS x(i, n, e, c, p, b, y, a, t, k)
         ORDER BY k",
    )
    .bind(legs.iter().map(|p| of(p).event_id.as_str()).collect::<Vec<_>>())
    .bind(legs.iter().map(|p| of(p).namespace()).collect::<Vec<_>>())
    .bind(&entry_nos)
    .bind(legs.iter().map(|p| p.book.0.as_uuid()).collect::<Vec<_>>())
    .bind(legs.iter().map(|p| of(p).epoch.0).collect::<Vec<_>>())
    .bind(&book_ids)
    .bind(legs.iter().map(|p| p.book.2.code()).collect::<Vec<_>>())
    .bind(&amounts)
    .bind(legs.iter().map(|p| of(p).occurred_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves every touched balance once, by the batch's net movement.
async fn move_balances(
    conn: &mut PgConnection,
    changes: &Changes,
    ids: &HashMap<BookKey, i64>,
) -> Result<(), ApplyError> {
    let mut moved: Vec<(i64, i64)> = Vec::with_capacity(changes.deltas.len());
    for (book, delta) in changes.deltas.iter().filter(|(_, d)| **d != 0) {
        moved.push((
            *ids.get(book).ok_or_else(|| rule("book account missing"))?,
            *delta,
        ));
    }
    if moved.is_empty() {
        return Ok(());
    }
    // In id order: two writers of one account always take its lock in one order.
    moved.sort_unstable();
    let (ids, deltas): (Vec<i64>, Vec<i64>) = moved.into_iter().unzip();
    sqlx::query(
        "UPDATE book_accounts b SET balance = b.balance + d.delta
         FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta) WHERE b.id = d.id",
    )
    .bind(&ids)
    .bind(&deltas)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes each purchase's state at the end of the batch; `authorized_at`
/// only where an authorization of the batch (re)set it.
async fn save_purchases(conn: &mut PgConnection, changes: &Changes) -> Result<(), ApplyError> {
    let saved = &changes.purchases;
    if saved.is_empty() {
        return Ok(());
    }
    let ps = || saved.values().map(|s| &s.purchase);
    sqlx::query(
        "INSERT INTO card_purchases (network_reference, customer_id, card_id, authorization_id,
                                     authorized_amount, settled_amount, status, released, authorized_at)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::uuid[], $4::uuid[], $5::bigint[], $6::bigint[],
                              $7::text[], $8::bool[], $9::timestamptz[])
         ON CONFLICT (card_id, network_reference) DO UPDATE SET authorization_id = EXCLUDED.authorization_id,
             authorized_amount = EXCLUDED.authorized_amount, settled_amount = EXCLUDED.settled_amount,
             status = EXCLUDED.status, released = EXCLUDED.released,
             authorized_at = COALESCE(EXCLUDED.authorized_at, card_purchases.authorized_at)",
    )
    .bind(saved.keys().map(|(_, r)| r.as_str()).collect::<Vec<_>>())
    .bind(saved.values().map(|s| s.customer.as_uuid()).collect::<Vec<_>>())
    .bind(saved.keys().map(|(c, _)| *c).collect::<Vec<_>>())
    .bind(ps().map(|p| p.authorization_id).collect::<Vec<_>>())
    .bind(ps().map(|p| p.authorized_amount).collect::<Vec<_>>())
    .bind(ps().map(|p| p.settled_amount).collect::<Vec<_>>())
    .bind(ps().map(|p| if p.settled { "settled" } else { "authorized" }).collect::<Vec<_>>())
    .bind(ps().map(|p| p.released).collect::<Vec<_>>())
    .bind(saved.values().map(|s| s.authorized_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn save_limits(conn: &mut PgConnection, changes: &Changes) -> Result<(), ApplyError> {
    let limits = &changes.limits;
    if limits.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE cards c SET credit_limit = l.limit_, limit_set_at = l.set_at, limit_event = l.event
         FROM unnest($1::uuid[], $2::bigint[], $3::timestamptz[], $4::text[]) AS l(card_id, limit_, set_at, event)
         WHERE c.card_id = l.card_id",
    )
    .bind(limits.keys().copied().collect::<Vec<_>>())
    .bind(limits.values().map(|l| l.limit).collect::<Vec<_>>())
    .bind(limits.values().map(|l| l.set_at).collect::<Vec<_>>())
    .bind(limits.values().map(|l| l.event_id.as_str()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The batch's card facts into the outbox, in event order (their ids are the
/// order the authorizer applies them in).
async fn insert_facts(conn: &mut PgConnection, changes: &Changes) -> Result<(), ApplyError> {
    let facts = &changes.facts;
    if facts.is_empty() {
        return Ok(());
    }
    let mut payloads = Vec::with_capacity(facts.len());
    for f in facts {
        payloads.push(serde_json::to_value(f).map_err(|e| rule(format!("fact: {e}")))?);
    }
    sqlx::query(
        "INSERT INTO ledger_facts (customer_id, payload)
         SELECT c, p FROM unnest($1::uuid[], $2::jsonb[]) WITH ORDINALITY AS x(c, p, k) ORDER BY k",
    )
    .bind(
        facts
            .iter()
            .map(|f| f.customer_id().as_uuid())
            .collect::<Vec<_>>(),
    )
    .bind(payloads)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Creates the customer's book accounts for `books` if missing (one statement).
pub async fn open_books(
    conn: &mut PgConnection,
    customer: CustomerId,
    currency: Currency,
    books: &[Book],
) -> Result<(), sqlx::Error> {
    let codes: Vec<String> = books.iter().map(Book::code).collect();
    sqlx::query(
        "INSERT INTO book_accounts (customer_id, code, currency)
         SELECT $1, unnest($2::text[]), $3 ON CONFLICT DO NOTHING",
    )
    .bind(customer.as_uuid())
    .bind(&codes)
    .bind(currency.code())
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the card's state after this movement in the outbox (one statement;
/// the JSON is [`Fact::Card`]'s serde form).
pub async fn card_fact(
    conn: &mut PgConnection,
    customer: CustomerId,
    card_id: Uuid,
    authorization_id: Option<Uuid>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO ledger_facts (customer_id, payload)
         SELECT c.customer_id, jsonb_strip_nulls(jsonb_build_object(
             'type', 'card', 'customer_id', c.customer_id, 'card_id', c.card_id,
             'pan_hash', c.pan_hash, 'currency', c.currency, 'credit_limit', c.credit_limit,
             'blocked', c.blocked, 'available', COALESCE(b.balance, 0),
             'authorization_id', $3::uuid))
         FROM cards c LEFT JOIN book_accounts b
           ON b.customer_id = c.customer_id AND b.code = $2 AND b.currency = c.currency
         WHERE c.card_id = $1 AND c.customer_id = $4",
    )
    .bind(card_id)
    .bind(Book::CardAvailable(card_id).code())
    .bind(authorization_id)
    .bind(customer.as_uuid())
    .execute(conn)
    .await?;
    Ok(())
}

/// A positive amount in the given currency (for events the cell builds itself).
pub fn money(minor: i64, currency: Currency) -> Result<Money, ApplyError> {
    Money::positive(minor, currency).map_err(|e| rule(format!("amount: {e}")))
}
