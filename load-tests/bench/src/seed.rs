//! The seed file: the shards, and the customers, logins and cards created
//! through global's public API before a load run. It holds clear PANs and
//! passwords of test customers, so it lives under `.local/` and is never
//! committed.

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

/// One registered shard, as `GET /ops/v1/shards` listed it.
#[derive(Clone, Debug, Deserialize)]
pub struct SeedShard {
    pub id: String,
    pub internal_url: String,
    pub public_url: String,
    pub broker_bootstrap: String,
}

/// One card issued through `POST /v1/customers/{id}/cards`.
#[derive(Clone, Debug, Deserialize)]
pub struct SeedCard {
    pub card_id: String,
    pub pan: String,
    pub pan_hash: String,
}

/// One customer onboarded through `POST /v1/customers`.
#[derive(Clone, Debug, Deserialize)]
pub struct SeedCustomer {
    pub customer_id: String,
    pub shard: String,
    pub epoch: i64,
    pub account_number: String,
    pub cards: Vec<SeedCard>,
}

/// The whole seed file.
#[derive(Clone, Debug, Deserialize)]
pub struct Seed {
    pub shards: Vec<SeedShard>,
    pub customers: Vec<SeedCustomer>,
}

impl Seed {
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read the seed file {}", path.display()))?;
        let seed: Seed = serde_json::from_str(&text)
            .with_context(|| format!("parse the seed file {}", path.display()))?;
        anyhow::ensure!(
            !seed.customers.is_empty(),
            "the seed file holds no customers"
        );
        Ok(seed)
    }
}
