//! `cellbank-exporter`: `config-keys` lists the settings' env vars; otherwise
//! `[--config FILE]` exports the cell's change log until SIGTERM.

use std::path::PathBuf;

use anyhow::Context as _;
use cellbank_exporter::Settings;
use tokio_util::sync::CancellationToken;

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
        _ => anyhow::bail!("usage: cellbank-exporter [config-keys | --config FILE]"),
    }
    let settings: Settings =
        cellbank_shared::config::load(file.as_deref()).context("load settings")?;
    let _telemetry = cellbank_shared::telemetry::init(&settings.telemetry, "cellbank-exporter")?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        cellbank_shared::http::shutdown_signal().await;
        stop.cancel();
    });
    cellbank_exporter::run(settings, shutdown).await
}
