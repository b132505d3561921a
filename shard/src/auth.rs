//! Who may call what: bearer secrets for the internal (global) and admin APIs,
//! and customer tokens issued by global for the app's public API, verified
//! with global's published keys (JWKS), fetched at start and refreshed.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::secret::Secret;
use cellbank_shared::token::{Claims, TokenVerifier};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::state::{AppState, Keys};

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// Compares without stopping at the first difference.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn check(headers: &HeaderMap, secret: &Secret) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(t) if same(t, secret.expose()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("bearer token is not valid".into())),
        None => Err(ApiError::Unauthorized(
            "authorization: Bearer <token> is required".into(),
        )),
    }
}

/// Middleware for `/internal/*`: global's internal token.
pub async fn internal(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match check(req.headers(), &s.settings.auth.internal_token) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Middleware for `/admin/*`: the operators' admin token.
pub async fn admin(State(s): State<AppState>, req: Request, next: Next) -> Response {
    match check(req.headers(), &s.settings.auth.admin_token) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Checks the app's token for `customer`: signed by global, for this shard,
/// at the customer's current epoch or newer, about this customer.
pub async fn customer(
    s: &AppState,
    headers: &HeaderMap,
    customer: CustomerId,
) -> Result<Claims, ApiError> {
    let relogin = |status, detail: &str| ApiError::Relogin {
        status,
        detail: detail.to_owned(),
        login: s.login_url(),
    };
    let token = bearer(headers).ok_or_else(|| {
        relogin(
            StatusCode::UNAUTHORIZED,
            "authorization: Bearer <token from global login> is required",
        )
    })?;
    let verifier =
        s.keys.read().expect("keys lock").clone().ok_or_else(|| {
            ApiError::Unavailable("global's signing keys are not loaded yet".into())
        })?;
    let claims = verifier
        .verify(token, chrono::Utc::now().timestamp())
        .map_err(|e| relogin(StatusCode::UNAUTHORIZED, &e.to_string()))?;
    if claims.shard != s.shard_id {
        return Err(relogin(
            StatusCode::UNAUTHORIZED,
            &format!("token is for {}, this is {}", claims.shard, s.shard_id),
        ));
    }
    if claims.sub != customer {
        return Err(ApiError::Forbidden(
            "the token is for another customer".into(),
        ));
    }
    let epoch: Option<i64> =
        sqlx::query_scalar("SELECT epoch FROM customers WHERE customer_id = $1")
            .bind(customer.as_uuid())
            .fetch_optional(&s.pool)
            .await?;
    match epoch {
        None => Err(relogin(
            StatusCode::UNAUTHORIZED,
            "this customer does not live in this shard",
        )),
        Some(e) if e > claims.epoch.0 => Err(relogin(
            StatusCode::CONFLICT,
            &format!(
                "token is for epoch {}, the customer is at {e}",
                claims.epoch
            ),
        )),
        Some(_) => Ok(claims),
    }
}

/// Fetches `{global}/.well-known/jwks.json` until it answers, then refreshes it every `refresh`.
pub async fn keep_keys(
    keys: Keys,
    global_url: String,
    refresh: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let url = cellbank_shared::hal::href(&global_url, "/.well-known/jwks.json");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut backoff = Duration::from_millis(200);
    loop {
        let fetched = async {
            let resp = client.get(&url).send().await?.error_for_status()?;
            let doc: serde_json::Value = resp.json().await?;
            anyhow::Ok(TokenVerifier::from_jwks(&doc)?)
        }
        .await;
        let wait = match fetched {
            Ok(v) => {
                let first = keys.read().expect("keys lock").is_none();
                *keys.write().expect("keys lock") = Some(v);
                if first {
                    tracing::info!(url = %url, "loaded global signing keys");
                }
                backoff = Duration::from_millis(200);
                refresh
            }
            Err(e) => {
                tracing::warn!(url = %url, error = %format!("{e:#}"), "fetch global signing keys failed; retrying");
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(wait) => {},
        }
    }
}
