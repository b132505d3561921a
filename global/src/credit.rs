//! The credit policy: the limit a new card gets, per currency. Operators set
//! it through the ops API; a currency they have not set falls back to the
//! configured default (`credit.default_limits`). A customer never chooses it.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use cellbank_shared::money::{Currency, Money};
use cellbank_shared::problem::{ApiJson, Problem};

use crate::directory::DirectoryError;
use crate::error::ApiResult;
use crate::state::AppState;

/// The limit, in minor units, of a new card in `currency`.
pub async fn limit_for(state: &AppState, currency: Currency) -> ApiResult<i64> {
    let code = currency.to_string();
    let set: Option<i64> =
        sqlx::query_scalar("SELECT default_limit FROM credit_policy WHERE currency = $1")
            .bind(&code)
            .fetch_optional(state.directory.pool())
            .await
            .map_err(DirectoryError::Unavailable)?;
    set.or_else(|| state.settings.credit.default_limits.get(&code).copied())
        .ok_or_else(|| {
            Problem::invalid(
                "currency",
                "the credit policy issues no cards in this currency",
            )
            .into()
        })
}

/// The ops routes over the policy.
pub fn ops_router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/credit-policy", get(show))
        .route("/ops/v1/credit-policy/{currency}", put(set))
}

#[derive(Serialize)]
struct Entry {
    currency: String,
    default_credit_limit: i64,
    source: &'static str,
}

async fn show(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let set: Vec<(String, i64)> =
        sqlx::query_as("SELECT currency, default_limit FROM credit_policy ORDER BY currency")
            .fetch_all(state.directory.pool())
            .await
            .map_err(DirectoryError::Unavailable)?;
    let mut items: Vec<Entry> = state
        .settings
        .credit
        .default_limits
        .iter()
        .filter(|(c, _)| !set.iter().any(|(s, _)| s == *c))
        .map(|(c, l)| Entry {
            currency: c.clone(),
            default_credit_limit: *l,
            source: "configured",
        })
        .collect();
    items.extend(set.into_iter().map(|(currency, l)| Entry {
        currency,
        default_credit_limit: l,
        source: "operator",
    }));
    items.sort_by(|a, b| a.currency.cmp(&b.currency));
    Ok(Json(serde_json::json!({ "items": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetLimit {
    default_credit_limit: i64,
}

#[tracing::instrument(skip_all, fields(currency = %currency))]
async fn set(
    State(state): State<AppState>,
    Path(currency): Path<String>,
    ApiJson(body): ApiJson<SetLimit>,
) -> ApiResult<impl IntoResponse> {
    let currency: Currency = currency
        .parse()
        .map_err(|_| Problem::invalid("currency", "must be a supported ISO 4217 code"))?;
    Money::positive(body.default_credit_limit, currency)
        .map_err(|e| Problem::bad_money("default_credit_limit", &e))?;
    sqlx::query(
        "INSERT INTO credit_policy (currency, default_limit) VALUES ($1, $2)
         ON CONFLICT (currency) DO UPDATE SET default_limit = EXCLUDED.default_limit, updated_at = now()",
    )
    .bind(currency.to_string())
    .bind(body.default_credit_limit)
    .execute(state.directory.pool())
    .await
    .map_err(DirectoryError::Unavailable)?;
    tracing::info!(limit = body.default_credit_limit, "credit policy changed");
    Ok(Json(Entry {
        currency: currency.to_string(),
        default_credit_limit: body.default_credit_limit,
        source: "operator",
    }))
}
