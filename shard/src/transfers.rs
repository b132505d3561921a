//! Transfers (app API), booked through the ledger's apply path and idempotent
//! on `transfer_id`: between a customer's own accounts, or to another
//! customer's account by its number. A transfer to another customer of this
//! cell settles in one transaction over both customers' books (the sender's
//! money sent and delivered, the recipient's received). A number this cell
//! does not hold belongs to another cell, which takes the global transfer
//! service (not deployed yet): such a transfer is refused, never half-booked.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cellbank_shared::hal::Hal;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::problem::ApiJson;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::CustomerAccess;
use crate::customers::customer_links;
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::event::{Body, LedgerEvent};
use crate::ledger::store::{self, Outcome};
use crate::placement::{self, WriteAt};
use crate::state::AppState;

/// Global's side of transfers between cells: a transfer arrives for one of
/// this cell's accounts.
pub fn internal_router() -> Router<AppState> {
    Router::new().route(
        "/internal/v1/transfers/{transfer_id}/credit",
        axum::routing::post(credit),
    )
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/customers/{customer_id}/transfers",
            get(list).post(create),
        )
        .route(
            "/v1/customers/{customer_id}/transfers/{transfer_id}",
            get(show),
        )
}

#[derive(Deserialize)]
struct NewTransfer {
    transfer_id: Option<Uuid>,
    from_account_id: Uuid,
    /// One of the customer's own accounts...
    to_account_id: Option<Uuid>,
    /// ...or any customer's account, by number (exactly one of the two).
    to_account_number: Option<String>,
    amount: i64,
    currency: Currency,
    #[serde(default)]
    description: String,
}

#[derive(Serialize, sqlx::FromRow)]
struct TransferView {
    transfer_id: Uuid,
    from_account_id: Uuid,
    to_account_id: Option<Uuid>,
    to_account_number: Option<String>,
    amount: i64,
    currency: String,
    description: String,
    state: String,
    created_at: DateTime<Utc>,
}

fn transfer_hal(s: &AppState, c: CustomerId, t: TransferView) -> Hal {
    let from = t.from_account_id;
    let to = t.to_account_id;
    let transfer_id = t.transfer_id;
    let mut hal = Hal::new(t)
        .link(
            "self",
            s.public(&format!("/v1/customers/{c}/transfers/{transfer_id}")),
        )
        .link(
            "from",
            s.public(&format!("/v1/customers/{c}/accounts/{from}")),
        );
    // Another customer's account is not the sender's to follow.
    if let Some(to) = to {
        hal = hal.link("to", s.public(&format!("/v1/customers/{c}/accounts/{to}")));
    }
    hal.link(
        "transfers",
        s.public(&format!("/v1/customers/{c}/transfers")),
    )
}

const COLUMNS: &str = "transfer_id, from_account AS from_account_id, to_account AS to_account_id, \
     to_account_number, amount, currency, description, state, created_at";

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn list(State(s): State<AppState>, access: CustomerAccess) -> Result<Hal, ApiError> {
    let c = access.customer;
    let rows: Vec<TransferView> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM transfers WHERE customer_id = $1 ORDER BY created_at DESC LIMIT 100"
    ))
    .bind(c.as_uuid())
    .fetch_all(&s.pool)
    .await?;
    let items = rows.into_iter().map(|t| transfer_hal(&s, c, t)).collect();
    let hal = Hal::new(serde_json::json!({}))
        .link("self", s.public(&format!("/v1/customers/{c}/transfers")))
        .embed("transfers", items);
    Ok(customer_links(&s, hal, c))
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn create(
    State(s): State<AppState>,
    access: CustomerAccess,
    ApiJson(body): ApiJson<NewTransfer>,
) -> Result<(StatusCode, Hal), ApiError> {
    let c = access.customer;
    let amount = validate(&body)?;
    let id = body.transfer_id.unwrap_or_else(Uuid::now_v7);
    let mut tx = s.pool.begin().await?;
    let to = recipient(&mut tx, c, &body).await?;
    let status = match to {
        Recipient::Own(to) => book(&mut tx, &access, id, &body, to, amount).await?,
        Recipient::Customer(r) => book_to_customer(&mut tx, &access, id, &body, &r, amount).await?,
    };
    tx.commit().await?;
    let t = find(&s, c, id)
        .await?
        .ok_or_else(|| ApiError::Conflict("transfer_id was used for another customer".into()))?;
    Ok((status, transfer_hal(&s, c, t)))
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn show(
    State(s): State<AppState>,
    access: CustomerAccess,
    axum::extract::Path((_, transfer_id)): axum::extract::Path<(String, Uuid)>,
) -> Result<Hal, ApiError> {
    let c = access.customer;
    let t = find(&s, c, transfer_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("transfer {transfer_id}")))?;
    Ok(transfer_hal(&s, c, t))
}

