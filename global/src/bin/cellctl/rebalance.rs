//! `cellctl rebalance`: moves N customers of one shard to another, at most
//! K at a time, and sums up what happened. Ctrl-C pauses (no new moves
//! start; those in flight finish); rerunning the same command resumes, since
//! moved customers no longer live on the source shard.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use clap::Args;
use indicatif::ProgressBar;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::client::{print, ApiProblem, Client};
use crate::moves::{is_over, summary, POLL};
use crate::progress::{self, human_ms, note, say};

#[derive(Args)]
pub struct RebalanceArgs {
    /// The shard customers leave.
    #[arg(long)]
    from: String,
    /// The shard they move to (an active one).
    #[arg(long)]
    to: String,
    /// How many customers to move (the source's oldest first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    count: u32,
    /// Moves in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_parallel: u32,
    /// Wait this long between starting two moves.
    #[arg(long, default_value_t = 0)]
    throttle_ms: u64,
    /// Print the plan (which customers would move) and exit.
    #[arg(long)]
    dry_run: bool,
    /// Print one JSON document of the plan or the results (no bars).
    #[arg(long)]
    json: bool,
}

/// Moves with these phases are open: their customers are left out.
const OPEN_PHASES: [&str; 5] = ["planned", "copying", "cutover", "flipped", "aborting"];
/// Start failures in a row (each a customer that cannot move) that stop
/// the rebalance from starting more.
const MAX_FAILED_STARTS: u32 = 3;

/// `cellctl rebalance`: whether every planned customer moved.
pub async fn rebalance(c: &Client, a: RebalanceArgs) -> anyhow::Result<bool> {
    check_shards(c, &a.from, &a.to).await?;
    let (plan, skipped) = pick(c, &a).await?;
    let head = json!({
        "from": a.from, "to": a.to, "requested": a.count, "max_parallel": a.max_parallel,
        "throttle_ms": a.throttle_ms, "dry_run": a.dry_run,
        "skipped_open_moves": skipped, "plan": plan,
    });
    if a.dry_run {
        if a.json {
            print(&head);
        } else {
            print_plan(&a, &plan, skipped);
        }
        return Ok(true);
    }
    if !a.json {
        print_plan(&a, &plan, skipped);
    }
    let started = Instant::now();
    let bar = progress::bar(plan.len() as u64, a.json);
    let run = drive(c, &a, plan.clone(), &bar).await;
    bar.finish_and_clear();
    let report = report(head, &run, started.elapsed());
    if a.json {
        print(&report);
    } else {
        print_report(&a, &report);
    }
    Ok(run.completed.len() == plan.len())
}

