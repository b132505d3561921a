//! The directory: which shard each customer lives in, what identifies a
//! customer, and the shard registry, with a cache in front of every lookup.
//!
//! Lookups go identifier -> customer (cached) -> placement (cached). Entries
//! have no time to live: they are dropped when the directory-change feed says
//! so, which keeps them fresh on every replica and lets the router keep
//! serving from them while the directory database is unreachable.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use moka::future::Cache;
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, Epoch, ShardId};

use crate::metrics;

/// The kinds of identifier that lead to a customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentifierKind {
    /// Keyed by the HMAC of the PAN, never the PAN.
    Card,
    /// Keyed by the account number.
    Account,
    /// Keyed by the normalised login.
    Login,
}

impl IdentifierKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Card => "card",
            IdentifierKind::Account => "account",
            IdentifierKind::Login => "login",
        }
    }
}

impl FromStr for IdentifierKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "card" => Ok(IdentifierKind::Card),
            "account" => Ok(IdentifierKind::Account),
            "login" => Ok(IdentifierKind::Login),
            other => Err(format!("unknown identifier kind `{other}`")),
        }
    }
}

/// A shard's lifecycle: only `active` shards receive new customers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardState {
    Active,
    Draining,
    Closed,
}

impl ShardState {
    fn parse(s: &str) -> Self {
        match s {
            "active" => ShardState::Active,
            "draining" => ShardState::Draining,
            _ => ShardState::Closed,
        }
    }
}

/// One registered shard.
#[derive(Clone, Debug, Serialize)]
pub struct Shard {
    pub id: ShardId,
    pub public_url: String,
    pub internal_url: String,
    pub broker_bootstrap: String,
    pub state: ShardState,
    pub capacity: i64,
    pub customers: i64,
}

#[derive(FromRow)]
struct ShardRow {
    id: String,
    public_url: String,
    internal_url: String,
    broker_bootstrap: String,
    state: String,
    capacity: i64,
    customers: i64,
}

impl TryFrom<ShardRow> for Shard {
    type Error = DirectoryError;
    fn try_from(r: ShardRow) -> Result<Self, Self::Error> {
        Ok(Shard {
            id: ShardId::parse(&r.id).map_err(|e| DirectoryError::Corrupt(e.to_string()))?,
            public_url: r.public_url,
            internal_url: r.internal_url,
            broker_bootstrap: r.broker_bootstrap,
            state: ShardState::parse(&r.state),
            capacity: r.capacity,
            customers: r.customers,
        })
    }
}

/// Where a customer lives, at which placement version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub customer_id: CustomerId,
    pub shard_id: ShardId,
    pub epoch: Epoch,
    pub state: String,
}

#[derive(FromRow)]
struct PlacementRow {
    customer_id: Uuid,
    shard_id: String,
    epoch: i64,
    state: String,
}

impl TryFrom<PlacementRow> for Placement {
    type Error = DirectoryError;
    fn try_from(r: PlacementRow) -> Result<Self, Self::Error> {
        Ok(Placement {
            customer_id: CustomerId::from_uuid(r.customer_id),
            shard_id: ShardId::parse(&r.shard_id)
                .map_err(|e| DirectoryError::Corrupt(e.to_string()))?,
            epoch: Epoch(r.epoch),
            state: r.state,
        })
    }
}

/// A registered identifier, as the ops API shows it.
#[derive(Clone, Debug, Serialize, FromRow)]
pub struct IdentifierView {
    pub kind: String,
    /// The login or account number; absent for cards (only their hash is stored).
    #[sqlx(default)]
    pub value: Option<String>,
    pub hint: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("no active shard has room for a new customer")]
    NoCapacity,
    #[error("directory database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("directory holds an invalid value: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            if db.code().as_deref() == Some("23505") {
                return DirectoryError::Conflict(
                    db.constraint()
                        .map(|c| format!("already exists ({c})"))
                        .unwrap_or_else(|| "already exists".to_owned()),
                );
            }
        }
        DirectoryError::Unavailable(e)
    }
}

/// A change the directory-change feed announces; every replica drops the
/// matching cache entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    Customer {
        customer_id: CustomerId,
    },
    Identifier {
        kind: IdentifierKind,
        value: String,
    },
    Shard {
        shard_id: ShardId,
    },
    /// A replica checking that it receives the feed.
    Ping,
}

