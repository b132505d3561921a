//! The cutover steps of a move in this cell: the source fences the customer
//! (writes refused, a fence marker into the customer's partition of the
//! inbound log) and says when its tail is drained; it releases the fence on
//! an abort, or marks the customer moved out after the flip. The target
//! activates the customer at the new epoch.

use axum::extract::{Path, State};
use axum::Json;
use cellbank_shared::contract::moves::{DrainStatus, MoveCall, FENCE_HEADER};
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::kafka::Topic;
use cellbank_shared::problem::ApiJson;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{claim, Role};
use crate::access::parse_customer;
use crate::authorizer::state::CustomerStatus;
use crate::error::ApiError;
use crate::placement::{self, CustomerState, Placement};
use crate::state::AppState;

/// The move this customer's fence belongs to, if fenced.
async fn fence_move(conn: &mut PgConnection, c: CustomerId) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT fence_move FROM customers WHERE customer_id = $1")
        .bind(c.as_uuid())
        .fetch_optional(&mut *conn)
        .await
        .map(Option::flatten)
}

fn epoch_of(call: &MoveCall) -> Result<Epoch, ApiError> {
    call.epoch
        .ok_or_else(|| ApiError::invalid("epoch", "is required for this step"))
}

/// `POST /internal/v1/moves/{id}/fence` (source): fences the customer at
/// its current epoch for this move, then writes the fence marker. Repeating
/// it writes the marker again (the consumer acts on the first it reads).
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %call.customer_id))]
pub async fn fence(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(call): ApiJson<MoveCall>,
) -> Result<Json<Placement>, ApiError> {
    let epoch = epoch_of(&call)?;
    let c = call.customer_id;
    let mut tx = s.pool.begin().await?;
    claim(&mut tx, move_id, c, Role::Source, call.attempt).await?;
    let p = placement::lock(&mut tx, c).await?;
    let fenced = match p.state {
        CustomerState::Active if p.epoch == epoch => {
            placement::set_for_move(&mut tx, &p, CustomerState::Fenced, Some(move_id)).await?
        }
        CustomerState::Fenced if fence_move(&mut tx, c).await? == Some(move_id) => p,
        state => {
            return Err(ApiError::Conflict(format!(
                "customer {c} is {state} at epoch {} here, not active at epoch {}",
                p.epoch.0, epoch.0
            )))
        }
    };
    tx.commit().await?;
    tell_authorizer(&s, c, "fenced", epoch).await?;
    let marker = serde_json::json!({"customer_id": c, "move_id": move_id});
    s.producer
        .send(
            Topic::Inbound.name(),
            c.to_string().as_bytes(),
            marker.to_string().as_bytes(),
            &[(FENCE_HEADER, move_id.to_string().as_bytes())],
        )
        .await
        .map_err(|e| ApiError::Unavailable(format!("the fence marker was not written: {e}")))?;
    tracing::info!(epoch = epoch.0, "customer fenced for a move");
    Ok(Json(fenced))
}

/// `GET /internal/v1/customers/{id}/drain` (source): whether everything
/// accepted before the fence is applied here: the inbound consumer has
/// read the marker, and the deciding authorizer approves nothing more for
/// the customer and has seen every approval booked.
#[tracing::instrument(skip_all, fields(customer_id = %raw))]
pub async fn drain_status(
    State(s): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<DrainStatus>, ApiError> {
    let c = parse_customer(&raw)?;
    let row: Option<(String, i64, bool)> = sqlx::query_as(
        "SELECT state, version, inbound_fenced FROM customers WHERE customer_id = $1",
    )
    .bind(c.as_uuid())
    .fetch_optional(&s.pool)
    .await?;
    let (state, version, inbound_fenced) =
        row.ok_or_else(|| ApiError::NotFound(format!("customer {c}")))?;
    let auth = authorizer_status(&s, c).await?;
    Ok(Json(DrainStatus {
        drained: state == "fenced" && inbound_fenced && auth.not_here && auth.pending_holds == 0,
        state,
        version,
        inbound_fenced,
        authorizer_fenced: auth.not_here,
        pending_holds: auth.pending_holds,
    }))
}

/// The deciding replica's view of the customer (this one, or the lease
/// holder's through its internal API).
async fn authorizer_status(s: &AppState, c: CustomerId) -> Result<CustomerStatus, ApiError> {
    let path = format!("/internal/v1/authorizer/customers/{c}");
    let url = cellbank_shared::hal::href(s.lease.url(), &path);
    let resp = s
        .forwarder
        .get(&url)
        .bearer_auth(s.settings.auth.internal_token.expose())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| ApiError::Unavailable(format!("the authorizer did not answer: {e}")))?;
    resp.json()
        .await
        .map_err(|e| ApiError::Unavailable(format!("the authorizer's answer: {e}")))
}

