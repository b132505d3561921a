//! `cellbank-exporter`: one cell's analytical export. Tails the cell's
//! change log (Topic::CellChanges), drops redeliveries, and writes Parquet
//! files per entity, date and shard to an object store, exactly once, with
//! the consumer paused whenever writing falls behind. See `README.md`.

pub mod batch;
pub mod checkpoint;
pub mod export;
pub mod metrics;
pub mod settings;
pub mod tables;
pub mod window;
pub mod writer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use cellbank_shared::http::{liveness, readiness, Check};
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

async fn ready(State(ready): State<Arc<AtomicBool>>) -> Response {
    let check = if ready.load(Ordering::Relaxed) {
        Check::ok("change_log")
    } else {
        Check::failing("change_log", "the cell's change log is not assigned yet")
    };
    readiness(vec![check])
}

/// Serves `/healthz`, `/readyz` and `/metrics` and runs the export until
/// `shutdown`.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let flag = Arc::new(AtomicBool::new(false));
    let app = Router::new()
        .route("/healthz", get(liveness))
        .route("/readyz", get(ready))
        .route("/metrics", get(cellbank_shared::metrics::render))
        .with_state(flag.clone());
    let addr = format!("{}:{}", settings.server.host, settings.server.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("listen on {addr}"))?;
    let stop = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    let exported = export::run(settings, flag, shutdown.clone()).await;
    shutdown.cancel();
    server.await.context("the health server panicked")??;
    exported
}
