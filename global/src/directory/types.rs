//! The directory's vocabulary: identifiers, shards and their states,
//! placements, the changes the feed announces, and the directory's error.

use cellbank_shared::db::{classify, PgFailure};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, Epoch, ShardId};

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
pub(super) struct ShardRow {
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
pub(super) struct PlacementRow {
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

/// Why a directory operation failed.
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

/// A duplicate key is a conflict naming its constraint; every other database
/// failure means the directory is unavailable (the caller serves from cache).
impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            PgFailure::UniqueViolation { constraint } => DirectoryError::Conflict(
                constraint
                    .map(|c| format!("already exists ({c})"))
                    .unwrap_or_else(|| "already exists".to_owned()),
            ),
            _ => DirectoryError::Unavailable(e),
        }
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
    /// A partner was revoked or its keys rotated: cached key lookups go.
    Partner {
        partner_id: uuid::Uuid,
    },
    /// A replica checking that it receives the feed.
    Ping,
}

impl Change {
    /// The change's kind, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Customer { .. } => "customer",
            Change::Identifier { .. } => "identifier",
            Change::Shard { .. } => "shard",
            Change::Partner { .. } => "partner",
            Change::Ping => "ping",
        }
    }
}

/// An immutable copy of the shard registry, swapped whole on reload.
pub type Registry = Arc<HashMap<ShardId, Arc<Shard>>>;

/// What registering a shard needs.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct NewShard {
    pub id: ShardId,
    pub public_url: String,
    pub internal_url: String,
    pub broker_bootstrap: String,
    pub capacity: i64,
}
