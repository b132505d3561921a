//! Liveness, readiness and metrics endpoints. Readiness names each check;
//! with the directory database down the tier answers `degraded` (503, or 200
//! with `?allow_degraded=true`) while it keeps routing from its cache.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::Router;

use cellbank_shared::http::{check_postgres, liveness, readiness_response, Check};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(liveness))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[derive(serde::Deserialize)]
struct ReadyQuery {
    /// A probe that should keep routing pods in service during a directory
    /// outage (`/readyz?allow_degraded=true`) gets 200 while degraded.
    #[serde(default)]
    allow_degraded: bool,
}

async fn metrics() -> Response {
    crate::metrics::update_hit_ratio();
    cellbank_shared::metrics::render().await
}

async fn readyz(State(state): State<AppState>, Query(query): Query<ReadyQuery>) -> Response {
    let allow_degraded = query.allow_degraded;
    let (pg, broker) = tokio::join!(
        check_postgres(state.directory.pool()),
        state.feed.producer().check(Duration::from_secs(1)),
    );
    let feed = if state.feed.is_live() {
        Check::ok("directory_feed")
    } else {
        Check::failing(
            "directory_feed",
            "this replica has not yet received the directory-change feed",
        )
    };
    let checks = vec![
        pg,
        Check::from_result("broker", broker, "broker unreachable"),
        feed,
    ];
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready {
        "ready"
    } else if checks.iter().all(|c| c.ok || c.name == "postgres") {
        // Lookups keep being served from the cache: degraded, not down.
        "degraded"
    } else {
        "not-ready"
    };
    let code = if ready || (allow_degraded && status == "degraded") {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": status,
        "cached_entries": state.directory.cached_entries(),
        "checks": checks,
    });
    readiness_response(code, body)
}
