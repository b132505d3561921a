//! `cellctl shards` and `cellctl health`: the shard registry and the
//! readiness of global and of every shard.

use clap::{Args, Subcommand};
use serde_json::Value;

use crate::client::{print, Client};

#[derive(Subcommand)]
pub enum ShardsCmd {
    List,
    Add(AddShard),
    Drain { id: String },
}

#[derive(Args)]
pub struct AddShard {
    #[arg(long)]
    id: String,
    #[arg(long)]
    public_url: String,
    #[arg(long)]
    internal_url: String,
    #[arg(long = "broker-bootstrap", alias = "broker")]
    broker_bootstrap: String,
    #[arg(long, default_value_t = 1_000_000)]
    capacity: i64,
}

pub async fn shards(c: &Client, cmd: ShardsCmd) -> anyhow::Result<()> {
    match cmd {
        ShardsCmd::List => print_shards(&c.get(&c.global, "/ops/v1/shards").await?),
        ShardsCmd::Add(a) => {
            let body = serde_json::json!({
                "id": a.id, "public_url": a.public_url, "internal_url": a.internal_url,
                "broker_bootstrap": a.broker_bootstrap, "capacity": a.capacity,
            });
            print(&c.post(&c.global, "/ops/v1/shards", &body).await?);
        }
        ShardsCmd::Drain { id } => {
            let path = format!("/ops/v1/shards/{id}/drain");
            print(&c.post(&c.global, &path, &Value::Null).await?);
        }
    }
    Ok(())
}

/// The shard registry as a table.
fn print_shards(v: &Value) {
    println!(
        "{:<10} {:<9} {:>10} {:>10}  {:<28} {:<28} broker",
        "ID", "STATE", "CUSTOMERS", "CAPACITY", "PUBLIC", "INTERNAL"
    );
    for s in v["items"].as_array().into_iter().flatten() {
        println!(
            "{:<10} {:<9} {:>10} {:>10}  {:<28} {:<28} {}",
            s["id"].as_str().unwrap_or(""),
            s["state"].as_str().unwrap_or(""),
            s["customers"].to_string(),
            s["capacity"].to_string(),
            s["public_url"].as_str().unwrap_or(""),
            s["internal_url"].as_str().unwrap_or(""),
            s["broker_bootstrap"].as_str().unwrap_or(""),
        );
    }
}

/// Prints the readiness of global and of every registered shard; whether
/// all of them are ready.
pub async fn health(c: &Client) -> anyhow::Result<bool> {
    let g = &c.global;
    let (mut healthy, body) = probe(&c.http, g).await;
    println!(
        "global   {:<12} {}",
        body["status"].as_str().unwrap_or("?"),
        g
    );
    let shards = c.get(g, "/ops/v1/shards").await?;
    for s in shards["items"].as_array().into_iter().flatten() {
        let url = s["internal_url"].as_str().unwrap_or("");
        let (ok, body) = probe(&c.http, url).await;
        healthy &= ok;
        println!(
            "{:<8} {:<12} {}",
            s["id"].as_str().unwrap_or("?"),
            body["status"].as_str().unwrap_or("?"),
            url
        );
    }
    Ok(healthy)
}

/// One service's `/readyz`: whether it is ready, and what it said.
async fn probe(http: &reqwest::Client, base: &str) -> (bool, Value) {
    match http.get(Client::url(base, "/readyz")).send().await {
        Ok(r) => {
            let ok = r.status().is_success();
            (ok, r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(e) => (
            false,
            serde_json::json!({"status": "unreachable", "error": e.to_string()}),
        ),
    }
}
