//! A customer's history: every change of a customer's state is an event kept
//! with its payload, in order (`events.seq`), whether it moved money (a
//! ledger event) or not (a customer opened, a card issued or blocked, a
//! transfer recorded, a placement changed). The live write paths apply a
//! change through [`apply`] (or the ledger's `store::apply`); [`replay`]
//! feeds the same functions a customer's recorded history, so replaying it
//! into an empty cell reproduces the customer's state (invariant 5).

use anyhow::Context as _;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::Currency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::ledger::event::{Body, LedgerEvent};
use crate::ledger::facts::{self, Fact};
use crate::ledger::rulebook::Book;
use crate::ledger::store::{self, ApplyError};
use crate::placement::{self, CustomerState};

/// `events.source` of the changes that move no money.
pub const SOURCE: &str = "state";

/// One change of a customer's state, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A ledger movement, as applied.
    Ledger {
        event_type: String,
        occurred_at: DateTime<Utc>,
        source: String,
        /// A partner's idempotency namespace (inbound events only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partner: Option<String>,
        body: Body,
    },
    CustomerCreated {
        name: String,
        currency: Currency,
        accounts: Vec<OpenedAccount>,
    },
    /// The card row; its first limit is the ledger event that follows.
    CardIssued {
        card_id: Uuid,
        pan_hash: String,
        last4: String,
        credit_limit: i64,
        currency: Currency,
        limit_set_at: DateTime<Utc>,
    },
    CardBlocked {
        card_id: Uuid,
        blocked: bool,
    },
    /// The transfer's row; its money is the ledger event(s) before it. The
    /// recipient is one of the customer's own accounts (`to_account`) or
    /// another customer's account, by number (`to_account_number`).
    Transfer {
        transfer_id: Uuid,
        from_account: Uuid,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_account: Option<Uuid>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_account_number: Option<String>,
        /// A recipient named by login (resolved by global).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to_login: Option<String>,
        amount: i64,
        currency: Currency,
        description: String,
        /// Waiting for global's transfer service to settle it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        pending: bool,
    },
    /// A pending transfer to another cell settled: delivered (`completed`)
    /// or returned to the sender (`failed`, with the reason).
    TransferSettled {
        transfer_id: Uuid,
        state: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    Placement {
        state: CustomerState,
    },
}

