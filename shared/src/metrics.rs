//! Prometheus metrics: the HTTP request counters every service shares, and the
//! `/metrics` text endpoint over the process registry.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    register_histogram_vec, register_int_counter_vec, Encoder, HistogramVec, IntCounterVec,
    TextEncoder,
};

/// Buckets for request latencies, from 100 µs to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

static HTTP_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "http_requests_total",
        "HTTP requests by route and status",
        &["route", "method", "status"]
    )
    .expect("register http_requests_total")
});

static HTTP_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "http_request_duration_seconds",
        "HTTP request latency by route",
        &["route", "method"],
        LATENCY_BUCKETS.to_vec()
    )
    .expect("register http_request_duration_seconds")
});

static HTTP_SHED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    prometheus::register_int_counter!(
        "http_requests_shed_total",
        "Requests answered 503 at once because server.max_in_flight were in flight"
    )
    .expect("register http_requests_shed_total")
});

/// A request shed: `server.max_in_flight` requests were already in flight.
pub fn shed() {
    HTTP_SHED.inc();
}

/// Middleware counting requests and their latency by matched route.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let resp = next.run(req).await;
    HTTP_LATENCY
        .with_label_values(&[&route, &method])
        .observe(start.elapsed().as_secs_f64());
    HTTP_REQUESTS
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .inc();
    resp
}

/// `GET /metrics` in the Prometheus text format.
pub async fn render() -> Response {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if encoder.encode(&prometheus::gather(), &mut buf).is_err() {
        return crate::problem::Problem::internal().into_response();
    }
    (
        [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
        buf,
    )
        .into_response()
}
