//! Partners: the card network, payment rails and other event sources,
//! registered by operators. A partner proves itself with a bearer key (kept
//! only as a hash), may call what its scopes allow, at its own rate, and
//! owns an idempotency namespace for its event ids.

pub mod extract;
pub mod keys;
pub mod repo;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use cellbank_shared::problem::Problem;

use crate::directory::DirectoryError;
pub use repo::{PartnerRecord, PartnerView};

/// What a partner may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// `POST /v1/events` and `/v1/events/batch`.
    Events,
    /// `POST /v1/authorizations`.
    Authorizations,
}

impl Scope {
    pub const ALL: [Scope; 2] = [Scope::Events, Scope::Authorizations];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Events => "events",
            Scope::Authorizations => "authorizations",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Scope::ALL.into_iter().find(|x| x.as_str() == s).ok_or(())
    }
}

/// How long a key's lookup is trusted before asking the database again: the
/// bound on how long a revoked key keeps working on a replica that missed
/// the revocation's announcement.
const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// A partner's limiter, with the rate it was built for.
struct Limiter {
    rate: u32,
    limiter: DefaultDirectRateLimiter,
}

/// Authenticates partner keys (cached) and keeps one rate limiter per partner.
#[derive(Clone)]
pub struct Partners {
    pool: PgPool,
    by_key: Cache<Vec<u8>, Option<Arc<PartnerRecord>>>,
    limiters: moka::sync::Cache<Uuid, Arc<Limiter>>,
}

impl Partners {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            by_key: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(KEY_CACHE_TTL)
                .build(),
            limiters: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The live partner a presented key belongs to, or a 401 problem.
    pub async fn authenticate(&self, key: Option<&str>) -> Result<Arc<PartnerRecord>, Problem> {
        let Some(key) = key else {
            return Err(Problem::unauthorized(
                "authorization: Bearer <partner key> is required",
            ));
        };
        if !keys::well_formed(key) {
            return Err(Problem::unauthorized("the partner key is not valid"));
        }
        let hash = keys::hash(key);
        let pool = self.pool.clone();
        let found = self
            .by_key
            .try_get_with(hash.clone(), async move {
                repo::by_key_hash(&pool, &hash)
                    .await
                    .map(|p| p.map(Arc::new))
            })
            .await
            .map_err(|e| unavailable(&e))?;
        found.ok_or_else(|| Problem::unauthorized("the partner key is not valid or was revoked"))
    }

    /// Lets `n` requests (events) of this partner through under `scope`, or
    /// answers 403 (scope) or 429 (rate).
    pub fn admit(&self, partner: &PartnerRecord, scope: Scope, n: u32) -> Result<(), Problem> {
        if !partner.scopes.contains(&scope) {
            return Err(Problem::forbidden(format!(
                "this partner key does not have the `{}` scope",
                scope.as_str()
            )));
        }
        let limiter = self.limiter(partner);
        let n = NonZeroU32::new(n.max(1)).expect("at least one");
        match limiter.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                crate::metrics::refused("partner_rate");
                Err(too_many(wait))
            }
            Err(_) => Err(Problem::invalid(
                "events",
                format!(
                    "holds {n} events; this partner's rate allows at most {} per request",
                    limiter.rate
                ),
            )),
        }
    }

    fn limiter(&self, partner: &PartnerRecord) -> Arc<Limiter> {
        let rate = partner.rate_per_sec.max(1);
        let build = || {
            let quota = Quota::per_second(NonZeroU32::new(rate).expect("positive"));
            Arc::new(Limiter {
                rate,
                limiter: RateLimiter::direct(quota),
            })
        };
        let current = self.limiters.get_with(partner.partner_id, build);
        if current.rate == rate {
            return current;
        }
        let fresh = build();
        self.limiters.insert(partner.partner_id, fresh.clone());
        fresh
    }

    /// Forgets every cached key lookup (a partner was revoked or rotated).
    pub fn forget_keys(&self) {
        self.by_key.invalidate_all();
    }
}

fn too_many(wait: Duration) -> Problem {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too-many-requests",
        "rate limit exceeded",
    )
    .detail("this partner is over its rate limit; retry later")
    .retry_after(secs)
}

fn unavailable(e: &Arc<DirectoryError>) -> Problem {
    tracing::warn!(error = %e, "partner key lookup failed");
    Problem::unavailable("the directory is temporarily unavailable", 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(scopes: &[Scope], rate: u32) -> PartnerRecord {
        PartnerRecord {
            partner_id: Uuid::now_v7(),
            name: "p".into(),
            scopes: scopes.to_vec(),
            rate_per_sec: rate,
        }
    }

    fn partners() -> Partners {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool");
        Partners::new(pool)
    }

    #[tokio::test]
    async fn scopes_are_enforced_and_each_partner_has_its_own_rate() {
        let ps = partners();
        let a = partner(&[Scope::Events], 3);
        let b = partner(&[Scope::Events, Scope::Authorizations], 3);
        assert_eq!(
            ps.admit(&a, Scope::Authorizations, 1).unwrap_err().status,
            403
        );
        for _ in 0..3 {
            ps.admit(&a, Scope::Events, 1).expect("within the burst");
        }
        let p = ps.admit(&a, Scope::Events, 1).unwrap_err();
        assert_eq!(p.status, 429);
        assert!(p.retry_after.unwrap() >= 1);
        ps.admit(&b, Scope::Events, 3)
            .expect("another partner is not affected");
        assert_eq!(ps.admit(&b, Scope::Events, 4).unwrap_err().status, 422);
    }

    #[tokio::test]
    async fn malformed_or_missing_keys_never_reach_the_database() {
        let ps = partners();
        assert_eq!(ps.authenticate(None).await.unwrap_err().status, 401);
        assert_eq!(
            ps.authenticate(Some("admin")).await.unwrap_err().status,
            401
        );
    }
}
