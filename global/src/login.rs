//! Login: verifies a customer's password and answers a HAL document whose
//! links point straight at the customer's shard, with a signed access token.
//! Also publishes the token verification key (JWKS) and rate-limits failures.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use moka::sync::Cache;
use serde::Deserialize;

use cellbank_shared::hal::{href, Hal};
use cellbank_shared::problem::Problem;
use cellbank_shared::token::{Claims, ISSUER};

use crate::directory::{self, DirectoryError, IdentifierKind};
use crate::error::{ApiError, ApiResult, Input};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/login", post(login))
        .route("/.well-known/jwks.json", get(jwks))
}

/// Logins are compared trimmed and lowercased.
pub fn normalise_login(login: &str) -> String {
    login.trim().to_lowercase()
}

/// Validates a normalised login.
pub fn validate_login(login: &str) -> Result<(), Problem> {
    let ok_chars = login
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._@+-".contains(c));
    if !(3..=64).contains(&login.len()) || !ok_chars {
        return Err(Problem::invalid(
            "login",
            "must be 3 to 64 characters: letters, digits and . _ @ + -",
        ));
    }
    Ok(())
}

/// Hashes a password with argon2id (CPU-heavy: call from a blocking task).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hash password: {e}"))
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verified against when the login is unknown, so that unknown logins take as
/// long as wrong passwords.
static DECOY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password(&uuid::Uuid::new_v4().to_string()).unwrap_or_default());

/// Counts failed logins per login and per client address within a window.
#[derive(Clone)]
pub struct LoginGuard {
    by_login: Cache<String, u32>,
    by_addr: Cache<IpAddr, u32>,
    max: u32,
    window: Duration,
}

impl LoginGuard {
    pub fn new(max_failures: u32, window: Duration) -> Self {
        Self {
            by_login: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(window)
                .build(),
            by_addr: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(window)
                .build(),
            max: max_failures,
            window,
        }
    }

    fn addr_max(&self) -> u32 {
        self.max.saturating_mul(10)
    }

    fn check(&self, login: &str, addr: IpAddr) -> Result<(), Problem> {
        let login_failures = self.by_login.get(login).unwrap_or(0);
        let addr_failures = self.by_addr.get(&addr).unwrap_or(0);
        if login_failures >= self.max || addr_failures >= self.addr_max() {
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "too many failed logins",
            )
            .detail("too many failed logins; try again later")
            .retry_after(self.window.as_secs()));
        }
        Ok(())
    }

    fn failed(&self, login: &str, addr: IpAddr) {
        let n = self.by_login.get(login).unwrap_or(0);
        self.by_login.insert(login.to_owned(), n.saturating_add(1));
        let n = self.by_addr.get(&addr).unwrap_or(0);
        self.by_addr.insert(addr, n.saturating_add(1));
    }

    fn succeeded(&self, login: &str) {
        self.by_login.invalidate(login);
    }
}

/// The client's address: behind an ingress every connection comes from the
/// proxy, so the last `X-Forwarded-For` hop (the one our proxy appended, which
/// a client cannot forge) counts when present; otherwise the peer.
fn client_addr(headers: &axum::http::HeaderMap, peer: SocketAddr) -> IpAddr {
    headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or_else(|| peer.ip())
}

#[derive(Deserialize)]
struct LoginBody {
    login: String,
    password: String,
}

fn bad_credentials() -> ApiError {
    Problem::unauthorized("login or password is wrong").into()
}

#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Input(body): Input<LoginBody>,
) -> ApiResult<impl IntoResponse> {
    let login = normalise_login(&body.login);
    if login.is_empty() {
        return Err(Problem::invalid("login", "is required").into());
    }
    if body.password.is_empty() {
        return Err(Problem::invalid("password", "is required").into());
    }
    if body.password.len() > 256 {
        return Err(Problem::invalid("password", "must be at most 256 characters").into());
    }
    let addr = client_addr(&headers, peer);
    state.login_guard.check(&login, addr)?;

    let customer = match state
        .directory
        .customer_for(IdentifierKind::Login, &login)
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
    let password = body.password;
    let verified = tokio::task::spawn_blocking(move || match stored {
        Some(hash) => verify_password(&password, &hash),
        None => {
            let _ = verify_password(&password, &DECOY_HASH);
            false
        }
    })
    .await
    .map_err(|e| anyhow::anyhow!("verify password task: {e}"))?;
    let Some(customer_id) = customer.filter(|_| verified) else {
        state.login_guard.failed(&login, addr);
        tracing::info!("login failed");
        return Err(bad_credentials());
    };
    state.login_guard.succeeded(&login);

    let placement = state.directory.placement(customer_id).await?;
    let span = tracing::Span::current();
    span.record("customer_id", tracing::field::display(&customer_id));
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    let shard = state.directory.shard(&placement.shard_id).await?;
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
    let doc = Hal::new(serde_json::json!({
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
    );
    Ok(([(axum::http::header::CACHE_CONTROL, "no-store")], doc))
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let signer: Arc<_> = state.signer.clone();
    (
        [(axum::http::header::CACHE_CONTROL, "public, max-age=300")],
        Json(signer.jwks()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_hop_our_proxy_appended() {
        let peer: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let mut h = axum::http::HeaderMap::new();
        assert_eq!(client_addr(&h, peer), peer.ip());
        h.insert("x-forwarded-for", "1.2.3.4, 203.0.113.7".parse().unwrap());
        assert_eq!(client_addr(&h, peer).to_string(), "203.0.113.7");
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(client_addr(&h, peer), peer.ip());
    }

    #[test]
    fn logins_are_normalised_and_checked() {
        assert_eq!(normalise_login("  Ana@Example.COM "), "ana@example.com");
        assert!(validate_login("ana@example.com").is_ok());
        for bad in ["ab", "a b c", "x".repeat(65).as_str(), "ana#1"] {
            assert!(validate_login(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn failures_are_limited_per_login_and_cleared_by_success() {
        let g = LoginGuard::new(2, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(g.check("ana", ip).is_ok());
        g.failed("ana", ip);
        g.failed("ana", ip);
        let p = g.check("ana", ip).unwrap_err();
        assert_eq!(p.status, 429);
        assert_eq!(p.retry_after, Some(60));
        assert!(g.check("bia", ip).is_ok(), "other logins are not affected");
        g.succeeded("ana");
        assert!(g.check("ana", ip).is_ok());
        for _ in 0..20 {
            g.failed("spray", ip);
        }
        assert!(
            g.check("someone-else", ip).is_err(),
            "one address spraying logins is limited"
        );
    }
}
