//! The global tier's typed settings (see notes/contract.md), loaded in layers
//! and validated once at start.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use cellbank_shared::config::{
    require_positive, require_secret, ConfigError, DatabaseSettings, KafkaSettings, ServerSettings,
    TelemetrySettings, TlsClientSettings, Validate,
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
    /// TLS of global's calls to the shards (`https://` internal urls).
    pub tls: TlsClientSettings,
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
    /// How long the producer may hold an event to batch it with others
    /// (librdkafka `linger.ms`): every routed event waits for its broker
    /// acknowledgement, so this adds to each answer's latency.
    pub produce_linger_ms: u32,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            authorization_timeout_ms: 1000,
            breaker: BreakerConfig::default(),
            produce_timeout_ms: 5000,
            produce_linger_ms: 1,
        }
    }
}

// Durations stay integers whose key names the unit (`*_ms`, `*_secs`: the
// contract's config keys); code reads them as `Duration` through these
// accessors only (shared's sections have their own, e.g.
// `KafkaSettings::produce_timeout`).

impl AuthSettings {
    /// The window failed logins are counted in (`auth.login_window_secs`).
    pub fn login_window(&self) -> Duration {
        Duration::from_secs(self.login_window_secs)
    }
}

impl RoutingSettings {
    /// `routing.authorization_timeout_ms`.
    pub fn authorization_timeout(&self) -> Duration {
        Duration::from_millis(self.authorization_timeout_ms)
    }

    /// `routing.produce_timeout_ms`.
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
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

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.database.validate()?;
        self.kafka.validate()?;
        self.tls.validate()?;
        self.telemetry.validate()?;
        require_secret("auth.signing_key", &self.auth.signing_key)?;
        if TokenSigner::from_seed_b64(self.auth.signing_key.expose()).is_err() {
            return Err(ConfigError::invalid(
                "auth.signing_key",
                "must be 32 bytes of url-safe base64 (an Ed25519 seed)",
            ));
        }
        require_secret("auth.pan_hmac_key", &self.auth.pan_hmac_key)?;
        if self.auth.pan_hmac_key.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "auth.pan_hmac_key",
                "must be at least 16 characters",
            ));
        }
        require_secret("auth.admin_token", &self.auth.admin_token)?;
        require_secret("auth.internal_token", &self.auth.internal_token)?;
        require_positive("auth.token_ttl_secs", self.auth.token_ttl_secs)?;
        if self.auth.login_max_failures == 0 || self.auth.login_window_secs == 0 {
            return Err(ConfigError::invalid(
                "auth.login_max_failures",
                "login_max_failures and login_window_secs must be positive",
            ));
        }
        require_positive(
            "routing.authorization_timeout_ms",
            self.routing.authorization_timeout_ms,
        )?;
        require_positive(
            "routing.produce_timeout_ms",
            self.routing.produce_timeout_ms,
        )?;
        require_positive(
            "routing.breaker.failure_threshold",
            u64::from(self.routing.breaker.failure_threshold),
        )?;
        require_positive("cache.max_entries", self.cache.max_entries)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        let mut s = Settings::default();
        s.database.url = Secret::new("postgres://u:p@127.0.0.1/db");
        s.kafka.bootstrap = "127.0.0.1:9092".into();
        s.auth.signing_key = Secret::new(TokenSigner::generate_seed_b64());
        s.auth.pan_hmac_key = Secret::new("0123456789abcdef");
        s.auth.admin_token = Secret::new("a");
        s.auth.internal_token = Secret::new("i");
        s
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::default();
        assert_eq!(s.server.port, 8080);
        assert_eq!(s.auth.token_ttl_secs, 900);
        assert_eq!(s.routing.authorization_timeout_ms, 1000);
        assert_eq!(s.routing.produce_timeout_ms, 5000);
        assert_eq!(s.cache.max_entries, 1_000_000);
        valid()
            .validate()
            .expect("a complete configuration is valid");
    }

    #[test]
    fn lists_every_contract_key() {
        let keys = cellbank_shared::config::env_keys::<Settings>();
        for k in [
            "CELLBANK__SERVER__PORT",
            "CELLBANK__DATABASE__URL",
            "CELLBANK__KAFKA__BOOTSTRAP",
            "CELLBANK__TELEMETRY__FORMAT",
            "CELLBANK__AUTH__SIGNING_KEY",
            "CELLBANK__AUTH__PAN_HMAC_KEY",
            "CELLBANK__AUTH__ADMIN_TOKEN",
            "CELLBANK__AUTH__INTERNAL_TOKEN",
            "CELLBANK__AUTH__TOKEN_TTL_SECS",
            "CELLBANK__ROUTING__AUTHORIZATION_TIMEOUT_MS",
            "CELLBANK__ROUTING__BREAKER__FAILURE_THRESHOLD",
            "CELLBANK__ROUTING__BREAKER__OPEN_MS",
            "CELLBANK__ROUTING__PRODUCE_TIMEOUT_MS",
            "CELLBANK__CACHE__MAX_ENTRIES",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing");
        }
    }

    #[test]
    fn refuses_missing_secrets_and_bad_keys_by_name() {
        for (key, edit) in [
            (
                "auth.signing_key",
                (|s: &mut Settings| s.auth.signing_key = Secret::new("")) as fn(&mut Settings),
            ),
            ("auth.signing_key", |s| {
                s.auth.signing_key = Secret::new("not-a-key")
            }),
            ("auth.pan_hmac_key", |s| {
                s.auth.pan_hmac_key = Secret::new("  ")
            }),
            ("auth.pan_hmac_key", |s| {
                s.auth.pan_hmac_key = Secret::new("short")
            }),
            ("auth.admin_token", |s| s.auth.admin_token = Secret::new("")),
            ("auth.internal_token", |s| {
                s.auth.internal_token = Secret::new("")
            }),
            ("routing.authorization_timeout_ms", |s| {
                s.routing.authorization_timeout_ms = 0
            }),
            ("cache.max_entries", |s| s.cache.max_entries = 0),
        ] {
            let mut s = valid();
            edit(&mut s);
            let err = s.validate().expect_err(key).to_string();
            assert!(err.contains(key), "{err}");
        }
    }

    #[test]
    fn loads_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("CELLBANK__DATABASE__URL", "postgres://u@h/d");
            jail.set_env("CELLBANK__KAFKA__BOOTSTRAP", "127.0.0.1:9092");
            jail.set_env(
                "CELLBANK__AUTH__SIGNING_KEY",
                TokenSigner::generate_seed_b64(),
            );
            jail.set_env("CELLBANK__AUTH__PAN_HMAC_KEY", "0123456789abcdef");
            jail.set_env("CELLBANK__AUTH__ADMIN_TOKEN", "a");
            jail.set_env("CELLBANK__AUTH__INTERNAL_TOKEN", "i");
            jail.set_env("CELLBANK__ROUTING__AUTHORIZATION_TIMEOUT_MS", "250");
            let s: Settings = cellbank_shared::config::load(None).expect("loads");
            assert_eq!(s.routing.authorization_timeout_ms, 250);
            let err = {
                jail.set_env("CELLBANK__AUTH__ADMIN_TOKEN", "");
                cellbank_shared::config::load::<Settings>(None)
                    .unwrap_err()
                    .to_string()
            };
            assert!(err.contains("auth.admin_token"), "{err}");
            Ok(())
        });
    }
}
