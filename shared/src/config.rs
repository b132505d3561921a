//! Typed settings loaded in layers: defaults, then an optional TOML file, then
//! `CELLBANK__SECTION__KEY` environment variables; validated once at start.

use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::kafka::security::{KafkaSecurity, SecurityProtocol, SASL_MECHANISMS};
use crate::secret::Secret;

/// Prefix of every environment variable the binaries read.
pub const ENV_PREFIX: &str = "CELLBANK__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("configuration is invalid: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// Settings types validate themselves once, after loading.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from its defaults, `file` (if given, it must exist), and the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Serialize + Default + Validate,
{
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::Load(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        fig = fig.merge(Toml::file(path));
    }
    fig = fig.merge(Env::prefixed(ENV_PREFIX).split("__"));
    let settings: T = fig.extract().map_err(|e| {
        let key = e.path.join(".");
        let env = if key.is_empty() {
            String::new()
        } else {
            format!(" (env {})", env_name(&key))
        };
        ConfigError::Load(format!("{key}{env}: {}", e.kind))
    })?;
    settings.validate()?;
    Ok(settings)
}

/// The environment variable that sets a dotted key, e.g. `server.port` → `CELLBANK__SERVER__PORT`.
pub fn env_name(dotted: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        dotted.replace('.', "__").to_ascii_uppercase()
    )
}

/// Every environment variable `T` understands, from its defaults' shape.
pub fn env_keys<T: Serialize + Default>() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            // An empty map (e.g. one token per shard) is one key, set whole.
            serde_json::Value::Object(m) if m.is_empty() && !prefix.is_empty() => {
                out.push(env_name(prefix))
            }
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            _ => out.push(env_name(prefix)),
        }
    }
    let v = serde_json::to_value(T::default()).unwrap_or_default();
    let mut out = Vec::new();
    walk("", &v, &mut out);
    out.sort();
    out
}

/// A secret that must be set: refused when empty, naming its env variable.
pub fn require_secret(key: &str, secret: &Secret) -> Result<(), ConfigError> {
    if secret.expose().trim().is_empty() {
        return Err(ConfigError::invalid(
            key,
            format!("is required ({})", env_name(key)),
        ));
    }
    Ok(())
}

/// A count or duration that must be above zero.
pub fn require_positive(key: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(key, "must be positive"));
    }
    Ok(())
}

/// HTTP listener and request limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    /// 0 picks a free port (tests).
    pub port: u16,
    pub request_timeout_ms: u64,
    pub body_limit_bytes: usize,
    /// Requests served at once across every route, at most; past the
    /// admission limit a request is answered 503 with `Retry-After` at once
    /// instead of queueing (its memory and its wait stay bounded).
    pub max_in_flight: usize,
    /// An answer slower than this is taken for queueing: the admission
    /// limit shrinks (by a tenth, at most every 100 ms) and grows back with
    /// fast answers.
    pub shed_when_slower_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            request_timeout_ms: 10_000,
            body_limit_bytes: 1024 * 1024,
            max_in_flight: 1024,
            shed_when_slower_ms: 1000,
        }
    }
}

impl ServerSettings {
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    pub fn shed_when_slower(&self) -> Duration {
        Duration::from_millis(self.shed_when_slower_ms)
    }
}

impl Validate for ServerSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.host.parse::<std::net::IpAddr>().is_err() {
            return Err(ConfigError::invalid("server.host", "must be an ip address"));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.request_timeout_ms",
                "must be positive",
            ));
        }
        if self.body_limit_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.body_limit_bytes",
                "must be at least 1024",
            ));
        }
        if self.shed_when_slower_ms == 0 {
            return Err(ConfigError::invalid(
                "server.shed_when_slower_ms",
                "must be positive",
            ));
        }
        if self.max_in_flight == 0 {
            return Err(ConfigError::invalid(
                "server.max_in_flight",
                "must be positive",
            ));
        }
        Ok(())
    }
}

