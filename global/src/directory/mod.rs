//! The directory: which shard each customer lives in, what identifies a
//! customer, and the shard registry, with a cache in front of every lookup.
//!
//! Lookups go identifier -> customer (cached) -> placement (cached). Entries
//! are dropped when the directory-change feed says so, which keeps them fresh
//! on every replica and lets the router keep serving from them while the
//! directory database is unreachable; a time to live bounds how long a lost
//! invalidation can mislead, a shard's "not here" answer drops the entry at
//! once, and a placement never replaces a newer cached one. "No such
//! identifier" is remembered briefly, so probing unknown numbers is cheap.

mod credentials;
mod repo;
mod types;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::ops::compute::Op;
use moka::Expiry;
use sqlx::PgPool;

use cellbank_shared::ids::{CustomerId, ShardId};

use crate::metrics;

pub use credentials::{insert_credentials, password_hash};
pub use repo::{
    delete_customer, delete_identifier, identifiers_of, insert_customer, insert_identifier,
    insert_shard, list_shards, reassign, release_seat, set_customer_state, set_shard_state,
    sign_up_of, stalled_sign_ups, take_seat, PendingSignUp,
};
pub use types::{
    Change, DirectoryError, IdentifierKind, IdentifierView, NewShard, Placement, Registry, Shard,
    ShardState,
};

/// Cheap handle on the directory and its caches.
#[derive(Clone)]
pub struct Directory {
    pool: PgPool,
    identifiers: Cache<(IdentifierKind, String), Option<CustomerId>>,
    placements: Cache<CustomerId, Placement>,
    shards: Arc<RwLock<Registry>>,
    /// Counts invalidations: a database read that began before one must not
    /// fill the cache with what it read (it may be what was invalidated).
    invalidations: Arc<AtomicU64>,
}

/// How long the directory cache keeps its entries.
#[derive(Clone, Copy, Debug)]
pub struct CachePolicy {
    pub max_entries: u64,
    /// Every entry's backstop.
    pub ttl: Duration,
    /// A remembered "no such identifier".
    pub not_found_ttl: Duration,
}

/// Found identifiers live `ttl`, unknown ones `not_found_ttl`.
struct IdentifierExpiry(CachePolicy);

impl Expiry<(IdentifierKind, String), Option<CustomerId>> for IdentifierExpiry {
    fn expire_after_create(
        &self,
        _key: &(IdentifierKind, String),
        value: &Option<CustomerId>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(if value.is_some() {
            self.0.ttl
        } else {
            self.0.not_found_ttl
        })
    }

    fn expire_after_update(
        &self,
        key: &(IdentifierKind, String),
        value: &Option<CustomerId>,
        now: Instant,
        _left: Option<Duration>,
    ) -> Option<Duration> {
        self.expire_after_create(key, value, now)
    }
}

