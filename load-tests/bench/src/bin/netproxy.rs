//! A cell's network link for the chaos run: one process forwards TCP for
//! every port of a cell (its HTTP API, its broker), so stopping the process
//! (SIGSTOP) cuts the cell off the network without closing a socket, as a
//! partition does: connections hang, new ones are accepted by the kernel and
//! then go nowhere. SIGCONT heals the link.
//!
//!     netproxy 127.0.0.1:18181=127.0.0.1:8081 127.0.0.1:19193=127.0.0.1:19093

use anyhow::{bail, Context as _};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let pairs: Vec<(String, String)> = std::env::args()
        .skip(1)
        .map(|a| match a.split_once('=') {
            Some((l, t)) => Ok((l.to_owned(), t.to_owned())),
            None => bail!("expected LISTEN=TARGET, got {a}"),
        })
        .collect::<anyhow::Result<_>>()?;
    if pairs.is_empty() {
        bail!("usage: netproxy LISTEN=TARGET...");
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (listen, target) in pairs {
        let listener = TcpListener::bind(&listen)
            .await
            .with_context(|| format!("bind {listen}"))?;
        tasks.spawn(forward_all(listener, target));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// Accepts for ever; each connection is copied both ways to `target`.
async fn forward_all(listener: TcpListener, target: String) -> anyhow::Result<()> {
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let target = target.clone();
        tokio::spawn(async move {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}