async fn find(s: &AppState, c: CustomerId, id: Uuid) -> Result<Option<TransferView>, ApiError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM transfers WHERE transfer_id = $1 AND customer_id = $2"
    ))
    .bind(id)
    .bind(c.as_uuid())
    .fetch_optional(&s.pool)
    .await?)
}

/// The request's own rules: a positive amount, exactly one recipient (a
/// different account), a short description.
fn validate(body: &NewTransfer) -> Result<Money, ApiError> {
    let amount = Money::positive(body.amount, body.currency)
        .map_err(|e| ApiError::bad_amount("amount", &e))?;
    match (&body.to_account_id, &body.to_account_number) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid(
                "to_account_id",
                "exactly one of to_account_id or to_account_number is required",
            ))
        }
        (Some(to), None) if *to == body.from_account_id => {
            return Err(ApiError::invalid(
                "to_account_id",
                "must differ from from_account_id",
            ))
        }
        (None, Some(n)) if !valid_number(n) => {
            return Err(ApiError::invalid(
                "to_account_number",
                "must be an account number: 1 to 34 digits",
            ))
        }
        _ => {}
    }
    if body.description.chars().count() > 140 {
        return Err(ApiError::invalid(
            "description",
            "must be at most 140 characters",
        ));
    }
    Ok(amount)
}

fn valid_number(n: &str) -> bool {
    (1..=34).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit())
}

/// Where the money goes.
enum Recipient {
    /// One of the sender's own accounts.
    Own(Uuid),
    /// Another customer's account in this cell.
    Customer(OtherAccount),
}

#[derive(sqlx::FromRow)]
struct OtherAccount {
    account_id: Uuid,
    customer_id: Uuid,
    currency: String,
    number: String,
}

/// The account with this number in this cell, whoever holds it.
async fn account_by_number(
    conn: &mut PgConnection,
    number: &str,
) -> Result<Option<OtherAccount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT account_id, customer_id, currency, number FROM accounts WHERE number = $1",
    )
    .bind(number)
    .fetch_optional(conn)
    .await
}

/// The recipient the request names. An account number this cell does not
/// hold belongs to another cell: refused until the global transfer service
/// carries transfers between cells (the number is not echoed back).
async fn recipient(
    conn: &mut PgConnection,
    c: CustomerId,
    body: &NewTransfer,
) -> Result<Recipient, ApiError> {
    let Some(number) = &body.to_account_number else {
        return Ok(Recipient::Own(body.to_account_id.expect("validated")));
    };
    let found = account_by_number(conn, number).await?;
    let Some(a) = found else {
        return Err(ApiError::invalid(
            "to_account_number",
            "is not an account of this cell; transfers to customers of other cells are not available yet",
        ));
    };
    if a.customer_id == c.as_uuid() {
        if a.account_id == body.from_account_id {
            return Err(ApiError::invalid(
                "to_account_number",
                "must differ from from_account_id",
            ));
        }
        return Ok(Recipient::Own(a.account_id));
    }
    if a.currency != body.currency.code() {
        return Err(ApiError::invalid(
            "currency",
            "must be the currency of both accounts",
        ));
    }
    Ok(Recipient::Customer(a))
}

/// One of the customer's accounts as a transfer sees it.
#[derive(Clone, sqlx::FromRow)]
struct AccountLeg {
    account_id: Uuid,
    currency: String,
    /// What the customer holds there (minor units).
    balance: i64,
}