impl Directory {
    pub fn new(pool: PgPool, policy: CachePolicy) -> Self {
        let half = (policy.max_entries / 2).max(1);
        Self {
            pool,
            identifiers: Cache::builder()
                .max_capacity(half)
                .expire_after(IdentifierExpiry(policy))
                .build(),
            placements: Cache::builder()
                .max_capacity(half)
                .time_to_live(policy.ttl)
                .build(),
            shards: Arc::new(RwLock::new(Arc::new(HashMap::new()))),
            invalidations: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The invalidation count, read before a database read that may fill
    /// the cache.
    fn generation(&self) -> u64 {
        self.invalidations.load(Ordering::SeqCst)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The customer an identifier belongs to, from the cache or the database.
    pub async fn customer_for(
        &self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<CustomerId, DirectoryError> {
        let key = (kind, value.to_owned());
        let not_found = || DirectoryError::NotFound(format!("{} identifier", kind.as_str()));
        if let Some(c) = self.identifiers.get(&key).await {
            metrics::cache_hit("identifier");
            return c.ok_or_else(not_found);
        }
        metrics::cache_miss("identifier");
        let seen = self.generation();
        let id = repo::find_customer(&self.pool, kind, value).await?;
        if self.generation() == seen {
            self.identifiers.insert(key, id).await;
        }
        id.ok_or_else(not_found)
    }

    /// Where a customer lives, from the cache or the database.
    pub async fn placement(&self, customer_id: CustomerId) -> Result<Placement, DirectoryError> {
        if let Some(p) = self.placements.get(&customer_id).await {
            metrics::cache_hit("placement");
            return Ok(p);
        }
        metrics::cache_miss("placement");
        let seen = self.generation();
        let p = repo::find_placement(&self.pool, customer_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?;
        if p.state != "pending" {
            self.remember(p.clone(), seen).await;
        }
        Ok(p)
    }

    /// Caches a placement read from the database (read when the
    /// invalidation count was `seen`) unless an invalidation happened since
    /// or the cache already holds a newer epoch: a slow reader must not bring
    /// back an old placement.
    async fn remember(&self, p: Placement, seen: u64) {
        if self.generation() != seen {
            return;
        }
        self.placements
            .entry(p.customer_id)
            .and_compute_with(|cached| {
                let newer_cached = cached.is_some_and(|c| c.value().epoch > p.epoch);
                std::future::ready(if newer_cached { Op::Nop } else { Op::Put(p) })
            })
            .await;
    }

    /// Drops a customer's cached placement (a shard said they are not
    /// there at that epoch).
    pub async fn forget_customer(&self, customer_id: CustomerId) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.placements.invalidate(&customer_id).await;
    }

    /// The customer's placement once no move's cutover holds it: while the
    /// customer is `frozen`, reads the directory itself (not the cache)
    /// every few milliseconds until the move releases it or `until` passes
    /// (then `None`). The first read after the release is cached.
    pub async fn unfrozen(
        &self,
        customer_id: CustomerId,
        until: tokio::time::Instant,
    ) -> Result<Option<Placement>, DirectoryError> {
        loop {
            let seen = self.generation();
            let p = repo::find_placement(&self.pool, customer_id)
                .await?
                .ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?;
            if p.state != "frozen" {
                self.placements.invalidate(&customer_id).await;
                self.remember(p.clone(), seen).await;
                return Ok(Some(p));
            }
            if tokio::time::Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    }

    /// Identifier -> customer -> placement.
    pub async fn resolve(
        &self,
        kind: IdentifierKind,
        value: &str,
    ) -> Result<Placement, DirectoryError> {
        let c = self.customer_for(kind, value).await?;
        self.placement(c).await
    }

    /// Drops what a change makes stale.
    pub async fn invalidate(&self, change: &Change) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Customer { customer_id } => self.placements.invalidate(customer_id).await,
            Change::Identifier { kind, value } => {
                self.identifiers.invalidate(&(*kind, value.clone())).await
            }
            Change::Shard { .. } => {
                if let Err(e) = self.refresh_shards().await {
                    tracing::warn!(error = %e, "refresh shard registry failed");
                }
            }
            Change::Partner { .. } | Change::Ping => {}
        }
    }

    /// A shard from the in-memory registry (reloaded once if unknown).
    pub async fn shard(&self, id: &ShardId) -> Result<Arc<Shard>, DirectoryError> {
        if let Some(s) = self.snapshot().get(id) {
            return Ok(s.clone());
        }
        self.refresh_shards().await?;
        self.snapshot()
            .get(id)
            .cloned()
            .ok_or_else(|| DirectoryError::NotFound(format!("shard {id}")))
    }

    /// The last loaded registry.
    pub fn snapshot(&self) -> Registry {
        self.shards.read().expect("shard registry lock").clone()
    }

    /// Reloads the registry from the database; keeps the old one on failure.
    pub async fn refresh_shards(&self) -> Result<Vec<Shard>, DirectoryError> {
        let shards = list_shards(&self.pool).await?;
        let map = shards
            .iter()
            .map(|s| (s.id.clone(), Arc::new(s.clone())))
            .collect();
        *self.shards.write().expect("shard registry lock") = Arc::new(map);
        Ok(shards)
    }

    /// Number of cached entries (tests, metrics).
    pub fn cached_entries(&self) -> u64 {
        self.identifiers.entry_count() + self.placements.entry_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbank_shared::ids::{Epoch, ShardId};

    fn directory() -> Directory {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("lazy pool");
        Directory::new(
            pool,
            CachePolicy {
                max_entries: 100,
                ttl: Duration::from_secs(60),
                not_found_ttl: Duration::from_secs(1),
            },
        )
    }

    fn placement(c: CustomerId, epoch: i64) -> Placement {
        Placement {
            customer_id: c,
            shard_id: ShardId::parse("shard-1").unwrap(),
            epoch: Epoch(epoch),
            state: "active".into(),
        }
    }

    #[tokio::test]
    async fn a_read_overtaken_by_an_invalidation_does_not_fill_the_cache() {
        let d = directory();
        let c = CustomerId::new();
        let seen = d.generation();
        d.invalidate(&Change::Customer { customer_id: c }).await;
        d.remember(placement(c, 1), seen).await;
        assert!(
            d.placements.get(&c).await.is_none(),
            "the old read was dropped"
        );
        d.remember(placement(c, 2), d.generation()).await;
        assert_eq!(d.placements.get(&c).await.unwrap().epoch, Epoch(2));
        d.remember(placement(c, 1), d.generation()).await;
        assert_eq!(
            d.placements.get(&c).await.unwrap().epoch,
            Epoch(2),
            "an older epoch never replaces a newer one"
        );
    }
}
