//! Transfers between a customer's own accounts (app API), booked through the
//! ledger's apply path; idempotent on `transfer_id`.

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
use crate::history::{self, Change};
use crate::ledger::event::{Body, LedgerEvent};
use crate::ledger::store::{self, Outcome};
use crate::placement::{self, WriteAt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/v1/customers/{customer_id}/transfers",
        get(list).post(create),
    )
}

#[derive(Deserialize)]
struct NewTransfer {
    transfer_id: Option<Uuid>,
    from_account_id: Uuid,
    to_account_id: Uuid,
    amount: i64,
    currency: Currency,
    #[serde(default)]
    description: String,
}

#[derive(Serialize, sqlx::FromRow)]
struct TransferView {
    transfer_id: Uuid,
    from_account_id: Uuid,
    to_account_id: Uuid,
    amount: i64,
    currency: String,
    description: String,
    created_at: DateTime<Utc>,
}

fn transfer_hal(s: &AppState, c: CustomerId, t: TransferView) -> Hal {
    let from = t.from_account_id;
    let to = t.to_account_id;
    Hal::new(t)
        .link(
            "from",
            s.public(&format!("/v1/customers/{c}/accounts/{from}")),
        )
        .link("to", s.public(&format!("/v1/customers/{c}/accounts/{to}")))
        .link(
            "transfers",
            s.public(&format!("/v1/customers/{c}/transfers")),
        )
}

const COLUMNS: &str =
    "transfer_id, from_account AS from_account_id, to_account AS to_account_id, amount, currency, description, created_at";

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
    let status = book(&mut tx, &access, id, &body, amount).await?;
    tx.commit().await?;
    let t: TransferView = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM transfers WHERE transfer_id = $1 AND customer_id = $2"
    ))
    .bind(id)
    .bind(c.as_uuid())
    .fetch_optional(&s.pool)
    .await?
    .ok_or_else(|| ApiError::Conflict("transfer_id was used for another customer".into()))?;
    Ok((status, transfer_hal(&s, c, t)))
}

/// The request's own rules: a positive amount, two different accounts, a
/// short description.
fn validate(body: &NewTransfer) -> Result<Money, ApiError> {
    let amount = Money::positive(body.amount, body.currency)
        .map_err(|e| ApiError::bad_amount("amount", &e))?;
    if body.from_account_id == body.to_account_id {
        return Err(ApiError::invalid(
            "to_account_id",
            "must differ from from_account_id",
        ));
    }
    if body.description.chars().count() > 140 {
        return Err(ApiError::invalid(
            "description",
            "must be at most 140 characters",
        ));
    }
    Ok(amount)
}

/// One of the customer's accounts as a transfer sees it.
#[derive(Clone, sqlx::FromRow)]
struct AccountLeg {
    account_id: Uuid,
    currency: String,
    /// What the customer holds there (minor units).
    balance: i64,
}

/// Both accounts of the transfer, checked to be the customer's and in the
/// transfer's currency.
async fn legs(
    conn: &mut PgConnection,
    c: CustomerId,
    body: &NewTransfer,
) -> Result<(AccountLeg, AccountLeg), ApiError> {
    let accounts: Vec<AccountLeg> = sqlx::query_as(
        "SELECT a.account_id, a.currency, COALESCE(-b.balance, 0) AS balance
         FROM accounts a LEFT JOIN book_accounts b ON b.customer_id = a.customer_id
              AND b.code = 'account:' || a.account_id AND b.currency = a.currency
         WHERE a.customer_id = $1 AND a.account_id = ANY($2)",
    )
    .bind(c.as_uuid())
    .bind([body.from_account_id, body.to_account_id])
    .fetch_all(&mut *conn)
    .await?;
    let find = |id: Uuid, field: &str| {
        accounts
            .iter()
            .find(|a| a.account_id == id)
            .cloned()
            .ok_or_else(|| ApiError::invalid(field, "is not one of this customer's accounts"))
    };
    let from = find(body.from_account_id, "from_account_id")?;
    let to = find(body.to_account_id, "to_account_id")?;
    if from.currency != body.currency.code() || to.currency != body.currency.code() {
        return Err(ApiError::invalid(
            "currency",
            "must be the currency of both accounts",
        ));
    }
    Ok((from, to))
}

/// Books the transfer under the customer's lock: the ledger movement and the
/// transfer row, or nothing when `id` was booked before.
async fn book(
    conn: &mut PgConnection,
    access: &CustomerAccess,
    id: Uuid,
    body: &NewTransfer,
    amount: Money,
) -> Result<StatusCode, ApiError> {
    let c = access.customer;
    // At the token's epoch, under the customer's lock.
    let epoch = placement::lock_for_write(conn, c, WriteAt::Epoch(access.claims.epoch)).await?;
    let (from, to) = legs(conn, c, body).await?;
    let ev = LedgerEvent {
        event_id: format!("transfer:{id}"),
        event_type: "own_transfer".into(),
        customer_id: c,
        epoch,
        occurred_at: Utc::now(),
        source: "transfer",
        partner: None,
        body: Body::OwnTransfer {
            from: from.account_id,
            to: to.account_id,
            amount,
        },
    };
    let Outcome::Applied { postings } = store::apply(conn, &ev).await? else {
        return Ok(StatusCode::OK);
    };
    if from.balance < body.amount {
        return Err(ApiError::invalid(
            "amount",
            "exceeds the balance of from_account_id",
        ));
    }
    let change = Change::Transfer {
        transfer_id: id,
        from_account: from.account_id,
        to_account: to.account_id,
        amount: body.amount,
        currency: body.currency,
        description: body.description.clone(),
    };
    history::apply(conn, c, epoch, &format!("transfer-row:{id}"), &change).await?;
    crate::metrics::POSTINGS.inc_by(postings as u64);
    Ok(StatusCode::CREATED)
}