/// An immutable copy of the shard registry, swapped whole on reload.
pub type Registry = Arc<HashMap<ShardId, Arc<Shard>>>;

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
        let found: Option<Uuid> = sqlx::query_scalar(
            "SELECT customer_id FROM identifiers WHERE kind = $1 AND value = $2",
        )
        .bind(kind.as_str())
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(DirectoryError::Unavailable)?;
        let id =
            CustomerId::from_uuid(found.ok_or_else(|| {
                DirectoryError::NotFound(format!("{} identifier", kind.as_str()))
            })?);
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
        let row: Option<PlacementRow> = sqlx::query_as(
            "SELECT customer_id, shard_id, epoch, state FROM customers WHERE customer_id = $1",
        )
        .bind(customer_id.as_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(DirectoryError::Unavailable)?;
        let p: Placement = row
            .ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?
            .try_into()?;
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

const SHARD_COLUMNS: &str =
    "id, public_url, internal_url, broker_bootstrap, state, capacity, customers";

pub async fn list_shards(pool: &PgPool) -> Result<Vec<Shard>, DirectoryError> {
    let rows: Vec<ShardRow> =
        sqlx::query_as(&format!("SELECT {SHARD_COLUMNS} FROM shards ORDER BY id"))
            .fetch_all(pool)
            .await
            .map_err(DirectoryError::Unavailable)?;
    rows.into_iter().map(Shard::try_from).collect()
}

/// What registering a shard needs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NewShard {
    pub id: ShardId,
    pub public_url: String,
    pub internal_url: String,
    pub broker_bootstrap: String,
    pub capacity: i64,
}

pub async fn insert_shard(conn: &mut PgConnection, s: &NewShard) -> Result<Shard, DirectoryError> {
    let row: ShardRow = sqlx::query_as(&format!(
        "INSERT INTO shards (id, public_url, internal_url, broker_bootstrap, capacity)
         VALUES ($1, $2, $3, $4, $5) RETURNING {SHARD_COLUMNS}"
    ))
    .bind(s.id.as_str())
    .bind(&s.public_url)
    .bind(&s.internal_url)
    .bind(&s.broker_bootstrap)
    .bind(s.capacity)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match DirectoryError::from(e) {
        DirectoryError::Conflict(_) => DirectoryError::Conflict(format!("shard {} exists", s.id)),
        other => other,
    })?;
    row.try_into()
}

pub async fn set_shard_state(
    conn: &mut PgConnection,
    id: &ShardId,
    state: ShardState,
) -> Result<Shard, DirectoryError> {
    let state = match state {
        ShardState::Active => "active",
        ShardState::Draining => "draining",
        ShardState::Closed => "closed",
    };
    let row: Option<ShardRow> = sqlx::query_as(&format!(
        "UPDATE shards SET state = $2, updated_at = now() WHERE id = $1 RETURNING {SHARD_COLUMNS}"
    ))
    .bind(id.as_str())
    .bind(state)
    .fetch_optional(&mut *conn)
    .await?;
    row.ok_or_else(|| DirectoryError::NotFound(format!("shard {id}")))?
        .try_into()
}

/// Picks the least loaded active shard with room and counts the customer in
/// it; the row lock serialises concurrent placements on that shard.
pub async fn take_seat(conn: &mut PgConnection) -> Result<Shard, DirectoryError> {
    let row: Option<ShardRow> = sqlx::query_as(&format!(
        "SELECT {SHARD_COLUMNS} FROM shards
         WHERE state = 'active' AND customers < capacity
         ORDER BY customers::float8 / capacity, id
         LIMIT 1 FOR UPDATE"
    ))
    .fetch_optional(&mut *conn)
    .await?;
    let shard: Shard = row.ok_or(DirectoryError::NoCapacity)?.try_into()?;
    sqlx::query("UPDATE shards SET customers = customers + 1, updated_at = now() WHERE id = $1")
        .bind(shard.id.as_str())
        .execute(&mut *conn)
        .await?;
    Ok(shard)
}

