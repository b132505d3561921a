//! Credit cards: issued by global through the internal API (the cell gets the
//! PAN's keyed hash and last four digits only), and the app's cards resource
//! with available limit and current bill from the ledger.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use cellbank_shared::contract::{CardIssued, IssueCard};
use cellbank_shared::db::classify;
use cellbank_shared::hal::Hal;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::Money;
use cellbank_shared::problem::ApiJson;
use chrono::Utc;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::access::CustomerAccess;
use crate::customers::customer_links;
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::event::{Body, LedgerEvent};
use crate::ledger::store;
use crate::ledger::store::ApplyError;
use crate::placement::{self, WriteAt};
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new().route("/internal/v1/customers/{customer_id}/cards", post(issue))
}

pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/cards/{card_id}/block", post(block))
        .route("/admin/v1/cards/{card_id}/unblock", post(unblock))
}

async fn block(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_blocked(&s, &raw, true).await
}

async fn unblock(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    set_blocked(&s, &raw, false).await
}

/// Blocks or unblocks a card; the authorizer learns it from the card's next fact.
async fn set_blocked(
    s: &AppState,
    raw: &str,
    blocked: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let card_id =
        Uuid::parse_str(raw).map_err(|_| ApiError::invalid("card_id", "must be a uuid"))?;
    let mut tx = s.pool.begin().await?;
    let customer: Option<Uuid> =
        sqlx::query_scalar("SELECT customer_id FROM cards WHERE card_id = $1")
            .bind(card_id)
            .fetch_optional(&mut *tx)
            .await?;
    let customer = customer.ok_or_else(|| ApiError::NotFound(format!("card {card_id}")))?;
    let customer = CustomerId::from_uuid(customer);
    // The customer's lock first, as every writer: its facts then reach the
    // outbox in commit order.
    let epoch = placement::lock_for_write(&mut tx, customer, WriteAt::Current).await?;
    let change = Change::CardBlocked { card_id, blocked };
    let event_id = format!("card-block:{}", Uuid::now_v7());
    history::apply(&mut tx, customer, epoch, &event_id, &change).await?;
    tx.commit().await?;
    Ok(Json(
        serde_json::json!({ "card_id": card_id, "blocked": blocked }),
    ))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/customers/{customer_id}/cards", get(list))
}

#[tracing::instrument(skip_all, fields(customer_id = %raw, shard_id = %s.shard_id))]
async fn issue(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    ApiJson(body): ApiJson<IssueCard>,
) -> Result<impl IntoResponse, ApiError> {
    let customer = crate::access::parse_customer(&raw)?;
    if body.last4.len() != 4 || !body.last4.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("last4", "must be 4 digits"));
    }
    if body.pan_hash.is_empty() || body.pan_hash.len() > 128 {
        return Err(ApiError::invalid("pan_hash", "must be 1 to 128 characters"));
    }
    let mut tx = s.pool.begin().await?;
    let issued = issue_card(&mut tx, customer, &body).await?;
    tx.commit().await?;
    // Read your writes: the card reaches this replica's authorizer through the
    // outbox and the ledger-facts log; answer once it can be authorized here
    // (bounded: the card is issued and durable either way).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while !s
        .authorizer
        .with_state(|st| st.card(&body.pan_hash).is_some())
    {
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(card_id = %body.card_id, "issued card not yet known to the authorizer");
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    Ok((StatusCode::CREATED, Json(issued)))
}