impl Change {
    fn kind(&self) -> &'static str {
        match self {
            Change::Ledger { .. } => "ledger",
            Change::CustomerCreated { .. } => "customer_created",
            Change::CardIssued { .. } => "card_issued",
            Change::CardBlocked { .. } => "card_blocked",
            Change::Transfer { .. } => "transfer_recorded",
            Change::TransferSettled { .. } => "transfer_settled",
            Change::Placement { .. } => "placement_changed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenedAccount {
    pub account_id: Uuid,
    pub kind: String,
    pub number: String,
}

/// Records `change` as the customer's next event in the cell's namespace;
/// false when `event_id` was recorded before (the change was made then).
pub async fn record(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    event_id: &str,
    change: &Change,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO events (event_id, customer_id, namespace, epoch, event_type, occurred_at, source, payload)
         VALUES ($1, $2, 'cell', $3, $4, now(), $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(customer.as_uuid())
    .bind(epoch.0)
    .bind(change.kind())
    .bind(SOURCE)
    .bind(sqlx::types::Json(change))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Makes a change that moves no money and records it, once: what the live
/// write path and a replay both call. The caller holds the customer's lock
/// (a new customer has none yet).
pub async fn apply(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    event_id: &str,
    change: &Change,
) -> Result<bool, ApplyError> {
    if !record(conn, customer, epoch, event_id, change).await? {
        return Ok(false);
    }
    match change {
        Change::CustomerCreated {
            name,
            currency,
            accounts,
        } => open_customer(conn, customer, epoch, name, *currency, accounts).await?,
        Change::CardIssued { .. } => issue_card(conn, customer, epoch, change).await?,
        Change::CardBlocked { card_id, blocked } => {
            sqlx::query("UPDATE cards SET blocked = $2 WHERE card_id = $1 AND customer_id = $3")
                .bind(card_id)
                .bind(blocked)
                .bind(customer.as_uuid())
                .execute(&mut *conn)
                .await?;
            store::card_fact(conn, customer, *card_id, None).await?;
        }
        Change::Transfer { .. } => record_transfer(conn, customer, epoch, change).await?,
        Change::TransferSettled {
            transfer_id,
            state,
            reason,
        } => {
            sqlx::query(
                "UPDATE transfers SET state = $3, reason = $4, settled_at = now()
                 WHERE customer_id = $1 AND transfer_id = $2",
            )
            .bind(customer.as_uuid())
            .bind(transfer_id)
            .bind(state)
            .bind(reason)
            .execute(&mut *conn)
            .await?;
        }
        Change::Ledger { .. } | Change::Placement { .. } => {
            unreachable!(
                "ledger events go through store::apply, placements through placement::change"
            )
        }
    }
    Ok(true)
}

async fn open_customer(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    name: &str,
    currency: Currency,
    accounts: &[OpenedAccount],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        // The customer's creation is its first event: the row starts at that
        // event's version (see the moves migration).
        "INSERT INTO customers (customer_id, name, epoch, currency, version)
         VALUES ($1, $2, $3, $4,
                 (SELECT coalesce(max(version), 0) FROM events WHERE customer_id = $1))",
    )
    .bind(customer.as_uuid())
    .bind(name)
    .bind(epoch.0)
    .bind(currency.code())
    .execute(&mut *conn)
    .await?;
    let mut books = Book::for_customer().to_vec();
    for a in accounts {
        sqlx::query(
            "INSERT INTO accounts (account_id, customer_id, epoch, kind, number, currency)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.account_id)
        .bind(customer.as_uuid())
        .bind(epoch.0)
        .bind(&a.kind)
        .bind(&a.number)
        .bind(currency.code())
        .execute(&mut *conn)
        .await?;
        books.push(Book::Account(a.account_id));
    }
    store::open_books(conn, customer, currency, &books).await?;
    let fact = Fact::Customer {
        customer_id: customer,
        epoch,
        state: Some(CustomerState::Active),
    };
    facts::record(conn, &fact).await
}

async fn issue_card(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    change: &Change,
) -> Result<(), ApplyError> {
    let Change::CardIssued {
        card_id,
        pan_hash,
        last4,
        credit_limit,
        currency,
        limit_set_at,
    } = change
    else {
        unreachable!("issue_card is called for card issues");
    };
    sqlx::query(
        "INSERT INTO cards (card_id, customer_id, epoch, pan_hash, last4, credit_limit,
                            limit_set_at, limit_event, currency)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(card_id)
    .bind(customer.as_uuid())
    .bind(epoch.0)
    .bind(pan_hash)
    .bind(last4)
    .bind(credit_limit)
    .bind(limit_set_at)
    .bind(format!("card:{card_id}"))
    .bind(currency.code())
    .execute(&mut *conn)
    .await?;
    store::open_books(conn, customer, *currency, &Book::for_card(*card_id)).await?;
    Ok(())
}

async fn record_transfer(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    change: &Change,
) -> Result<(), sqlx::Error> {
    let Change::Transfer {
        transfer_id,
        from_account,
        to_account,
        to_account_number,
        to_login,
        amount,
        currency,
        description,
        pending,
    } = change
    else {
        unreachable!("record_transfer is called for transfers");
    };
    let state = if *pending { "pending" } else { "completed" };
    sqlx::query(
        "INSERT INTO transfers (transfer_id, customer_id, epoch, from_account, to_account,
                                to_account_number, to_login, amount, currency, description, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(transfer_id)
    .bind(customer.as_uuid())
    .bind(epoch.0)
    .bind(from_account)
    .bind(to_account)
    .bind(to_account_number)
    .bind(to_login)
    .bind(amount)
    .bind(currency.code())
    .bind(description)
    .bind(state)
    .execute(conn)
    .await?;
    Ok(())
}

/// The `source` of a recorded ledger event as the ledger names it.
fn ledger_source(s: &str) -> Option<&'static str> {
    ["inbound", "authorization", "transfer", "card", "expiry"]
        .into_iter()
        .find(|known| *known == s)
}

/// Replays `customer`'s recorded history from `from` into `into` (an empty
/// cell, or one without this customer), change by change, through the same
/// functions the live paths use. Returns how many events were replayed.
pub async fn replay(
    from: &PgPool,
    customer: CustomerId,
    into: &mut PgConnection,
) -> anyhow::Result<usize> {
    let rows: Vec<(String, i64, Option<sqlx::types::Json<Change>>)> = sqlx::query_as(
        "SELECT event_id, epoch, payload FROM events WHERE customer_id = $1 ORDER BY seq",
    )
    .bind(customer.as_uuid())
    .fetch_all(from)
    .await
    .context("read the customer's history")?;
    for (event_id, epoch, payload) in &rows {
        let change = payload.as_ref().with_context(|| {
            format!("event {event_id} has no payload (recorded before history)")
        })?;
        replay_one(into, customer, Epoch(*epoch), event_id, &change.0)
            .await
            .with_context(|| format!("replay event {event_id}"))?;
    }
    Ok(rows.len())
}

/// The ledger event a recorded [`Change::Ledger`] was made by.
pub fn ledger_event(
    customer: CustomerId,
    epoch: Epoch,
    event_id: &str,
    change: &Change,
) -> anyhow::Result<Option<LedgerEvent>> {
    let Change::Ledger {
        event_type,
        occurred_at,
        source,
        partner,
        body,
    } = change
    else {
        return Ok(None);
    };
    Ok(Some(LedgerEvent {
        event_id: event_id.to_owned(),
        event_type: event_type.clone(),
        customer_id: customer,
        epoch,
        occurred_at: *occurred_at,
        source: ledger_source(source).with_context(|| format!("unknown source {source}"))?,
        partner: partner.clone(),
        body: body.clone(),
    }))
}

async fn replay_one(
    conn: &mut PgConnection,
    customer: CustomerId,
    epoch: Epoch,
    event_id: &str,
    change: &Change,
) -> anyhow::Result<()> {
    if let Some(ev) = ledger_event(customer, epoch, event_id, change)? {
        store::apply(conn, &ev).await?;
        return Ok(());
    }
    match change {
        Change::Placement { state } => {
            placement::change(conn, customer, *state, epoch, event_id).await?;
        }
        other => {
            apply(conn, customer, epoch, event_id, other).await?;
        }
    }
    Ok(())
}
