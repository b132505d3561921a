//! Liveness, readiness (Postgres, the cell's broker, the authorizer's replay)
//! and metrics.

use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cellbank_shared::http::{check_postgres, liveness, readiness, Check};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(liveness))
        .route("/readyz", get(ready))
        .route("/metrics", get(cellbank_shared::metrics::render))
}

async fn ready(State(s): State<AppState>) -> Response {
    let pg = check_postgres(&s.pool).await;
    let broker = Check::from_result(
        "broker",
        s.producer.check(Duration::from_secs(1)).await,
        "broker unreachable",
    );
    let authorizer = if s.authorizer.is_ready() {
        Check::ok("authorizer")
    } else {
        Check::failing("authorizer", "replaying its log")
    };
    readiness(vec![pg, broker, authorizer])
}