/// Issues a card (idempotent on card_id) and books its first limit.
pub async fn issue_card(
    conn: &mut PgConnection,
    customer: CustomerId,
    body: &IssueCard,
) -> Result<CardIssued, ApiError> {
    let limit = Money::positive(body.credit_limit, body.currency)
        .map_err(|e| ApiError::bad_amount("credit_limit", &e))?;
    placement::lock_for_write(conn, customer, WriteAt::Epoch(body.epoch)).await?;
    if let Some(issued) = issued_before(conn, customer, body).await? {
        return Ok(issued);
    }
    let now = Utc::now();
    let change = Change::CardIssued {
        card_id: body.card_id,
        pan_hash: body.pan_hash.clone(),
        last4: body.last4.clone(),
        credit_limit: body.credit_limit,
        currency: body.currency,
        limit_set_at: now,
    };
    let event_id = format!("card-issued:{}", body.card_id);
    history::apply(conn, customer, body.epoch, &event_id, &change)
        .await
        .map_err(|e| match e {
            ApplyError::Db(db) if classify(&db).constraint() == Some("cards_pan_hash_key") => {
                ApiError::Conflict("a card with this pan_hash exists".into())
            }
            other => other.into(),
        })?;
    let ev = LedgerEvent {
        event_id: format!("card:{}", body.card_id),
        event_type: "card_issued".into(),
        customer_id: customer,
        epoch: body.epoch,
        occurred_at: now,
        source: "card",
        partner: None,
        body: Body::CardIssued {
            card_id: body.card_id,
            limit,
        },
    };
    store::apply(conn, &ev).await?;
    Ok(CardIssued {
        card_id: body.card_id,
        last4: body.last4.clone(),
        credit_limit: body.credit_limit,
        currency: body.currency,
    })
}

/// The card as issued before, when this is a repeat of the same issue.
async fn issued_before(
    conn: &mut PgConnection,
    customer: CustomerId,
    body: &IssueCard,
) -> Result<Option<CardIssued>, ApiError> {
    let existing: Option<(Uuid, String, i64, String)> = sqlx::query_as(
        "SELECT customer_id, last4, credit_limit, currency FROM cards WHERE card_id = $1",
    )
    .bind(body.card_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((owner, last4, credit_limit, currency)) = existing else {
        return Ok(None);
    };
    if owner != customer.as_uuid() {
        return Err(ApiError::Conflict(
            "card_id belongs to another customer".into(),
        ));
    }
    Ok(Some(CardIssued {
        card_id: body.card_id,
        last4,
        credit_limit,
        currency: currency.parse().unwrap_or(body.currency),
    }))
}

#[derive(serde::Serialize, sqlx::FromRow)]
struct CardView {
    card_id: Uuid,
    last4: String,
    currency: String,
    credit_limit: i64,
    available_limit: i64,
    current_bill: i64,
    unsettled: i64,
    blocked: bool,
    closing_day: i32,
    due_day: i32,
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn list(State(s): State<AppState>, access: CustomerAccess) -> Result<Hal, ApiError> {
    let c = access.customer;
    let cards: Vec<CardView> = sqlx::query_as(
        "SELECT c.card_id, c.last4, c.currency, c.credit_limit, c.blocked, c.closing_day, c.due_day,
           COALESCE((SELECT balance FROM book_accounts b WHERE b.customer_id = c.customer_id
                      AND b.code = 'card:' || c.card_id || ':available'), 0) AS available_limit,
           COALESCE((SELECT balance FROM book_accounts b WHERE b.customer_id = c.customer_id
                      AND b.code = 'card:' || c.card_id || ':bill'), 0) AS current_bill,
           COALESCE((SELECT balance FROM book_accounts b WHERE b.customer_id = c.customer_id
                      AND b.code = 'card:' || c.card_id || ':unsettled'), 0) AS unsettled
         FROM cards c WHERE c.customer_id = $1 ORDER BY c.created_at",
    )
    .bind(c.as_uuid())
    .fetch_all(&s.pool)
    .await?;
    let items = cards
        .into_iter()
        .map(|card| Hal::new(card).link("customer", s.public(&format!("/v1/customers/{c}"))))
        .collect();
    let hal = Hal::new(serde_json::json!({}))
        .link("self", s.public(&format!("/v1/customers/{c}/cards")))
        .embed("cards", items);
    Ok(customer_links(&s, hal, c))
}