/// The cell's (or the directory's) Postgres. TLS comes from the url, as with
/// libpq: `?sslmode=verify-full&sslrootcert=/path/ca.pem` (sqlx with rustls);
/// without `sslmode`, `prefer` (TLS when the server offers it, unverified).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: Secret,
    /// When set, the password to connect with, in place of the url's: the
    /// platform hands the database's managed password over as a secret of its
    /// own (RDS keeps it in Secrets Manager), verbatim, with no url-encoding.
    pub password: Secret,
    pub max_connections: u32,
    pub connect_timeout_ms: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::new(""),
            password: Secret::new(""),
            max_connections: 16,
            connect_timeout_ms: 3_000,
        }
    }
}

impl Validate for DatabaseSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose();
        if url.is_empty() {
            return Err(ConfigError::invalid(
                "database.url",
                "is required (CELLBANK__DATABASE__URL)",
            ));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid(
                "database.url",
                "must be a postgres:// url",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid(
                "database.max_connections",
                "must be positive",
            ));
        }
        self.options().map(|_| ())
    }
}

impl DatabaseSettings {
    /// The connect options the url says, TLS parameters included. Errors name
    /// the key and the parameter, never the url (it may carry a password).
    pub fn options(&self) -> Result<sqlx::postgres::PgConnectOptions, ConfigError> {
        use std::str::FromStr as _;
        let url = self.url.expose();
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ConfigError::invalid("database.url", format!("is not a url: {e}")))?;
        for (k, v) in parsed.query_pairs() {
            let file_param = matches!(&*k, "sslrootcert" | "sslcert" | "sslkey");
            if file_param && !Path::new(&*v).is_file() {
                return Err(ConfigError::invalid(
                    "database.url",
                    format!("{k} names {v}, which is not a readable file"),
                ));
            }
        }
        let options = sqlx::postgres::PgConnectOptions::from_str(url).map_err(|e| {
            ConfigError::invalid("database.url", format!("is not a valid postgres url: {e}"))
        })?;
        let password = self.password.expose();
        Ok(if password.is_empty() {
            options
        } else {
            options.password(password)
        })
    }

    /// A pool that connects lazily-checked at start, over TLS when the url's
    /// `sslmode` asks for it.
    pub async fn connect(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        let options = self
            .options()
            .map_err(|e| sqlx::Error::Configuration(e.to_string().into()))?;
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(self.max_connections)
            .acquire_timeout(Duration::from_millis(self.connect_timeout_ms))
            .connect_with(options)
            .await
    }
}

/// The cell's Kafka-protocol broker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    pub bootstrap: String,
    /// Partitions for topics this service creates at start.
    pub partitions: i32,
    /// How long a produce may wait for the broker's acknowledgement.
    pub produce_timeout_ms: u64,
    /// Consumer group id prefix; each consumer appends its own name.
    pub group_prefix: String,
    /// `plaintext` (default), `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub security_protocol: SecurityProtocol,
    /// PEM file of the CA(s) that signed the brokers' certificates (`ssl`,
    /// `sasl_ssl`); empty: OpenSSL's default trust store.
    pub ssl_ca_location: String,
    /// `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (`sasl_*` only).
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
    /// Longest a consumer's fetch waits for new records (librdkafka
    /// `fetch.wait.max.ms`, 500 as librdkafka's default). A broker that does
    /// not answer a waiting fetch when records arrive (tansu) makes this the
    /// delay of a record on an idle partition: the local cells lower it (a
    /// move's cutover waits for its fence marker), at the cost of more fetch
    /// requests. A Kafka broker answers at once: leave it there.
    pub fetch_wait_ms: u32,
    /// Idempotent producers (`enable.idempotence`, true). Off, a producer
    /// keeps one request in flight per broker (so a retry cannot reorder a
    /// partition) and a retry may write a record twice, which every consumer
    /// of the platform already tolerates (Kafka is at-least-once to them).
    /// The local cells turn it off: tansu 0.6's sqlite engine panics in its
    /// idempotent-producer check after a producer or the broker restarts
    /// (lite.rs:503, see RELIABILITY.md). Leave it on against Kafka.
    pub idempotence: bool,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            bootstrap: String::new(),
            partitions: 4,
            produce_timeout_ms: 5_000,
            group_prefix: "cellbank".into(),
            security_protocol: SecurityProtocol::Plaintext,
            ssl_ca_location: String::new(),
            sasl_mechanism: String::new(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            fetch_wait_ms: 500,
            idempotence: true,
        }
    }
}

