//! The run's figures: requests by kind, recovery per fault kind, and the
//! blast radius (the other cells while one cell was down), as JSON and as
//! the Markdown table RELIABILITY.md quotes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::Findings;
use crate::plan::Kind;
use crate::record::{quantile_ms, Op, Sample};
use crate::run::Outcome;

#[derive(Debug, Default, Serialize)]
pub struct Traffic {
    pub requests: usize,
    pub ok: usize,
    pub error_rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

fn traffic<'a>(samples: impl Iterator<Item = &'a Sample>) -> Traffic {
    let (mut requests, mut ok, mut lat) = (0, 0, Vec::new());
    for s in samples {
        requests += 1;
        if s.ok {
            ok += 1;
            lat.push(s.latency_us);
        }
    }
    Traffic {
        requests,
        ok,
        error_rate: if requests == 0 {
            0.0
        } else {
            1.0 - ok as f64 / requests as f64
        },
        p50_ms: quantile_ms(lat.clone(), 0.5),
        p99_ms: quantile_ms(lat, 0.99),
    }
}

#[derive(Debug, Serialize)]
pub struct Recovery {
    pub faults: usize,
    pub recovered: usize,
    pub median_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub seed: u64,
    pub faults: usize,
    pub by_kind: BTreeMap<Kind, Recovery>,
    pub traffic: BTreeMap<String, Traffic>,
    /// Requests to the other cells while one cell was down, and outside any fault.
    pub other_cells_during_cell_faults: Traffic,
    /// Those requests' failures, by kind of request.
    pub other_cells_errors_by_op: BTreeMap<String, u64>,
    pub faulted_cell_during_its_faults: Traffic,
    pub baseline: Traffic,
    pub dropped_ticks: u64,
    /// Services that exited on their own and were restarted (by service).
    pub restarts: BTreeMap<String, u32>,
    pub gave_up: BTreeMap<String, u64>,
    pub findings: Findings,
    pub outcomes: Vec<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overload: Option<crate::overload::Overload>,
}

fn recovery_by_kind(outcomes: &[Outcome]) -> BTreeMap<Kind, Recovery> {
    let mut by_kind = BTreeMap::new();
    for k in Kind::ALL {
        let of: Vec<&Outcome> = outcomes.iter().filter(|o| o.fault.kind == k).collect();
        if of.is_empty() {
            continue;
        }
        let rec: Vec<u32> = of
            .iter()
            .filter_map(|o| o.recovery_ms())
            .map(|ms| (ms * 1000) as u32)
            .collect();
        let recovered = rec.len();
        by_kind.insert(
            k,
            Recovery {
                faults: of.len(),
                recovered,
                median_ms: quantile_ms(rec.clone(), 0.5),
                max_ms: quantile_ms(rec, 1.0),
            },
        );
    }
    by_kind
}

/// The windows (ms) each cell was under a fault, from injection to recovery.
fn windows(outcomes: &[Outcome]) -> Vec<(u32, u64, u64)> {
    outcomes
        .iter()
        .filter(|o| o.fault.kind.is_cell())
        .map(|o| {
            let end = o.recovered_ms.unwrap_or(o.healed_ms + 120_000);
            (o.fault.target, o.injected_ms, end)
        })
        .collect()
}

/// The cell whose fault window holds the whole of request `s` (sent and
/// answered inside it), if any.
fn fault_cell_of(windows: &[(u32, u64, u64)], s: &Sample) -> Option<u32> {
    let sent = u64::from(s.at_ms);
    let done = sent + u64::from(s.latency_us) / 1000;
    windows
        .iter()
        .find(|(_, a, b)| (*a..=*b).contains(&sent) && done <= *b)
        .map(|x| x.0)
}

/// How many of `samples` there are of each kind of request.
fn by_op<'a>(samples: impl Iterator<Item = &'a Sample>) -> BTreeMap<String, u64> {
    let mut n = BTreeMap::new();
    for s in samples {
        *n.entry(op_name(s.op)).or_insert(0u64) += 1;
    }
    n
}

