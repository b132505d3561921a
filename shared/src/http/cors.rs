//! CORS for the app's browser origins: only the configured origins get the
//! `access-control-*` headers; no origin configured, no CORS at all.

use std::time::Duration;

use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What the app sends cross-origin.
const METHODS: [Method; 5] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
];

/// A configured origin that is not `scheme://host[:port]`.
#[derive(Debug, thiserror::Error)]
#[error("each origin must look like https://host[:port], without a path")]
pub struct InvalidOrigin;

/// The layer for `origins`; `None` when the list is empty.
pub fn cors_layer(origins: &[String]) -> Result<Option<CorsLayer>, InvalidOrigin> {
    if origins.is_empty() {
        return Ok(None);
    }
    let values = origins
        .iter()
        .map(|o| parse_origin(o))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(values))
            .allow_methods(METHODS.to_vec())
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                HeaderName::from_static("idempotency-key"),
                super::REQUEST_ID,
            ])
            .expose_headers([header::LOCATION, header::RETRY_AFTER, super::REQUEST_ID])
            .max_age(Duration::from_secs(600)),
    ))
}

/// Wraps `router` in the CORS layer for `origins` (outermost, so that error
/// answers carry the headers too); unchanged when there are none.
pub fn with_cors(router: Router, origins: &[String]) -> Result<Router, InvalidOrigin> {
    Ok(match cors_layer(origins)? {
        Some(layer) => router.layer(layer),
        None => router,
    })
}

/// `https://app.example.com[:port]`, exactly as browsers send it.
pub fn parse_origin(origin: &str) -> Result<HeaderValue, InvalidOrigin> {
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or(InvalidOrigin)?;
    let host_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if !host_ok {
        return Err(InvalidOrigin);
    }
    HeaderValue::from_str(origin).map_err(|_| InvalidOrigin)
}
