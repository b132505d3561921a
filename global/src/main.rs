//! `cellbank-global`: `config-keys` lists the settings' environment
//! variables; otherwise `[--config FILE]` runs the router tier.

use std::path::PathBuf;

use anyhow::Context as _;

use cellbank_global::{Application, Settings};

/// mimalloc: the request paths allocate many small short-lived objects; the
/// system allocator's locking showed up in profiles (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "config-keys" => {
                for key in cellbank_shared::config::env_keys::<Settings>() {
                    println!("{key}");
                }
                return Ok(());
            }
            "--config" => config = Some(args.next().context("--config needs a file")?.into()),
            "-h" | "--help" => {
                println!("usage: cellbank-global [--config FILE] | cellbank-global config-keys");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument `{other}` (try --help)"),
        }
    }
    let settings: Settings = cellbank_shared::config::load(config.as_deref())?;
    let _telemetry = cellbank_shared::telemetry::init(&settings.telemetry, "cellbank-global")?;
    let app = Application::build(settings).await?;
    app.run_until_stopped(cellbank_shared::http::shutdown_signal())
        .await
}
