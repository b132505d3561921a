//! The shard's typed settings (see contract.md): loaded once at start, validated with clear messages.

use cellbank_shared::config::{
    require_positive, require_secret, ConfigError, DatabaseSettings, KafkaSettings, ServerSettings,
    TelemetrySettings, TlsClientSettings, Validate,
};
use cellbank_shared::ids::ShardId;
use cellbank_shared::secret::Secret;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Everything `cellbank-shard` reads from its config file and `CELLBANK__*` env.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub shard: ShardSettings,
    pub global: GlobalSettings,
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub kafka: KafkaSettings,
    pub telemetry: TelemetrySettings,
    pub auth: AuthSettings,
    pub authorizer: AuthorizerSettings,
    pub ledger: LedgerSettings,
    /// TLS of the shard's calls to global (its keys) and to its replicas.
    pub tls: TlsClientSettings,
    pub cors: CorsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            shard: ShardSettings::default(),
            global: GlobalSettings::default(),
            server: ServerSettings {
                port: 8081,
                ..ServerSettings::default()
            },
            database: DatabaseSettings::default(),
            kafka: KafkaSettings::default(),
            telemetry: TelemetrySettings::default(),
            auth: AuthSettings::default(),
            authorizer: AuthorizerSettings::default(),
            ledger: LedgerSettings::default(),
            tls: TlsClientSettings::default(),
            cors: CorsSettings::default(),
        }
    }
}

/// Which cell this is and where apps reach it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardSettings {
    /// `shard-<n>`.
    pub id: Option<ShardId>,
    /// Absolute base URL apps use for this shard's public API.
    pub public_url: String,
}

/// Where the global tier is (its JWKS and its login).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GlobalSettings {
    pub url: String,
    /// A token signed with a key not seen yet reloads global's keys, at most
    /// once per this many milliseconds.
    pub jwks_min_refresh_ms: u64,
}

impl Default for GlobalSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            jwks_min_refresh_ms: 10_000,
        }
    }
}

/// Browser origins of the app allowed to call this shard's API (CORS).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// `https://host[:port]` each; a list, or one comma-separated string in
    /// the environment. Empty: no CORS headers at all.
    #[serde(deserialize_with = "list_or_commas")]
    pub allowed_origins: Vec<String>,
}

/// A list of strings, or one string of comma-separated items.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Commas(String),
    }
    let items = match Either::deserialize(d)? {
        Either::List(items) => items,
        Either::Commas(s) => s.split(',').map(str::to_owned).collect(),
    };
    Ok(items
        .into_iter()
        .map(|i| i.trim().to_owned())
        .filter(|i| !i.is_empty())
        .collect())
}

/// Bearer tokens for the admin and internal APIs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub admin_token: Secret,
    pub internal_token: Secret,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizerSettings {
    pub snapshot_interval_secs: u64,
    /// How long a network reference is remembered after the newest decision
    /// (a repeat within it gets the first answer again); bounds memory.
    pub dedupe_window_secs: u64,
    /// How long the decision-maker's lease lasts without renewal: a dead
    /// leader is replaced after at most this long.
    pub lease_ttl_ms: u64,
    /// How often the lease is renewed (or, by a standby, tried); at most a
    /// quarter of `lease_ttl_ms`.
    pub lease_renew_ms: u64,
    /// Where the other replicas reach this one's internal API to forward
    /// authorizations to it (in Kubernetes, the pod's address); empty means
    /// `http://<server.host>:<bound port>`.
    pub advertise_url: String,
    /// Business time after which an authorization the network neither settled
    /// nor reversed stops holding the limit, in the authorizer and the ledger
    /// (card networks use days).
    pub hold_expiry_secs: u64,
    /// How long a decision may wait for others to share its produce
    /// request (librdkafka's `linger.ms` on the decision producer): group
    /// commit. No answer leaves before its decision is acknowledged; this
    /// bounds what the sharing adds to each answer (0 to 5 ms).
    pub decision_linger_ms: u32,
}

