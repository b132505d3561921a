//! The sender's side of a transfer global carries (to another cell's
//! customer, or to a login): the money leaves the sender's account for
//! their pending book, the transfer is recorded pending, and its hand-off to
//! global is written to the outbox — all in one transaction, so a reserved
//! transfer is always handed off and a handed-off one always reserved.

use axum::http::StatusCode;
use cellbank_shared::contract::HandOffTransfer;
use cellbank_shared::ids::ShardId;
use cellbank_shared::money::Money;
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use super::booking::{event, own_accounts, pick, too_much};
use super::{handoff, NewTransfer};
use crate::access::CustomerAccess;
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::event::Body;
use crate::ledger::store::{self, Outcome};
use crate::placement::{self, WriteAt};

/// How the recipient is named for global to resolve.
pub(super) enum Via {
    Number(String),
    Login(String),
}

/// Who sends, and from which cell.
pub(super) struct Sender<'a> {
    pub access: &'a CustomerAccess,
    pub shard: &'a ShardId,
}

fn sent_event(
    id: Uuid,
    c: cellbank_shared::ids::CustomerId,
    epoch: cellbank_shared::ids::Epoch,
    from: Uuid,
    amount: Money,
) -> crate::ledger::event::LedgerEvent {
    let body = Body::TransferSent {
        transfer_id: id,
        from,
        amount,
    };
    event(&format!("transfer:{id}"), "transfer_sent", c, epoch, body)
}

/// Reserves a transfer to be carried by global: 202 when booked now, 200
/// when `id` was booked before (nothing more is done).
pub(super) async fn reserve(
    conn: &mut PgConnection,
    sender: &Sender<'_>,
    id: Uuid,
    body: &NewTransfer,
    via: &Via,
    amount: Money,
) -> Result<StatusCode, ApiError> {
    let c = sender.access.customer;
    let epoch =
        placement::lock_for_write(conn, c, WriteAt::Epoch(sender.access.claims.epoch)).await?;
    let accounts = own_accounts(conn, c, &[body.from_account_id]).await?;
    let from = pick(
        &accounts,
        body.from_account_id,
        "from_account_id",
        body.currency,
    )?;
    let sent = sent_event(id, c, epoch, from.account_id, amount);
    let Outcome::Applied { postings } = store::apply(conn, &sent).await? else {
        return Ok(StatusCode::OK);
    };
    if from.balance < body.amount {
        return Err(too_much());
    }
    let (to_account_number, to_login) = match via {
        Via::Number(n) => (Some(n.clone()), None),
        Via::Login(l) => (None, Some(l.clone())),
    };
    let change = Change::Transfer {
        transfer_id: id,
        from_account: from.account_id,
        to_account: None,
        to_account_number: to_account_number.clone(),
        to_login: to_login.clone(),
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
        pending: true,
    };
    history::apply(conn, c, epoch, &format!("transfer-row:{id}"), &change).await?;
    let handoff = HandOffTransfer {
        transfer_id: id,
        source_shard: sender.shard.to_string(),
        from_customer_id: c,
        from_account_id: from.account_id,
        amount: body.amount,
        currency: body.currency,
        to_account_number,
        to_login,
        requested_at: Utc::now(),
    };
    handoff::enqueue(conn, &handoff).await?;
    crate::metrics::POSTINGS.inc_by(postings as u64);
    Ok(StatusCode::ACCEPTED)
}
