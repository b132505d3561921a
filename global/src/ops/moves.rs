//! The ops API over customer moves: `POST /ops/v1/moves` plans one (202:
//! the mover drives it), `GET /ops/v1/moves[/{id}]` shows them, `abort`
//! rolls one back before its flip, and `complete` purges the source's copy
//! of a completed move (a moved-out marker stays there).

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, ShardId};
use cellbank_shared::problem::{ApiJson, Problem};

use crate::error::ApiResult;
use crate::moves::{repo, Move, Phase};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/moves", get(list).post(plan))
        .route("/ops/v1/moves/{id}", get(show))
        .route("/ops/v1/moves/{id}/abort", post(abort))
        .route("/ops/v1/moves/{id}/complete", post(complete))
}

/// A move as the ops API shows it: its fields and links.
pub fn view(mv: &Move) -> Value {
    let mut v = serde_json::to_value(mv).unwrap_or_default();
    let href = format!("/ops/v1/moves/{}", mv.id);
    let mut links = json!({
        "self": {"href": href},
        "customer": {"href": format!("/ops/v1/customers/{}", mv.customer_id)},
    });
    if mv.phase.before_flip() {
        links["abort"] = json!({"href": format!("{href}/abort")});
    }
    if mv.phase == Phase::Completed && mv.source_copy == "kept" {
        links["complete"] = json!({"href": format!("{href}/complete")});
    }
    v["_links"] = links;
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMove {
    customer_id: String,
    to: String,
}

#[tracing::instrument(skip_all, fields(customer_id = %body.customer_id, to = %body.to))]
async fn plan(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewMove>,
) -> ApiResult<impl IntoResponse> {
    let customer: CustomerId = body
        .customer_id
        .parse()
        .map_err(|_| Problem::invalid("customer_id", "must be a uuid"))?;
    let to = ShardId::parse(&body.to).map_err(|e| Problem::invalid("to", e.to_string()))?;
    let mv = repo::create(state.directory.pool(), customer, &to, "operator").await?;
    tracing::info!(move_id = %mv.id, from = %mv.from, "move planned");
    let location = format!("/ops/v1/moves/{}", mv.id);
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(view(&mv)),
    ))
}

fn move_id(raw: &str) -> Result<Uuid, Problem> {
    raw.parse()
        .map_err(|_| Problem::invalid("id", "must be a move id (a uuid)"))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let mv = repo::get(state.directory.pool(), move_id(&id)?).await?;
    Ok(Json(view(&mv)))
}

#[derive(Deserialize)]
struct ListQuery {
    phase: Option<String>,
    customer_id: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let phase = match q.phase.as_deref() {
        None => None,
        Some(p) => Some(Phase::parse(p).ok_or_else(|| {
            Problem::invalid(
                "phase",
                "must be planned, copying, cutover, flipped, completed, aborting or aborted",
            )
        })?),
    };
    let customer = match q.customer_id.as_deref() {
        None => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| Problem::invalid("customer_id", "must be a uuid"))?,
        ),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be 1 to 1000").into());
    }
    let moves = repo::list(state.directory.pool(), phase, customer, limit).await?;
    let items: Vec<Value> = moves.iter().map(view).collect();
    Ok(Json(json!({
        "count": items.len(),
        "_embedded": {"moves": items},
        "_links": {"self": {"href": "/ops/v1/moves"}},
    })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AbortBody {
    #[serde(default)]
    reason: Option<String>,
}

#[tracing::instrument(skip_all, fields(move_id = %id))]
async fn abort(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<impl IntoResponse> {
    // The body is optional: `{}`, nothing, or `{"reason": "..."}`.
    let parsed: AbortBody = if body.iter().all(u8::is_ascii_whitespace) {
        AbortBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|_| {
            Problem::invalid(
                "reason",
                "the body must be a JSON object with an optional string reason",
            )
        })?
    };
    let reason = parsed.reason.unwrap_or_else(|| "no reason given".into());
    if reason.len() > 500 {
        return Err(Problem::invalid("reason", "must be at most 500 characters").into());
    }
    let mv = repo::request_abort(state.directory.pool(), move_id(&id)?, &reason).await?;
    tracing::warn!(reason = %reason, "move abort requested");
    Ok((StatusCode::ACCEPTED, Json(view(&mv))))
}

/// Purges the source's copy of a completed move, in small batches (the
/// cell keeps a moved-out marker).
#[tracing::instrument(skip_all, fields(move_id = %id))]
async fn complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let pool = state.directory.pool();
    let mv = repo::get(pool, move_id(&id)?).await?;
    if mv.phase != Phase::Completed {
        return Err(Problem::conflict(format!(
            "move {} is {}: only a completed move's source copy can be purged",
            mv.id,
            mv.phase.as_str()
        ))
        .into());
    }
    if mv.source_copy == "kept" {
        crate::moves::steps::purge_source(&state, &mv).await?;
    }
    Ok(Json(view(&repo::get(pool, mv.id).await?)))
}
