//! The directory: which shard each customer lives in, what identifies a
//! customer, and the shard registry, with a cache in front of every lookup.
//!
//! Lookups go identifier -> customer (cached) -> placement (cached). Entries
//! have no time to live: they are dropped when the directory-change feed says
//! so, which keeps them fresh on every replica and lets the router keep
//! serving from them while the directory database is unreachable.

mod credentials;
mod repo;
mod types;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use moka::future::Cache;
use sqlx::PgPool;

use cellbank_shared::ids::{CustomerId, ShardId};

use crate::metrics;

pub use credentials::{insert_credentials, password_hash};
pub use repo::{
    delete_customer, delete_identifier, identifiers_of, insert_customer, insert_identifier,
    insert_shard, list_shards, reassign, release_seat, set_customer_state, set_shard_state,
    take_seat,
};
pub use types::{
    Change, DirectoryError, IdentifierKind, IdentifierView, NewShard, Placement, Registry, Shard,
    ShardState,
};

/// Cheap handle on the directory and its caches.
#[derive(Clone)]
pub struct Directory {
    pool: PgPool,
    identifiers: Cache<(IdentifierKind, String), CustomerId>,
    placements: Cache<CustomerId, Placement>,
    shards: Arc<RwLock<Registry>>,
}

impl Directory {
    pub fn new(pool: PgPool, max_entries: u64) -> Self {
        let half = (max_entries / 2).max(1);
        Self {
            pool,
            identifiers: Cache::builder().max_capacity(half).build(),
            placements: Cache::builder().max_capacity(half).build(),
            shards: Arc::new(RwLock::new(Arc::new(HashMap::new()))),
        }
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
        if let Some(c) = self.identifiers.get(&key).await {
            metrics::cache_hit("identifier");
            return Ok(c);
        }
        metrics::cache_miss("identifier");
        let id = repo::find_customer(&self.pool, kind, value)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("{} identifier", kind.as_str())))?;
        self.identifiers.insert(key, id).await;
        Ok(id)
    }

    /// Where a customer lives, from the cache or the database.
    pub async fn placement(&self, customer_id: CustomerId) -> Result<Placement, DirectoryError> {
        if let Some(p) = self.placements.get(&customer_id).await {
            metrics::cache_hit("placement");
            return Ok(p);
        }
        metrics::cache_miss("placement");
        let p = repo::find_placement(&self.pool, customer_id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?;
        if p.state != "pending" {
            self.placements.insert(customer_id, p.clone()).await;
        }
        Ok(p)
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
            Change::Ping => {}
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
