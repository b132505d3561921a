//! The ops API over partners: register (the key is shown once), list,
//! revoke, and rotate (the previous key stays valid until the next rotation,
//! so a partner can switch without an outage).

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use uuid::Uuid;

use cellbank_shared::problem::{ApiJson, Problem};
use cellbank_shared::secret::Secret;

use crate::directory::Change;
use crate::error::ApiResult;
use crate::partners::{repo, PartnerView, Scope};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ops/v1/partners", get(list).post(add))
        .route("/ops/v1/partners/{id}", get(show).delete(revoke))
        .route("/ops/v1/partners/{id}/revoke", post(revoke))
        .route("/ops/v1/partners/{id}/rotate", post(rotate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewPartner {
    name: String,
    scopes: Vec<String>,
    #[serde(default)]
    rate_per_sec: Option<u32>,
}

impl NewPartner {
    fn validate(&self) -> Result<(String, Vec<Scope>), Problem> {
        let name = self.name.trim();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(Problem::invalid(
                "name",
                "must be 1 to 64 letters, digits, - _ or .",
            ));
        }
        if self.scopes.is_empty() {
            return Err(Problem::invalid("scopes", "must name at least one scope"));
        }
        let mut scopes = Vec::new();
        for (i, s) in self.scopes.iter().enumerate() {
            let scope: Scope = s.parse().map_err(|()| {
                Problem::invalid(
                    format!("scopes[{i}]"),
                    "must be one of: events, authorizations",
                )
            })?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if self.rate_per_sec == Some(0) {
            return Err(Problem::invalid("rate_per_sec", "must be positive"));
        }
        Ok((name.to_owned(), scopes))
    }
}

/// A partner with its key: answered once, never stored, never cached.
fn with_key(status: StatusCode, partner: PartnerView, key: Secret) -> impl IntoResponse {
    let mut doc = serde_json::to_value(&partner).expect("a partner serializes");
    doc["key"] = key.expose().into();
    (status, [(header::CACHE_CONTROL, "no-store")], Json(doc))
}

fn partner_id(s: &str) -> Result<Uuid, Problem> {
    s.parse()
        .map_err(|_| Problem::invalid("partner_id", "must be a uuid"))
}

#[tracing::instrument(skip_all)]
async fn add(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewPartner>,
) -> ApiResult<impl IntoResponse> {
    let (name, scopes) = body.validate()?;
    let rate = body
        .rate_per_sec
        .unwrap_or(state.settings.partners.default_rate_per_sec);
    let (partner, key) = repo::create(state.partners.pool(), &name, &scopes, rate).await?;
    tracing::info!(partner_id = %partner.partner_id, partner = %partner.name, "partner registered");
    Ok(with_key(StatusCode::CREATED, partner, key))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = partner_id(&id)?;
    let partner = repo::view(state.partners.pool(), id)
        .await?
        .ok_or_else(|| crate::directory::DirectoryError::NotFound(format!("partner {id}")))?;
    Ok(Json(partner))
}

async fn list(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let items = repo::list(state.partners.pool()).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}

#[tracing::instrument(skip_all, fields(partner_id = %id))]
async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = partner_id(&id)?;
    let partner = repo::revoke(state.partners.pool(), id).await?;
    state
        .feed
        .announce(Change::Partner { partner_id: id })
        .await;
    tracing::info!(partner = %partner.name, "partner revoked");
    Ok(Json(partner))
}

#[tracing::instrument(skip_all, fields(partner_id = %id))]
async fn rotate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let id = partner_id(&id)?;
    let (partner, key) = repo::rotate(state.partners.pool(), id).await?;
    state
        .feed
        .announce(Change::Partner { partner_id: id })
        .await;
    tracing::info!(partner = %partner.name, "partner key rotated");
    Ok(with_key(StatusCode::OK, partner, key))
}
