//! `cellctl`: the operator's command line over the global ops API (its own
//! port) and, via the shard registry, each shard's admin API (each shard has
//! its own admin token).

mod cells;
mod client;
mod moves;
mod partners;
mod progress;
mod rebalance;
mod shards;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cells::{ConsumersCmd, DeadLettersCmd};
use client::{print, Client};
use moves::{MoveArgs, MovesCmd};
use partners::PartnersCmd;
use rebalance::RebalanceArgs;
use shards::ShardsCmd;

#[derive(Parser)]
#[command(
    name = "cellctl",
    about = "Operate a Cellbank platform",
    after_help = "Partners (card network, payment rails) call global with a key of their own:\n  \
        cellctl partners add --name network --scope authorizations --scope events\n  \
        cellctl partners list\n  \
        cellctl partners rotate PARTNER_ID   # a new key; the previous one works until the next rotation\n  \
        cellctl partners revoke PARTNER_ID   # every key of the partner stops working\n\n\
        Customers move between shards online (copied while they transact, frozen for a blink, verified):\n  \
        cellctl move CUSTOMER_ID --to shard-2          # follows the move to its end (--no-wait returns at once)\n  \
        cellctl moves list --phase copying\n  \
        cellctl moves abort MOVE_ID --reason \"...\"     # before the flip; after it, move the customer back\n  \
        cellctl moves complete MOVE_ID                 # purge the source's copy of a completed move\n  \
        cellctl rebalance --from shard-1 --to shard-3 --count 100 --dry-run   # the plan first\n  \
        cellctl rebalance --from shard-1 --to shard-3 --count 100 --max-parallel 4\n  \
        (Ctrl-C pauses a rebalance: in-flight moves finish; rerun the same command to resume)"
)]
struct Cli {
    /// Base URL of global's ops API (its own port, not the public one).
    #[arg(
        long = "ops-url",
        alias = "global",
        env = "CELLCTL_OPS_URL",
        default_value = "http://127.0.0.1:8090",
        global = true
    )]
    global: String,
    /// Global's admin bearer token (auth.admin_token of global).
    #[arg(
        long = "admin-token",
        env = "CELLCTL_ADMIN_TOKEN",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    admin_token: String,
    /// The admin token of the shard a command names with --shard (each
    /// shard has its own).
    #[arg(
        long = "shard-token",
        env = "CELLCTL_SHARD_ADMIN_TOKEN",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    shard_token: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The shard registry.
    #[command(subcommand)]
    Shards(ShardsCmd),
    /// Readiness of global and of every registered shard.
    Health,
    /// Customers in the directory.
    #[command(subcommand)]
    Customers(CustomersCmd),
    /// A shard's dead letters.
    #[command(subcommand, name = "dead-letters")]
    DeadLetters(DeadLettersCmd),
    /// Hold (pause) or release a shard's consumers; the backlog waits in the log.
    #[command(subcommand)]
    Consumers(ConsumersCmd),
    /// Partners: who may send events and authorizations, with their keys.
    #[command(subcommand)]
    Partners(PartnersCmd),
    /// Moves a customer to another shard (online; exits non-zero if it aborts).
    Move(MoveArgs),
    /// Customer moves: list, show, abort, complete.
    #[command(subcommand)]
    Moves(MovesCmd),
    /// Moves N customers of one shard to another, K at a time (Ctrl-C pauses).
    Rebalance(RebalanceArgs),
}

#[derive(Subcommand)]
enum CustomersCmd {
    Show { id: String },
}

/// Runs one command; `Ok(false)` when it ran but found something unhealthy
/// (or a move aborted).
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        global: cli.global,
        token: cli.admin_token,
        shard_token: cli.shard_token,
    };
    match cli.command {
        Command::Shards(cmd) => shards::shards(&c, cmd).await?,
        Command::Health => return shards::health(&c).await,
        Command::Customers(CustomersCmd::Show { id }) => {
            print(&c.get(&c.global, &format!("/ops/v1/customers/{id}")).await?);
        }
        Command::DeadLetters(cmd) => cells::dead_letters(&c, cmd).await?,
        Command::Consumers(cmd) => cells::consumers(&c, cmd).await?,
        Command::Partners(cmd) => partners::partners(&c, cmd).await?,
        Command::Move(args) => return moves::move_customer(&c, args).await,
        Command::Moves(cmd) => moves::moves(&c, cmd).await?,
        Command::Rebalance(args) => return rebalance::rebalance(&c, args).await,
    }
    Ok(true)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("cellctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}
