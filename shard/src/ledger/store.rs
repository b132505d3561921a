//! The ledger in Postgres: applies one business event — its idempotency
//! record, epoch check, target resolution, entries, balances and outbox facts —
//! inside the caller's transaction.

use std::collections::{BTreeMap, HashMap};

use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::{Currency, Money};
use sqlx::PgConnection;
use uuid::Uuid;

use super::event::{Body, CardRef, InvalidEvent, LedgerEvent};
use super::facts::{self, Fact};
use super::rulebook::{self, Action, Book, LimitInForce, Purchase};

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
struct CustomerRow {
    epoch: i64,
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
}

/// Lookups already made in the current transaction (customers locked, book
/// account ids, accounts, cards), so consecutive events of one customer in a
/// batch skip them. Valid for one transaction only.
#[derive(Default)]
pub struct Batch {
    epochs: HashMap<CustomerId, i64>,
    books: HashMap<(CustomerId, String), i64>,
    accounts: HashMap<(CustomerId, Option<String>, Currency), Uuid>,
    cards: HashMap<(CustomerId, CardRef), CardRow>,
}

/// Applies `ev` in the caller's transaction. A duplicate id changes nothing.
pub async fn apply(conn: &mut PgConnection, ev: &LedgerEvent) -> Result<Outcome, ApplyError> {
    apply_in(conn, ev, &mut Batch::default()).await
}

/// [`apply`] within a batch sharing one transaction and its lookups.
pub async fn apply_in(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    batch: &mut Batch,
) -> Result<Outcome, ApplyError> {
    let inserted = sqlx::query(
        "INSERT INTO events (event_id, customer_id, epoch, event_type, occurred_at, source)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(&ev.event_id)
    .bind(ev.customer_id.as_uuid())
    .bind(ev.epoch.0)
    .bind(&ev.event_type)
    .bind(ev.occurred_at)
    .bind(ev.source)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(Outcome::Duplicate);
    }
    match batch.epochs.get(&ev.customer_id) {
        Some(e) if ev.epoch.0 == *e => {}
        _ => {
            let e = check_epoch(conn, ev.customer_id, ev.epoch).await?;
            batch.epochs.insert(ev.customer_id, e);
        }
    }
    let currency = ev.currency();
    let (action, card, authorization_id) = resolve(conn, ev, currency, batch).await?;
    let entries = rulebook::entries(&action);
    debug_assert_eq!(rulebook::movement_sum(&entries), 0);
    let postings = write_entries(conn, ev, currency, &entries, batch).await?;
    if let Some(card) = card {
        card_fact(conn, ev.customer_id, card, authorization_id).await?;
    }
    Ok(Outcome::Applied { postings })
}

