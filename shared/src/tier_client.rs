//! The routing hot path's client between tiers (global -> a cell's internal
//! API): hyper's pooled HTTP/1 client over rustls, with no redirect, retry
//! or URL layers. A call is one request whose body is already encoded and
//! one answer read whole, both within one deadline.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{ConfigError, TlsClientSettings};

/// Why a call brought no answer.
#[derive(Debug, thiserror::Error)]
pub enum TierError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Failed(String),
}

/// A pooled client for calls to other tiers; cheap to clone.
#[derive(Clone)]
pub struct TierClient {
    inner: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// What a call answered: its status and whole body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl TierClient {
    /// `idle_per_host` connections are kept open per peer; `https://` peers
    /// are trusted by the public roots and the extra CA(s) of `tls`.
    pub fn new(tls: &TlsClientSettings, idle_per_host: usize) -> Result<Self, ConfigError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for der in tls.extra_root_ders()? {
            roots
                .add(der)
                .map_err(|e| ConfigError::invalid("tls.ca_file", format!("unusable CA: {e}")))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(2)));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Self { inner })
    }

    /// Sends `req` and reads the whole answer, all within `deadline`.
    pub async fn send(
        &self,
        req: Request<Full<Bytes>>,
        deadline: Duration,
    ) -> Result<Answer, TierError> {
        let call = async {
            let resp = self
                .inner
                .request(req)
                .await
                .map_err(|e| TierError::Failed(describe(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| TierError::Failed(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(deadline, call)
            .await
            .map_err(|_| TierError::Timeout(deadline))?
    }
}

/// The error and its causes on one line (hyper's own says only "client
/// error (Connect)").
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_a_config_error_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        for ca_file in [
            "/nonexistent/ca.pem".to_owned(),
            empty.display().to_string(),
        ] {
            let tls = TlsClientSettings { ca_file };
            let err = TierClient::new(&tls, 1).err().expect("refused").to_string();
            assert!(err.contains("tls.ca_file"), "{err}");
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure_naming_its_cause() {
        let client = TierClient::new(&TlsClientSettings::default(), 4).unwrap();
        let req = Request::post("http://127.0.0.1:9/x")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client
            .send(req, Duration::from_secs(2))
            .await
            .err()
            .unwrap();
        let TierError::Failed(reason) = err else {
            panic!("not a failure: {err}")
        };
        assert!(reason.to_lowercase().contains("connect"), "{reason}");
    }

    #[tokio::test]
    async fn a_peer_that_never_answers_times_out_at_the_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _hold = tokio::spawn(async move {
            let (_sock, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let client = TierClient::new(&TlsClientSettings::default(), 4).unwrap();
        let req = Request::get(format!("http://{addr}/slow"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let err = client
            .send(req, Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert!(matches!(err, TierError::Timeout(_)), "{err}");
    }
}
