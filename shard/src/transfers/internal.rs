//! Global's side of transfers between cells (internal API, internal token):
//! on the recipient's cell, the credit and its void; on the sender's cell,
//! the settlement of a pending transfer — delivered or returned. Each is
//! idempotent, and each is guarded so that a transfer is credited at most
//! once bank-wide and settled exactly one way.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use cellbank_shared::contract::{CreditTransfer, SettleTransfer, VoidAnswer, VoidOutcome};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::problem::ApiJson;
use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::booking::{event, OtherAccount};
use super::{account_by_number, valid_number};
use crate::error::ApiError;
use crate::history::{self, Change};
use crate::ledger::event::Body;
use crate::ledger::store::{self, Outcome};
use crate::placement::{self, WriteAt};
use crate::state::AppState;

pub fn internal_router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/transfers/{transfer_key}/credit", post(credit))
        .route("/internal/v1/transfers/{transfer_key}/void", post(void))
        .route(
            "/internal/v1/transfers/{transfer_id}/deliver",
            post(deliver),
        )
        .route(
            "/internal/v1/transfers/{transfer_id}/return",
            post(give_back),
        )
}

/// `POST /internal/v1/transfers/{transfer_key}/credit`: a transfer arrives
/// for the account with this number (or the customer's account in the
/// currency), under its customer's lock; once (a repeat answers 200 and
/// books nothing). 404 when this cell holds no such account or customer
/// (global resolves again), 409 when the customer is not writable here
/// (being moved: global retries against the owner), 409 `transfer-refused`
/// when the transfer was voided here or credited with other details, 422
/// when the account is in another currency.
#[tracing::instrument(skip_all, fields(transfer_key = %key, shard_id = %s.shard_id))]
async fn credit(
    State(s): State<AppState>,
    Path(key): Path<Uuid>,
    ApiJson(body): ApiJson<CreditTransfer>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let amount = Money::positive(body.amount, body.currency)
        .map_err(|e| ApiError::bad_amount("amount", &e))?;
    let mut tx = s.pool.begin().await?;
    let a = credited_account(&mut tx, &body).await?;
    if a.currency != body.currency.code() {
        return Err(ApiError::invalid(
            "currency",
            "the recipient's account is in another currency",
        ));
    }
    let customer = CustomerId::from_uuid(a.customer_id);
    let received = Body::TransferReceived {
        transfer_id: key,
        to: a.account_id,
        amount,
    };
    same_as_before(&mut tx, key, a.customer_id, &received).await?;
    let epoch = placement::lock_for_write(&mut tx, customer, WriteAt::Current).await?;
    let ev = event(
        &received_id(key),
        "transfer_received",
        customer,
        epoch,
        received,
    );
    let status = match store::apply(&mut tx, &ev).await? {
        Outcome::Applied { postings } => {
            crate::metrics::POSTINGS.inc_by(postings as u64);
            StatusCode::CREATED
        }
        Outcome::Duplicate => StatusCode::OK,
    };
    tx.commit().await?;
    let trace_id = cellbank_shared::telemetry::current_trace_id();
    tracing::info!(%trace_id, customer_id = %customer, repeat = status == StatusCode::OK, "transfer credited");
    let answer = json!({ "transfer_key": key, "state": "received" });
    Ok((status, Json(answer)))
}

fn received_id(key: Uuid) -> String {
    format!("transfer:{key}:received")
}

/// The account a credit names: by number, or the customer's account in the
/// credit's currency (their oldest, else any of theirs to be refused for
/// its currency).
async fn credited_account(
    conn: &mut PgConnection,
    body: &CreditTransfer,
) -> Result<OtherAccount, ApiError> {
    match (&body.to_account_number, body.to_customer_id) {
        (Some(n), None) => {
            if !valid_number(n) {
                return Err(ApiError::invalid(
                    "to_account_number",
                    "must be an account number: 1 to 34 digits",
                ));
            }
            account_by_number(conn, n).await?.ok_or_else(|| {
                ApiError::NotFound("no account with this number in this cell".into())
            })
        }
        (None, Some(c)) => account_of(conn, c, body.currency)
            .await?
            .ok_or_else(|| ApiError::NotFound("no such customer in this cell".into())),
        _ => Err(ApiError::invalid(
            "to_account_number",
            "exactly one of to_account_number or to_customer_id is required",
        )),
    }
}