impl KafkaSettings {
    pub fn produce_timeout(&self) -> Duration {
        Duration::from_millis(self.produce_timeout_ms)
    }

    /// The broker security these settings ask for; the binaries install it
    /// with [`crate::kafka::security::install`].
    pub fn security(&self) -> KafkaSecurity {
        KafkaSecurity {
            protocol: self.security_protocol,
            ssl_ca_location: self.ssl_ca_location.clone(),
            sasl_mechanism: self.sasl_mechanism.clone(),
            sasl_username: self.sasl_username.clone(),
            sasl_password: self.sasl_password.clone(),
        }
    }

    /// Refuses combinations librdkafka would reject, or accept and then fail
    /// on at the first connection, naming the key.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let protocol = self.security_protocol;
        if !self.ssl_ca_location.is_empty() {
            if !protocol.uses_tls() {
                return Err(ConfigError::invalid(
                    "kafka.ssl_ca_location",
                    "is only used with kafka.security_protocol ssl or sasl_ssl",
                ));
            }
            if !Path::new(&self.ssl_ca_location).is_file() {
                return Err(ConfigError::invalid(
                    "kafka.ssl_ca_location",
                    format!("{} is not a readable file", self.ssl_ca_location),
                ));
            }
        }
        let sasl_set = !(self.sasl_mechanism.is_empty()
            && self.sasl_username.is_empty()
            && self.sasl_password.is_empty());
        if !protocol.uses_sasl() {
            if sasl_set {
                return Err(ConfigError::invalid(
                    "kafka.sasl_mechanism",
                    "sasl settings need kafka.security_protocol sasl_plaintext or sasl_ssl",
                ));
            }
            return Ok(());
        }
        if !SASL_MECHANISMS.contains(&self.sasl_mechanism.as_str()) {
            return Err(ConfigError::invalid(
                "kafka.sasl_mechanism",
                format!("must be one of {}", SASL_MECHANISMS.join(", ")),
            ));
        }
        if self.sasl_username.is_empty() {
            return Err(ConfigError::invalid(
                "kafka.sasl_username",
                format!("is required with {}", protocol.as_str()),
            ));
        }
        require_secret("kafka.sasl_password", &self.sasl_password)
    }
}

impl Validate for KafkaSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap.is_empty() {
            return Err(ConfigError::invalid(
                "kafka.bootstrap",
                "is required (CELLBANK__KAFKA__BOOTSTRAP), e.g. 127.0.0.1:9092",
            ));
        }
        if !(1..=256).contains(&self.partitions) {
            return Err(ConfigError::invalid(
                "kafka.partitions",
                "must be between 1 and 256",
            ));
        }
        if self.produce_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "kafka.produce_timeout_ms",
                "must be positive",
            ));
        }
        self.validate_security()
    }
}

/// TLS of the HTTP calls between tiers (global to its shards, a shard to
/// global's signing keys and to its replicas): `https://` urls are verified
/// against the public roots and, when set, the CA(s) in `ca_file`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsClientSettings {
    /// PEM file of extra CA certificates to trust (a private CA); empty: none.
    pub ca_file: String,
}

impl TlsClientSettings {
    /// The extra CA certificates to trust; none when `ca_file` is empty.
    pub fn extra_roots(&self) -> Result<Vec<reqwest::Certificate>, ConfigError> {
        if self.ca_file.is_empty() {
            return Ok(Vec::new());
        }
        let bad = |reason: String| ConfigError::invalid("tls.ca_file", reason);
        let pem = std::fs::read(&self.ca_file)
            .map_err(|e| bad(format!("{} could not be read: {e}", self.ca_file)))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("{} is not PEM certificates: {e}", self.ca_file)))?;
        if certs.is_empty() {
            return Err(bad(format!("{} holds no certificate", self.ca_file)));
        }
        Ok(certs)
    }
}

