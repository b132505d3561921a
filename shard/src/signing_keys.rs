//! Global's published signing keys (JWKS), used by
//! [`crate::access::CustomerAccess`] to verify customer tokens: fetched at
//! start, refreshed now and then, and fetched again when a token names a key
//! not seen yet (a rotation), at most once per `global.jwks_min_refresh_ms`
//! and once for all the requests that wait on it.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cellbank_shared::token::{Claims, TokenError, TokenVerifier};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a token could not be checked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("global's signing keys are not loaded yet")]
    NotLoaded,
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// The keys as last loaded, and which load that was.
type Loaded = Option<(Arc<TokenVerifier>, u64)>;

/// A cheap handle on the cell's copy of global's keys.
#[derive(Clone)]
pub struct SigningKeys {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    client: reqwest::Client,
    loaded: RwLock<Loaded>,
    /// When the last fetch for an unknown key began; held during the fetch.
    on_demand: tokio::sync::Mutex<Option<Instant>>,
    min_interval: Duration,
}

impl SigningKeys {
    /// Keys from `{global_url}/.well-known/jwks.json`; none loaded yet.
    pub fn new(
        global_url: &str,
        min_interval: Duration,
        tls: &cellbank_shared::config::TlsClientSettings,
    ) -> anyhow::Result<Self> {
        let client = cellbank_shared::http_client::builder(tls)?
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Self {
            inner: Arc::new(Inner {
                url: cellbank_shared::hal::href(global_url, "/.well-known/jwks.json"),
                client,
                loaded: RwLock::new(None),
                on_demand: tokio::sync::Mutex::new(None),
                min_interval,
            }),
        })
    }

    fn loaded(&self) -> Loaded {
        self.inner.loaded.read().expect("keys lock").clone()
    }

    /// Checks `token` (`now` in unix seconds); a key it names that is not
    /// known yet triggers one refresh (see the module) and one more try.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Claims, KeysError> {
        let (verifier, load) = self.loaded().ok_or(KeysError::NotLoaded)?;
        match verifier.verify(token, now) {
            Err(TokenError::UnknownKey) if self.refresh_for_unknown(load).await => {
                let (verifier, _) = self.loaded().ok_or(KeysError::NotLoaded)?;
                Ok(verifier.verify(token, now)?)
            }
            other => Ok(other?),
        }
    }

    /// Whether keys newer than load `seen` are there to try: loaded meanwhile
    /// (by the refresh another request waited on), or fetched now if the
    /// last such fetch is at least the minimum interval ago.
    async fn refresh_for_unknown(&self, seen: u64) -> bool {
        let mut last = self.inner.on_demand.lock().await;
        if self.loaded().is_some_and(|(_, load)| load != seen) {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.inner.min_interval) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(v) => {
                tracing::info!(url = %self.inner.url, "a token named an unknown key; reloaded global's keys");
                self.store(v);
                true
            }
            Err(e) => {
                tracing::warn!(url = %self.inner.url, error = %format!("{e:#}"), "reload of global's signing keys failed");
                false
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<TokenVerifier> {
        let resp = self
            .inner
            .client
            .get(&self.inner.url)
            .send()
            .await?
            .error_for_status()?;
        let doc: serde_json::Value = resp.json().await?;
        Ok(TokenVerifier::from_jwks(&doc)?)
    }

    /// Installs `v`; returns whether it is the first load.
    fn store(&self, v: TokenVerifier) -> bool {
        let mut g = self.inner.loaded.write().expect("keys lock");
        let load = g.as_ref().map_or(0, |(_, n)| n + 1);
        *g = Some((Arc::new(v), load));
        load == 0
    }

    /// Fetches the keys until that works, then again every `refresh`.
    pub async fn keep(self, refresh: Duration, shutdown: CancellationToken) -> anyhow::Result<()> {
        let url = self.inner.url.clone();
        let mut backoff = Duration::from_millis(200);
        loop {
            let wait = match self.fetch().await {
                Ok(v) => {
                    if self.store(v) {
                        tracing::info!(url = %url, "loaded global signing keys");
                    }
                    backoff = Duration::from_millis(200);
                    refresh
                }
                Err(e) => {
                    tracing::warn!(url = %url, error = %format!("{e:#}"), "fetch global signing keys failed; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    backoff
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(wait) => {},
            }
        }
    }
}