async fn account_of(
    conn: &mut PgConnection,
    c: CustomerId,
    currency: Currency,
) -> Result<Option<OtherAccount>, sqlx::Error> {
    sqlx::query_as(
        "SELECT a.account_id, a.customer_id, a.currency, a.number
         FROM accounts a JOIN customers c USING (customer_id)
         WHERE a.customer_id = $1 AND c.state <> 'moved_out'
         ORDER BY (a.currency = $2) DESC, a.created_at, a.account_id LIMIT 1",
    )
    .bind(c.as_uuid())
    .bind(currency.code())
    .fetch_optional(conn)
    .await
}

/// Takes the transfer's lock (to the end of the transaction): credits and
/// voids of one transfer key are serialized in the cell.
async fn lock_key(conn: &mut PgConnection, key: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(received_id(key))
        .execute(conn)
        .await?;
    Ok(())
}

/// The customer and body of the transfer's credit in this cell, if booked.
async fn credit_booked(
    conn: &mut PgConnection,
    key: Uuid,
) -> Result<Option<(Uuid, Value)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT customer_id, payload FROM events
         WHERE namespace = 'cell' AND event_id = $1 AND event_id LIKE 'transfer:%:received' LIMIT 1",
    )
    .bind(received_id(key))
    .fetch_optional(conn)
    .await
}

/// A transfer is credited once, with one recipient and amount, and never
/// after it was voided here: anything else is refused (409) instead of
/// booking a second credit or answering as if the first matched.
async fn same_as_before(
    conn: &mut PgConnection,
    key: Uuid,
    customer: Uuid,
    body: &Body,
) -> Result<(), ApiError> {
    lock_key(conn, key).await?;
    let voided: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM transfer_voids WHERE transfer_key = $1)")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
    if voided {
        return Err(ApiError::TransferRefused(
            "this transfer was voided in this cell".into(),
        ));
    }
    let Some((who, payload)) = credit_booked(conn, key).await? else {
        return Ok(());
    };
    let same_body = serde_json::to_value(body).ok().as_ref() == payload.get("body");
    if who == customer && same_body {
        return Ok(());
    }
    Err(ApiError::TransferRefused(
        "this transfer was credited before with another recipient or amount".into(),
    ))
}

/// `POST /internal/v1/transfers/{transfer_key}/void`: global gives up a
/// credit whose outcome it does not know. Answers `received` when the
/// credit is booked in this cell; otherwise records the void, after which
/// this cell refuses the credit for ever, and answers `voided`.
#[tracing::instrument(skip_all, fields(transfer_key = %key, shard_id = %s.shard_id))]
async fn void(
    State(s): State<AppState>,
    Path(key): Path<Uuid>,
) -> Result<Json<VoidAnswer>, ApiError> {
    let mut tx = s.pool.begin().await?;
    lock_key(&mut tx, key).await?;
    let state = if credit_booked(&mut tx, key).await?.is_some() {
        VoidOutcome::Received
    } else {
        sqlx::query("INSERT INTO transfer_voids (transfer_key) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(key)
            .execute(&mut *tx)
            .await?;
        VoidOutcome::Voided
    };
    tx.commit().await?;
    Ok(Json(VoidAnswer {
        transfer_id: key,
        state,
    }))
}

/// How a pending transfer settles.
#[derive(Clone, Copy, PartialEq)]
enum Settlement {
    Delivered,
    Returned,
}

impl Settlement {
    fn state(self) -> &'static str {
        match self {
            Settlement::Delivered => "completed",
            Settlement::Returned => "failed",
        }
    }
}

/// `POST /internal/v1/transfers/{transfer_id}/deliver`: the recipient was
/// credited; the sender's pending amount is delivered and the transfer
/// completes.
#[tracing::instrument(skip_all, fields(transfer_id = %id, shard_id = %s.shard_id))]
async fn deliver(
    State(s): State<AppState>,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<SettleTransfer>,
) -> Result<Json<Value>, ApiError> {
    settle(&s, id, &body, Settlement::Delivered).await
}

