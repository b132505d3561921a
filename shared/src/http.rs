//! HTTP plumbing every service shares: the middleware stack (every error a
//! problem, a deadline, request ids, traces), CORS, health and readiness
//! responses, and graceful shutdown.

mod admission;
mod cors;
mod problems;

pub use admission::{Admission, WaitedOnAFailure};

pub use cors::{cors_layer, parse_origin, with_cors, InvalidOrigin};
pub use problems::{problem_for, NotAProblem};

use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::Serialize;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::config::ServerSettings;

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps `router` in the standard layers: request id, trace span (with the
/// matched path, the request id and the caller's W3C trace context), every
/// error answered as problem+json, timeout, metrics, body limit and load
/// shedding past `max_in_flight` requests at once. Also adds a problem+json
/// fallback for unknown routes.
pub fn with_standard_layers(router: Router, settings: &ServerSettings) -> Router {
    // Load shedding: past the admission limit (at most `max_in_flight`,
    // lower while answers are slow), 503 and `Retry-After: 1` at once. One
    // state for every route of this listener.
    let admission = Admission::new(settings.max_in_flight, settings.shed_when_slower());
    router
        .fallback(|| async { crate::problem::Problem::not_found("no such route") })
        .layer(axum::middleware::from_fn_with_state(
            admission,
            admission::admit,
        ))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(make_span))
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(axum::middleware::map_response(problems::problems_only))
                .layer(axum::middleware::from_fn_with_state(
                    settings.request_timeout(),
                    problems::deadline,
                )),
        )
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
}

fn make_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        route = %route,
        request_id = %request_id,
        customer_id = tracing::field::Empty,
        shard_id = tracing::field::Empty,
    );
    // Only a request that carries a trace context is parented (most callers
    // send none); the lookup borrows the headers instead of copying them.
    let headers = req.headers();
    if headers.contains_key("traceparent") {
        crate::telemetry::set_parent_from(&span, |k| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
    }
    span
}

/// One readiness check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    pub fn ok(name: &'static str) -> Self {
        Self {
            name,
            ok: true,
            detail: None,
        }
    }

    /// A failed check with a fixed, public `detail`.
    pub fn failing(name: &'static str, detail: &'static str) -> Self {
        Self {
            name,
            ok: false,
            detail: Some(detail.to_owned()),
        }
    }

    /// The check from `r`: a failure answers the fixed `detail` and logs the
    /// error itself (which may name hosts, users or drivers) instead.
    pub fn from_result<E: std::fmt::Display>(
        name: &'static str,
        r: Result<(), E>,
        detail: &'static str,
    ) -> Self {
        match r {
            Ok(()) => Self::ok(name),
            Err(e) => {
                tracing::warn!(check = name, error = %e, "readiness check failed");
                Self::failing(name, detail)
            }
        }
    }
}

/// `/readyz` body: 200 when every check passed, 503 otherwise.
pub fn readiness(checks: Vec<Check>) -> Response {
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not-ready" },
        "checks": checks,
    });
    readiness_response(status, body)
}

/// A readiness answer as it is: its 503 is a report, not a problem.
pub fn readiness_response(status: StatusCode, body: serde_json::Value) -> Response {
    let mut resp = (status, axum::Json(body)).into_response();
    resp.extensions_mut().insert(NotAProblem);
    resp
}

/// `/healthz`: the process is alive and serving.
pub async fn liveness() -> Response {
    axum::Json(serde_json::json!({"status": "ok"})).into_response()
}

/// Postgres answers a trivial query within a second.
pub async fn check_postgres(pool: &sqlx::PgPool) -> Check {
    let r = tokio::time::timeout(
        Duration::from_secs(1),
        sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool),
    )
    .await;
    match r {
        Ok(Ok(_)) => Check::ok("postgres"),
        Ok(Err(e)) => Check::from_result("postgres", Err(e), "database unreachable"),
        Err(_) => Check::failing("postgres", "database did not answer in time"),
    }
}

/// Resolves when the process receives SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests;