impl Default for AuthorizerSettings {
    fn default() -> Self {
        Self {
            snapshot_interval_secs: 30,
            dedupe_window_secs: 300,
            lease_ttl_ms: 5_000,
            lease_renew_ms: 1_000,
            advertise_url: String::new(),
            hold_expiry_secs: 7 * 24 * 3600,
            decision_linger_ms: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// Consecutive events of one partition applied in one transaction.
    pub max_batch: usize,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self { max_batch: 256 }
    }
}

/// A secret left at its default (empty) or blank.
fn absolute_url(key: &str, url: &str) -> Result<(), ConfigError> {
    if url.is_empty() {
        return Err(ConfigError::invalid(key, "is required"));
    }
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(ConfigError::invalid(key, "must be an absolute http(s) url"));
    }
    Ok(())
}

impl Settings {
    /// The cell's id; `validate` refuses settings without one.
    pub fn shard_id(&self) -> Result<ShardId, ConfigError> {
        self.shard
            .id
            .clone()
            .ok_or_else(|| ConfigError::invalid("shard.id", "is required (CELLBANK__SHARD__ID)"))
    }

    /// The decision-maker's lease timing.
    pub fn lease(&self) -> crate::authorizer::lease::LeaseTiming {
        crate::authorizer::lease::LeaseTiming::new(
            Duration::from_millis(self.authorizer.lease_ttl_ms),
            Duration::from_millis(self.authorizer.lease_renew_ms),
        )
    }