/// The customer's accounts among `ids`, with what each holds.
async fn own_accounts(
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
fn pick(
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

fn event(id: &str, kind: &str, customer: CustomerId, epoch: Epoch, body: Body) -> LedgerEvent {
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

fn too_much() -> ApiError {
    ApiError::invalid("amount", "exceeds the balance of from_account_id")
}

/// Books a transfer between the customer's own accounts under its lock: the
/// ledger movement and the transfer row, or nothing when `id` was booked before.
async fn book(
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
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
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
    let received = event(
        &format!("transfer:{transfer_id}:received"),
        "transfer_received",
        p.recipient,
        p.their_epoch,
        Body::TransferReceived {
            transfer_id,
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
async fn book_to_customer(
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
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
    };
    history::apply(conn, c, epoch, &format!("transfer-row:{id}"), &change).await?;
    crate::metrics::POSTINGS.inc_by(legs as u64);
    Ok(StatusCode::CREATED)
}

/// `POST /internal/v1/transfers/{transfer_id}/credit`: a transfer from a
/// customer of another cell is received into the account with this number,
/// under its customer's lock; once (a repeat answers 200 and books nothing).
/// 404 when this cell holds no such account (global resolves the number
/// again, or compensates), 409 when its customer is not writable here (being
/// moved: global retries against the new owner).
#[tracing::instrument(skip_all, fields(transfer_id = %transfer_id, shard_id = %s.shard_id))]
async fn credit(
    State(s): State<AppState>,
    axum::extract::Path(transfer_id): axum::extract::Path<Uuid>,
    ApiJson(body): ApiJson<cellbank_shared::contract::CreditTransfer>,
) -> Result<(StatusCode, axum::Json<serde_json::Value>), ApiError> {
    let amount = Money::positive(body.amount, body.currency)
        .map_err(|e| ApiError::bad_amount("amount", &e))?;
    if !valid_number(&body.to_account_number) {
        return Err(ApiError::invalid(
            "to_account_number",
            "must be an account number: 1 to 34 digits",
        ));
    }
    let mut tx = s.pool.begin().await?;
    let found = account_by_number(&mut tx, &body.to_account_number).await?;
    let a = found
        .ok_or_else(|| ApiError::NotFound("no account with this number in this cell".into()))?;
    if a.currency != body.currency.code() {
        return Err(ApiError::invalid(
            "currency",
            "must be the account's currency",
        ));
    }
    let customer = CustomerId::from_uuid(a.customer_id);
    let body = Body::TransferReceived {
        transfer_id,
        to: a.account_id,
        amount,
    };
    same_as_before(&mut tx, transfer_id, a.customer_id, &body).await?;
    let epoch = placement::lock_for_write(&mut tx, customer, WriteAt::Current).await?;
    let received = event(
        &format!("transfer:{transfer_id}:received"),
        "transfer_received",
        customer,
        epoch,
        body,
    );
    let status = match store::apply(&mut tx, &received).await? {
        Outcome::Applied { postings } => {
            crate::metrics::POSTINGS.inc_by(postings as u64);
            StatusCode::CREATED
        }
        Outcome::Duplicate => StatusCode::OK,
    };
    tx.commit().await?;
    let answer = serde_json::json!({ "transfer_id": transfer_id, "state": "received" });
    Ok((status, axum::Json(answer)))
}

/// A transfer id is credited once, with one recipient and amount: a repeat
/// with other details is refused (409) instead of booking a second credit for
/// another customer or answering as if the first matched. Serialized per
/// transfer id by an advisory lock held to the end of the transaction.
async fn same_as_before(
    conn: &mut PgConnection,
    transfer_id: Uuid,
    customer: Uuid,
    body: &Body,
) -> Result<(), ApiError> {
    let id = format!("transfer:{transfer_id}:received");
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    let before: Option<(Uuid, serde_json::Value)> = sqlx::query_as(
        "SELECT customer_id, payload FROM events
         WHERE namespace = 'cell' AND event_id = $1 AND event_id LIKE 'transfer:%:received' LIMIT 1",
    )
    .bind(&id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((who, payload)) = before else {
        return Ok(());
    };
    let same_body = serde_json::to_value(body).ok().as_ref() == payload.get("body");
    if who == customer && same_body {
        return Ok(());
    }
    Err(ApiError::Conflict(
        "this transfer_id was credited before with another recipient or amount".into(),
    ))
}
