//! Logs and traces, set up once per process: `tracing` with JSON or pretty
//! output, OpenTelemetry spans (exported over OTLP when configured), and W3C
//! trace context carried over HTTP and in Kafka message headers.

use std::collections::HashMap;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetrySettings};

/// Flushes and shuts the tracer down when dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Spans always get W3C trace ids (so context
/// propagates even with export off); they are exported only when an OTLP
/// endpoint is configured. Safe to call twice (the second call is a no-op).
pub fn init(settings: &TelemetrySettings, service: &'static str) -> anyhow::Result<TelemetryGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service)
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if !settings.otlp_endpoint.is_empty() {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(settings.otlp_endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let tracer = provider.tracer(service);
    // Per-poll busy/idle timings and thread/location attributes cost time
    // on every request and are not read by anyone: off.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_threads(false)
        .with_location(false);
    let filter = EnvFilter::try_new(&settings.filter)?;
    let fmt = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().compact().boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    Ok(TelemetryGuard {
        provider: installed.then_some(provider),
    })
}

/// Installs a quiet test subscriber (errors only) once; ignores repeats.
pub fn init_for_tests() {
    let settings = TelemetrySettings {
        format: LogFormat::Pretty,
        filter: std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
        otlp_endpoint: String::new(),
    };
    std::mem::forget(init(&settings, "cellbank-test"));
}

struct MapCarrier<'a>(&'a mut HashMap<String, String>);

impl Injector for MapCarrier<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

/// The current span's trace context as `traceparent` (and `tracestate`) headers.
pub fn current_trace_headers() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut map = HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut MapCarrier(&mut map));
    map
}

/// Parses `traceparent`/`tracestate` from any header lookup.
pub fn context_from(get: impl Fn(&str) -> Option<String>) -> Context {
    let mut map = HashMap::new();
    for k in ["traceparent", "tracestate"] {
        if let Some(v) = get(k) {
            map.insert(k.to_owned(), v);
        }
    }
    TraceContextPropagator::new().extract(&MapExtractor(&map))
}

/// Makes `span` a child of the remote context described by the headers.
pub fn set_parent_from(span: &tracing::Span, get: impl Fn(&str) -> Option<String>) {
    let cx = context_from(get);
    let _ = span.set_parent(cx);
}

/// The current trace id in hex (all zeros when there is none).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}

/// Adds the current trace context to an outgoing HTTP request's headers.
pub fn inject_http(headers: &mut http::HeaderMap) {
    for (k, v) in current_trace_headers() {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(&v),
        ) {
            headers.insert(name, value);
        }
    }
}