    /// How long an unsettled authorization holds the limit.
    pub fn hold_expiry(&self) -> Result<chrono::TimeDelta, ConfigError> {
        i64::try_from(self.authorizer.hold_expiry_secs)
            .ok()
            .filter(|s| *s > 0)
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| {
                ConfigError::invalid(
                    "authorizer.hold_expiry_secs",
                    "must be a positive number of seconds",
                )
            })
    }

    /// The least time between two reloads of global's keys for unknown ones.
    pub fn jwks_min_refresh(&self) -> Duration {
        Duration::from_millis(self.global.jwks_min_refresh_ms)
    }

    /// How often the authorizer snapshots its state.
    pub fn snapshot_interval(&self) -> Duration {
        Duration::from_secs(self.authorizer.snapshot_interval_secs)
    }

    /// How long the authorizer remembers decisions and booked ids.
    pub fn dedupe_window(&self) -> Result<chrono::TimeDelta, ConfigError> {
        i64::try_from(self.authorizer.dedupe_window_secs)
            .ok()
            .and_then(chrono::TimeDelta::try_seconds)
            .ok_or_else(|| ConfigError::invalid("authorizer.dedupe_window_secs", "is out of range"))
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.shard_id()?;
        self.dedupe_window()?;
        self.hold_expiry()?;
        require_positive("authorizer.lease_renew_ms", self.authorizer.lease_renew_ms)?;
        if self.authorizer.lease_renew_ms.saturating_mul(4) > self.authorizer.lease_ttl_ms {
            return Err(ConfigError::invalid(
                "authorizer.lease_ttl_ms",
                "must be at least four times authorizer.lease_renew_ms",
            ));
        }
        if !self.authorizer.advertise_url.is_empty() {
            absolute_url("authorizer.advertise_url", &self.authorizer.advertise_url)?;
        }
        absolute_url("shard.public_url", &self.shard.public_url)?;
        absolute_url("global.url", &self.global.url)?;
        require_positive(
            "global.jwks_min_refresh_ms",
            self.global.jwks_min_refresh_ms,
        )?;
        for origin in &self.cors.allowed_origins {
            cellbank_shared::http::parse_origin(origin)
                .map_err(|e| ConfigError::invalid("cors.allowed_origins", e.to_string()))?;
        }
        self.server.validate()?;
        require_secret("database.url", &self.database.url)?;
        self.database.validate()?;
        self.kafka.validate()?;
        self.tls.validate()?;
        self.telemetry.validate()?;
        require_secret("auth.admin_token", &self.auth.admin_token)?;
        require_secret("auth.internal_token", &self.auth.internal_token)?;
        require_positive(
            "authorizer.snapshot_interval_secs",
            self.authorizer.snapshot_interval_secs,
        )?;
        if self.authorizer.decision_linger_ms > 5 {
            return Err(ConfigError::invalid(
                "authorizer.decision_linger_ms",
                "must be between 0 and 5",
            ));
        }
        if !(1..=10_000).contains(&self.ledger.max_batch) {
            return Err(ConfigError::invalid(
                "ledger.max_batch",
                "must be between 1 and 10000",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        let mut s = Settings::default();
        s.shard.id = Some("shard-1".parse().unwrap());
        s.shard.public_url = "https://shard-1.example".into();
        s.global.url = "https://global.example".into();
        s.database.url = Secret::new("postgres://u:p@127.0.0.1/db");
        s.kafka.bootstrap = "127.0.0.1:9092".into();
        s.auth.admin_token = Secret::new("a");
        s.auth.internal_token = Secret::new("i");
        s
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::default();
        assert_eq!(s.server.port, 8081);
        assert_eq!(s.global.jwks_min_refresh_ms, 10_000);
        assert!(
            s.cors.allowed_origins.is_empty(),
            "no CORS unless configured"
        );
        valid()
            .validate()
            .expect("a complete configuration is valid");
    }

    #[test]
    fn lists_every_contract_key() {
        let keys = cellbank_shared::config::env_keys::<Settings>();
        for k in [
            "CELLBANK__SHARD__ID",
            "CELLBANK__SHARD__PUBLIC_URL",
            "CELLBANK__GLOBAL__URL",
            "CELLBANK__GLOBAL__JWKS_MIN_REFRESH_MS",
            "CELLBANK__CORS__ALLOWED_ORIGINS",
            "CELLBANK__SERVER__PORT",
            "CELLBANK__DATABASE__URL",
            "CELLBANK__KAFKA__BOOTSTRAP",
            "CELLBANK__AUTH__ADMIN_TOKEN",
            "CELLBANK__AUTH__INTERNAL_TOKEN",
        ] {
            assert!(keys.iter().any(|x| x == k), "{k} missing");
        }
    }

    #[test]
    fn allowed_origins_are_a_list_or_commas_and_checked() {
        let list: CorsSettings =
            serde_json::from_str(r#"{"allowed_origins": ["https://app.example"]}"#).unwrap();
        assert_eq!(list.allowed_origins, vec!["https://app.example"]);
        let commas: CorsSettings = serde_json::from_str(
            r#"{"allowed_origins": "https://app.example, http://localhost:5173,"}"#,
        )
        .unwrap();
        assert_eq!(
            commas.allowed_origins,
            vec!["https://app.example", "http://localhost:5173"]
        );
        for bad in ["app.example", "https://app.example/path", "*"] {
            let mut s = valid();
            s.cors.allowed_origins = vec![bad.into()];
            let err = s.validate().expect_err(bad).to_string();
            assert!(err.contains("cors.allowed_origins"), "{err}");
        }
    }

    #[test]
    fn bounds_what_group_commit_adds_to_an_answer() {
        let mut s = valid();
        s.authorizer.decision_linger_ms = 5;
        s.validate().unwrap();
        s.authorizer.decision_linger_ms = 6;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("authorizer.decision_linger_ms"), "{err}");
    }

    #[test]
    fn refuses_a_zero_key_reload_interval() {
        let mut s = valid();
        s.global.jwks_min_refresh_ms = 0;
        let err = s.validate().unwrap_err().to_string();
        assert!(err.contains("global.jwks_min_refresh_ms"), "{err}");
    }
}