impl TlsClientSettings {
    /// The extra CA(s) as DER, for clients built on rustls directly.
    pub fn extra_root_ders(
        &self,
    ) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, ConfigError> {
        use rustls_pki_types::pem::PemObject as _;
        if self.ca_file.is_empty() {
            return Ok(Vec::new());
        }
        let bad = |reason: String| ConfigError::invalid("tls.ca_file", reason);
        let pem = std::fs::read(&self.ca_file)
            .map_err(|e| bad(format!("{} could not be read: {e}", self.ca_file)))?;
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("{} is not PEM certificates: {e}", self.ca_file)))?;
        if certs.is_empty() {
            return Err(bad(format!("{} holds no certificate", self.ca_file)));
        }
        Ok(certs)
    }
}

impl Validate for TlsClientSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.extra_roots().map(|_| ())
    }
}

/// Log format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Logs and traces.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,cellbank_shard=debug`.
    pub filter: String,
    /// OTLP/HTTP traces endpoint, e.g. `http://127.0.0.1:4318/v1/traces`; empty = off.
    pub otlp_endpoint: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".into(),
            otlp_endpoint: String::new(),
        }
    }
}

impl Validate for TelemetrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if tracing_subscriber::EnvFilter::try_new(&self.filter).is_err() {
            return Err(ConfigError::invalid(
                "telemetry.filter",
                "is not a valid filter directive",
            ));
        }
        if !self.otlp_endpoint.is_empty() && !self.otlp_endpoint.starts_with("http") {
            return Err(ConfigError::invalid(
                "telemetry.otlp_endpoint",
                "must be an http(s) url or empty",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
// figment's Jail closures return figment::Error, which is large; fine in tests.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        server: ServerSettings,
        database: DatabaseSettings,
    }

    impl Validate for Demo {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate()?;
            self.database.validate()
        }
    }

    #[test]
    fn layers_defaults_file_env() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[server]\nport = 9000\nhost = \"0.0.0.0\"\n")?;
            jail.set_env("CELLBANK__SERVER__PORT", "9100");
            jail.set_env("CELLBANK__DATABASE__URL", "postgres://x@y/z");
            let d: Demo = load(Some(Path::new("c.toml"))).expect("loads");
            assert_eq!(d.server.port, 9100);
            assert_eq!(d.server.host, "0.0.0.0");
            assert_eq!(d.server.request_timeout_ms, 10_000);
            Ok(())
        });
    }

    #[test]
    fn missing_and_bad_values_are_named() {
        figment::Jail::expect_with(|_jail| {
            let err = load::<Demo>(None).unwrap_err().to_string();
            assert!(err.contains("database.url"), "{err}");
            Ok(())
        });
        figment::Jail::expect_with(|jail| {
            jail.set_env("CELLBANK__DATABASE__URL", "postgres://x@y/z");
            jail.set_env("CELLBANK__SERVER__PORT", "notaport");
            let err = load::<Demo>(None).unwrap_err().to_string();
            assert!(err.contains("server.port"), "{err}");
            assert!(err.contains("CELLBANK__SERVER__PORT"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn an_unset_secret_loads_empty_not_as_its_placeholder() {
        figment::Jail::expect_with(|_jail| {
            let err = load::<Demo>(None).unwrap_err().to_string();
            assert!(err.contains("is required"), "{err}");
            Ok(())
        });
    }

    fn kafka(protocol: &str, extra: &[(&str, &str)]) -> Result<KafkaSettings, String> {
        let mut out = Err(String::new());
        figment::Jail::expect_with(|jail| {
            jail.set_env("CELLBANK__KAFKA__BOOTSTRAP", "127.0.0.1:9092");
            jail.set_env("CELLBANK__KAFKA__SECURITY_PROTOCOL", protocol);
            for (k, v) in extra {
                jail.set_env(format!("CELLBANK__KAFKA__{k}"), v);
            }
            #[derive(Debug, Default, Serialize, Deserialize)]
            #[serde(default)]
            struct K {
                kafka: KafkaSettings,
            }
            impl Validate for K {
                fn validate(&self) -> Result<(), ConfigError> {
                    self.kafka.validate()
                }
            }
            out = load::<K>(None).map(|k| k.kafka).map_err(|e| e.to_string());
            Ok(())
        });
        out
    }

    #[test]
    fn kafka_security_loads_from_env_and_maps_to_librdkafka() {
        let k = kafka(
            "sasl_ssl",
            &[
                ("SASL_MECHANISM", "SCRAM-SHA-256"),
                ("SASL_USERNAME", "cell"),
                ("SASL_PASSWORD", "pw-123"),
            ],
        )
        .expect("loads");
        let mut c = rdkafka::ClientConfig::new();
        k.security().apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-256"));
        assert_eq!(c.get("sasl.username"), Some("cell"));
        assert_eq!(c.get("sasl.password"), Some("pw-123"));
        assert!(!format!("{k:?}").contains("pw-123"));
        let plain = kafka("plaintext", &[]).expect("loads");
        assert_eq!(plain.security(), KafkaSecurity::default());
    }

    #[test]
    fn kafka_security_combinations_are_refused_naming_the_key() {
        let err = |p, extra| kafka(p, extra).unwrap_err();
        let e = err("plaintext", &[("SASL_USERNAME", "u")]);
        assert!(e.contains("kafka.sasl_mechanism"), "{e}");
        let e = err("sasl_ssl", &[("SASL_MECHANISM", "GSSAPI")]);
        assert!(e.contains("kafka.sasl_mechanism"), "{e}");
        let e = err("sasl_plaintext", &[("SASL_MECHANISM", "PLAIN")]);
        assert!(e.contains("kafka.sasl_username"), "{e}");
        let e = err(
            "sasl_ssl",
            &[("SASL_MECHANISM", "PLAIN"), ("SASL_USERNAME", "u")],
        );
        assert!(e.contains("CELLBANK__KAFKA__SASL_PASSWORD"), "{e}");
        let e = err("ssl", &[("SSL_CA_LOCATION", "/nonexistent/ca.pem")]);
        assert!(e.contains("kafka.ssl_ca_location"), "{e}");
        let e = err("plaintext", &[("SSL_CA_LOCATION", "/etc/hostname")]);
        assert!(e.contains("kafka.ssl_ca_location"), "{e}");
        let e = err("tls", &[]);
        assert!(e.contains("CELLBANK__KAFKA__SECURITY_PROTOCOL"), "{e}");
    }

    #[test]
    fn database_tls_parameters_are_checked_without_printing_the_url() {
        let db = |url: &str| DatabaseSettings {
            url: Secret::new(url),
            ..DatabaseSettings::default()
        };
        let ok = db("postgres://u:pw-secret@127.0.0.1/db?sslmode=verify-full");
        let options = ok.options().expect("parses");
        assert!(matches!(
            options.get_ssl_mode(),
            sqlx::postgres::PgSslMode::VerifyFull
        ));
        let e = db("postgres://u:pw-secret@127.0.0.1/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("database.url") && e.contains("sslrootcert"),
            "{e}"
        );
        assert!(!e.contains("pw-secret"), "{e}");
        let e = db("postgres://u:pw-secret@127.0.0.1/db?sslmode=sometimes")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("database.url") && !e.contains("pw-secret"),
            "{e}"
        );
    }

    #[test]
    fn a_separate_password_replaces_the_urls_verbatim() {
        // RDS-generated passwords may hold characters a url must escape.
        let db = DatabaseSettings {
            url: Secret::new("postgres://cellbank@127.0.0.1:5432/cellbank"),
            password: Secret::new("p@ss:w/rd%#?"),
            ..DatabaseSettings::default()
        };
        db.validate().expect("valid without a password in the url");
        let options = db.options().expect("parses");
        assert_eq!(options.get_username(), "cellbank");
        // sqlx exposes no getter for it; its Debug shows what it would send.
        assert!(
            format!("{options:?}").contains("p@ss:w/rd%#?"),
            "the password is used"
        );
        assert!(
            !format!("{db:?}").contains("p@ss"),
            "the password is redacted"
        );
        let without = DatabaseSettings {
            password: Secret::new(""),
            ..db
        };
        let options = without.options().expect("parses");
        assert!(
            !format!("{options:?}").contains("p@ss"),
            "no password without one"
        );
    }

    #[test]
    fn lists_env_keys() {
        let keys = env_keys::<Demo>();
        assert!(keys.contains(&"CELLBANK__SERVER__PORT".to_owned()));
        assert!(keys.contains(&"CELLBANK__DATABASE__URL".to_owned()));
    }
}
