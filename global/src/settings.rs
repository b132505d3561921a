//! The global tier's typed settings (see notes/contract.md), loaded in layers
//! and validated once at start.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

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
    pub ops: OpsSettings,
    pub partners: PartnerSettings,
    pub credit: CreditSettings,
    /// TLS of global's calls to the shards (`https://` internal urls).
    pub tls: TlsClientSettings,
    pub moves: MoveSettings,
    pub transfers: TransferSettings,
}

/// Global's transfer service (see `transfers`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferSettings {
    /// The bound on crediting the recipient: past it, global voids the
    /// credit wherever it may have been made and, unless it was, returns the
    /// money to the sender.
    pub credit_timeout_ms: u64,
    /// A driver renews its lease on a transfer at every step; another
    /// replica resumes the transfer once the lease has run out.
    pub lease_ttl_ms: u64,
    /// Transfers one global replica drives at once.
    pub max_parallel: usize,
    /// Deadline of each call to a cell.
    pub call_timeout_ms: u64,
}

impl Default for TransferSettings {
    fn default() -> Self {
        Self {
            credit_timeout_ms: 30_000,
            lease_ttl_ms: 10_000,
            max_parallel: 64,
            call_timeout_ms: 2_000,
        }
    }
}

impl TransferSettings {
    pub fn credit_timeout(&self) -> Duration {
        Duration::from_millis(self.credit_timeout_ms)
    }
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// Customer moves between shards (see `moves`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MoveSettings {
    /// A mover renews its lease on a move at every step; another replica
    /// takes the move over once the lease has run out.
    pub lease_ttl_ms: u64,
    /// Catch-up rounds before the cutover whatever the delta (a copy that
    /// never converges still ends: the cutover copies the rest).
    pub max_rounds: u32,
    /// A catch-up round that copied at most this many events ends the copy.
    pub small_delta: u64,
    /// Events per history page read from the source.
    pub page_events: u32,
    /// How long the cutover waits for the source to drain the customer's
    /// fenced tail before the move rolls back.
    pub drain_timeout_ms: u64,
    /// How long a held event waits for a cutover before it is answered 503
    /// (authorizations wait within their own deadline).
    pub hold_ms: u64,
    /// Moves one global replica drives at once.
    pub max_parallel: usize,
    /// Deadline of each call to a shard during a move.
    pub call_timeout_ms: u64,
    /// The preflight refuses to start a move while the source's consumers
    /// are further behind than this (records): a lagging source makes a
    /// long freeze.
    pub max_source_lag: u64,
    /// The source keeps a moved customer's copy this long after the move
    /// completed (an operator may purge it sooner), then purges it.
    pub source_retention_secs: u64,
    /// A pause before every step of a move, 0 in production: tests use it
    /// to stop a mover in a chosen phase (and within the cutover's steps).
    pub step_delay_ms: u64,
}

impl Default for MoveSettings {
    fn default() -> Self {
        Self {
            lease_ttl_ms: 10_000,
            max_rounds: 8,
            small_delta: 20,
            page_events: 2_000,
            drain_timeout_ms: 5_000,
            hold_ms: 3_000,
            max_parallel: 8,
            call_timeout_ms: 10_000,
            step_delay_ms: 0,
            max_source_lag: 10_000,
            source_retention_secs: 7 * 24 * 3600,
        }
    }
}

impl MoveSettings {
    pub fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.lease_ttl_ms)
    }
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
    pub fn hold(&self) -> Duration {
        Duration::from_millis(self.hold_ms)
    }
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms)
    }
}

/// The ops API's own listener, which neither the ingress nor the shards reach.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpsSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
}

impl Default for OpsSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8090,
        }
    }
}

/// Defaults for partners registered without their own values.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerSettings {
    /// Requests (events) per second a partner may send, with a burst of as many.
    pub default_rate_per_sec: u32,
}

impl Default for PartnerSettings {
    fn default() -> Self {
        Self {
            default_rate_per_sec: 1000,
        }
    }
}

/// The credit policy's configured defaults: the limit, in minor units, a new
/// card gets per currency (operators override them through the ops API).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CreditSettings {
    pub default_limits: BTreeMap<String, i64>,
}

impl Default for CreditSettings {
    fn default() -> Self {
        Self {
            default_limits: BTreeMap::from([
                ("BRL".to_owned(), 500_000),
                ("USD".to_owned(), 100_000),
                ("EUR".to_owned(), 100_000),
            ]),
        }
    }
}