fn op_name(op: Op) -> String {
    serde_json::to_value(op)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn build(
    seed: u64,
    samples: &[Sample],
    outcomes: Vec<Outcome>,
    warmup_ms: u64,
    (dropped_ticks, gave_up): (u64, BTreeMap<String, u64>),
    findings: Findings,
) -> Report {
    let by_kind = recovery_by_kind(&outcomes);
    let mut traffic_by = BTreeMap::new();
    for op in [Op::Event, Op::Batch, Op::Authorization, Op::Login] {
        traffic_by.insert(op_name(op), traffic(samples.iter().filter(|s| s.op == op)));
    }
    let w = windows(&outcomes);
    // A request counts for a fault only if it was sent and answered while
    // the fault lasted: one sent just before the next fault, answered (or
    // timed out) during it, is that fault's doing, not this one's.
    let in_window = |s: &Sample| fault_cell_of(&w, s);
    let other_cells_errors_by_op = by_op(
        samples
            .iter()
            .filter(|s| s.cell != 0 && !s.ok && in_window(s).is_some_and(|c| c != s.cell)),
    );
    let cellular = || samples.iter().filter(|s| s.cell != 0);
    Report {
        seed,
        faults: outcomes.len(),
        by_kind,
        traffic: traffic_by,
        other_cells_during_cell_faults: traffic(
            cellular().filter(|s| in_window(s).is_some_and(|c| c != s.cell)),
        ),
        other_cells_errors_by_op,
        faulted_cell_during_its_faults: traffic(
            cellular().filter(|s| in_window(s) == Some(s.cell)),
        ),
        // Before the first fault (its first two seconds left out: connections warm up).
        baseline: traffic(cellular().filter(|s| (2_000..warmup_ms).contains(&u64::from(s.at_ms)))),
        dropped_ticks,
        restarts: BTreeMap::new(),
        gave_up,
        findings,
        outcomes,
        overload: None,
    }
}

/// The Markdown tables of a report.
pub fn markdown(r: &Report) -> String {
    let mut s = String::new();
    recovery_table(&mut s, r);
    findings_tables(&mut s, &r.findings);
    traffic_tables(&mut s, r);
    let _ = writeln!(
        s,
        "\nServices that exited on their own and were restarted: {}",
        if r.restarts.is_empty() {
            "none".to_owned()
        } else {
            format!("{:?}", r.restarts)
        }
    );
    s
}

fn recovery_table(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "| Fault | Injected | Recovered | Recovery median | Recovery max |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (k, v) in &r.by_kind {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} ms | {:.0} ms |",
            k.name(),
            v.faults,
            v.recovered,
            v.median_ms,
            v.max_ms
        );
    }
}

fn findings_tables(s: &mut String, f: &Findings) {
    let _ = writeln!(s, "\n| Events accepted (2xx) | applied | dead-lettered | lost | doubled | applied, not acknowledged |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} |",
        f.accepted, f.applied, f.dead_lettered, f.lost, f.doubled, f.applied_unacknowledged
    );
    let _ = writeln!(s, "\n| Approvals answered | not booked | cards held past their limit (ledger) | (as answered) | trial balance ≠ 0 | books ≠ postings | customers ≠ their events |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| {} | {} | {} | {} | {} | {} | {} |",
        f.approvals,
        f.approvals_not_booked,
        f.cards_past_limit,
        f.cards_past_limit_as_answered,
        f.trial_balance_nonzero.len(),
        f.books_off_postings,
        f.customers_off_their_events
    );
}

fn traffic_row(s: &mut String, name: &str, t: &Traffic) {
    let _ = writeln!(
        s,
        "| {name} | {} | {:.2} % | {:.1} ms | {:.1} ms |",
        t.requests,
        t.error_rate * 100.0,
        t.p50_ms,
        t.p99_ms
    );
}

fn traffic_tables(s: &mut String, r: &Report) {
    let _ = writeln!(
        s,
        "\n| Requests to the cells | requests | error rate | p50 | p99 |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    traffic_row(s, "before the first fault (baseline)", &r.baseline);
    traffic_row(
        s,
        "other cells, while one cell was faulted",
        &r.other_cells_during_cell_faults,
    );
    traffic_row(
        s,
        "the faulted cell, until it recovered",
        &r.faulted_cell_during_its_faults,
    );
    let _ = writeln!(
        s,
        "\nFailures of requests to the other cells while one cell was faulted, by request: {:?}",
        r.other_cells_errors_by_op
    );
    let _ = writeln!(
        s,
        "\n| Load, by request | requests | error rate | p50 | p99 |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    for (name, t) in &r.traffic {
        traffic_row(s, name, t);
    }
}
