//! Progress display shared by `move` and `rebalance`: bars and spinners on
//! stderr, hidden for `--json` or when stderr is not a terminal, and the
//! small formatting helpers their summaries use; and Ctrl-C, which a
//! waiting command turns into a pause instead of an end.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

/// `println!` that shrugs off a closed stdout (a pipe's reader gone, as
/// Ctrl-C does to `| tee`): a paused rebalance still waits for its moves.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
pub(crate) use say;

/// `eprintln!` that shrugs off a closed stderr.
macro_rules! note {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
pub(crate) use note;

/// Where bars draw: stderr for a person at a terminal, nowhere otherwise.
fn target(json: bool) -> ProgressDrawTarget {
    if json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A spinner for one move (its message says the phase and what was copied).
pub fn spinner(json: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, target(json));
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A bar over a rebalance's moves (done of total; the message says what is
/// in flight, what aborted and the rate).
pub fn bar(total: u64, json: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), target(json));
    pb.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} moves · {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=>-"),
    );
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Counts Ctrl-C presses from now on (instead of ending the process): a
/// waiting command watches the count change.
pub fn interrupts() -> tokio::sync::watch::Receiver<u32> {
    let (tx, rx) = tokio::sync::watch::channel(0u32);
    tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            tx.send_modify(|n| *n += 1);
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

/// One line about a move in progress: its phase and what was copied.
pub fn move_status(mv: &Value) -> String {
    let phase = mv["phase"].as_str().unwrap_or("?");
    let events = mv["copied_events"].as_i64().unwrap_or(0);
    let rounds = mv["rounds"].as_i64().unwrap_or(0);
    let what = match phase {
        "planned" => "waiting for a mover".to_owned(),
        "cutover" => format!("traffic held, {events} events copied"),
        _ => format!("{events} events copied in {rounds} rounds"),
    };
    format!(
        "{} {} → {}: {phase}, {what}",
        mv["customer_id"].as_str().unwrap_or("?"),
        mv["from"].as_str().unwrap_or("?"),
        mv["to"].as_str().unwrap_or("?"),
    )
}

/// Milliseconds as a person reads them: `850 ms`, `4.2 s`, `3 min 5 s`.
pub fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else if ms < 60_000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        let s = (ms / 1000.0).round() as u64;
        format!("{} min {} s", s / 60, s % 60)
    }
}

/// How long a move took, from its planning to its end (the directory's
/// clock), in milliseconds.
pub fn move_took_ms(mv: &Value) -> Option<f64> {
    let at = |field: &str| {
        mv[field]
            .as_str()
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
    };
    let took = at("finished_at")? - at("created_at")?;
    Some(took.num_microseconds()? as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_a_person_would() {
        assert_eq!(human_ms(41.25), "41.2 ms");
        assert_eq!(human_ms(4_200.0), "4.2 s");
        assert_eq!(human_ms(185_000.0), "3 min 5 s");
    }

    #[test]
    fn a_move_took_from_planning_to_its_end() {
        let mv = serde_json::json!({
            "created_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:00:02.5Z",
        });
        assert_eq!(move_took_ms(&mv), Some(2500.0));
        assert_eq!(move_took_ms(&serde_json::json!({})), None);
    }
}
