//! Transfers settled inside the cell, each in the caller's transaction:
//! between a customer's own accounts, or to another customer of the cell
//! (both customers' books, locked in customer-id order).

use axum::http::StatusCode;
use cellbank_shared::contract::transfer_key;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::{Currency, Money};
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::NewTransfer;
use crate::access::CustomerAccess;
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::event::{Body, LedgerEvent};
use crate::ledger::store::{self, Outcome};
use crate::placement::{self, WriteAt};

/// Another customer's account, found by its number.
#[derive(sqlx::FromRow)]
pub(super) struct OtherAccount {
    pub account_id: Uuid,
    pub customer_id: Uuid,
    pub currency: String,
    pub number: String,
}

/// One of the customer's accounts as a transfer sees it.
#[derive(Clone, sqlx::FromRow)]
pub(super) struct AccountLeg {
    pub account_id: Uuid,
    pub currency: String,
    /// What the customer holds there (minor units).
    pub balance: i64,
}

/// The customer's accounts among `ids`, with what each holds.
pub(super) async fn own_accounts(
    conn: &mut PgConnection,
    c: CustomerId,
    ids: &[Uuid],
) -> Result<Vec<AccountLeg>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT a.account_id, a.currency, COALESCE(-b.balance, 0) AS balance
         FROM accounts a LEFT JOIN book_accounts b ON b.customer_id = a.customer_id
              AND b.code = 'account:' || a.account_id AND b.currency = a.currency
         WHERE a.customer_id = $1 AND a.account_id = ANY($2)",
    )
    .bind(c.as_uuid())
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?)
}

/// The account `id` of the customer, checked to be in the transfer's currency.
pub(super) fn pick(
    accounts: &[AccountLeg],
    id: Uuid,
    field: &str,
    currency: Currency,
) -> Result<AccountLeg, ApiError> {
    let a = accounts
        .iter()
        .find(|a| a.account_id == id)
        .cloned()
        .ok_or_else(|| ApiError::invalid(field, "is not one of this customer's accounts"))?;
    if a.currency != currency.code() {
        return Err(ApiError::invalid(
            "currency",
            "must be the currency of both accounts",
        ));
    }
    Ok(a)
}

pub(super) fn event(
    id: &str,
    kind: &str,
    customer: CustomerId,
    epoch: Epoch,
    body: Body,
) -> LedgerEvent {
    LedgerEvent {
        event_id: id.to_owned(),
        event_type: kind.into(),
        customer_id: customer,
        epoch,
        occurred_at: Utc::now(),
        source: "transfer",
        partner: None,
        body,
    }
}

pub(super) fn too_much() -> ApiError {
    ApiError::invalid("amount", "exceeds the balance of from_account_id")
}

/// Books a transfer between the customer's own accounts under its lock: the
/// ledger movement and the transfer row, or nothing when `id` was booked before.
pub(super) async fn book(
    conn: &mut PgConnection,
    access: &CustomerAccess,
    id: Uuid,
    body: &NewTransfer,
    to: Uuid,
    amount: Money,
) -> Result<StatusCode, ApiError> {
    let c = access.customer;
    // At the token's epoch, under the customer's lock.
    let epoch = placement::lock_for_write(conn, c, WriteAt::Epoch(access.claims.epoch)).await?;
    let accounts = own_accounts(conn, c, &[body.from_account_id, to]).await?;
    let from = pick(
        &accounts,
        body.from_account_id,
        "from_account_id",
        body.currency,
    )?;
    let to_field = if body.to_account_id.is_some() {
        "to_account_id"
    } else {
        "to_account_number"
    };
    let to = pick(&accounts, to, to_field, body.currency)?;
    let ev = event(
        &format!("transfer:{id}"),
        "own_transfer",
        c,
        epoch,
        Body::OwnTransfer {
            from: from.account_id,
            to: to.account_id,
            amount,
        },
    );
    let Outcome::Applied { postings } = store::apply(conn, &ev).await? else {
        return Ok(StatusCode::OK);
    };
    if from.balance < body.amount {
        return Err(too_much());
    }
    let change = Change::Transfer {
        transfer_id: id,
        from_account: from.account_id,
        to_account: Some(to.account_id),
        to_account_number: None,
        to_login: None,
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
        pending: false,
    };
    history::apply(conn, c, epoch, &format!("transfer-row:{id}"), &change).await?;
    crate::metrics::POSTINGS.inc_by(postings as u64);
    Ok(StatusCode::CREATED)
}

