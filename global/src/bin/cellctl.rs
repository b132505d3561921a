//! `cellctl`: the operator's command line over the global ops API and, via
//! the shard registry, each shard's admin API.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "cellctl", about = "Operate a Cellbank platform")]
struct Cli {
    /// Base URL of the global tier.
    #[arg(
        long = "global",
        env = "CELLCTL_GLOBAL_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    global: String,
    /// Admin bearer token (global's and the shards' auth.admin_token).
    #[arg(
        long = "admin-token",
        env = "CELLCTL_ADMIN_TOKEN",
        default_value = "",
        hide_env_values = true,
        global = true
    )]
    admin_token: String,
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
}

#[derive(Subcommand)]
enum ConsumersCmd {
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
enum ShardsCmd {
    List,
    Add(AddShard),
    Drain { id: String },
}

#[derive(Args)]
struct AddShard {
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

#[derive(Subcommand)]
enum CustomersCmd {
    Show { id: String },
}

#[derive(Subcommand)]
enum DeadLettersCmd {
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

struct Client {
    http: reqwest::Client,
    global: String,
    token: String,
}

impl Client {
    fn url(base: &str, path: &str) -> String {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .context("send request")?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("");
            anyhow::bail!(
                "{status}: {} {detail}",
                body["title"].as_str().unwrap_or("")
            );
        }
        Ok(body)
    }

    async fn get(&self, base: &str, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(Self::url(base, path))).await
    }

    async fn post(&self, base: &str, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(Self::url(base, path)).json(body))
            .await
    }

    async fn shard_internal_url(&self, id: &str) -> anyhow::Result<String> {
        let shards = self.get(&self.global, "/ops/v1/shards").await?;
        shards["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["id"] == id)
            .and_then(|s| s["internal_url"].as_str())
            .map(str::to_owned)
            .with_context(|| format!("no shard {id} in the registry"))
    }
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs one command; `Ok(false)` when it ran but found something unhealthy.
async fn run(cli: Cli) -> anyhow::Result<bool> {
    let c = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        global: cli.global,
        token: cli.admin_token,
    };
    match cli.command {
        Command::Shards(cmd) => shards(&c, cmd).await?,
        Command::Health => return health(&c).await,
        Command::Customers(CustomersCmd::Show { id }) => {
            print(&c.get(&c.global, &format!("/ops/v1/customers/{id}")).await?);
        }
        Command::DeadLetters(cmd) => dead_letters(&c, cmd).await?,
        Command::Consumers(cmd) => consumers(&c, cmd).await?,
    }
    Ok(true)
}

async fn shards(c: &Client, cmd: ShardsCmd) -> anyhow::Result<()> {
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
async fn health(c: &Client) -> anyhow::Result<bool> {
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

async fn dead_letters(c: &Client, cmd: DeadLettersCmd) -> anyhow::Result<()> {
    match cmd {
        DeadLettersCmd::List { shard, limit } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/dead-letters?limit={limit}");
            print(&c.get(&base, &path).await?);
        }
        DeadLettersCmd::Republish { shard, id, all } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = match (id, all) {
                (_, true) => "/admin/v1/dead-letters/republish-all".to_owned(),
                (Some(id), false) => format!("/admin/v1/dead-letters/{id}/republish"),
                (None, false) => anyhow::bail!("give --id X or --all"),
            };
            print(&c.post(&base, &path, &Value::Null).await?);
        }
    }
    Ok(())
}

async fn consumers(c: &Client, cmd: ConsumersCmd) -> anyhow::Result<()> {
    match cmd {
        ConsumersCmd::List { shard } => {
            let base = c.shard_internal_url(&shard).await?;
            print(&c.get(&base, "/admin/v1/consumers").await?);
        }
        ConsumersCmd::Hold { shard, name } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/consumers/{name}/hold");
            print(&c.send(c.http.put(Client::url(&base, &path))).await?);
        }
        ConsumersCmd::Release { shard, name } => {
            let base = c.shard_internal_url(&shard).await?;
            let path = format!("/admin/v1/consumers/{name}/hold");
            print(&c.send(c.http.delete(Client::url(&base, &path))).await?);
        }
    }
    Ok(())
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
