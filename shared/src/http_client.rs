//! The HTTP client between tiers: rustls for `https://` peers, trusting the
//! public roots and the extra CA(s) of [`TlsClientSettings`].

use crate::config::{ConfigError, TlsClientSettings};

/// A client builder for calls to another tier; callers add their timeouts.
pub fn builder(tls: &TlsClientSettings) -> Result<reqwest::ClientBuilder, ConfigError> {
    let mut b = reqwest::Client::builder().use_rustls_tls();
    for ca in tls.extra_roots()? {
        b = b.add_root_certificate(ca);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error_naming_the_key() {
        let missing = TlsClientSettings {
            ca_file: "/nonexistent/ca.pem".into(),
        };
        let err = builder(&missing).unwrap_err().to_string();
        assert!(err.contains("tls.ca_file"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let empty = TlsClientSettings {
            ca_file: empty.display().to_string(),
        };
        let err = builder(&empty).unwrap_err().to_string();
        assert!(err.contains("tls.ca_file"), "{err}");
    }

    #[test]
    fn no_ca_file_builds_a_plain_client() {
        builder(&TlsClientSettings::default())
            .unwrap()
            .build()
            .unwrap();
    }
}
