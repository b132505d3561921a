//! The source's export: a customer's history after a version, read with its
//! placement in one snapshot (the exact cursor of a move), and the digest
//! both cells answer so a move can prove the copy.

use axum::extract::{Path, Query, State};
use axum::Json;
use cellbank_shared::contract::moves::{Digest, HistoryEvent, HistoryPage};
use cellbank_shared::ids::{CustomerId, Epoch};
use sqlx::PgConnection;

use crate::access::parse_customer;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(serde::Deserialize)]
pub struct After {
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

/// At most this many events per page.
const MAX_PAGE: i64 = 10_000;

/// `GET /internal/v1/customers/{id}/history?after=V&limit=N`.
#[tracing::instrument(skip_all, fields(customer_id = %raw, after = q.after))]
pub async fn history(
    State(s): State<AppState>,
    Path(raw): Path<String>,
    Query(q): Query<After>,
) -> Result<Json<HistoryPage>, ApiError> {
    let customer = parse_customer(&raw)?;
    let limit = q.limit.unwrap_or(MAX_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_PAGE}"),
        ));
    }
    // One read-only snapshot: the placement and the events agree, and (the
    // versions being taken under the customer's row lock) the events seen
    // are every version up to the customer's committed one.
    let mut tx = s.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let page = read_page(&mut tx, customer, q.after, limit).await?;
    tx.commit().await?;
    Ok(Json(page))
}

type EventRow = (String, String, i64, i64, Option<serde_json::Value>);

async fn read_page(
    conn: &mut PgConnection,
    customer: CustomerId,
    after: i64,
    limit: i64,
) -> Result<HistoryPage, ApiError> {
    let placed: Option<(String, i64, i64)> =
        sqlx::query_as("SELECT state, epoch, version FROM customers WHERE customer_id = $1")
            .bind(customer.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let (state, epoch, version) =
        placed.ok_or_else(|| ApiError::NotFound(format!("customer {customer}")))?;
    let rows: Vec<EventRow> = sqlx::query_as(
        "SELECT event_id, namespace, epoch, version, payload FROM events
         WHERE customer_id = $1 AND version > $2 ORDER BY version LIMIT $3",
    )
    .bind(customer.as_uuid())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await?;
    let more = rows.len() as i64 > limit;
    let mut events = Vec::with_capacity(rows.len());
    for (event_id, namespace, epoch, version, payload) in rows.into_iter().take(limit as usize) {
        let payload = payload.ok_or_else(|| {
            ApiError::Conflict(format!(
                "event {event_id} was recorded before histories kept payloads: this customer cannot be moved"
            ))
        })?;
        events.push(HistoryEvent {
            event_id,
            namespace,
            epoch: Epoch(epoch),
            version,
            payload,
        });
    }
    Ok(HistoryPage {
        customer_id: customer,
        state,
        epoch: Epoch(epoch),
        version,
        events,
        more,
    })
}

/// `GET /internal/v1/customers/{id}/digest`.
#[tracing::instrument(skip_all, fields(customer_id = %raw))]
pub async fn digest(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<Digest>, ApiError> {
    let customer = parse_customer(&raw)?;
    let mut tx = s.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let d = compute_digest(&mut tx, customer).await?;
    tx.commit().await?;
    Ok(Json(d))
}

/// Text is compared byte-wise (`COLLATE "C"`) and times as integer
/// microseconds, so two cells never disagree on order or precision.
const ENTRIES_SQL: &str = r#"
SELECT count(*),
       encode(sha256(convert_to(coalesce(string_agg(
           p.namespace || '|' || p.event_id || '|' || p.entry_no || '|' || b.code || '|'
           || p.currency || '|' || p.amount || '|'
           || (extract(epoch FROM p.business_time) * 1000000)::bigint,
           E'\n' ORDER BY p.namespace COLLATE "C", p.event_id COLLATE "C", p.entry_no, p.amount), ''),
           'UTF8')), 'hex')
FROM postings p JOIN book_accounts b ON b.id = p.book_account_id
WHERE p.customer_id = $1
"#;

const ROWS_SQL: &str = r#"
SELECT encode(sha256(convert_to(concat_ws(E'\n',
  (SELECT string_agg(account_id || '|' || kind || '|' || number || '|' || currency,
                     ',' ORDER BY account_id) FROM accounts WHERE customer_id = $1),
  (SELECT string_agg(card_id || '|' || pan_hash || '|' || credit_limit || '|' || blocked
                     || '|' || currency, ',' ORDER BY card_id) FROM cards WHERE customer_id = $1),
  (SELECT string_agg(card_id || '|' || network_reference || '|' || status || '|'
                     || settled_amount || '|' || coalesce(authorized_amount::text, '-') || '|' || released,
                     ',' ORDER BY card_id, network_reference COLLATE "C")
     FROM card_purchases WHERE customer_id = $1),
  (SELECT string_agg(transfer_id || '|' || amount || '|' || state, ',' ORDER BY transfer_id)
     FROM transfers WHERE customer_id = $1)
), 'UTF8')), 'hex')
"#;

async fn compute_digest(conn: &mut PgConnection, c: CustomerId) -> Result<Digest, ApiError> {
    let id = c.as_uuid();
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE customer_id = $1")
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let (postings, entries_sha256): (i64, String) = sqlx::query_as(ENTRIES_SQL)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    let balances: Vec<String> = sqlx::query_scalar(
        r#"SELECT code || '/' || currency || '=' || balance FROM book_accounts
           WHERE customer_id = $1 ORDER BY code COLLATE "C", currency COLLATE "C""#,
    )
    .bind(id)
    .fetch_all(&mut *conn)
    .await?;
    let balances_off: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM book_accounts b WHERE b.customer_id = $1 AND b.balance <>
           coalesce((SELECT sum(amount) FROM postings p WHERE p.book_account_id = b.id), 0)",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let unbalanced_movements: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM postings WHERE customer_id = $1
           GROUP BY namespace, event_id, currency HAVING sum(amount) <> 0) u",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await?;
    let rows_sha256: String = sqlx::query_scalar(ROWS_SQL)
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(Digest {
        events,
        postings,
        balances,
        balances_off,
        unbalanced_movements,
        entries_sha256,
        rows_sha256,
    })
}
