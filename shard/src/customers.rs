//! Customers: created by global through the internal API (with a checking and
//! a savings account), and the customer resource of the app's HAL API.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use cellbank_shared::contract::{CreateCustomer, CustomerCreated};
use cellbank_shared::hal::Hal;
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::problem::ApiJson;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::CustomerAccess;
use crate::error::ApiError;
use crate::history::{self, Change, OpenedAccount};
use crate::placement::{self, CustomerState};
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/customers", post(create))
        .route(
            "/internal/v1/customers/{customer_id}/placement",
            put(set_placement),
        )
}

#[derive(serde::Deserialize)]
struct PlacementChange {
    state: CustomerState,
    epoch: Epoch,
}

/// The explicit operation that fences, releases, moves out or activates a
/// customer here at an epoch (see [`placement::change`]).
#[tracing::instrument(skip_all, fields(customer_id = %raw, shard_id = %s.shard_id))]
async fn set_placement(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<PlacementChange>,
) -> Result<Json<placement::Placement>, ApiError> {
    let customer = crate::access::parse_customer(&raw)?;
    if body.epoch.0 < 1 {
        return Err(ApiError::invalid("epoch", "must be at least 1"));
    }
    let mut tx = s.pool.begin().await?;
    let event_id = format!("placement:{}", Uuid::now_v7());
    let placed = placement::change(&mut tx, customer, body.state, body.epoch, &event_id).await?;
    tx.commit().await?;
    tracing::warn!(state = %placed.state, epoch = %placed.epoch, "customer placement changed");
    Ok(Json(placed))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/customers/{customer_id}", get(show))
}

/// Creates the customer, its accounts and book accounts; repeating it answers the same.
#[tracing::instrument(skip_all, fields(customer_id = %body.customer_id, shard_id = %s.shard_id))]
async fn create(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<CreateCustomer>,
) -> Result<impl IntoResponse, ApiError> {
    let name = body.name.trim();
    // A control character (NUL above all, which Postgres text refuses) is
    // no part of a name.
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "name",
            "must be 1 to 200 characters, none a control character",
        ));
    }
    if body.epoch.0 < 1 {
        return Err(ApiError::invalid("epoch", "must be at least 1"));
    }
    let mut tx = s.pool.begin().await?;
    let created = create_customer(&mut tx, &s.account_prefix(), &body).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Creates a customer with a checking and a savings account and its book
/// accounts, recorded as the first event of its history; a repeat (same
/// customer id) answers the existing checking account.
pub async fn create_customer(
    conn: &mut PgConnection,
    prefix: &str,
    body: &CreateCustomer,
) -> Result<CustomerCreated, ApiError> {
    let exists: Option<i32> = sqlx::query_scalar("SELECT 1 FROM customers WHERE customer_id = $1")
        .bind(body.customer_id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    if exists.is_none() {
        let mut accounts = Vec::new();
        for kind in ["checking", "savings"] {
            accounts.push(OpenedAccount {
                account_id: Uuid::now_v7(),
                kind: kind.to_owned(),
                number: account_number(conn, prefix).await?,
            });
        }
        let change = Change::CustomerCreated {
            name: body.name.trim().to_owned(),
            currency: body.currency,
            accounts,
        };
        let event_id = format!("customer:{}", body.customer_id);
        history::apply(conn, body.customer_id, body.epoch, &event_id, &change).await?;
    }
    let (account_id, account_number): (Uuid, String) = sqlx::query_as(
        "SELECT account_id, number FROM accounts WHERE customer_id = $1 AND kind = 'checking'
         ORDER BY created_at LIMIT 1",
    )
    .bind(body.customer_id.as_uuid())
    .fetch_one(&mut *conn)
    .await?;
    Ok(CustomerCreated {
        customer_id: body.customer_id,
        account_id,
        account_number,
    })
}

/// The next account number of this cell: its two-digit prefix and a sequence.
async fn account_number(conn: &mut PgConnection, prefix: &str) -> Result<String, ApiError> {
    let seq: i64 = sqlx::query_scalar("SELECT nextval('account_number_seq')")
        .fetch_one(&mut *conn)
        .await?;
    if seq > 99_999_999 {
        return Err(ApiError::Internal(anyhow::anyhow!(
            "account numbers exhausted"
        )));
    }
    Ok(format!("{prefix}{seq:08}"))
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct CustomerView {
    customer_id: Uuid,
    name: String,
    epoch: i64,
    currency: String,
}

/// Links every customer resource carries.
pub fn customer_links(s: &AppState, hal: Hal, c: CustomerId) -> Hal {
    hal.link("customer", s.public(&format!("/v1/customers/{c}")))
        .link("accounts", s.public(&format!("/v1/customers/{c}/accounts")))
        .link("cards", s.public(&format!("/v1/customers/{c}/cards")))
        .link(
            "transfers",
            s.public(&format!("/v1/customers/{c}/transfers")),
        )
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn show(State(s): State<AppState>, access: CustomerAccess) -> Result<Hal, ApiError> {
    let c = access.customer;
    let view: CustomerView = sqlx::query_as(
        "SELECT customer_id, name, epoch, currency FROM customers WHERE customer_id = $1",
    )
    .bind(c.as_uuid())
    .fetch_optional(&s.pool)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("customer {c}")))?;
    let mut hal = Hal::new(view).link("self", s.public(&format!("/v1/customers/{c}")));
    hal = customer_links(&s, hal, c).link("shard", s.public("/"));
    Ok(hal)
}
