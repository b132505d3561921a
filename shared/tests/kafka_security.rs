//! The broker security a process installs reaches every librdkafka client it
//! builds (its own test binary: the installed settings are process-wide).
//! No broker: a live TLS/SASL broker is not part of the test kit.

use std::time::Duration;

use cellbank_shared::kafka::{self, security, KafkaSecurity, Producer, SecurityProtocol};
use cellbank_shared::secret::Secret;
use cellbank_shared::testkit::TestCa;

#[tokio::test]
async fn installed_security_lands_in_client_configs_and_producers_accept_it() {
    let plain = kafka::client_config("127.0.0.1:9");
    assert_eq!(plain.get("security.protocol"), Some("plaintext"));

    let ca = TestCa::new();
    let ca_path = ca.ca_path().display().to_string();
    security::install(KafkaSecurity {
        protocol: SecurityProtocol::SaslSsl,
        ssl_ca_location: ca_path.clone(),
        sasl_mechanism: "SCRAM-SHA-512".into(),
        sasl_username: "cell-1".into(),
        sasl_password: Secret::new("pw"),
    });
    let c = kafka::client_config("127.0.0.1:9");
    assert_eq!(c.get("bootstrap.servers"), Some("127.0.0.1:9"));
    assert_eq!(c.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(c.get("ssl.ca.location"), Some(ca_path.as_str()));
    assert_eq!(c.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(c.get("sasl.username"), Some("cell-1"));
    assert_eq!(c.get("sasl.password"), Some("pw"));

    // librdkafka reads the CA and checks the mechanism when a client is made.
    let p = Producer::new("127.0.0.1:9", Duration::from_secs(1));
    assert!(p.is_ok(), "{:?}", p.err());

    security::install(KafkaSecurity {
        protocol: SecurityProtocol::Ssl,
        ssl_ca_location: "/nonexistent/ca.pem".into(),
        ..KafkaSecurity::default()
    });
    let p = Producer::new("127.0.0.1:9", Duration::from_secs(1));
    assert!(p.is_err(), "a missing CA file must fail the client");
    security::install(KafkaSecurity::default());
}
