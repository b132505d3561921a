//! `cellctl move` and `cellctl moves`: plan a customer's move to another
//! shard and follow it to its end, and list, show, abort or complete moves.

use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use serde_json::{json, Value};

use crate::client::{print, ApiProblem, Client};
use crate::progress::{self, human_ms, note, say};

/// How often a waiting command reads a move again.
pub const POLL: Duration = Duration::from_millis(200);
/// How long polls may keep failing (global restarting, say) before a wait
/// gives up; the move goes on in global either way.
const POLL_GIVE_UP: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct MoveArgs {
    /// The customer to move.
    customer_id: String,
    /// The shard to move it to (an active one).
    #[arg(long)]
    to: String,
    /// Follow the move to its end (the default).
    #[arg(long, overrides_with = "no_wait")]
    wait: bool,
    /// Return as soon as the move is planned; global's mover drives it.
    #[arg(long = "no-wait", overrides_with = "wait")]
    no_wait: bool,
    /// Print the move as JSON (at its end, or as planned with --no-wait).
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum MovesCmd {
    /// The newest moves first.
    List {
        /// planned, copying, cutover, flipped, completed, aborting or aborted.
        #[arg(long)]
        phase: Option<String>,
        #[arg(long = "customer")]
        customer: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        json: bool,
    },
    /// One move, with its timings.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Rolls a move back (before its flip only; after it, move the customer back).
    Abort {
        id: String,
        #[arg(long)]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Purges the source shard's copy of a completed move.
    Complete {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

fn path(id: &str) -> String {
    format!("/ops/v1/moves/{id}")
}

/// `cellctl move`: whether the move did not abort.
pub async fn move_customer(c: &Client, args: MoveArgs) -> anyhow::Result<bool> {
    let body = json!({"customer_id": args.customer_id, "to": args.to});
    let planned = c.post(&c.global, "/ops/v1/moves", &body).await?;
    let id = planned["id"].as_str().unwrap_or_default().to_owned();
    if args.no_wait {
        if args.json {
            print(&planned);
        } else {
            say!(
                "move {id} planned: {} {} → {}; follow it with `cellctl moves show {id}`",
                planned["customer_id"].as_str().unwrap_or("?"),
                planned["from"].as_str().unwrap_or("?"),
                planned["to"].as_str().unwrap_or("?"),
            );
        }
        return Ok(true);
    }
    let spinner = progress::spinner(args.json);
    spinner.set_message(progress::move_status(&planned));
    let waited = wait(c, &id, &spinner).await;
    spinner.finish_and_clear();
    let Some(mv) = waited? else {
        note!("cellctl: stopped waiting; move {id} goes on in global: `cellctl moves show {id}`");
        return Ok(false);
    };
    if args.json {
        print(&mv);
    } else {
        say!("{}", summary(&mv));
    }
    Ok(mv["phase"] == "completed")
}

/// Polls a move until it is over; `None` when Ctrl-C stopped the wait.
async fn wait(c: &Client, id: &str, spinner: &ProgressBar) -> anyhow::Result<Option<Value>> {
    let mut failing_since: Option<tokio::time::Instant> = None;
    let mut interrupts = progress::interrupts();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            Ok(()) = interrupts.changed() => return Ok(None),
        }
        match c.get(&c.global, &path(id)).await {
            Ok(mv) if is_over(&mv) => return Ok(Some(mv)),
            Ok(mv) => {
                failing_since = None;
                spinner.set_message(progress::move_status(&mv));
            }
            // The move's own answer, not a hiccup: nothing to wait for.
            Err(e) if ApiProblem::status_of(&e).is_some_and(|s| s.is_client_error()) => {
                return Err(e)
            }
            Err(e) => {
                let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() > POLL_GIVE_UP {
                    return Err(e.context(format!("move {id} could not be read")));
                }
                spinner.set_message(format!("move {id}: cannot read it ({e}), retrying"));
            }
        }
    }
}

/// Whether a move is over (completed or aborted).
pub fn is_over(mv: &Value) -> bool {
    matches!(mv["phase"].as_str(), Some("completed" | "aborted"))
}

/// The one line that ends a move: where it went, its freeze, how long it
/// took, or why it aborted.
pub fn summary(mv: &Value) -> String {
    let took = progress::move_took_ms(mv).map_or_else(|| "?".to_owned(), human_ms);
    let head = format!(
        "move {}: {} {} → {}",
        mv["id"].as_str().unwrap_or("?"),
        mv["customer_id"].as_str().unwrap_or("?"),
        mv["from"].as_str().unwrap_or("?"),
        mv["to"].as_str().unwrap_or("?"),
    );
    match mv["phase"].as_str() {
        Some("completed") => format!(
            "{head} completed in {took}, freeze {} ({} events copied)",
            mv["freeze_ms"]
                .as_f64()
                .map_or_else(|| "?".to_owned(), human_ms),
            mv["copied_events"].as_i64().unwrap_or(0),
        ),
        Some("aborted") => format!(
            "{head} aborted after {took}: {}",
            mv["reason"].as_str().unwrap_or("no reason given")
        ),
        other => format!("{head} is {}", other.unwrap_or("?")),
    }
}

pub async fn moves(c: &Client, cmd: MovesCmd) -> anyhow::Result<()> {
    match cmd {
        MovesCmd::List {
            phase,
            customer,
            limit,
            json,
        } => list(c, phase, customer, limit, json).await?,
        MovesCmd::Show { id, json } => show(json, &c.get(&c.global, &path(&id)).await?),
        MovesCmd::Abort { id, reason, json } => {
            let body = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
            let mv = c
                .post(&c.global, &format!("{}/abort", path(&id)), &body)
                .await?;
            show(json, &mv);
        }
        MovesCmd::Complete { id, json } => {
            let mv = c
                .post(&c.global, &format!("{}/complete", path(&id)), &json!({}))
                .await?;
            show(json, &mv);
        }
    }
    Ok(())
}

async fn list(
    c: &Client,
    phase: Option<String>,
    customer: Option<String>,
    limit: u32,
    json: bool,
) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={limit}")];
    query.extend(phase.map(|p| format!("phase={p}")));
    query.extend(customer.map(|id| format!("customer_id={id}")));
    let doc = c
        .get(&c.global, &format!("/ops/v1/moves?{}", query.join("&")))
        .await?;
    if json {
        print(&doc);
        return Ok(());
    }
    say!(
        "{:<36} {:<36} {:<8} {:<8} {:<9} {:>8} {:>10}  CREATED",
        "ID",
        "CUSTOMER",
        "FROM",
        "TO",
        "PHASE",
        "EVENTS",
        "FREEZE_MS"
    );
    for mv in doc["_embedded"]["moves"].as_array().into_iter().flatten() {
        say!(
            "{:<36} {:<36} {:<8} {:<8} {:<9} {:>8} {:>10}  {}",
            mv["id"].as_str().unwrap_or(""),
            mv["customer_id"].as_str().unwrap_or(""),
            mv["from"].as_str().unwrap_or(""),
            mv["to"].as_str().unwrap_or(""),
            mv["phase"].as_str().unwrap_or(""),
            mv["copied_events"].to_string(),
            mv["freeze_ms"]
                .as_f64()
                .map_or(String::new(), |f| format!("{f:.1}")),
            mv["created_at"].as_str().unwrap_or(""),
        );
    }
    Ok(())
}

/// A move as JSON, or as a person reads it.
fn show(json: bool, mv: &Value) {
    if json {
        print(mv);
        return;
    }
    say!("{}", summary(mv));
    for field in [
        "phase",
        "reason",
        "copied_events",
        "copied_version",
        "rounds",
        "attempt",
        "requested_by",
        "source_copy",
        "created_at",
        "frozen_at",
        "flipped_at",
        "finished_at",
        "freeze_ms",
        "timings",
    ] {
        if !mv[field].is_null() {
            let v = &mv[field];
            say!(
                "  {field:<15} {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_owned)
            );
        }
    }
}
