//! `cellbank-shard`: `config-keys` lists the settings' env vars; otherwise
//! `[--config FILE]` runs the cell.

use std::path::PathBuf;

use anyhow::Context as _;
use cellbank_shard::{Application, Settings};

/// mimalloc: the request paths allocate many small short-lived objects; the
/// system allocator's locking showed up in profiles (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut file: Option<PathBuf> = None;
    match args.as_slice() {
        [cmd] if cmd == "config-keys" => {
            for k in cellbank_shared::config::env_keys::<Settings>() {
                println!("{k}");
            }
            return Ok(());
        }
        [] => {}
        [flag, path] if flag == "--config" => file = Some(PathBuf::from(path)),
        _ => anyhow::bail!("usage: cellbank-shard [config-keys | --config FILE]"),
    }
    let settings: Settings =
        cellbank_shared::config::load(file.as_deref()).context("load settings")?;
    let _telemetry = cellbank_shared::telemetry::init(&settings.telemetry, "cellbank-shard")?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(cellbank_shared::http::shutdown_signal())
        .await
}
