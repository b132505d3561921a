//! Transfers (app API), booked through the ledger's apply path and idempotent
//! on the sender's `transfer_id`: between a customer's own accounts, to
//! another customer of this cell (settled in one transaction over both
//! customers' books), or to a customer of another cell — named by account
//! number or login — which reserves the sender's money (pending) and hands
//! the transfer to global's transfer service. Global credits the recipient's
//! cell and settles the transfer back here: delivered (completed) or
//! returned (failed, with a reason).

mod between_cells;
mod booking;
pub mod handoff;
mod internal;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use cellbank_shared::hal::Hal;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::problem::ApiJson;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::CustomerAccess;
use crate::customers::customer_links;
use crate::error::ApiError;
use crate::state::AppState;

pub use internal::internal_router;

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
    /// ...or any customer's account, by number...
    to_account_number: Option<String>,
    /// ...or any customer, by login (exactly one of the three).
    to_login: Option<String>,
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
    to_login: Option<String>,
    amount: i64,
    currency: String,
    description: String,
    /// `pending`, `completed` or `failed` (the money returned).
    state: String,
    /// Why a failed transfer failed.
    reason: Option<String>,
    created_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
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
     to_account_number, to_login, amount, currency, description, state, reason, created_at, settled_at";

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

/// `POST .../transfers`: 201 when settled here, 202 when handed to global's
/// transfer service (pending), 200 for a repeat of a booked `transfer_id`.
#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id, transfer_id))]
async fn create(
    State(s): State<AppState>,
    access: CustomerAccess,
    ApiJson(body): ApiJson<NewTransfer>,
) -> Result<(StatusCode, Hal), ApiError> {
    let c = access.customer;
    let amount = validate(&body)?;
    let id = body.transfer_id.unwrap_or_else(Uuid::now_v7);
    tracing::Span::current().record("transfer_id", tracing::field::display(id));
    let mut tx = s.pool.begin().await?;
    let to = recipient(&mut tx, c, &body).await?;
    let status = match to {
        Recipient::Own(to) => booking::book(&mut tx, &access, id, &body, to, amount).await?,
        Recipient::Customer(r) => {
            booking::book_to_customer(&mut tx, &access, id, &body, &r, amount).await?
        }
        Recipient::Elsewhere(via) => {
            let sender = between_cells::Sender {
                access: &access,
                shard: &s.shard_id,
            };
            between_cells::reserve(&mut tx, &sender, id, &body, &via, amount).await?
        }
    };
    tx.commit().await?;
    if status == StatusCode::ACCEPTED {
        let trace_id = cellbank_shared::telemetry::current_trace_id();
        tracing::info!(%trace_id, "transfer reserved; handing it to global");
        s.handoff.wake();
        crate::metrics::transfer_started("between_cells");
    } else if status == StatusCode::CREATED {
        crate::metrics::transfer_started("within_cell");
    }
    let t = find(&s, c, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("transfer {id}")))?;
    if status == StatusCode::OK && !same_request(&t, &body) {
        return Err(ApiError::Conflict(
            "transfer_id was used before for another transfer (other account, amount, currency or recipient)".into(),
        ));
    }
    Ok((status, transfer_hal(&s, c, t)))
}

/// Whether a repeated `transfer_id` asks for the transfer booked under it:
/// the same account, amount, currency and recipient as named then.
fn same_request(t: &TransferView, body: &NewTransfer) -> bool {
    let recipient = match (&body.to_account_id, &body.to_account_number, &body.to_login) {
        (Some(to), _, _) => t.to_account_id == Some(*to),
        // An own account named by number is recorded by its id.
        (_, Some(n), _) => {
            t.to_account_number.as_deref().is_none_or(|m| m == n) && t.to_login.is_none()
        }
        (_, _, Some(l)) => t.to_login.as_deref() == Some(normalise_login(l).as_str()),
        _ => false,
    };
    recipient
        && t.from_account_id == body.from_account_id
        && t.amount == body.amount
        && t.currency == body.currency.code()
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
        "SELECT {COLUMNS} FROM transfers WHERE customer_id = $1 AND transfer_id = $2"
    ))
    .bind(c.as_uuid())
    .bind(id)
    .fetch_optional(&s.pool)
    .await?)
}

/// The request's own rules: a positive amount, exactly one recipient (a
/// different account), a short description.
fn validate(body: &NewTransfer) -> Result<Money, ApiError> {
    let amount = Money::positive(body.amount, body.currency)
        .map_err(|e| ApiError::bad_amount("amount", &e))?;
    let named = [
        body.to_account_id.is_some(),
        body.to_account_number.is_some(),
        body.to_login.is_some(),
    ];
    if named.iter().filter(|n| **n).count() != 1 {
        return Err(ApiError::invalid(
            "to_account_id",
            "exactly one of to_account_id, to_account_number or to_login is required",
        ));
    }
    if body.to_account_id == Some(body.from_account_id) {
        return Err(ApiError::invalid(
            "to_account_id",
            "must differ from from_account_id",
        ));
    }
    if let Some(n) = &body.to_account_number {
        if !valid_number(n) {
            return Err(ApiError::invalid(
                "to_account_number",
                "must be an account number: 1 to 34 digits",
            ));
        }
    }
    if let Some(login) = &body.to_login {
        if !valid_login(&normalise_login(login)) {
            return Err(ApiError::invalid(
                "to_login",
                "must be a login: 3 to 64 letters, digits or ._@+-",
            ));
        }
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

/// Logins as global keeps them: trimmed and lower-cased.
fn normalise_login(login: &str) -> String {
    login.trim().to_lowercase()
}

/// Global's rule for a login (checked here so a malformed one is refused
/// at once rather than failing later at global).
fn valid_login(login: &str) -> bool {
    (3..=64).contains(&login.len())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c))
}

/// Where the money goes.
enum Recipient {
    /// One of the sender's own accounts.
    Own(Uuid),
    /// Another customer's account in this cell.
    Customer(booking::OtherAccount),
    /// A customer global resolves (another cell's, or anyone's by login).
    Elsewhere(between_cells::Via),
}

/// The account with this number in this cell, whoever holds it — unless
/// its customer moved out (the copy left here is not theirs to credit).
async fn account_by_number(
    conn: &mut PgConnection,
    number: &str,
) -> Result<Option<booking::OtherAccount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.account_id, a.customer_id, a.currency, a.number
         FROM accounts a JOIN customers c USING (customer_id)
         WHERE a.number = $1 AND c.state <> 'moved_out'",
    )
    .bind(number)
    .fetch_optional(conn)
    .await
}

/// The recipient the request names. A login is global's to resolve; an
/// account number this cell does not hold belongs to another cell.
async fn recipient(
    conn: &mut PgConnection,
    c: CustomerId,
    body: &NewTransfer,
) -> Result<Recipient, ApiError> {
    if let Some(login) = &body.to_login {
        return Ok(Recipient::Elsewhere(between_cells::Via::Login(
            normalise_login(login),
        )));
    }
    let Some(number) = &body.to_account_number else {
        return Ok(Recipient::Own(body.to_account_id.expect("validated")));
    };
    let Some(a) = account_by_number(conn, number).await? else {
        return Ok(Recipient::Elsewhere(between_cells::Via::Number(
            number.clone(),
        )));
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
