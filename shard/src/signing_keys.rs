//! Global's published signing keys (JWKS): fetched at start, refreshed, and
//! used by [`crate::access::CustomerAccess`] to verify customer tokens.

use std::time::Duration;

use cellbank_shared::token::TokenVerifier;
use tokio_util::sync::CancellationToken;

use crate::state::Keys;

/// Fetches `{global}/.well-known/jwks.json` until it answers, then refreshes it every `refresh`.
pub async fn keep_keys(
    keys: Keys,
    global_url: String,
    tls: cellbank_shared::config::TlsClientSettings,
    refresh: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let url = cellbank_shared::hal::href(&global_url, "/.well-known/jwks.json");
    let client = cellbank_shared::http_client::builder(&tls)?
        .timeout(Duration::from_secs(5))
        .build()?;
    let mut backoff = Duration::from_millis(200);
    loop {
        let fetched = async {
            let resp = client.get(&url).send().await?.error_for_status()?;
            let doc: serde_json::Value = resp.json().await?;
            anyhow::Ok(TokenVerifier::from_jwks(&doc)?)
        }
        .await;
        let wait = match fetched {
            Ok(v) => {
                let first = keys.read().expect("keys lock").is_none();
                *keys.write().expect("keys lock") = Some(v);
                if first {
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
