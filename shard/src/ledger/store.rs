//! The ledger in Postgres: applies one business event — its idempotency
//! record, epoch check, target resolution, entries, balances and outbox facts —
//! inside the caller's transaction.

use std::collections::{BTreeMap, HashMap};

use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::{Currency, Money};
use sqlx::PgConnection;
use uuid::Uuid;

use super::event::{Body, CardRef, InvalidEvent, LedgerEvent};
use super::rulebook::{self, Action, Book, LimitInForce, Purchase};
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

#[derive(sqlx::FromRow)]
struct AccountRow {
    account_id: Uuid,
    currency: String,
}

#[derive(Clone, sqlx::FromRow)]
struct CardRow {
    card_id: Uuid,
    credit_limit: i64,
    limit_set_at: chrono::DateTime<chrono::Utc>,
    limit_event: String,
    currency: String,
}

#[derive(sqlx::FromRow)]
struct PurchaseRow {
    card_id: Uuid,
    authorization_id: Option<Uuid>,
    authorized_amount: Option<i64>,
    settled_amount: i64,
    status: String,
    released: bool,
}

/// A per-transaction lookup cache: what the current transaction already
/// looked up (customers locked, book account ids, accounts, cards), so
/// consecutive events of one customer in a batch skip it. Valid for one
/// transaction only.
#[derive(Default)]
pub struct TxLookups {
    epochs: HashMap<CustomerId, i64>,
    /// Book account ids by (customer, code, currency): a code names one
    /// book account per currency.
    books: HashMap<(CustomerId, String, Currency), i64>,
    accounts: HashMap<(CustomerId, Option<String>, Currency), Uuid>,
    cards: HashMap<(CustomerId, CardRef), CardRow>,
    /// A move's import: the customer is written while importing.
    import: bool,
}

