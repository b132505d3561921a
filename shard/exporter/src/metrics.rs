//! The exporter's metrics (`/metrics`): rows and files out, what was
//! dropped as a redelivery or kept as a reject, flush latency, back-pressure.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus::{
    register_histogram, register_int_counter, register_int_counter_vec, register_int_gauge,
    Histogram, IntCounter, IntCounterVec, IntGauge,
};

use crate::batch::{Added, Flush};

static ROWS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "exporter_rows_total",
        "Changes written to the dataset, by entity",
        &["entity"]
    )
    .expect("register exporter_rows_total")
});

static RECORDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "exporter_records_total",
        "Log records read, by outcome (row, duplicate, beyond_window, rejected, held, rewound)",
        &["outcome"]
    )
    .expect("register exporter_records_total")
});

static FILES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("exporter_files_total", "Objects put (Parquet and rejects)")
        .expect("register exporter_files_total")
});

static FLUSH_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "exporter_flush_duration_seconds",
        "Time to make one flush durable (pending checkpoint, files, checkpoint)",
        cellbank_shared::metrics::LATENCY_BUCKETS.to_vec()
    )
    .expect("register exporter_flush_duration_seconds")
});

pub static WRITE_FAILURES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "exporter_write_failures_total",
        "Flush attempts that failed and were retried"
    )
    .expect("register exporter_write_failures_total")
});

pub static PAUSES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "exporter_pauses_total",
        "Times the consumer paused because the writer fell behind"
    )
    .expect("register exporter_pauses_total")
});

pub static BUFFERED_ROWS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "exporter_buffered_rows",
        "Rows in the open batch, not yet handed to the writer"
    )
    .expect("register exporter_buffered_rows")
});

pub fn record(outcome: Added) {
    let label = match outcome {
        Added::Row => "row",
        Added::Duplicate => "duplicate",
        Added::BeyondWindow => "beyond_window",
        Added::Rejected => "rejected",
        Added::Held => "held",
        Added::Rewound => "rewound",
    };
    RECORDS.with_label_values(&[label]).inc();
}

pub fn flushed(flush: &Flush, files: usize, took: Duration) {
    for (key, rows) in &flush.files {
        ROWS.with_label_values(&[key.entity.as_str()])
            .inc_by(rows.len() as u64);
    }
    FILES.inc_by(files as u64);
    FLUSH_SECONDS.observe(took.as_secs_f64());
}
