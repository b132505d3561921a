//! Broker security (TLS, SASL): one set per process, applied by
//! [`client_config`] to every librdkafka client the platform builds.
//!
//! The binaries [`install`] their `kafka` settings once at start; producers,
//! consumer runners, topic admin and the shard's own readers all start from
//! [`client_config`], so none of them can miss the settings. Nothing installed
//! means plaintext, as local cells and the tests run.

use std::sync::RwLock;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::secret::Secret;

/// librdkafka's `security.protocol`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    /// The value librdkafka takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether the connection is encrypted (TLS).
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the client authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// SASL mechanisms this build of librdkafka supports (GSSAPI would need Cyrus SASL).
pub const SASL_MECHANISMS: [&str; 3] = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

/// How this process encrypts and authenticates its broker connections
/// (validated by [`crate::config::KafkaSettings`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// PEM file of the CA(s) that signed the brokers' certificates; empty:
    /// OpenSSL's default trust store.
    pub ssl_ca_location: String,
    pub sasl_mechanism: String,
    pub sasl_username: String,
    pub sasl_password: Secret,
}

impl KafkaSecurity {
    /// Sets these settings' librdkafka keys on `c`: always `security.protocol`,
    /// the CA with TLS, the mechanism and credentials with SASL.
    pub fn apply(&self, c: &mut ClientConfig) {
        c.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_tls() && !self.ssl_ca_location.is_empty() {
            c.set("ssl.ca.location", &self.ssl_ca_location);
        }
        if self.protocol.uses_sasl() {
            c.set("sasl.mechanism", &self.sasl_mechanism)
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", self.sasl_password.expose());
        }
    }
}

static INSTALLED: RwLock<Option<KafkaSecurity>> = RwLock::new(None);

/// Makes `security` the one every later [`client_config`] of this process
/// carries (the binaries call it once at start, from their `kafka` settings).
pub fn install(security: KafkaSecurity) {
    *INSTALLED.write().unwrap_or_else(|e| e.into_inner()) = Some(security);
}

/// The installed settings; plaintext when none were installed.
pub fn installed() -> KafkaSecurity {
    INSTALLED
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .unwrap_or_default()
}

/// A librdkafka config for `bootstrap` carrying the installed security
/// settings: where every client of the platform starts.
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap);
    installed().apply(&mut c);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_ssl() -> KafkaSecurity {
        KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            ssl_ca_location: "/etc/cellbank/kafka-ca.pem".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: "cell-1".into(),
            sasl_password: Secret::new("s3cret"),
        }
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        let mut c = ClientConfig::new();
        KafkaSecurity::default().apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("ssl.ca.location"), None);
        assert_eq!(c.get("sasl.mechanism"), None);
        assert_eq!(c.get("sasl.password"), None);
    }

    #[test]
    fn sasl_ssl_lands_every_key() {
        let mut c = ClientConfig::new();
        sasl_ssl().apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/cellbank/kafka-ca.pem"));
        assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.username"), Some("cell-1"));
        assert_eq!(c.get("sasl.password"), Some("s3cret"));
        assert!(!format!("{:?}", sasl_ssl()).contains("s3cret"));
    }

    #[test]
    fn ssl_without_sasl_sets_no_credentials() {
        let mut c = ClientConfig::new();
        KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ..sasl_ssl()
        }
        .apply(&mut c);
        assert_eq!(c.get("security.protocol"), Some("ssl"));
        assert_eq!(c.get("ssl.ca.location"), Some("/etc/cellbank/kafka-ca.pem"));
        assert_eq!(c.get("sasl.username"), None);
    }

    #[test]
    fn this_librdkafka_has_tls_and_scram() {
        // librdkafka refuses ssl / SCRAM settings at create time when built
        // without OpenSSL: creating a client proves the `ssl` feature is in.
        use rdkafka::producer::BaseProducer;
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", "127.0.0.1:1");
        KafkaSecurity {
            ssl_ca_location: String::new(),
            ..sasl_ssl()
        }
        .apply(&mut c);
        let made: Result<BaseProducer, _> = c.create();
        assert!(made.is_ok(), "{:?}", made.err());
    }
}
