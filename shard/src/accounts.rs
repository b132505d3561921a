//! The app's accounts resources: accounts with balances (at any business
//! time) and their entries, newest first, cursor-paginated.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::Router;
use cellbank_shared::hal::Hal;
use cellbank_shared::ids::CustomerId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::access::CustomerAccess;
use crate::customers::customer_links;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers/{customer_id}/accounts", get(list))
        .route(
            "/v1/customers/{customer_id}/accounts/{account_id}",
            get(show),
        )
        .route(
            "/v1/customers/{customer_id}/accounts/{account_id}/entries",
            get(entries),
        )
}

#[derive(Serialize, sqlx::FromRow)]
pub struct AccountView {
    pub account_id: Uuid,
    pub kind: String,
    pub number: String,
    pub currency: String,
    /// What the bank owes the customer (credits minus debits), in minor units.
    pub balance: i64,
}

fn account_hal(s: &AppState, c: CustomerId, a: AccountView, as_of: Option<DateTime<Utc>>) -> Hal {
    let base = format!("/v1/customers/{c}/accounts/{}", a.account_id);
    let mut props = serde_json::to_value(&a).unwrap_or_default();
    if let Some(t) = as_of {
        props["as_of"] = serde_json::json!(t);
    }
    Hal::new(props)
        .link("self", s.public(&base))
        .link("entries", s.public(&format!("{base}/entries")))
        .link("customer", s.public(&format!("/v1/customers/{c}")))
        .link(
            "transfers",
            s.public(&format!("/v1/customers/{c}/transfers")),
        )
}

