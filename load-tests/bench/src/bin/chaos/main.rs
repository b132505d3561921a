//! The chaos run: steady mixed load through global's replicas into the
//! shards while a seeded schedule of faults (SIGKILL and SIGSTOP of shard
//! processes, global replicas, cell brokers and cell Postgres servers, cells
//! cut off the network) hits the local cells of `infra/local/cells.sh`; then,
//! once quiet, what every cell holds is checked against what the partners
//! were answered. `load-tests/chaos.sh` brings the cells up and runs this.

mod check;
mod faults;
mod load;
mod overload;
mod plan;
mod record;
mod report;
mod run;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use crate::check::CellDb;
use crate::load::{Customer, Rates, World};
use crate::plan::Kind;
use crate::record::Op;

/// Ports follow `infra/local/cells.sh`: shard-i on GLOBAL_PORT+i, global
/// replica r >= 2 on GLOBAL_PORT+20+r, shard-i's Postgres on PG_BASE+i.
#[derive(Parser, Debug)]
struct Args {
    /// The cells' state directory (CELLBANK_STATE of cells.sh).
    #[arg(long)]
    state: PathBuf,
    /// Customers, cards and the partner key, as load-tests/seed.py writes them.
    #[arg(long)]
    seed_file: PathBuf,
    #[arg(long)]
    cells_script: PathBuf,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 3)]
    faults_per_kind: u32,
    /// Only these kinds (snake_case names, comma separated); all by default.
    #[arg(long, value_delimiter = ',')]
    kinds: Vec<String>,
    #[arg(long, default_value_t = 2)]
    shards: u32,
    #[arg(long, default_value_t = 2)]
    replicas: u32,
    #[arg(long, default_value_t = 8080)]
    global_port: u16,
    #[arg(long, default_value_t = 15432)]
    pg_base: u16,
    /// The BRL credit limit every card was issued with (seed.py --credit-limit).
    #[arg(long)]
    credit_limit: i64,
    #[arg(long, default_value_t = 40.0)]
    events_per_sec: f64,
    #[arg(long, default_value_t = 4.0)]
    batches_per_sec: f64,
    #[arg(long, default_value_t = 10)]
    batch_size: usize,
    #[arg(long, default_value_t = 30.0)]
    authorizations_per_sec: f64,
    #[arg(long, default_value_t = 3.0)]
    logins_per_sec: f64,
    /// Load before the first fault (the baseline), and after the last.
    #[arg(long, default_value_t = 10)]
    warmup_secs: u64,
    /// How long the checks wait for the cells to catch up once the load stops.
    #[arg(long, default_value_t = 180)]
    quiesce_secs: u64,
    /// Seconds of overload (0: none): the capacity measured, then
    /// `overload_factor` times it offered, before the faults.
    #[arg(long, default_value_t = 0)]
    overload_secs: u64,
    #[arg(long, default_value_t = 10.0)]
    overload_factor: f64,
    #[arg(long)]
    out: PathBuf,
}

#[derive(serde::Deserialize)]
struct SeedFile {
    partner_key: String,
    run_id: String,
    customers: Vec<Customer>,
}

fn read_env(path: &std::path::Path) -> anyhow::Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect())
}

fn kinds(args: &Args) -> anyhow::Result<Vec<Kind>> {
    if args.kinds.is_empty() {
        return Ok(Kind::ALL.to_vec());
    }
    args.kinds
        .iter()
        .map(|k| {
            Kind::ALL
                .into_iter()
                .find(|x| {
                    serde_json::to_value(x)
                        .ok()
                        .and_then(|v| v.as_str().map(|s| s == k))
                        == Some(true)
                })
                .with_context(|| format!("unknown fault kind {k}"))
        })
        .collect()
}

/// Global's replicas, where cells.sh puts them.
fn global_urls(args: &Args) -> Vec<String> {
    (1..=args.replicas)
        .map(|r| {
            let port = if r == 1 {
                args.global_port
            } else {
                args.global_port + 20 + r as u16
            };
            format!("http://127.0.0.1:{port}")
        })
        .collect()
}