impl TxLookups {
    /// Lookups of a move replaying a customer's history into this cell.
    pub fn for_import() -> Self {
        TxLookups {
            import: true,
            ..Default::default()
        }
    }
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

/// Applies consecutive events in the caller's transaction. The customers
/// they touch are locked first, all at once and in one order (by id), so two
/// batches sharing customers wait for each other instead of deadlocking.
pub async fn apply_batch(
    conn: &mut PgConnection,
    events: &[LedgerEvent],
) -> Result<BatchOutcome, ApplyError> {
    let mut customers: Vec<uuid::Uuid> = events.iter().map(|e| e.customer_id.as_uuid()).collect();
    customers.sort();
    customers.dedup();
    sqlx::query(
        "SELECT 1 FROM customers WHERE customer_id = ANY($1) ORDER BY customer_id FOR UPDATE",
    )
    .bind(&customers)
    .execute(&mut *conn)
    .await?;
    let mut lookups = TxLookups::default();
    let mut outcome = BatchOutcome::default();
    for ev in events {
        match apply_in(conn, ev, &mut lookups).await? {
            Outcome::Applied { postings } => {
                outcome.applied += 1;
                outcome.postings += postings as u64;
            }
            Outcome::Duplicate => outcome.duplicates += 1,
        }
    }
    Ok(outcome)
}

/// Applies `ev` in the caller's transaction. A duplicate id changes nothing.
pub async fn apply(conn: &mut PgConnection, ev: &LedgerEvent) -> Result<Outcome, ApplyError> {
    apply_in(conn, ev, &mut TxLookups::default()).await
}

/// [`apply`] within a batch sharing one transaction and its lookups.
pub async fn apply_in(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    lookups: &mut TxLookups,
) -> Result<Outcome, ApplyError> {
    let inserted = sqlx::query(
        "INSERT INTO events (event_id, customer_id, namespace, epoch, event_type, occurred_at, source, payload)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
    )
    .bind(&ev.event_id)
    .bind(ev.customer_id.as_uuid())
    .bind(ev.namespace())
    .bind(ev.epoch.0)
    .bind(&ev.event_type)
    .bind(ev.occurred_at)
    .bind(ev.source)
    .bind(sqlx::types::Json(crate::history::Change::Ledger {
        event_type: ev.event_type.clone(),
        occurred_at: ev.occurred_at,
        source: ev.source.to_owned(),
        partner: ev.partner.clone(),
        body: ev.body.clone(),
    }))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    // The customer stays locked, active and at this epoch until the
    // transaction ends, so one check per customer and transaction suffices.
    if lookups.epochs.get(&ev.customer_id) != Some(&ev.epoch.0) {
        let at = match ev.source {
            _ if lookups.import => WriteAt::Import,
            "inbound" => WriteAt::Inbound(ev.epoch),
            "authorization" => WriteAt::Booking(ev.epoch),
            _ => WriteAt::Epoch(ev.epoch),
        };
        placement::lock_for_write(conn, ev.customer_id, at).await?;
        lookups.epochs.insert(ev.customer_id, ev.epoch.0);
    }
    let currency = ev.currency();
    let resolved = resolve(conn, ev, currency, lookups).await?;
    let entries = rulebook::entries(&resolved.action);
    debug_assert_eq!(rulebook::movement_sum(&entries), 0);
    let postings = write_entries(conn, ev, currency, &entries, lookups).await?;
    if let Some(card) = resolved.card {
        card_fact(conn, ev.customer_id, card, resolved.authorization).await?;
    }
    Ok(Outcome::Applied { postings })
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

fn same_currency(expected: &str, got: Currency, what: &str) -> Result<(), ApplyError> {
    if expected == got.code() {
        Ok(())
    } else {
        Err(rule(format!(
            "currency {got} does not match the {what}'s {expected}"
        )))
    }
}

async fn account(
    conn: &mut PgConnection,
    customer: CustomerId,
    number: Option<&str>,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Uuid, ApplyError> {
    let key = (customer, number.map(str::to_owned), currency);
    if let Some(id) = lookups.accounts.get(&key) {
        return Ok(*id);
    }
    let row: Option<AccountRow> =
        match number {
            Some(n) => sqlx::query_as(
                "SELECT account_id, currency FROM accounts WHERE customer_id = $1 AND number = $2",
            )
            .bind(customer.as_uuid())
            .bind(n)
            .fetch_optional(&mut *conn)
            .await?,
            None => {
                sqlx::query_as(
                    "SELECT account_id, currency FROM accounts
                 WHERE customer_id = $1 AND kind = 'checking' AND currency = $2
                 ORDER BY created_at LIMIT 1",
                )
                .bind(customer.as_uuid())
                .bind(currency.code())
                .fetch_optional(&mut *conn)
                .await?
            }
        };
    let row = row.ok_or_else(|| rule("unknown account for this customer"))?;
    same_currency(&row.currency, currency, "account")?;
    lookups.accounts.insert(key, row.account_id);
    Ok(row.account_id)
}

const CARD_COLUMNS: &str = "card_id, credit_limit, limit_set_at, limit_event, currency";

async fn card(
    conn: &mut PgConnection,
    customer: CustomerId,
    r: &CardRef,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<CardRow, ApplyError> {
    let key = (customer, r.clone());
    if let Some(c) = lookups.cards.get(&key) {
        same_currency(&c.currency, currency, "card")?;
        return Ok(c.clone());
    }
    let row = load_card(conn, customer, r, currency).await?;
    lookups.cards.insert(key, row.clone());
    Ok(row)
}

async fn load_card(
    conn: &mut PgConnection,
    customer: CustomerId,
    r: &CardRef,
    currency: Currency,
) -> Result<CardRow, ApplyError> {
    let rows: Vec<CardRow> = if let Some(id) = r.card_id {
        sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND card_id = $2"
        ))
        .bind(customer.as_uuid())
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
    } else if let Some(h) = &r.card_hash {
        sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND pan_hash = $2"
        ))
        .bind(customer.as_uuid())
        .bind(h)
        .fetch_all(&mut *conn)
        .await?
    } else {
        sqlx::query_as(&format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 LIMIT 2"
        ))
        .bind(customer.as_uuid())
        .fetch_all(&mut *conn)
        .await?
    };
    let mut rows = rows.into_iter();
    let (Some(row), None) = (rows.next(), rows.next()) else {
        return Err(rule(
            "unknown card for this customer (give card_hash or card_id)",
        ));
    };
    same_currency(&row.currency, currency, "card")?;
    Ok(row)
}

/// The customer's purchase with this reference: on `card` when given, else
/// the only card of the customer that has one (a settlement may name no card).
async fn purchase(
    conn: &mut PgConnection,
    customer: CustomerId,
    card: Option<Uuid>,
    network_reference: &str,
) -> Result<Option<(Uuid, Purchase)>, ApplyError> {
    let rows: Vec<PurchaseRow> = sqlx::query_as(
        "SELECT card_id, authorization_id, authorized_amount, settled_amount, status, released
         FROM card_purchases
         WHERE customer_id = $1 AND network_reference = $2 AND ($3::uuid IS NULL OR card_id = $3)
         ORDER BY card_id LIMIT 2 FOR UPDATE",
    )
    .bind(customer.as_uuid())
    .bind(network_reference)
    .bind(card)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows = rows.into_iter();
    let (Some(r), None) = (rows.next(), rows.next()) else {
        return Ok(None);
    };
    Ok(Some((
        r.card_id,
        Purchase {
            authorization_id: r.authorization_id,
            authorized_amount: r.authorized_amount,
            settled_amount: r.settled_amount,
            settled: r.status == "settled",
            released: r.released,
        },
    )))
}

