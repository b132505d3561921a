//! Login: verifies a customer's password and answers a HAL document whose
//! links point straight at the customer's shard, with a signed access token.
//! Also publishes the token verification key (JWKS). Failures are throttled
//! by the [`LoginGuard`](crate::login_guard::LoginGuard).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use cellbank_shared::hal::{href, Hal};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::problem::Problem;
use cellbank_shared::token::{Claims, ISSUER};

use crate::credentials::{normalise_login, validate_login, verify_stored};
use crate::directory::{self, DirectoryError, IdentifierKind, Placement, Shard};
use crate::error::{ApiError, ApiResult};
use crate::login_guard::client_addr;
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/login", post(login))
        .route("/.well-known/jwks.json", get(jwks))
}

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
}

impl LoginBody {
    /// Checks the fields' shape; returns the normalised login.
    fn normalised_login(&self) -> Result<String, Problem> {
        let login = normalise_login(&self.login);
        if login.is_empty() {
            return Err(Problem::invalid("login", "is required"));
        }
        validate_login(&login)?;
        if self.password.is_empty() {
            return Err(Problem::invalid("password", "is required"));
        }
        if self.password.len() > 256 {
            return Err(Problem::invalid(
                "password",
                "must be at most 256 characters",
            ));
        }
        Ok(login)
    }
}

fn bad_credentials() -> ApiError {
    Problem::unauthorized("login or password is wrong").into()
}

#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let login = body.normalised_login()?;
    let addr = client_addr(&headers, peer, &state.trusted_proxies);
    let attempt = state.login_guard.begin(&login, addr)?;
    let Some(customer_id) = authenticate(&state, &login, body.password).await? else {
        tracing::info!("login failed");
        return Err(bad_credentials());
    };
    state.login_guard.succeeded(attempt);

    let placement = state.directory.placement(customer_id).await?;
    if placement.state == "pending" {
        // The sign-up is not complete: its shard may not hold the customer
        // yet, so no token and no links to it. The platform completes (or
        // undoes) the sign-up on its own; the app retries.
        return Err(
            Problem::unavailable("the sign-up is still being completed; retry shortly", 1).into(),
        );
    }
    let span = tracing::Span::current();
    span.record("customer_id", tracing::field::display(&customer_id));
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    let shard = state.directory.shard(&placement.shard_id).await?;
    let doc = logged_in(&state, &placement, &shard);
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], doc))
}

/// The customer whose password this is, or `None` for an unknown login or a
/// wrong password (which take the same time).
async fn authenticate(
    state: &AppState,
    login: &str,
    password: String,
) -> ApiResult<Option<CustomerId>> {
    let customer = match state
        .directory
        .customer_for(IdentifierKind::Login, login)
        .await
    {
        Ok(c) => Some(c),
        Err(DirectoryError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let stored = match customer {
        Some(c) => directory::password_hash(state.directory.pool(), c).await?,
        None => None,
    };
    let verified = state
        .password_work
        .run(move || verify_stored(&password, stored.as_deref()))
        .await?;
    Ok(customer.filter(|_| verified))
}

/// The login answer: a signed token for the customer's placement and links
/// to their resources on their shard.
fn logged_in(state: &AppState, placement: &Placement, shard: &Shard) -> Hal {
    let customer_id = placement.customer_id;
    let now = chrono::Utc::now().timestamp();
    let ttl = state.settings.auth.token_ttl_secs as i64;
    let claims = Claims {
        sub: customer_id,
        shard: placement.shard_id.clone(),
        epoch: placement.epoch,
        iat: now,
        exp: now + ttl,
        iss: ISSUER.to_owned(),
    };
    let token = state.signer.sign(&claims);
    let base = &shard.public_url;
    let customer_path = format!("/v1/customers/{customer_id}");
    Hal::new(serde_json::json!({
        "customer_id": customer_id,
        "shard": placement.shard_id,
        "epoch": placement.epoch,
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": ttl,
    }))
    .link("self", href(base, &customer_path))
    .link("customer", href(base, &customer_path))
    .link("accounts", href(base, &format!("{customer_path}/accounts")))
    .link("cards", href(base, &format!("{customer_path}/cards")))
    .link(
        "transfers",
        href(base, &format!("{customer_path}/transfers")),
    )
    .link("issue_card", format!("{customer_path}/cards"))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let signer: Arc<_> = state.signer.clone();
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(signer.jwks()),
    )
}