/// One generator task per kind of request.
fn start_load(world: &Arc<World>, args: &Args) -> Vec<tokio::task::JoinHandle<()>> {
    let rates = Rates {
        events: args.events_per_sec,
        batches: args.batches_per_sec,
        batch_size: args.batch_size,
        authorizations: args.authorizations_per_sec,
        logins: args.logins_per_sec,
    };
    [
        (Op::Event, rates.events),
        (Op::Batch, rates.batches),
        (Op::Authorization, rates.authorizations),
        (Op::Login, rates.logins),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (op, rate))| {
        let seed = args.seed.wrapping_mul(31).wrapping_add(i as u64);
        tokio::spawn(world.clone().drive(op, rate, rates, seed))
    })
    .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secrets = read_env(&args.state.join("secrets.env"))?;
    let seed: SeedFile = serde_json::from_slice(&std::fs::read(&args.seed_file)?)?;
    let kinds = kinds(&args)?;
    let world = Arc::new(World::new(
        global_urls(&args),
        seed.partner_key,
        seed.customers,
        seed.run_id,
    ));
    let schedule = plan::schedule(
        args.seed,
        args.faults_per_kind,
        &kinds,
        args.shards,
        args.replicas,
    );
    eprintln!(
        "[chaos] seed {}: {} faults ({} kinds x {}), {} customers",
        args.seed,
        schedule.len(),
        kinds.len(),
        args.faults_per_kind,
        world.customers.len()
    );
    let drivers = start_load(&world, &args);
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    let overload = maybe_overload(&world, &args).await;
    let warmup_ms = world.rec.now_ms();
    let procs = faults::Processes {
        state: args.state.clone(),
        cells_script: args.cells_script.clone(),
    };
    let dog = Arc::new(run::Watchdog::new());
    let watching = tokio::spawn(dog.clone().watch(procs.clone()));
    let outcomes = run::faults(world.clone(), procs, schedule, dog.clone()).await;
    tokio::time::sleep(Duration::from_secs(args.warmup_secs)).await;
    stop_load(&world, drivers).await;
    let findings = settle(&world, &args, &secrets).await?;
    dog.done.store(true, Ordering::Relaxed);
    let _ = watching.await;
    let gave_up = world.rec.gave_up().into_iter().collect();
    let dropped = world.dropped.load(Ordering::Relaxed);
    let mut r = report::build(
        args.seed,
        &world.rec.samples(),
        outcomes,
        warmup_ms,
        (dropped, gave_up),
        findings,
    );
    r.overload = overload;
    write_report(&args, &r)
}

/// Stops the generators and waits for every request in flight.
async fn stop_load(world: &World, drivers: Vec<tokio::task::JoinHandle<()>>) {
    world.stopping.store(true, Ordering::Relaxed);
    for d in drivers {
        let _ = d.await;
    }
    world.drain().await;
    eprintln!(
        "[chaos] load stopped at {} s; waiting for the cells to catch up",
        world.rec.now_ms() / 1000
    );
}

/// The overload phase, when asked for (`--overload-secs`).
async fn maybe_overload(world: &Arc<World>, args: &Args) -> Option<overload::Overload> {
    if args.overload_secs == 0 {
        return None;
    }
    let o = overload::run(
        world.clone(),
        args.state.clone(),
        args.overload_factor,
        args.overload_secs,
    );
    Some(o.await)
}

/// Waits for every shard's consumers to catch up, then checks; checks again
/// while events are still missing, until `quiesce_secs`.
async fn settle(
    world: &World,
    args: &Args,
    secrets: &HashMap<String, String>,
) -> anyhow::Result<check::Findings> {
    let deadline = Instant::now() + Duration::from_secs(args.quiesce_secs);
    let cells: Vec<CellDb> = (1..=args.shards)
        .map(|i| CellDb {
            cell: i,
            url: format!(
                "postgres://postgres:postgres@127.0.0.1:{}/cellbank_shard_{i}",
                args.pg_base + i as u16
            ),
        })
        .collect();
    for i in 1..=args.shards {
        let url = format!(
            "http://127.0.0.1:{}/internal/v1/lag",
            args.global_port + i as u16
        );
        let token = secrets
            .get(&format!("SHARD_{i}_INTERNAL_TOKEN"))
            .cloned()
            .unwrap_or_default();
        while Instant::now() < deadline {
            let r = world.client.get(&url).bearer_auth(&token).send().await;
            let total = match r {
                Ok(resp) => resp
                    .json::<serde_json::Value>()
                    .await
                    .ok()
                    .and_then(|v| v["total"].as_i64()),
                Err(_) => None,
            };
            if total == Some(0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    loop {
        let f = check::check(world, &cells, args.credit_limit).await?;
        if f.lost == 0 || Instant::now() >= deadline {
            return Ok(f);
        }
        eprintln!(
            "[chaos] {} accepted events not applied yet; checking again",
            f.lost
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

fn write_report(args: &Args, r: &report::Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_vec_pretty(r)?)?;
    let mut md = report::markdown(r);
    if let Some(o) = &r.overload {
        md.push_str(&overload::markdown(o));
    }
    std::fs::write(args.out.join("report.md"), &md)?;
    println!("{md}");
    let unrecovered = r
        .outcomes
        .iter()
        .filter(|o| o.recovered_ms.is_none())
        .count();
    let violations = r.findings.violations();
    eprintln!("[chaos] seed {}: {} faults, {unrecovered} not recovered, {violations} invariant violations; report in {}", r.seed, r.faults, args.out.display());
    if violations > 0 || unrecovered > 0 {
        eprintln!(
            "[chaos] findings: {}",
            serde_json::to_string_pretty(&r.findings)?
        );
        std::process::exit(1);
    }
    Ok(())
}