/// Writes the purchase; `authorized_at` when an authorization (re)sets it.
async fn save_purchase(
    conn: &mut PgConnection,
    network_reference: &str,
    customer: CustomerId,
    card: Uuid,
    p: &Purchase,
    authorized_at: Option<chrono::DateTime<chrono::Utc>>,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO card_purchases (network_reference, customer_id, card_id, authorization_id,
                                     authorized_amount, settled_amount, status, released, authorized_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (card_id, network_reference) DO UPDATE SET authorization_id = EXCLUDED.authorization_id,
             authorized_amount = EXCLUDED.authorized_amount, settled_amount = EXCLUDED.settled_amount,
             status = EXCLUDED.status, released = EXCLUDED.released,
             authorized_at = COALESCE(EXCLUDED.authorized_at, card_purchases.authorized_at)",
    )
    .bind(network_reference)
    .bind(customer.as_uuid())
    .bind(card)
    .bind(p.authorization_id)
    .bind(p.authorized_amount)
    .bind(p.settled_amount)
    .bind(if p.settled { "settled" } else { "authorized" })
    .bind(p.released)
    .bind(authorized_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// What resolving an event decided: the rulebook action, the card it touched
/// (whose state then goes to the outbox) and the authorization it booked.
struct Resolved {
    action: Action,
    card: Option<Uuid>,
    authorization: Option<Uuid>,
}

impl Resolved {
    fn account(action: Action) -> Self {
        Self {
            action,
            card: None,
            authorization: None,
        }
    }

    fn card(action: Action, card: Uuid) -> Self {
        Self {
            action,
            card: Some(card),
            authorization: None,
        }
    }
}

/// A reference to a card by its id.
fn by_id(card_id: Uuid) -> CardRef {
    CardRef {
        card_id: Some(card_id),
        card_hash: None,
    }
}

/// Resolves the event's targets and makes its stateful decisions, one small
/// function per kind of event.
async fn resolve(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Resolved, ApplyError> {
    let customer = ev.customer_id;
    match &ev.body {
        Body::Account {
            credit,
            account_number,
            amount,
        } => {
            let number = account_number.as_deref();
            let account = account(conn, customer, number, currency, lookups).await?;
            let amount = amount.minor;
            Ok(Resolved::account(if *credit {
                Action::Credit { account, amount }
            } else {
                Action::Debit { account, amount }
            }))
        }
        Body::OwnTransfer { from, to, amount } => Ok(Resolved::account(Action::OwnTransfer {
            from: *from,
            to: *to,
            amount: amount.minor,
        })),
        Body::PurchaseAuthorized { .. } => authorized(conn, ev, currency, lookups).await,
        Body::PurchaseSettled { .. } => settled(conn, ev, currency, lookups).await,
        Body::HoldReleased { .. } => hold_released(conn, ev, currency, lookups).await,
        Body::Refund { card: r, amount } => {
            let c = card(conn, customer, r, currency, lookups).await?;
            let (card, amount) = (c.card_id, amount.minor);
            Ok(Resolved::card(Action::Refund { card, amount }, card))
        }
        Body::BillPayment { card: r, amount } => {
            let c = card(conn, customer, r, currency, lookups).await?;
            let (card, amount) = (c.card_id, amount.minor);
            Ok(Resolved::card(Action::BillPayment { card, amount }, card))
        }
        Body::LateFee { card: r, amount } => {
            let c = card(conn, customer, r, currency, lookups).await?;
            let (card, amount) = (c.card_id, amount.minor);
            Ok(Resolved::card(Action::LateFee { card, amount }, card))
        }
        Body::CardIssued { card_id, limit } => {
            let (card, delta) = (*card_id, limit.minor);
            Ok(Resolved::card(Action::CreditLimit { card, delta }, card))
        }
        Body::CreditLimit { .. } => limit_changed(conn, ev, currency, lookups).await,
    }
}

/// An approved authorization: holds the amount unless its settlement came first.
async fn authorized(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Resolved, ApplyError> {
    let Body::PurchaseAuthorized {
        card_id,
        authorization_id,
        network_reference,
        amount,
    } = &ev.body
    else {
        unreachable!("resolve dispatches by kind");
    };
    let customer = ev.customer_id;
    let c = card(conn, customer, &by_id(*card_id), currency, lookups).await?;
    let current = purchase(conn, customer, Some(c.card_id), network_reference).await?;
    let a = rulebook::authorize(
        current.as_ref().map(|(_, p)| p),
        *authorization_id,
        amount.minor,
    );
    let at = (a.purchase.authorization_id == Some(*authorization_id)).then_some(ev.occurred_at);
    save_purchase(
        conn,
        network_reference,
        customer,
        c.card_id,
        &a.purchase,
        at,
    )
    .await?;
    let (card, amount) = (c.card_id, amount.minor);
    Ok(Resolved {
        action: Action::PurchaseAuthorized {
            card,
            amount,
            post: a.post,
            release: a.release,
        },
        card: Some(card),
        authorization: Some(*authorization_id),
    })
}

/// The purchase a settlement or a release names by reference: on the card it
/// names, else the customer's only purchase with that reference, whose card
/// then wins (the reference names the card; trust it over a missing or
/// other card reference).
async fn referenced(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    named: CardRow,
    network_reference: &str,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<(CardRow, Option<Purchase>), ApplyError> {
    let customer = ev.customer_id;
    let mut current = purchase(conn, customer, Some(named.card_id), network_reference).await?;
    if current.is_none() {
        current = purchase(conn, customer, None, network_reference).await?;
    }
    match current {
        Some((card_id, p)) if card_id != named.card_id => {
            let c = card(conn, customer, &by_id(card_id), currency, lookups).await?;
            Ok((c, Some(p)))
        }
        other => Ok((named, other.map(|(_, p)| p))),
    }
}

/// A settlement: books the purchase and releases the hold it replaces.
async fn settled(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Resolved, ApplyError> {
    let Body::PurchaseSettled {
        card: r,
        network_reference,
        amount,
    } = &ev.body
    else {
        unreachable!("resolve dispatches by kind");
    };
    let customer = ev.customer_id;
    let mut c = card(conn, customer, r, currency, lookups).await?;
    let (mut release, mut authorization) = (0, None);
    if let Some(nr) = network_reference {
        let current;
        (c, current) = referenced(conn, ev, c, nr, currency, lookups).await?;
        let (rel, next) = rulebook::settle(current.as_ref(), amount.minor);
        (release, authorization) = (rel, next.authorization_id);
        save_purchase(conn, nr, customer, c.card_id, &next, None).await?;
    }
    let (card, amount) = (c.card_id, amount.minor);
    Ok(Resolved {
        action: Action::PurchaseSettled {
            card,
            amount,
            release,
        },
        card: Some(card),
        authorization,
    })
}

/// A reversal or an expiry: releases what the purchase still holds.
async fn hold_released(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Resolved, ApplyError> {
    let Body::HoldReleased {
        card: r,
        network_reference,
        ..
    } = &ev.body
    else {
        unreachable!("resolve dispatches by kind");
    };
    let customer = ev.customer_id;
    let c = card(conn, customer, r, currency, lookups).await?;
    let (c, current) = referenced(conn, ev, c, network_reference, currency, lookups).await?;
    let (amount, next) = rulebook::release(current.as_ref());
    save_purchase(conn, network_reference, customer, c.card_id, &next, None).await?;
    let card = c.card_id;
    Ok(Resolved {
        action: Action::HoldReleased { card, amount },
        card: Some(card),
        authorization: next.authorization_id,
    })
}

/// A new absolute limit: moves the available limit by the change from the
/// limit in force (nothing when an older change arrives late).
async fn limit_changed(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    lookups: &mut TxLookups,
) -> Result<Resolved, ApplyError> {
    let Body::CreditLimit { card: r, limit } = &ev.body else {
        unreachable!("resolve dispatches by kind");
    };
    let c = card(conn, ev.customer_id, r, currency, lookups).await?;
    let current = LimitInForce {
        limit: c.credit_limit,
        set_at: c.limit_set_at,
        event_id: c.limit_event.clone(),
    };
    let asked = LimitInForce {
        limit: limit.minor,
        set_at: ev.occurred_at,
        event_id: ev.event_id.clone(),
    };
    let (delta, next) = rulebook::change_limit(&current, asked);
    if next != current {
        lookups.cards.clear();
        sqlx::query(
            "UPDATE cards SET credit_limit = $2, limit_set_at = $3, limit_event = $4
             WHERE card_id = $1",
        )
        .bind(c.card_id)
        .bind(next.limit)
        .bind(next.set_at)
        .bind(&next.event_id)
        .execute(&mut *conn)
        .await?;
    }
    let card = c.card_id;
    Ok(Resolved::card(Action::CreditLimit { card, delta }, card))
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

#[derive(sqlx::FromRow)]
struct BookRow {
    id: i64,
    code: String,
}

/// Writes the legs of `entries` and moves the balances; returns legs written.
async fn write_entries(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    entries: &[rulebook::Entry],
    lookups: &mut TxLookups,
) -> Result<usize, ApplyError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut codes: Vec<String> = entries
        .iter()
        .flat_map(|e| [e.debit.code(), e.credit.code()])
        .collect();
    codes.sort();
    codes.dedup();
    let cached: Option<BTreeMap<String, i64>> = codes
        .iter()
        .map(|c| {
            lookups
                .books
                .get(&(ev.customer_id, c.clone(), currency))
                .map(|id| (c.clone(), *id))
        })
        .collect();
    let ids = match cached {
        Some(ids) => ids,
        None => {
            let ids = book_ids(conn, ev, currency, &codes).await?;
            for (c, id) in &ids {
                lookups
                    .books
                    .insert((ev.customer_id, c.clone(), currency), *id);
            }
            ids
        }
    };
    write_legs(conn, ev, currency, entries, &ids).await
}

async fn book_ids(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    codes: &[String],
) -> Result<BTreeMap<String, i64>, ApplyError> {
    let mut rows: Vec<BookRow> = sqlx::query_as(
        "SELECT id, code FROM book_accounts WHERE customer_id = $1 AND currency = $2 AND code = ANY($3)",
    )
    .bind(ev.customer_id.as_uuid())
    .bind(currency.code())
    .bind(codes)
    .fetch_all(&mut *conn)
    .await?;
    if rows.len() != codes.len() {
        let books: Vec<Book> = codes.iter().filter_map(|c| Book::parse(c)).collect();
        open_books(conn, ev.customer_id, currency, &books).await?;
        rows = sqlx::query_as(
            "SELECT id, code FROM book_accounts WHERE customer_id = $1 AND currency = $2 AND code = ANY($3)",
        )
        .bind(ev.customer_id.as_uuid())
        .bind(currency.code())
        .bind(codes)
        .fetch_all(&mut *conn)
        .await?;
    }
    Ok(rows.into_iter().map(|r| (r.code, r.id)).collect())
}

async fn write_legs(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    entries: &[rulebook::Entry],
    ids: &BTreeMap<String, i64>,
) -> Result<usize, ApplyError> {
    let mut entry_nos = Vec::new();
    let mut book_ids = Vec::new();
    let mut amounts = Vec::new();
    let mut deltas: BTreeMap<i64, i64> = BTreeMap::new();
    for (i, e) in entries.iter().enumerate() {
        for leg in e.legs() {
            let id = *ids
                .get(&leg.book.code())
                .ok_or_else(|| rule("book account missing"))?;
            entry_nos.push(i as i32);
            book_ids.push(id);
            amounts.push(leg.amount);
            *deltas.entry(id).or_default() += leg.amount;
        }
    }
    sqlx::query(
        "INSERT INTO postings (event_id, namespace, entry_no, customer_id, epoch, book_account_id, currency, amount, business_time)
         SELECT $1, $9, e, $2, $3, b, $4, a, $5
         FROM unnest($6::int[], $7::bigint[], $8::bigint[]) AS t(e, b, a)",
    )
    .bind(&ev.event_id)
    .bind(ev.customer_id.as_uuid())
    .bind(ev.epoch.0)
    .bind(currency.code())
    .bind(ev.occurred_at)
    .bind(&entry_nos)
    .bind(&book_ids)
    .bind(&amounts)
    .bind(ev.namespace())
    .execute(&mut *conn)
    .await?;
    let (ids, ds): (Vec<i64>, Vec<i64>) = deltas.into_iter().filter(|(_, d)| *d != 0).unzip();
    sqlx::query(
        "UPDATE book_accounts b SET balance = b.balance + d.delta
         FROM unnest($1::bigint[], $2::bigint[]) AS d(id, delta) WHERE b.id = d.id",
    )
    .bind(&ids)
    .bind(&ds)
    .execute(&mut *conn)
    .await?;
    Ok(book_ids.len())
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