/// Locks the customer (serializing its writers) and checks the epoch: older is
/// refused, newer is recorded.
pub async fn check_epoch(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    epoch: Epoch,
) -> Result<i64, ApplyError> {
    let row: Option<CustomerRow> =
        sqlx::query_as("SELECT epoch FROM customers WHERE customer_id = $1 FOR UPDATE")
            .bind(customer_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(row) = row else {
        return Err(InvalidEvent::UnknownCustomer(customer_id).into());
    };
    if epoch.0 < row.epoch {
        return Err(InvalidEvent::StaleEpoch {
            event: epoch.0,
            current: row.epoch,
        }
        .into());
    }
    if epoch.0 > row.epoch {
        sqlx::query("UPDATE customers SET epoch = $2 WHERE customer_id = $1")
            .bind(customer_id.as_uuid())
            .bind(epoch.0)
            .execute(&mut *conn)
            .await?;
        facts::record(conn, &Fact::Customer { customer_id, epoch }).await?;
    }
    Ok(epoch.0.max(row.epoch))
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
    batch: &mut Batch,
) -> Result<Uuid, ApplyError> {
    let key = (customer, number.map(str::to_owned), currency);
    if let Some(id) = batch.accounts.get(&key) {
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
    batch.accounts.insert(key, row.account_id);
    Ok(row.account_id)
}

const CARD_COLUMNS: &str = "card_id, credit_limit, limit_set_at, limit_event, currency";

async fn card(
    conn: &mut PgConnection,
    customer: CustomerId,
    r: &CardRef,
    currency: Currency,
    batch: &mut Batch,
) -> Result<CardRow, ApplyError> {
    let key = (customer, r.clone());
    if let Some(c) = batch.cards.get(&key) {
        same_currency(&c.currency, currency, "card")?;
        return Ok(c.clone());
    }
    let row = load_card(conn, customer, r, currency).await?;
    batch.cards.insert(key, row.clone());
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

async fn purchase(
    conn: &mut PgConnection,
    network_reference: &str,
) -> Result<Option<(Uuid, Purchase)>, ApplyError> {
    let row: Option<PurchaseRow> = sqlx::query_as(
        "SELECT card_id, authorization_id, authorized_amount, settled_amount, status
         FROM card_purchases WHERE network_reference = $1 FOR UPDATE",
    )
    .bind(network_reference)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| {
        (
            r.card_id,
            Purchase {
                authorization_id: r.authorization_id,
                authorized_amount: r.authorized_amount,
                settled_amount: r.settled_amount,
                settled: r.status == "settled",
            },
        )
    }))
}

async fn save_purchase(
    conn: &mut PgConnection,
    network_reference: &str,
    customer: CustomerId,
    card: Uuid,
    p: &Purchase,
) -> Result<(), ApplyError> {
    sqlx::query(
        "INSERT INTO card_purchases (network_reference, customer_id, card_id, authorization_id,
                                     authorized_amount, settled_amount, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (network_reference) DO UPDATE SET authorization_id = EXCLUDED.authorization_id,
             authorized_amount = EXCLUDED.authorized_amount, settled_amount = EXCLUDED.settled_amount,
             status = EXCLUDED.status",
    )
    .bind(network_reference)
    .bind(customer.as_uuid())
    .bind(card)
    .bind(p.authorization_id)
    .bind(p.authorized_amount)
    .bind(p.settled_amount)
    .bind(if p.settled { "settled" } else { "authorized" })
    .execute(conn)
    .await?;
    Ok(())
}

/// Resolves targets and makes the stateful decisions; returns the rulebook
/// action, the card touched (for its fact) and the authorization booked.
async fn resolve(
    conn: &mut PgConnection,
    ev: &LedgerEvent,
    currency: Currency,
    batch: &mut Batch,
) -> Result<(Action, Option<Uuid>, Option<Uuid>), ApplyError> {
    let customer = ev.customer_id;
    Ok(match &ev.body {
        Body::Account {
            credit,
            account_number,
            amount,
        } => {
            let account =
                account(conn, customer, account_number.as_deref(), currency, batch).await?;
            let amount = amount.minor;
            let action = if *credit {
                Action::Credit { account, amount }
            } else {
                Action::Debit { account, amount }
            };
            (action, None, None)
        }
        Body::OwnTransfer { from, to, amount } => (
            Action::OwnTransfer {
                from: *from,
                to: *to,
                amount: amount.minor,
            },
            None,
            None,
        ),
        Body::PurchaseAuthorized {
            card_id,
            authorization_id,
            network_reference,
            amount,
        } => {
            let c = card(
                conn,
                customer,
                &CardRef {
                    card_id: Some(*card_id),
                    card_hash: None,
                },
                currency,
                batch,
            )
            .await?;
            let current = purchase(conn, network_reference).await?;
            let (post, next) = rulebook::authorize(
                current.as_ref().map(|(_, p)| p),
                *authorization_id,
                amount.minor,
            );
            save_purchase(conn, network_reference, customer, c.card_id, &next).await?;
            (
                Action::PurchaseAuthorized {
                    card: c.card_id,
                    amount: amount.minor,
                    post,
                },
                Some(c.card_id),
                Some(*authorization_id),
            )
        }
        Body::PurchaseSettled {
            card: r,
            network_reference,
            amount,
        } => {
            let mut c = card(conn, customer, r, currency, batch).await?;
            let mut release = 0;
            let mut authorization_id = None;
            if let Some(nr) = network_reference {
                let current = purchase(conn, nr).await?;
                if let Some((card_id, _)) = &current {
                    if *card_id != c.card_id {
                        // the reference names the card; trust it over a missing/other ref
                        c = card(
                            conn,
                            customer,
                            &CardRef {
                                card_id: Some(*card_id),
                                card_hash: None,
                            },
                            currency,
                            batch,
                        )
                        .await?;
                    }
                }
                let (rel, next) = rulebook::settle(current.as_ref().map(|(_, p)| p), amount.minor);
                release = rel;
                authorization_id = next.authorization_id;
                save_purchase(conn, nr, customer, c.card_id, &next).await?;
            }
            (
                Action::PurchaseSettled {
                    card: c.card_id,
                    amount: amount.minor,
                    release,
                },
                Some(c.card_id),
                authorization_id,
            )
        }
        Body::Refund { card: r, amount } => {
            let c = card(conn, customer, r, currency, batch).await?;
            (
                Action::Refund {
                    card: c.card_id,
                    amount: amount.minor,
                },
                Some(c.card_id),
                None,
            )
        }
        Body::BillPayment { card: r, amount } => {
            let c = card(conn, customer, r, currency, batch).await?;
            (
                Action::BillPayment {
                    card: c.card_id,
                    amount: amount.minor,
                },
                Some(c.card_id),
                None,
            )
        }
        Body::LateFee { card: r, amount } => {
            let c = card(conn, customer, r, currency, batch).await?;
            (
                Action::LateFee {
                    card: c.card_id,
                    amount: amount.minor,
                },
                Some(c.card_id),
                None,
            )
        }
        Body::CardIssued { card_id, limit } => (
            Action::CreditLimit {
                card: *card_id,
                delta: limit.minor,
            },
            Some(*card_id),
            None,
        ),
        Body::CreditLimit { card: r, limit } => {
            let c = card(conn, customer, r, currency, batch).await?;
            let current = LimitInForce {
                limit: c.credit_limit,
                set_at: c.limit_set_at,
                event_id: c.limit_event.clone(),
            };
            let (delta, next) = rulebook::change_limit(
                &current,
                LimitInForce {
                    limit: limit.minor,
                    set_at: ev.occurred_at,
                    event_id: ev.event_id.clone(),
                },
            );
            if next != current {
                batch.cards.clear();
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
            (
                Action::CreditLimit {
                    card: c.card_id,
                    delta,
                },
                Some(c.card_id),
                None,
            )
        }
    })
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
    batch: &mut Batch,
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
            batch
                .books
                .get(&(ev.customer_id, c.clone()))
                .map(|id| (c.clone(), *id))
        })
        .collect();
    let ids = match cached {
        Some(ids) => ids,
        None => {
            let ids = book_ids(conn, ev, currency, &codes).await?;
            for (c, id) in &ids {
                batch.books.insert((ev.customer_id, c.clone()), *id);
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
        "INSERT INTO postings (event_id, entry_no, customer_id, epoch, book_account_id, currency, amount, business_time)
         SELECT $1, e, $2, $3, b, $4, a, $5
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