/// Tells the deciding authorizer a move's placement step directly (see
/// `MovePlacement`), through this replica's internal API.
async fn tell_authorizer(
    s: &AppState,
    c: CustomerId,
    state: &str,
    epoch: Epoch,
) -> Result<(), ApiError> {
    let path = format!("/internal/v1/authorizer/customers/{c}/placement");
    let url = cellbank_shared::hal::href(s.lease.url(), &path);
    s.forwarder
        .post(&url)
        .bearer_auth(s.settings.auth.internal_token.expose())
        .json(&serde_json::json!({"state": state, "epoch": epoch.0}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| {
            ApiError::Unavailable(format!(
                "the authorizer did not take the {state} placement: {e}"
            ))
        })?;
    Ok(())
}

/// The source leaves this move's fence for `to` (active again on an abort,
/// moved out after the flip); repeating it once there is a no-op.
async fn leave_fence(
    tx: &mut PgConnection,
    move_id: Uuid,
    call: &MoveCall,
    to: CustomerState,
) -> Result<Placement, ApiError> {
    let c = call.customer_id;
    claim(tx, move_id, c, Role::Source, call.attempt).await?;
    let p = placement::lock(tx, c).await?;
    if p.state == to {
        return Ok(p);
    }
    if p.state == CustomerState::Fenced && fence_move(tx, c).await? == Some(move_id) {
        return Ok(placement::set_for_move(tx, &p, to, None).await?);
    }
    Err(ApiError::Conflict(format!(
        "customer {c} is {} here, not fenced by this move: it cannot become {to}",
        p.state
    )))
}

/// `POST /internal/v1/moves/{id}/unfence` (source, an abort before the
/// flip): the customer is active here again at the same epoch.
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %call.customer_id))]
pub async fn unfence(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(call): ApiJson<MoveCall>,
) -> Result<Json<Placement>, ApiError> {
    let c = call.customer_id;
    let mut tx = s.pool.begin().await?;
    let placed = leave_fence(&mut tx, move_id, &call, CustomerState::Active).await?;
    tx.commit().await?;
    tell_authorizer(&s, c, "released", placed.epoch).await?;
    Ok(Json(placed))
}

/// `POST /internal/v1/moves/{id}/moved-out` (source, after the flip): the
/// other cell owns the customer; anything still arriving here is a
/// straggler global forwards.
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %call.customer_id))]
pub async fn moved_out(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(call): ApiJson<MoveCall>,
) -> Result<Json<Placement>, ApiError> {
    let c = call.customer_id;
    let mut tx = s.pool.begin().await?;
    let placed = leave_fence(&mut tx, move_id, &call, CustomerState::MovedOut).await?;
    sqlx::query("UPDATE customers SET moved_to = $2 WHERE customer_id = $1")
        .bind(c.as_uuid())
        .bind(&call.moved_to)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Json(placed))
}

/// `POST /internal/v1/moves/{id}/activate` (target): the imported customer
/// is active here at the new epoch (a change in its history).
#[tracing::instrument(skip_all, fields(move_id = %move_id, customer_id = %call.customer_id))]
pub async fn activate(
    State(s): State<AppState>,
    Path(move_id): Path<Uuid>,
    ApiJson(call): ApiJson<MoveCall>,
) -> Result<Json<Placement>, ApiError> {
    let epoch = epoch_of(&call)?;
    let c = call.customer_id;
    let mut tx = s.pool.begin().await?;
    claim(&mut tx, move_id, c, Role::Target, call.attempt).await?;
    let p = placement::lock(&mut tx, c).await?;
    if p.state == CustomerState::Active && p.epoch == epoch {
        drop(tx);
        tell_authorizer(&s, c, "active", epoch).await?;
        authorizer_sees_active(&s, c, epoch).await?;
        return Ok(Json(p));
    }
    if p.state != CustomerState::Importing || epoch.0 <= p.epoch.0 {
        return Err(ApiError::Conflict(format!(
            "customer {c} is {} at epoch {} here: cannot activate at epoch {}",
            p.state, p.epoch.0, epoch.0
        )));
    }
    let event_id = format!("move:{move_id}");
    let placed = placement::change(&mut tx, c, CustomerState::Active, epoch, &event_id).await?;
    tx.commit().await?;
    tell_authorizer(&s, c, "active", epoch).await?;
    authorizer_sees_active(&s, c, epoch).await?;
    tracing::info!(epoch = epoch.0, "moved-in customer activated");
    Ok(Json(placed))
}

/// Waits until the deciding authorizer has the activation (the fact the
/// activation wrote, relayed through the cell's log): only then may the
/// customer's held authorizations be released to this cell.
async fn authorizer_sees_active(s: &AppState, c: CustomerId, epoch: Epoch) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let st = authorizer_status(s, c).await?;
        if !st.not_here && st.epoch.is_some_and(|e| e >= epoch.0) {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Unavailable(
                "the authorizer has not seen the activation yet; retry".into(),
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}