async fn load(
    s: &AppState,
    c: CustomerId,
    account: Option<Uuid>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Vec<AccountView>, ApiError> {
    Ok(sqlx::query_as(
        "SELECT a.account_id, a.kind, a.number, a.currency,
                COALESCE(CASE WHEN $3::timestamptz IS NULL THEN -b.balance
                     ELSE -(SELECT COALESCE(sum(p.amount), 0) FROM postings p
                            WHERE p.book_account_id = b.id AND p.business_time <= $3)::bigint END, 0) AS balance
         FROM accounts a
         LEFT JOIN book_accounts b ON b.customer_id = a.customer_id AND b.code = 'account:' || a.account_id
              AND b.currency = a.currency
         WHERE a.customer_id = $1 AND ($2::uuid IS NULL OR a.account_id = $2)
         ORDER BY a.created_at",
    )
    .bind(c.as_uuid())
    .bind(account)
    .bind(as_of)
    .fetch_all(&s.pool)
    .await?)
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn list(State(s): State<AppState>, access: CustomerAccess) -> Result<Hal, ApiError> {
    let c = access.customer;
    let items = load(&s, c, None, None)
        .await?
        .into_iter()
        .map(|a| account_hal(&s, c, a, None))
        .collect();
    let hal = Hal::new(serde_json::json!({}))
        .link("self", s.public(&format!("/v1/customers/{c}/accounts")))
        .embed("accounts", items);
    Ok(customer_links(&s, hal, c))
}

#[derive(Deserialize)]
struct AsOf {
    as_of: Option<String>,
}

fn parse_account(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::invalid("account_id", "must be a uuid"))
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn show(
    State(s): State<AppState>,
    access: CustomerAccess,
    Path((_, account)): Path<(String, String)>,
    Query(q): Query<AsOf>,
) -> Result<Hal, ApiError> {
    let c = access.customer;
    let account = parse_account(&account)?;
    let as_of = match q.as_of.as_deref() {
        None => None,
        Some(t) => Some(
            DateTime::parse_from_rfc3339(t)
                .map_err(|_| ApiError::invalid("as_of", "must be an RFC 3339 time"))?
                .with_timezone(&Utc),
        ),
    };
    let a = load(&s, c, Some(account), as_of)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::NotFound(format!("account {account}")))?;
    Ok(account_hal(&s, c, a, as_of))
}

#[derive(Deserialize)]
struct Page {
    cursor: Option<String>,
    limit: Option<String>,
}

#[derive(Serialize, sqlx::FromRow)]
struct EntryView {
    #[serde(skip)]
    id: i64,
    event_id: String,
    event_type: String,
    /// Positive when money came in to the account.
    amount: i64,
    currency: String,
    business_time: DateTime<Utc>,
}

/// Cursor: `<business time in µs>.<posting id>` of the last entry of the previous page.
fn parse_cursor(raw: &str) -> Option<Cursor> {
    let (t, id) = raw.split_once('.')?;
    Some((
        DateTime::from_timestamp_micros(t.parse().ok()?)?,
        id.parse().ok()?,
    ))
}

#[tracing::instrument(skip_all, fields(customer_id = %access.customer, shard_id = %s.shard_id))]
async fn entries(
    State(s): State<AppState>,
    access: CustomerAccess,
    Path((_, account)): Path<(String, String)>,
    Query(q): Query<Page>,
) -> Result<Hal, ApiError> {
    let c = access.customer;
    let account = parse_account(&account)?;
    let (limit, cursor) = q.parse()?;
    let book: Option<i64> = sqlx::query_scalar(
        "SELECT b.id FROM accounts a JOIN book_accounts b ON b.customer_id = a.customer_id
            AND b.code = 'account:' || a.account_id AND b.currency = a.currency
         WHERE a.customer_id = $1 AND a.account_id = $2",
    )
    .bind(c.as_uuid())
    .bind(account)
    .fetch_optional(&s.pool)
    .await?;
    let book = book.ok_or_else(|| ApiError::NotFound(format!("account {account}")))?;
    let rows: Vec<EntryView> = sqlx::query_as(
        "SELECT p.id, p.event_id, e.event_type, -p.amount AS amount, p.currency, p.business_time
         FROM postings p JOIN events e ON e.customer_id = p.customer_id
              AND e.namespace = p.namespace AND e.event_id = p.event_id
         WHERE p.book_account_id = $1
           AND ($2::timestamptz IS NULL OR (p.business_time, p.id) < ($2, $3))
         ORDER BY p.business_time DESC, p.id DESC LIMIT $4",
    )
    .bind(book)
    .bind(cursor.map(|c| c.0))
    .bind(cursor.map(|c| c.1).unwrap_or(0))
    .bind(limit)
    .fetch_all(&s.pool)
    .await?;
    let base = format!("/v1/customers/{c}/accounts/{account}");
    Ok(entries_page(&s, c, &base, &q, limit, rows))
}

/// Where a page of entries starts: after this business time and posting id.
type Cursor = (DateTime<Utc>, i64);

impl Page {
    /// The page size (1 to 500, 50 by default) and where the page starts.
    fn parse(&self) -> Result<(i64, Option<Cursor>), ApiError> {
        let limit = match self.limit.as_deref() {
            None => 50,
            Some(l) => l
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=500).contains(n))
                .ok_or_else(|| ApiError::invalid("limit", "must be an integer from 1 to 500"))?,
        };
        let cursor = match self.cursor.as_deref() {
            None => None,
            Some(raw) => Some(
                parse_cursor(raw)
                    .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this API gave"))?,
            ),
        };
        Ok((limit, cursor))
    }
}

/// One page of entries with its self, account, customer and next links.
fn entries_page(
    s: &AppState,
    c: CustomerId,
    base: &str,
    q: &Page,
    limit: i64,
    rows: Vec<EntryView>,
) -> Hal {
    let next = if rows.len() as i64 == limit {
        rows.last()
            .map(|r| format!("{}.{}", r.business_time.timestamp_micros(), r.id))
    } else {
        None
    };
    let items = rows.into_iter().map(Hal::new).collect();
    let self_href = match &q.cursor {
        Some(cur) => format!("{base}/entries?cursor={cur}&limit={limit}"),
        None => format!("{base}/entries?limit={limit}"),
    };
    let hal = Hal::new(serde_json::json!({}))
        .link("self", s.public(&self_href))
        .link("account", s.public(base))
        .link("customer", s.public(&format!("/v1/customers/{c}")))
        .embed("entries", items);
    match next {
        Some(n) => hal.link(
            "next",
            s.public(&format!("{base}/entries?cursor={n}&limit={limit}")),
        ),
        None => hal,
    }
}
