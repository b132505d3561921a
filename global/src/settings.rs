//! The global tier's typed settings (see notes/contract.md), loaded in layers
//! and validated once at start.

use serde::{Deserialize, Serialize};

use cellbank_shared::config::{
    ConfigError, DatabaseSettings, KafkaSettings, ServerSettings, TelemetrySettings, Validate,
};
use cellbank_shared::kafka::BreakerConfig;
use cellbank_shared::secret::Secret;
use cellbank_shared::token::TokenSigner;

/// Everything `cellbank-global` reads.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    /// The directory database.
    pub database: DatabaseSettings,
    /// The global broker (directory-change feed).
    pub kafka: KafkaSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub routing: RoutingSettings,
    pub cache: CacheSettings,
}

/// Keys and tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Url-safe base64 32-byte Ed25519 seed.
    pub signing_key: Secret,
    /// Key of the HMAC that turns a PAN into its identifier.
    pub pan_hmac_key: Secret,
    /// Bearer token of the ops API.
    pub admin_token: Secret,
    /// Bearer token global presents to the shards' internal API.
    pub internal_token: Secret,
    pub token_ttl_secs: u64,
    /// Failed logins (per login, and ten times as many per client address)
    /// tolerated within the window before answering 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::new(""),
            pan_hmac_key: Secret::new(""),
            admin_token: Secret::new(""),
            internal_token: Secret::new(""),
            token_ttl_secs: 900,
            login_max_failures: 5,
            login_window_secs: 300,
        }
    }
}

/// How global reaches the shards.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingSettings {
    /// Deadline of a forwarded authorization before standing in with a decline.
    pub authorization_timeout_ms: u64,
    /// Per-shard breaker for produces and forwarded calls.
    pub breaker: BreakerConfig,
    /// How long a produce to a shard broker may wait for its acknowledgement.
    pub produce_timeout_ms: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            authorization_timeout_ms: 1000,
            breaker: BreakerConfig::default(),
            produce_timeout_ms: 5000,
        }
    }
}

/// The directory cache.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    pub max_entries: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
        }
    }
}

/// A secret counts as unset when empty or when it is the redacted default
/// (secrets serialize as `[redacted]`, so defaults come back that way).
fn required(secret: &Secret, key: &str) -> Result<(), ConfigError> {
    let v = secret.expose();
    if v.is_empty() || v == "[redacted]" {
        return Err(ConfigError::invalid(
            key,
            format!("is required ({})", cellbank_shared::config::env_name(key)),
        ));
    }
    Ok(())
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.database.validate()?;
        self.kafka.validate()?;
        self.telemetry.validate()?;
        required(&self.auth.signing_key, "auth.signing_key")?;
        if TokenSigner::from_seed_b64(self.auth.signing_key.expose()).is_err() {
            return Err(ConfigError::invalid(
                "auth.signing_key",
                "must be 32 bytes of url-safe base64 (an Ed25519 seed)",
            ));
        }
        required(&self.auth.pan_hmac_key, "auth.pan_hmac_key")?;
        if self.auth.pan_hmac_key.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "auth.pan_hmac_key",
                "must be at least 16 characters",
            ));
        }
        required(&self.auth.admin_token, "auth.admin_token")?;
        required(&self.auth.internal_token, "auth.internal_token")?;
        if self.auth.token_ttl_secs == 0 {
            return Err(ConfigError::invalid(
                "auth.token_ttl_secs",
                "must be positive",
            ));
        }
        if self.auth.login_max_failures == 0 || self.auth.login_window_secs == 0 {
            return Err(ConfigError::invalid(
                "auth.login_max_failures",
                "login_max_failures and login_window_secs must be positive",
            ));
        }
        if self.routing.authorization_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "routing.authorization_timeout_ms",
                "must be positive",
            ));
        }
        if self.routing.produce_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "routing.produce_timeout_ms",
                "must be positive",
            ));
        }
        if self.routing.breaker.failure_threshold == 0 {
            return Err(ConfigError::invalid(
                "routing.breaker.failure_threshold",
                "must be positive",
            ));
        }
        if self.cache.max_entries == 0 {
            return Err(ConfigError::invalid(
                "cache.max_entries",
                "must be positive",
            ));
        }
        Ok(())
    }
}