/// `POST /internal/v1/transfers/{transfer_id}/return`: the recipient will
/// never be credited; the pending amount goes back to the sender's account
/// and the transfer fails with the reason.
#[tracing::instrument(skip_all, fields(transfer_id = %id, shard_id = %s.shard_id))]
async fn give_back(
    State(s): State<AppState>,
    Path(id): Path<Uuid>,
    ApiJson(body): ApiJson<SettleTransfer>,
) -> Result<Json<Value>, ApiError> {
    let reason = body.reason.as_deref().unwrap_or("").trim();
    if reason.is_empty() || reason.chars().count() > 200 {
        return Err(ApiError::invalid(
            "reason",
            "is required to return a transfer: 1 to 200 characters",
        ));
    }
    settle(&s, id, &body, Settlement::Returned).await
}

#[derive(sqlx::FromRow)]
struct Pending {
    state: String,
    amount: i64,
    currency: String,
    from_account: Uuid,
}

/// The ledger movement that settles the pending transfer `t` the way `how`:
/// its event-id suffix, type and body.
fn movement(
    id: Uuid,
    t: &Pending,
    how: Settlement,
) -> Result<(&'static str, &'static str, Body), ApiError> {
    let currency: Currency = t
        .currency
        .parse()
        .map_err(|_| anyhow::anyhow!("transfer {id} has an unknown currency"))?;
    let amount = Money::positive(t.amount, currency).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match how {
        Settlement::Delivered => (
            "delivered",
            "transfer_delivered",
            Body::TransferDelivered {
                transfer_id: id,
                amount,
            },
        ),
        Settlement::Returned => (
            "returned",
            "transfer_returned",
            Body::TransferReturned {
                transfer_id: id,
                from: t.from_account,
                amount,
            },
        ),
    })
}

/// Settles the customer's pending transfer one way, under the customer's
/// lock and only if it is still pending: a repeat of the same settlement
/// answers its state again; the other settlement is refused (409). 404
/// when the customer or transfer is not here (global resolves the sender's
/// cell again), 409 while the customer cannot be written here (a move).
async fn settle(
    s: &AppState,
    id: Uuid,
    body: &SettleTransfer,
    how: Settlement,
) -> Result<Json<Value>, ApiError> {
    let c = body.customer_id;
    let mut tx = s.pool.begin().await?;
    let epoch = placement::lock_for_write(&mut tx, c, WriteAt::Current).await?;
    let row: Option<Pending> = sqlx::query_as(
        "SELECT state, amount, currency, from_account FROM transfers
         WHERE customer_id = $1 AND transfer_id = $2 AND to_account IS NULL",
    )
    .bind(c.as_uuid())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let t = row.ok_or_else(|| ApiError::NotFound(format!("transfer {id} of customer {c}")))?;
    if t.state == how.state() {
        return Ok(Json(json!({ "transfer_id": id, "state": t.state })));
    }
    if t.state != "pending" {
        return Err(ApiError::Conflict(format!(
            "the transfer was settled {} before",
            t.state
        )));
    }
    let (suffix, kind, ledger_body) = movement(id, &t, how)?;
    let ev = event(
        &format!("transfer:{id}:{suffix}"),
        kind,
        c,
        epoch,
        ledger_body,
    );
    if let Outcome::Applied { postings } = store::apply(&mut tx, &ev).await? {
        crate::metrics::POSTINGS.inc_by(postings as u64);
    }
    let change = Change::TransferSettled {
        transfer_id: id,
        state: how.state().to_owned(),
        reason: body.reason.clone().filter(|_| how == Settlement::Returned),
    };
    history::apply(
        &mut tx,
        c,
        epoch,
        &format!("transfer-settled:{id}"),
        &change,
    )
    .await?;
    tx.commit().await?;
    let trace_id = cellbank_shared::telemetry::current_trace_id();
    tracing::info!(%trace_id, customer_id = %c, state = how.state(), "transfer settled");
    crate::metrics::TRANSFERS_SETTLED
        .with_label_values(&[how.state()])
        .inc();
    Ok(Json(json!({ "transfer_id": id, "state": how.state() })))
}