/// The source must be registered; the target registered and active.
async fn check_shards(c: &Client, from: &str, to: &str) -> anyhow::Result<()> {
    anyhow::ensure!(from != to, "--from and --to name the same shard");
    let shards = c.get(&c.global, "/ops/v1/shards").await?;
    let state = |id: &str| {
        shards["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == id)
            .map(|s| s["state"].as_str().unwrap_or("?").to_owned())
    };
    anyhow::ensure!(state(from).is_some(), "no shard {from} in the registry");
    match state(to) {
        None => anyhow::bail!("no shard {to} in the registry"),
        Some(s) if s != "active" => {
            anyhow::bail!("shard {to} is {s}: customers move only to an active shard")
        }
        Some(_) => Ok(()),
    }
}

/// Up to `count` customers of the source, oldest first, leaving out those
/// with an open move; and how many were left out.
async fn pick(c: &Client, a: &RebalanceArgs) -> anyhow::Result<(Vec<String>, usize)> {
    let busy = open_move_customers(c).await?;
    let limit = (a.count as usize + busy.len()).min(100_000);
    let path = format!("/ops/v1/shards/{}/customers?limit={limit}", a.from);
    let doc = c.get(&c.global, &path).await?;
    let mut plan = Vec::new();
    let mut skipped = 0;
    for id in doc["customers"].as_array().into_iter().flatten() {
        let id = id.as_str().unwrap_or_default();
        if busy.contains(id) {
            skipped += 1;
        } else if plan.len() < a.count as usize {
            plan.push(id.to_owned());
        }
    }
    Ok((plan, skipped))
}

/// Customers that have a move in progress (a rerun after a hard stop must
/// not plan them again).
async fn open_move_customers(c: &Client) -> anyhow::Result<HashSet<String>> {
    let mut busy = HashSet::new();
    for phase in OPEN_PHASES {
        let doc = c
            .get(
                &c.global,
                &format!("/ops/v1/moves?phase={phase}&limit=1000"),
            )
            .await?;
        for mv in doc["_embedded"]["moves"].as_array().into_iter().flatten() {
            busy.extend(mv["customer_id"].as_str().map(str::to_owned));
        }
    }
    Ok(busy)
}

fn print_plan(a: &RebalanceArgs, plan: &[String], skipped: usize) {
    say!(
        "plan: move {} of {} customers from {} to {} ({} at a time, {} ms between starts{})",
        plan.len(),
        a.count,
        a.from,
        a.to,
        a.max_parallel,
        a.throttle_ms,
        if a.dry_run {
            "; dry run, nothing moves"
        } else {
            ""
        },
    );
    if skipped > 0 {
        say!("  left out: {skipped} customers with a move in progress");
    }
    for id in plan {
        say!("  {id}");
    }
}

/// Why no more moves start.
enum Stop {
    /// Ctrl-C once: those in flight finish.
    Paused,
    /// Ctrl-C twice: stop waiting (global's mover finishes them).
    Interrupted,
    /// Starting moves failed; those in flight finish.
    Failed(String),
}

/// A move in flight.
struct Flight {
    customer: String,
    id: String,
}

/// What a rebalance did.
#[derive(Default)]
struct Run {
    completed: Vec<Value>,
    aborted: Vec<Value>,
    failed: Vec<Value>,
    failed_in_a_row: u32,
    in_flight: Vec<Flight>,
    queue: VecDeque<String>,
    stop: Option<Stop>,
    poll_error: Option<String>,
}

/// Starts moves as room and the throttle allow, polls them, until every
/// customer's move is over or a stop leaves none in flight.
async fn drive(c: &Client, a: &RebalanceArgs, plan: Vec<String>, bar: &ProgressBar) -> Run {
    let mut run = Run {
        queue: plan.into(),
        ..Run::default()
    };
    let throttle = Duration::from_millis(a.throttle_ms);
    let mut next_start = Instant::now();
    let mut interrupts = progress::interrupts();
    let started = Instant::now();
    loop {
        while run.stop.is_none()
            && !run.queue.is_empty()
            && run.in_flight.len() < a.max_parallel as usize
            && Instant::now() >= next_start
        {
            start(c, &a.to, &mut run).await;
            next_start = Instant::now() + throttle;
        }
        if run.in_flight.is_empty() && (run.stop.is_some() || run.queue.is_empty()) {
            break;
        }
        // Wake for the next start when one is only held by the throttle.
        let room = run.in_flight.len() < a.max_parallel as usize;
        let wake = if room && run.stop.is_none() && !run.queue.is_empty() {
            next_start.min(Instant::now() + POLL)
        } else {
            Instant::now() + POLL
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            Ok(()) = interrupts.changed() => if interrupted(&mut run, bar) { break },
        }
        poll(c, &mut run, bar, a.json).await;
        bar.set_message(status(&run, started.elapsed()));
    }
    run
}

/// Starts the next customer's move; a customer that cannot move now is
/// noted, anything else stops the starting.
async fn start(c: &Client, to: &str, run: &mut Run) {
    let Some(customer) = run.queue.pop_front() else {
        return;
    };
    let body = json!({"customer_id": customer, "to": to});
    match c.post(&c.global, "/ops/v1/moves", &body).await {
        Ok(mv) => {
            run.failed_in_a_row = 0;
            let id = mv["id"].as_str().unwrap_or_default().to_owned();
            run.in_flight.push(Flight { customer, id });
        }
        Err(e) if ApiProblem::status_of(&e).is_some_and(|s| s == 404 || s == 409) => {
            run.failed
                .push(json!({"customer_id": customer, "error": e.to_string()}));
            run.failed_in_a_row += 1;
            if run.failed_in_a_row >= MAX_FAILED_STARTS {
                run.stop = Some(Stop::Failed(format!(
                    "{MAX_FAILED_STARTS} moves in a row could not start; the last: {e}"
                )));
            }
        }
        Err(e) => {
            run.queue.push_front(customer);
            run.stop = Some(Stop::Failed(format!("a move could not start: {e}")));
        }
    }
}

/// A Ctrl-C: the first pauses, the second stops waiting (true).
fn interrupted(run: &mut Run, bar: &ProgressBar) -> bool {
    if matches!(run.stop, Some(Stop::Paused)) {
        run.stop = Some(Stop::Interrupted);
        return true;
    }
    run.stop = Some(Stop::Paused);
    bar.suspend(|| {
        note!(
            "paused: no new moves start; waiting for the {} in flight to end \
             (Ctrl-C again stops waiting: global's mover finishes them). \
             To resume, rerun the same command.",
            run.in_flight.len()
        )
    });
    false
}

/// Reads every move in flight once; those over leave the flight.
async fn poll(c: &Client, run: &mut Run, bar: &ProgressBar, json: bool) {
    let paths: Vec<String> = run
        .in_flight
        .iter()
        .map(|f| format!("/ops/v1/moves/{}", f.id))
        .collect();
    let reads = paths.iter().map(|p| c.get(&c.global, p));
    let answers = futures::future::join_all(reads).await;
    let mut still = Vec::new();
    for (flight, answer) in run.in_flight.drain(..).zip(answers) {
        match answer {
            Ok(mv) if is_over(&mv) => {
                if !json {
                    bar.suspend(|| say!("{}", summary(&mv)));
                }
                bar.inc(1);
                if mv["phase"] == "completed" {
                    run.completed.push(mv);
                } else {
                    run.aborted.push(mv);
                }
            }
            Ok(_) => still.push(flight),
            Err(e) => {
                run.poll_error = Some(format!("move {}: {e}", flight.id));
                still.push(flight);
            }
        }
    }
    run.in_flight = still;
}

/// The bar's message: in flight, aborted, rate, and why it stops.
fn status(run: &Run, elapsed: Duration) -> String {
    let done = (run.completed.len() + run.aborted.len()) as f64;
    let per_min = done / elapsed.as_secs_f64().max(1.0) * 60.0;
    let mut s = format!(
        "{} in flight · {} aborted · {per_min:.1} moves/min",
        run.in_flight.len(),
        run.aborted.len()
    );
    match &run.stop {
        Some(Stop::Paused) => s.push_str(" · paused (Ctrl-C again stops waiting)"),
        Some(Stop::Failed(_)) => s.push_str(" · not starting more (a start failed)"),
        _ => {}
    }
    if let Some(e) = &run.poll_error {
        s.push_str(&format!(" · last read error: {e}"));
    }
    s
}

/// The results as one JSON document (the plan's head plus what happened).
fn report(mut doc: Value, run: &Run, wall: Duration) -> Value {
    let aborted: Vec<Value> = run
        .aborted
        .iter()
        .map(|mv| json!({"move_id": mv["id"], "customer_id": mv["customer_id"], "reason": mv["reason"]}))
        .collect();
    let moves: Vec<Value> = run
        .completed
        .iter()
        .chain(&run.aborted)
        .map(|mv| {
            json!({"move_id": mv["id"], "customer_id": mv["customer_id"], "phase": mv["phase"],
                   "freeze_ms": mv["freeze_ms"], "took_ms": progress::move_took_ms(mv)})
        })
        .collect();
    let freezes: Vec<f64> = run
        .completed
        .iter()
        .filter_map(|mv| mv["freeze_ms"].as_f64())
        .collect();
    doc["completed"] = run.completed.len().into();
    doc["aborted"] = aborted.into();
    doc["failed_to_start"] = run.failed.clone().into();
    doc["in_flight"] = run
        .in_flight
        .iter()
        .map(|f| json!({"move_id": f.id, "customer_id": f.customer}))
        .collect();
    doc["not_started"] = run.queue.iter().cloned().collect();
    doc["stopped"] = match &run.stop {
        None => Value::Null,
        Some(Stop::Paused) => "paused".into(),
        Some(Stop::Interrupted) => "interrupted".into(),
        Some(Stop::Failed(why)) => why.clone().into(),
    };
    doc["wall_ms"] = (wall.as_millis() as u64).into();
    doc["freeze_ms"] = freeze_stats(freezes);
    doc["moves"] = moves.into();
    doc
}

/// p50, p99 and max of the freezes (nearest rank), or null without any.
fn freeze_stats(mut ms: Vec<f64>) -> Value {
    if ms.is_empty() {
        return Value::Null;
    }
    ms.sort_by(f64::total_cmp);
    let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    json!({"p50": rank(0.50), "p99": rank(0.99), "max": ms[ms.len() - 1], "count": ms.len()})
}

/// The summary a person reads at the end.
fn print_report(a: &RebalanceArgs, r: &Value) {
    let list = |k: &str| r[k].as_array().cloned().unwrap_or_default();
    say!(
        "rebalance {} → {}: {} completed, {} aborted, {} could not start, of {} planned, in {}",
        a.from,
        a.to,
        r["completed"],
        list("aborted").len(),
        list("failed_to_start").len(),
        list("plan").len(),
        human_ms(r["wall_ms"].as_f64().unwrap_or(0.0)),
    );
    let f = &r["freeze_ms"];
    if !f.is_null() {
        let ms = |k: &str| human_ms(f[k].as_f64().unwrap_or(0.0));
        say!(
            "freeze: p50 {}, p99 {}, max {}",
            ms("p50"),
            ms("p99"),
            ms("max")
        );
    }
    print_leftovers(a, r);
}

/// What did not move, why, and how to go on.
fn print_leftovers(a: &RebalanceArgs, r: &Value) {
    let list = |k: &str| r[k].as_array().cloned().unwrap_or_default();
    for mv in &list("aborted") {
        say!(
            "aborted: {} (move {}): {}",
            mv["customer_id"].as_str().unwrap_or("?"),
            mv["move_id"].as_str().unwrap_or("?"),
            mv["reason"].as_str().unwrap_or("no reason given")
        );
    }
    for f in &list("failed_to_start") {
        say!(
            "could not start: {}: {}",
            f["customer_id"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        );
    }
    if let Some(why) = r["stopped"].as_str() {
        say!(
            "stopped ({why}): {} not started, {} still moving in global.",
            list("not_started").len(),
            list("in_flight").len()
        );
        say!(
            "resume: rerun the same command (customers already moved no longer live on {}).",
            a.from
        );
    }
    if r["completed"].as_u64().unwrap_or(0) > 0 {
        say!("the source keeps a copy of each moved customer until `cellctl moves complete MOVE_ID` purges it.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freeze_percentiles_are_nearest_rank() {
        assert_eq!(freeze_stats(vec![]), Value::Null);
        let s = freeze_stats((1..=100).rev().map(f64::from).collect());
        assert_eq!(
            (s["p50"].as_f64(), s["p99"].as_f64(), s["max"].as_f64()),
            (Some(50.0), Some(99.0), Some(100.0))
        );
        let one = freeze_stats(vec![7.5]);
        assert_eq!(
            (one["p50"].as_f64(), one["p99"].as_f64()),
            (Some(7.5), Some(7.5))
        );
    }
}
