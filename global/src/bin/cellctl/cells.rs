//! Commands over a shard's admin API (with that shard's admin token):
//! dead letters and consumer holds.

use clap::Subcommand;
use serde_json::Value;

use crate::client::{print, Client};

#[derive(Subcommand)]
pub enum ConsumersCmd {
    List {
        #[arg(long)]
        shard: String,
    },
    Hold {
        #[arg(long)]
        shard: String,
        /// ledger-inbound, ledger-authorizations or mortician.
        name: String,
    },
    Release {
        #[arg(long)]
        shard: String,
        name: String,
    },
}

#[derive(Subcommand)]
pub enum DeadLettersCmd {
    List {
        #[arg(long)]
        shard: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    Republish {
        #[arg(long)]
        shard: String,
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

pub async fn dead_letters(c: &Client, cmd: DeadLettersCmd) -> anyhow::Result<()> {
    match cmd {
        DeadLettersCmd::List { shard, limit } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/dead-letters?limit={limit}");
            print(&c.send_shard(c.http.get(Client::url(&base, &path))).await?);
        }
        DeadLettersCmd::Republish { shard, id, all } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = match (id, all) {
                (_, true) => "/admin/v1/dead-letters/republish-all".to_owned(),
                (Some(id), false) => format!("/admin/v1/dead-letters/{id}/republish"),
                (None, false) => anyhow::bail!("give --id X or --all"),
            };
            let req = c.http.post(Client::url(&base, &path)).json(&Value::Null);
            print(&c.send_shard(req).await?);
        }
    }
    Ok(())
}

pub async fn consumers(c: &Client, cmd: ConsumersCmd) -> anyhow::Result<()> {
    match cmd {
        ConsumersCmd::List { shard } => {
            let base = c.shard_internal_url(&shard).await?;
            let req = c.http.get(Client::url(&base, "/admin/v1/consumers"));
            print(&c.send_shard(req).await?);
        }
        ConsumersCmd::Hold { shard, name } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/consumers/{name}/hold");
            print(&c.send_shard(c.http.put(Client::url(&base, &path))).await?);
        }
        ConsumersCmd::Release { shard, name } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/consumers/{name}/hold");
            print(
                &c.send_shard(c.http.delete(Client::url(&base, &path)))
                    .await?,
            );
        }
    }
    Ok(())
}