/// Both customers' locks, in customer-id order so that two transfers in
/// opposite directions cannot deadlock: the sender's at its token's epoch,
/// the recipient's at whatever is current. A recipient that is being moved
/// is refused without naming it.
async fn lock_both(
    conn: &mut PgConnection,
    access: &CustomerAccess,
    recipient: CustomerId,
) -> Result<(Epoch, Epoch), ApiError> {
    let sender = access.customer;
    let own = WriteAt::Epoch(access.claims.epoch);
    let theirs = |r: placement::Refused| match r {
        placement::Refused::Db(e) => ApiError::from(e),
        _ => ApiError::Conflict(
            "the recipient's account cannot take transfers right now; retry".into(),
        ),
    };
    if sender.as_uuid() < recipient.as_uuid() {
        let s = placement::lock_for_write(conn, sender, own).await?;
        let r = placement::lock_for_write(conn, recipient, WriteAt::Current)
            .await
            .map_err(theirs)?;
        Ok((s, r))
    } else {
        let r = placement::lock_for_write(conn, recipient, WriteAt::Current)
            .await
            .map_err(theirs)?;
        let s = placement::lock_for_write(conn, sender, own).await?;
        Ok((s, r))
    }
}

/// The two customers of a transfer within the cell, at the epochs they were
/// locked at.
struct Parties {
    sender: CustomerId,
    epoch: Epoch,
    recipient: CustomerId,
    their_epoch: Epoch,
}

/// The rest of a transfer within the cell, once sent: received into the
/// recipient's account `to`, delivered on the sender's side. Returns the legs.
async fn deliver(
    conn: &mut PgConnection,
    transfer_id: Uuid,
    to: Uuid,
    p: &Parties,
    amount: Money,
) -> Result<usize, ApiError> {
    // The recipient knows the transfer by its bank-wide key, as when it
    // comes from another cell.
    let key = transfer_key(p.sender, transfer_id);
    let received = event(
        &format!("transfer:{key}:received"),
        "transfer_received",
        p.recipient,
        p.their_epoch,
        Body::TransferReceived {
            transfer_id: key,
            to,
            amount,
        },
    );
    let delivered = event(
        &format!("transfer:{transfer_id}:delivered"),
        "transfer_delivered",
        p.sender,
        p.epoch,
        Body::TransferDelivered {
            transfer_id,
            amount,
        },
    );
    let mut legs = 0;
    for ev in [&received, &delivered] {
        if let Outcome::Applied { postings } = store::apply(conn, ev).await? {
            legs += postings;
        }
    }
    Ok(legs)
}

/// Books a transfer to another customer of this cell in the caller's
/// transaction: sent out of the sender's account, received into the
/// recipient's, delivered on the sender's side, and the sender's transfer
/// row; nothing when `id` was booked before. Both customers' books and the
/// cell's balance after each movement; the clearing nets to zero in the cell.
pub(super) async fn book_to_customer(
    conn: &mut PgConnection,
    access: &CustomerAccess,
    id: Uuid,
    body: &NewTransfer,
    r: &OtherAccount,
    amount: Money,
) -> Result<StatusCode, ApiError> {
    let c = access.customer;
    let recipient = CustomerId::from_uuid(r.customer_id);
    let (epoch, their_epoch) = lock_both(conn, access, recipient).await?;
    let accounts = own_accounts(conn, c, &[body.from_account_id]).await?;
    let from = pick(
        &accounts,
        body.from_account_id,
        "from_account_id",
        body.currency,
    )?;
    let (transfer_id, account) = (id, from.account_id);
    let sent = event(
        &format!("transfer:{id}"),
        "transfer_sent",
        c,
        epoch,
        Body::TransferSent {
            transfer_id,
            from: account,
            amount,
        },
    );
    let Outcome::Applied { postings } = store::apply(conn, &sent).await? else {
        return Ok(StatusCode::OK);
    };
    if from.balance < body.amount {
        return Err(too_much());
    }
    let parties = Parties {
        sender: c,
        epoch,
        recipient,
        their_epoch,
    };
    let legs = postings + deliver(conn, id, r.account_id, &parties, amount).await?;
    let change = Change::Transfer {
        transfer_id: id,
        from_account: account,
        to_account: None,
        to_account_number: Some(r.number.clone()),
        to_login: None,
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
        pending: false,
    };
    history::apply(conn, c, epoch, &format!("transfer-row:{id}"), &change).await?;
    crate::metrics::POSTINGS.inc_by(legs as u64);
    Ok(StatusCode::CREATED)
}