pub async fn release_seat(conn: &mut PgConnection, id: &ShardId) -> Result<(), DirectoryError> {
    sqlx::query(
        "UPDATE shards SET customers = GREATEST(customers - 1, 0), updated_at = now() WHERE id = $1",
    )
    .bind(id.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn insert_customer(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    shard_id: &ShardId,
    name: &str,
) -> Result<(), DirectoryError> {
    sqlx::query(
        "INSERT INTO customers (customer_id, shard_id, epoch, state, name)
         VALUES ($1, $2, 1, 'pending', $3)",
    )
    .bind(customer_id.as_uuid())
    .bind(shard_id.as_str())
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub async fn set_customer_state(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    state: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("UPDATE customers SET state = $2, updated_at = now() WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .bind(state)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn delete_customer(
    conn: &mut PgConnection,
    customer_id: CustomerId,
) -> Result<(), DirectoryError> {
    sqlx::query("DELETE FROM customers WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Points a customer at a shard under the next epoch (the directory flip of a
/// move). Returns the new placement.
pub async fn reassign(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    shard_id: &ShardId,
) -> Result<Placement, DirectoryError> {
    let old: Option<String> =
        sqlx::query_scalar("SELECT shard_id FROM customers WHERE customer_id = $1 FOR UPDATE")
            .bind(customer_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let old = old.ok_or_else(|| DirectoryError::NotFound(format!("customer {customer_id}")))?;
    let row: PlacementRow = sqlx::query_as(
        "UPDATE customers SET shard_id = $2, epoch = epoch + 1, updated_at = now()
         WHERE customer_id = $1 RETURNING customer_id, shard_id, epoch, state",
    )
    .bind(customer_id.as_uuid())
    .bind(shard_id.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| match e {
        sqlx::Error::Database(db) if db.code().as_deref() == Some("23503") => {
            DirectoryError::NotFound(format!("shard {shard_id}"))
        }
        other => other.into(),
    })?;
    if old != shard_id.as_str() {
        sqlx::query(
            "UPDATE shards SET customers = CASE WHEN id = $1 THEN GREATEST(customers - 1, 0)
             ELSE customers + 1 END, updated_at = now() WHERE id IN ($1, $2)",
        )
        .bind(&old)
        .bind(shard_id.as_str())
        .execute(&mut *conn)
        .await?;
    }
    row.try_into()
}

pub async fn insert_identifier(
    conn: &mut PgConnection,
    kind: IdentifierKind,
    value: &str,
    customer_id: CustomerId,
    hint: Option<&str>,
) -> Result<(), DirectoryError> {
    sqlx::query("INSERT INTO identifiers (kind, value, customer_id, hint) VALUES ($1, $2, $3, $4)")
        .bind(kind.as_str())
        .bind(value)
        .bind(customer_id.as_uuid())
        .bind(hint)
        .execute(&mut *conn)
        .await
        .map_err(|e| match DirectoryError::from(e) {
            DirectoryError::Conflict(_) => {
                DirectoryError::Conflict(format!("{} identifier already registered", kind.as_str()))
            }
            other => other,
        })?;
    Ok(())
}

pub async fn delete_identifier(
    conn: &mut PgConnection,
    kind: IdentifierKind,
    value: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("DELETE FROM identifiers WHERE kind = $1 AND value = $2")
        .bind(kind.as_str())
        .bind(value)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn identifiers_of(
    pool: &PgPool,
    customer_id: CustomerId,
) -> Result<Vec<IdentifierView>, DirectoryError> {
    let rows: Vec<IdentifierView> = sqlx::query_as(
        "SELECT kind, CASE WHEN kind = 'card' THEN NULL ELSE value END AS value, hint
         FROM identifiers WHERE customer_id = $1 ORDER BY kind, created_at",
    )
    .bind(customer_id.as_uuid())
    .fetch_all(pool)
    .await
    .map_err(DirectoryError::Unavailable)?;
    Ok(rows)
}

pub async fn insert_credentials(
    conn: &mut PgConnection,
    customer_id: CustomerId,
    password_hash: &str,
) -> Result<(), DirectoryError> {
    sqlx::query("INSERT INTO credentials (customer_id, password_hash) VALUES ($1, $2)")
        .bind(customer_id.as_uuid())
        .bind(password_hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn password_hash(
    pool: &PgPool,
    customer_id: CustomerId,
) -> Result<Option<String>, DirectoryError> {
    sqlx::query_scalar("SELECT password_hash FROM credentials WHERE customer_id = $1")
        .bind(customer_id.as_uuid())
        .fetch_optional(pool)
        .await
        .map_err(DirectoryError::Unavailable)
}
