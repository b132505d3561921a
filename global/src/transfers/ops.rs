//! The ops API over the transfer service: `GET /ops/v1/transfers` lists the
//! latest transfers between cells (optionally in one stage), and
//! `GET /ops/v1/transfers/{transfer_key}` shows one — its stage, reason,
//! the cells a credit went to, its attempts and last error.

use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use cellbank_shared::problem::Problem;

use super::{repo, Stage, Transfer};
use crate::directory::DirectoryError;
use crate::error::ApiResult;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/transfers", get(list))
        .route("/ops/v1/transfers/{transfer_key}", get(show))
}

fn view(t: &Transfer) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or_default();
    v["_links"] = json!({"self": {"href": format!("/ops/v1/transfers/{}", t.transfer_key)}});
    v
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let stage = match q.state.as_deref() {
        None => None,
        Some(s) => Some(Stage::parse(s).ok_or_else(|| {
            Problem::invalid(
                "state",
                "must be crediting, voiding, delivering, returning, completed or failed",
            )
        })?),
    };
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(Problem::invalid("limit", "must be 1 to 1000").into());
    }
    let items: Vec<Value> = repo::list(state.directory.pool(), stage, limit)
        .await
        .map_err(DirectoryError::Unavailable)?
        .iter()
        .map(view)
        .collect();
    Ok(Json(json!({
        "count": items.len(),
        "_embedded": {"transfers": items},
        "_links": {"self": {"href": "/ops/v1/transfers"}},
    })))
}

async fn show(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let key: Uuid = key
        .parse()
        .map_err(|_| Problem::invalid("transfer_key", "must be a uuid"))?;
    let t = repo::find(state.directory.pool(), key)
        .await
        .map_err(DirectoryError::Unavailable)?
        .ok_or_else(|| Problem::not_found(format!("unknown transfer {key}")))?;
    Ok(Json(view(&t)))
}
