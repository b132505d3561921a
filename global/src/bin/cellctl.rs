//! `cellctl`: the operator's command line over the global ops API (its own
//! port) and, via the shard registry, each shard's admin API (each shard has
//! its own admin token).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
#[command(
    name = "cellctl",
    about = "Operate a Cellbank platform",
    after_help = "Partners (card network, payment rails) call global with a key of their own:\n  \
        cellctl partners add --name network --scope authorizations --scope events\n  \
        cellctl partners list\n  \
        cellctl partners rotate PARTNER_ID   # a new key; the previous one works until the next rotation\n  \
        cellctl partners revoke PARTNER_ID   # every key of the partner stops working"
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
}

#[derive(Subcommand)]
enum PartnersCmd {
    /// Registers a partner; its key is printed once and kept only as a hash.
    Add {
        #[arg(long)]
        name: String,
        /// events and/or authorizations (repeat the flag).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Requests (events) per second; the platform default otherwise.
        #[arg(long)]
        rate_per_sec: Option<u32>,
        /// Print only the key (for scripts).
        #[arg(long)]
        print_key: bool,
    },
    List,
    /// Every key of the partner stops working.
    Revoke {
        id: String,
    },
    /// A new key; the previous one keeps working until the next rotation.
    Rotate {
        id: String,
        #[arg(long)]
        print_key: bool,
    },
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
    shard_token: String,
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
        Self::send_as(req, &self.token).await
    }

    /// A request to a shard's admin API, with that shard's admin token.
    async fn send_shard(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        if self.shard_token.is_empty() {
            anyhow::bail!(
                "give the shard's admin token: --shard-token or CELLCTL_SHARD_ADMIN_TOKEN"
            );
        }
        Self::send_as(req, &self.shard_token).await
    }

    async fn send_as(req: reqwest::RequestBuilder, token: &str) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(token)
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
        shard_token: cli.shard_token,
    };
    match cli.command {
        Command::Shards(cmd) => shards(&c, cmd).await?,
        Command::Health => return health(&c).await,
        Command::Customers(CustomersCmd::Show { id }) => {
            print(&c.get(&c.global, &format!("/ops/v1/customers/{id}")).await?);
        }
        Command::DeadLetters(cmd) => dead_letters(&c, cmd).await?,
        Command::Consumers(cmd) => consumers(&c, cmd).await?,
        Command::Partners(cmd) => partners(&c, cmd).await?,
    }
    Ok(true)
}

async fn partners(c: &Client, cmd: PartnersCmd) -> anyhow::Result<()> {
    let (answer, print_key) = match cmd {
        PartnersCmd::Add {
            name,
            scopes,
            rate_per_sec,
            print_key,
        } => {
            let mut body = serde_json::json!({ "name": name, "scopes": scopes });
            if let Some(r) = rate_per_sec {
                body["rate_per_sec"] = r.into();
            }
            (
                c.post(&c.global, "/ops/v1/partners", &body).await?,
                print_key,
            )
        }
        PartnersCmd::List => (c.get(&c.global, "/ops/v1/partners").await?, false),
        PartnersCmd::Revoke { id } => {
            let path = format!("/ops/v1/partners/{id}/revoke");
            (c.post(&c.global, &path, &Value::Null).await?, false)
        }
        PartnersCmd::Rotate { id, print_key } => {
            let path = format!("/ops/v1/partners/{id}/rotate");
            (c.post(&c.global, &path, &Value::Null).await?, print_key)
        }
    };
    if print_key {
        println!(
            "{}",
            answer["key"].as_str().context("the answer holds no key")?
        );
    } else {
        print(&answer);
    }
    Ok(())
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

async fn consumers(c: &Client, cmd: ConsumersCmd) -> anyhow::Result<()> {
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
