//! The application state every handler gets: cheap handles only, split into
//! what an extractor needs with `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;
use cellbank_shared::access::{AdminToken, InternalToken};
use cellbank_shared::ids::ShardId;
use cellbank_shared::kafka::Producer;
use sqlx::PgPool;

use crate::authorizer::lease::Lease;
use crate::authorizer::Authorizer;
use crate::holds::Holds;
use crate::settings::Settings;
use crate::signing_keys::SigningKeys;

#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub shard_id: ShardId,
    pub pool: PgPool,
    pub producer: Producer,
    pub authorizer: Authorizer,
    /// Whether this replica decides authorizations or forwards them.
    pub lease: Lease,
    /// The HTTP client that forwards authorizations to the lease holder.
    pub forwarder: reqwest::Client,
    /// Global's published keys, to verify customer tokens with.
    pub keys: SigningKeys,
    /// Operator holds on this cell's consumers.
    pub holds: Holds,
    /// Hands transfers to other cells' customers to global.
    pub handoff: crate::transfers::handoff::Handoff,
}

impl AppState {
    /// An absolute URL on this shard's public base.
    pub fn public(&self, path: &str) -> String {
        cellbank_shared::hal::href(&self.settings.shard.public_url, path)
    }

    /// Global's login, where stale tokens are sent.
    pub fn login_url(&self) -> String {
        cellbank_shared::hal::href(&self.settings.global.url, "/v1/login")
    }

    /// Two digits every account number of this cell starts with.
    pub fn account_prefix(&self) -> String {
        format!("{:02}", self.shard_id.number() % 100)
    }
}

impl FromRef<AppState> for AdminToken {
    fn from_ref(s: &AppState) -> Self {
        AdminToken(s.settings.auth.admin_token.clone())
    }
}

impl FromRef<AppState> for InternalToken {
    fn from_ref(s: &AppState) -> Self {
        InternalToken(s.settings.auth.internal_token.clone())
    }
}