/// Keys and tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Url-safe base64 32-byte Ed25519 seed.
    pub signing_key: Secret,
    /// The key that will sign next (same form), published beside the current
    /// one so the shards know it before the switch; empty when none.
    pub next_signing_key: Secret,
    /// Key of the HMAC that turns a PAN into its identifier.
    pub pan_hmac_key: Secret,
    /// Bearer token of the ops API.
    pub admin_token: Secret,
    /// The token global presents to each shard's internal API, by shard id
    /// (each cell has its own; a figment dict in the environment:
    /// `{shard-1="...",shard-2="..."}`).
    pub shard_tokens: BTreeMap<String, Secret>,
    pub token_ttl_secs: u64,
    /// Failed logins (per login, and ten times as many per client address)
    /// tolerated within the window before answering 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// Password hashes computed at once (argon2 takes ~19 MiB and a core for
    /// tens of ms each); more logins wait briefly, then get 503.
    pub password_hash_concurrency: u32,
    /// Peers whose `X-Forwarded-For` is believed (addresses or CIDR blocks):
    /// the ingress. From anyone else the peer address counts.
    pub trusted_proxies: Vec<String>,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            signing_key: Secret::new(""),
            pan_hmac_key: Secret::new(""),
            next_signing_key: Secret::new(""),
            admin_token: Secret::new(""),
            shard_tokens: BTreeMap::new(),
            token_ttl_secs: 900,
            login_max_failures: 5,
            login_window_secs: 300,
            password_hash_concurrency: 4,
            trusted_proxies: Vec::new(),
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
    /// Directory lookups one batch runs at once.
    pub batch_lookup_concurrency: usize,
    /// A sign-up still pending after this long was interrupted (a shard
    /// timeout, a stopped replica): the platform completes or undoes it.
    /// Longer than any sign-up's own shard deadline (5 s).
    pub sign_up_stalled_after_secs: u64,
}

impl Default for RoutingSettings {
    fn default() -> Self {
        Self {
            authorization_timeout_ms: 1000,
            breaker: BreakerConfig::default(),
            produce_timeout_ms: 5000,
            produce_linger_ms: 1,
            batch_lookup_concurrency: 32,
            sign_up_stalled_after_secs: 30,
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

    /// `auth.trusted_proxies`, parsed (validated at start).
    pub fn trusted_proxies(&self) -> Vec<IpNet> {
        self.trusted_proxies
            .iter()
            .filter_map(|p| parse_net(p))
            .collect()
    }
}

/// An address or a CIDR block.
fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl CacheSettings {
    /// `cache.ttl_secs`.
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.ttl_secs)
    }

    /// `cache.not_found_ttl_ms`.
    pub fn not_found_ttl(&self) -> Duration {
        Duration::from_millis(self.not_found_ttl_ms)
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
    /// Backstop for a lost invalidation: no entry outlives this.
    pub ttl_secs: u64,
    /// How long "no such card/account" is remembered.
    pub not_found_ttl_ms: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            max_entries: 1_000_000,
            ttl_secs: 600,
            not_found_ttl_ms: 2000,
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
        self.validate_tokens()?;
        require_positive("auth.token_ttl_secs", self.auth.token_ttl_secs)?;
        let m = &self.moves;
        for (key, v) in [
            ("moves.lease_ttl_ms", m.lease_ttl_ms),
            ("moves.max_rounds", u64::from(m.max_rounds)),
            ("moves.page_events", u64::from(m.page_events)),
            ("moves.drain_timeout_ms", m.drain_timeout_ms),
            ("moves.hold_ms", m.hold_ms),
            ("moves.max_parallel", m.max_parallel as u64),
            ("moves.call_timeout_ms", m.call_timeout_ms),
        ] {
            require_positive(key, v)?;
        }
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
        require_positive("cache.ttl_secs", self.cache.ttl_secs)?;
        self.validate_limits()
    }
}

impl Settings {
    /// The next signing key and the per-shard tokens.
    fn validate_tokens(&self) -> Result<(), ConfigError> {
        // Blank (whitespace) is none, as TokenSigner::from_seeds_b64 reads it:
        // the platform keeps the secret present and blank between rotations.
        let next = self.auth.next_signing_key.expose();
        if !next.trim().is_empty() && TokenSigner::from_seed_b64(next).is_err() {
            return Err(ConfigError::invalid(
                "auth.next_signing_key",
                "must be empty or 32 bytes of url-safe base64 (an Ed25519 seed)",
            ));
        }
        for (shard, token) in &self.auth.shard_tokens {
            require_secret(&format!("auth.shard_tokens.{shard}"), token)?;
            if token.matches(self.auth.admin_token.expose()) {
                return Err(ConfigError::invalid(
                    &format!("auth.shard_tokens.{shard}"),
                    "must differ from auth.admin_token (global's admin token never goes into a cell)",
                ));
            }
        }
        Ok(())
    }

