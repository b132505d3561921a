//! The application state every handler gets: cheap handles only.

use std::sync::{Arc, RwLock};

use cellbank_shared::ids::ShardId;
use cellbank_shared::kafka::{Hold, Producer};
use cellbank_shared::token::TokenVerifier;
use sqlx::PgPool;

use crate::authorizer::Authorizer;
use crate::settings::Settings;

/// Global's published keys, fetched at start and refreshed; `None` until the first fetch.
pub type Keys = Arc<RwLock<Option<TokenVerifier>>>;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub shard_id: ShardId,
    pub pool: PgPool,
    pub producer: Producer,
    pub authorizer: Authorizer,
    pub keys: Keys,
    /// Operator holds on this cell's consumers, by consumer name.
    pub holds: Holds,
}

/// The consumers an operator may hold, by name (see `consumers.rs`).
pub type Holds = Arc<std::collections::BTreeMap<&'static str, Hold>>;

impl AppState {
    /// An absolute URL on this shard's public base.
    pub fn public(&self, path: &str) -> String {
        cellbank_shared::hal::href(&self.settings.shard.public_url, path)
    }

    /// Global's login, where stale tokens are sent.
    pub fn login_url(&self) -> String {
        cellbank_shared::hal::href(&self.settings.global.url, "/v1/login")
    }
}