    /// Concurrency bounds, proxies, partner rates and the credit policy.
    fn validate_limits(&self) -> Result<(), ConfigError> {
        let t = &self.transfers;
        for (key, v) in [
            ("transfers.credit_timeout_ms", t.credit_timeout_ms),
            ("transfers.lease_ttl_ms", t.lease_ttl_ms),
            ("transfers.max_parallel", t.max_parallel as u64),
            ("transfers.call_timeout_ms", t.call_timeout_ms),
        ] {
            require_positive(key, v)?;
        }
        require_positive(
            "auth.password_hash_concurrency",
            u64::from(self.auth.password_hash_concurrency),
        )?;
        if let Some(bad) = self
            .auth
            .trusted_proxies
            .iter()
            .find(|p| parse_net(p).is_none())
        {
            return Err(ConfigError::invalid(
                "auth.trusted_proxies",
                format!("`{bad}` is neither an address nor a CIDR block"),
            ));
        }
        require_positive(
            "routing.batch_lookup_concurrency",
            self.routing.batch_lookup_concurrency as u64,
        )?;
        require_positive(
            "routing.sign_up_stalled_after_secs",
            self.routing.sign_up_stalled_after_secs,
        )?;
        require_positive(
            "partners.default_rate_per_sec",
            u64::from(self.partners.default_rate_per_sec),
        )?;
        for (currency, limit) in &self.credit.default_limits {
            if currency
                .parse::<cellbank_shared::money::Currency>()
                .is_err()
                || *limit <= 0
            {
                return Err(ConfigError::invalid(
                    &format!("credit.default_limits.{currency}"),
                    "must be a known currency code with a positive limit in minor units",
                ));
            }
        }
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
        s.auth.shard_tokens = BTreeMap::from([("shard-1".to_owned(), Secret::new("i"))]);
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
    fn a_blank_next_signing_key_is_none() {
        let mut s = valid();
        s.auth.next_signing_key = Secret::new(" ");
        s.validate().expect("blank is no next key");
        s.auth.next_signing_key = Secret::new("not-a-seed");
        let e = s.validate().expect_err("a bad seed is refused").to_string();
        assert!(e.contains("auth.next_signing_key"), "{e}");
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
            "CELLBANK__AUTH__SHARD_TOKENS",
            "CELLBANK__AUTH__NEXT_SIGNING_KEY",
            "CELLBANK__AUTH__TRUSTED_PROXIES",
            "CELLBANK__AUTH__PASSWORD_HASH_CONCURRENCY",
            "CELLBANK__OPS__PORT",
            "CELLBANK__PARTNERS__DEFAULT_RATE_PER_SEC",
            "CELLBANK__CREDIT__DEFAULT_LIMITS__BRL",
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
            ("auth.shard_tokens.shard-1", |s| {
                s.auth
                    .shard_tokens
                    .insert("shard-1".into(), Secret::new(""));
            }),
            ("auth.shard_tokens.shard-1", |s| {
                s.auth
                    .shard_tokens
                    .insert("shard-1".into(), Secret::new("a"));
            }),
            ("auth.trusted_proxies", |s| {
                s.auth.trusted_proxies = vec!["10.0.0.0/33".into()]
            }),
            ("credit.default_limits.BRL", |s| {
                s.credit.default_limits.insert("BRL".into(), 0);
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
            jail.set_env(
                "CELLBANK__AUTH__SHARD_TOKENS",
                r#"{shard-1="t-1",shard-2="t-2"}"#,
            );
            jail.set_env("CELLBANK__AUTH__TRUSTED_PROXIES", "[10.0.0.0/8, 127.0.0.1]");
            jail.set_env("CELLBANK__ROUTING__AUTHORIZATION_TIMEOUT_MS", "250");
            let s: Settings = cellbank_shared::config::load(None).expect("loads");
            assert_eq!(s.routing.authorization_timeout_ms, 250);
            assert_eq!(s.auth.shard_tokens["shard-2"].expose(), "t-2");
            assert_eq!(s.auth.trusted_proxies().len(), 2);
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
