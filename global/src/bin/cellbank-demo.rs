//! `cellbank-demo`: the platform's main job on one machine, end to end and
//! only through public APIs. Onboards customers across the shards, logs in
//! and issues each a card with their own token, follows the HAL links (never
//! building a shard URL), routes deposits through global's batch endpoint and
//! card purchases through its authorization proxy as a registered partner,
//! then prints a per-shard summary from each cell's admin API.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(
    name = "cellbank-demo",
    about = "Run the Cellbank demo against a running platform"
)]
struct Cli {
    /// Base URL of the global tier.
    #[arg(
        long,
        env = "CELLCTL_GLOBAL_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    global: String,
    /// Base URL of global's ops API (its own port).
    #[arg(
        long = "ops-url",
        env = "CELLBANK_OPS_URL",
        default_value = "http://127.0.0.1:8090"
    )]
    ops: String,
    /// Global's admin token (used only to read the shard registry).
    #[arg(
        long = "admin-token",
        env = "CELLCTL_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: String,
    /// The key of a partner with the events and authorizations scopes.
    #[arg(
        long = "partner-key",
        env = "CELLBANK_PARTNER_KEY",
        hide_env_values = true
    )]
    partner_key: String,
    /// Each shard's admin token, for the summaries: `shard-1=TOKEN,shard-2=TOKEN`.
    #[arg(
        long = "shard-admin-tokens",
        env = "CELLBANK_SHARD_ADMIN_TOKENS",
        default_value = "",
        hide_env_values = true
    )]
    shard_admin_tokens: String,
    /// How many customers to onboard.
    #[arg(long, default_value_t = 6)]
    customers: usize,
}

struct Demo {
    http: reqwest::Client,
    global: String,
    ops: String,
    admin: String,
    partner: String,
    shard_admins: BTreeMap<String, String>,
}

impl Demo {
    async fn call(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let resp = req.send().await.with_context(|| format!("{what}: send"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{what}: {status}: {body}");
        }
        Ok(body)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.global.trim_end_matches('/'), path)
    }

    async fn post(&self, path: &str, body: Value, what: &str) -> anyhow::Result<Value> {
        self.call(self.http.post(self.url(path)).json(&body), what)
            .await
    }

    /// A partner's call (events, authorizations).
    async fn partner_post(&self, path: &str, body: Value, what: &str) -> anyhow::Result<Value> {
        let req = self.http.post(self.url(path)).bearer_auth(&self.partner);
        self.call(req.json(&body), what).await
    }

    async fn admin_get(&self, url: &str, token: &str, what: &str) -> anyhow::Result<Value> {
        self.call(self.http.get(url).bearer_auth(token), what).await
    }
}

/// `shard-1=TOKEN,shard-2=TOKEN` as a map.
fn parse_tokens(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn link(doc: &Value, rel: &str) -> anyhow::Result<String> {
    doc["_links"][rel]["href"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("document has no `{rel}` link: {doc}"))
}

/// A customer the demo onboarded, with the card issued to them.
struct DemoCustomer {
    id: String,
    login: String,
    shard: String,
    account: String,
    pan: String,
    /// The card's limit, from the credit policy.
    limit: i64,
}

impl DemoCustomer {
    fn last4(&self) -> &str {
        &self.pan[self.pan.len() - 4..]
    }

    /// The deposit phase 2 makes to the `i`th customer.
    fn deposit(i: usize) -> i64 {
        100_000 + i as i64 * 1_000
    }
}

const PASSWORD: &str = "correct horse battery";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let demo = Demo {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?,
        global: cli.global.clone(),
        ops: cli.ops.clone(),
        admin: cli.admin_token.clone(),
        partner: cli.partner_key.clone(),
        shard_admins: parse_tokens(&cli.shard_admin_tokens),
    };
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    println!("== cellbank demo (run {run}) against {}", cli.global);

    let mut customers: Vec<DemoCustomer> = Vec::new();
    for i in 0..cli.customers {
        customers.push(onboard(&demo, &run, i).await?);
    }
    route_deposits(&demo, &run, &customers).await?;
    let (approved, declined) = purchase(&demo, &run, &customers).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    for (i, customer) in customers.iter().enumerate() {
        log_in_and_check(&demo, i, customer, deadline).await?;
    }
    if let Some(first) = customers.first_mut() {
        move_customer(&demo, first).await?;
        log_in_and_check(&demo, 0, first, Instant::now() + Duration::from_secs(30)).await?;
    }
    pay_each_other(&demo, &customers).await?;
    print_summary(&demo, &customers).await?;
    println!("\npurchases: {approved} approved, {declined} declined (over the limit)");
    Ok(())
}

/// Phase 1: onboards a customer (global places them on the least-loaded active
/// shard), logs in and, with their own token, follows the login document's
/// `issue_card` link (the limit comes from the credit policy).
async fn onboard(demo: &Demo, run: &str, i: usize) -> anyhow::Result<DemoCustomer> {
    let login = format!("demo-{run}-{i}@cellbank.dev");
    let doc = demo
        .post(
            "/v1/customers",
            json!({"name": format!("Demo Customer {i}"), "login": login, "password": PASSWORD}),
            "onboard customer",
        )
        .await?;
    let id = doc["customer_id"].as_str().context("customer_id")?;
    let shard = doc["shard"].as_str().context("shard")?.to_owned();
    let account = doc["account_number"]
        .as_str()
        .context("account_number")?
        .to_owned();
    let session = demo
        .post(
            "/v1/login",
            json!({"login": login, "password": PASSWORD}),
            "log in to issue a card",
        )
        .await?;
    let token = session["access_token"].as_str().context("access_token")?;
    let issue = link(&session, "issue_card")?;
    let card = demo
        .call(
            demo.http
                .post(demo.url(&issue))
                .bearer_auth(token)
                .json(&json!({"currency": "BRL"})),
            "issue card",
        )
        .await?;
    anyhow::ensure!(id == session["customer_id"], "logged in as someone else");
    let pan = card["pan"].as_str().context("pan")?.to_owned();
    let limit = card["credit_limit"].as_i64().context("credit_limit")?;
    let customer = DemoCustomer {
        id: id.to_owned(),
        login,
        shard,
        account,
        pan,
        limit,
    };
    println!(
        "onboarded {} -> {} (account {}, card ****{})",
        customer.login,
        customer.shard,
        customer.account,
        customer.last4()
    );
    Ok(customer)
}

/// Phase 2: deposits, routed asynchronously through global into each owner's
/// shard broker; then one again, which the shard applies once.
async fn route_deposits(demo: &Demo, run: &str, customers: &[DemoCustomer]) -> anyhow::Result<()> {
    let events: Vec<Value> = customers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({
                "event_id": format!("demo-{run}-deposit-{i}"),
                "type": "deposit",
                "account_number": c.account,
                "amount": DemoCustomer::deposit(i),
                "currency": "BRL",
                "occurred_at": chrono::Utc::now().to_rfc3339(),
            })
        })
        .collect();
    let started = Instant::now();
    let batch = demo
        .partner_post(
            "/v1/events/batch",
            json!({"events": events}),
            "route deposits",
        )
        .await?;
    println!(
        "routed {} deposits in one batch in {:?}: {}",
        customers.len(),
        started.elapsed(),
        batch["accepted"]
    );
    demo.partner_post("/v1/events", events[0].clone(), "route a duplicate deposit")
        .await?;
    println!(
        "re-sent deposit {} (a duplicate, applied once)",
        events[0]["event_id"]
    );
    Ok(())
}

/// Phase 3: card purchases, authorized synchronously by each card's shard: one
/// within the limit, one over it. Returns (approved, declined).
async fn purchase(
    demo: &Demo,
    run: &str,
    customers: &[DemoCustomer],
) -> anyhow::Result<(u32, u32)> {
    let mut approved = 0;
    let mut declined = 0;
    for (i, c) in customers.iter().enumerate() {
        for (j, amount) in [4_990_i64, c.limit + 1].into_iter().enumerate() {
            let started = Instant::now();
            let d = demo
                .partner_post(
                    "/v1/authorizations",
                    json!({
                        "pan": c.pan,
                        "amount": amount,
                        "currency": "BRL",
                        "merchant": {"name": "Padaria Central", "mcc": "5812", "country": "BR"},
                        "network_reference": format!("demo-{run}-{i}-{j}"),
                    }),
                    "authorize purchase",
                )
                .await?;
            let decision = d["decision"].as_str().unwrap_or("?");
            if decision == "approved" {
                approved += 1;
            } else {
                declined += 1;
            }
            println!(
                "purchase of {amount} on ****{} at {}: {decision} ({}) in {:?}",
                c.last4(),
                c.shard,
                d["reason"].as_str().unwrap_or(""),
                started.elapsed()
            );
        }
    }
    Ok((approved, declined))
}

/// Phase 4: logs in and follows the HAL links straight to the shard, until the
/// deposit shows in the balance (or the deadline passes).
async fn log_in_and_check(
    demo: &Demo,
    i: usize,
    c: &DemoCustomer,
    deadline: Instant,
) -> anyhow::Result<()> {
    let doc = demo
        .post(
            "/v1/login",
            json!({"login": c.login, "password": PASSWORD}),
            "log in",
        )
        .await?;
    let token = doc["access_token"].as_str().context("access_token")?;
    let accounts_url = link(&doc, "accounts")?;
    let expected = DemoCustomer::deposit(i);
    let (balance, account) = loop {
        let accounts = demo
            .call(
                demo.http.get(&accounts_url).bearer_auth(token),
                "list accounts",
            )
            .await?;
        let first = &accounts["_embedded"]["accounts"][0];
        let balance = first["balance"].as_i64().unwrap_or_default();
        if balance == expected || Instant::now() > deadline {
            break (balance, first.clone());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let entries = match link(&account, "entries").ok() {
        Some(u) => demo
            .call(demo.http.get(&u).bearer_auth(token), "list entries")
            .await?["_embedded"]["entries"]
            .as_array()
            .map_or(0, Vec::len),
        None => 0,
    };
    println!(
        "{} logged in: links point at {} ({}); checking balance {balance} (expected {expected}), {entries} entries",
        c.login,
        c.shard,
        accounts_url.split("/v1/").next().unwrap_or(""),
    );
    if balance != expected {
        bail!("{}: balance {balance} never reached {expected}", c.login);
    }
    Ok(())
}

/// Phase 5: the first customer moves to another shard while the platform
/// serves (`POST /ops/v1/moves`, followed to its end); logging in again then
/// leads the app to the new shard, with the same money.
async fn move_customer(demo: &Demo, c: &mut DemoCustomer) -> anyhow::Result<()> {
    let ops = demo.ops.trim_end_matches('/').to_owned();
    let shards = demo
        .admin_get(&format!("{ops}/ops/v1/shards"), &demo.admin, "list shards")
        .await?;
    let Some(to) = shards["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|s| {
            let id = s["id"].as_str()?;
            (id != c.shard && s["state"] == "active").then(|| id.to_owned())
        })
    else {
        println!(
            "
(one active shard only: no move)"
        );
        return Ok(());
    };
    let req = demo
        .http
        .post(format!("{ops}/ops/v1/moves"))
        .bearer_auth(&demo.admin)
        .json(&json!({"customer_id": c.id, "to": to}));
    let mv = demo.call(req, "plan a move").await?;
    let url = format!(
        "{ops}/ops/v1/moves/{}",
        mv["id"].as_str().context("move id")?
    );
    let started = Instant::now();
    let done = loop {
        let m = demo.admin_get(&url, &demo.admin, "follow the move").await?;
        if m["phase"] == "completed"
            || m["phase"] == "aborted"
            || started.elapsed() > Duration::from_secs(60)
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    anyhow::ensure!(
        done["phase"] == "completed",
        "the move did not complete: {done}"
    );
    println!(
        "
moved {} from {} to {} online: {} events copied, traffic held {:.0} ms, {:.1} s in all",
        c.login,
        c.shard,
        to,
        done["copied_events"],
        done["freeze_ms"].as_f64().unwrap_or(f64::NAN),
        started.elapsed().as_secs_f64()
    );
    c.shard = to;
    Ok(())
}

/// A transfer the demo makes: who pays whom, how the recipient is named,
/// and the state it must end in.
struct DemoTransfer<'a> {
    from: &'a DemoCustomer,
    to: Value,
    what: String,
    ends: &'static str,
}

/// Phase 6: customers pay each other through their login's `transfers`
/// link: across shards by account number and by login (pending until
/// global's transfer service credits the recipient's shard and settles back),
/// within a shard at once, and to a number nobody holds (failed, the money
/// returned). Each is followed by its `self` link until settled.
async fn pay_each_other(demo: &Demo, customers: &[DemoCustomer]) -> anyhow::Result<()> {
    let Some(a) = customers.first() else {
        return Ok(());
    };
    let mut plan = Vec::new();
    if let Some(b) = customers.iter().find(|c| c.shard != a.shard) {
        plan.push(DemoTransfer {
            from: a,
            to: json!({"to_account_number": b.account}),
            what: format!("{} -> {} by account number", a.shard, b.shard),
            ends: "completed",
        });
        plan.push(DemoTransfer {
            from: b,
            to: json!({"to_login": a.login}),
            what: format!("{} -> {} by login", b.shard, a.shard),
            ends: "completed",
        });
    }
    if let Some(c) = customers.iter().skip(1).find(|c| c.shard == a.shard) {
        plan.push(DemoTransfer {
            from: c,
            to: json!({"to_account_number": a.account}),
            what: format!("within {}", a.shard),
            ends: "completed",
        });
    }
    plan.push(DemoTransfer {
        from: a,
        to: json!({"to_account_number": "9900000000000"}),
        what: "to a number nobody holds".into(),
        ends: "failed",
    });
    println!();
    for t in &plan {
        transfer_and_follow(demo, t).await?;
    }
    Ok(())
}

/// One transfer, posted to the sender's `transfers` link and followed.
async fn transfer_and_follow(demo: &Demo, t: &DemoTransfer<'_>) -> anyhow::Result<()> {
    let doc = demo
        .post(
            "/v1/login",
            json!({"login": t.from.login, "password": PASSWORD}),
            "log in",
        )
        .await?;
    let token = doc["access_token"].as_str().context("access_token")?;
    let accounts = demo
        .call(
            demo.http.get(link(&doc, "accounts")?).bearer_auth(token),
            "list accounts",
        )
        .await?;
    let from = &accounts["_embedded"]["accounts"][0]["account_id"];
    let mut body = json!({"transfer_id": uuid::Uuid::new_v4(), "from_account_id": from,
                          "amount": 1_000, "currency": "BRL"});
    body.as_object_mut()
        .context("body")?
        .extend(t.to.as_object().cloned().unwrap_or_default());
    let started = Instant::now();
    let req = demo
        .http
        .post(link(&doc, "transfers")?)
        .bearer_auth(token)
        .json(&body);
    let mut transfer = demo.call(req, "transfer").await?;
    let first = transfer["state"].as_str().unwrap_or_default().to_owned();
    while transfer["state"] == "pending" && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let req = demo.http.get(link(&transfer, "self")?).bearer_auth(token);
        transfer = demo.call(req, "follow the transfer").await?;
    }
    let reason = transfer["reason"]
        .as_str()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!(
        "transfer {}: {first} -> {} in {:.0} ms{reason}",
        t.what,
        transfer["state"].as_str().unwrap_or("?"),
        started.elapsed().as_secs_f64() * 1000.0
    );
    anyhow::ensure!(
        transfer["state"] == t.ends,
        "transfer {} ended {}, not {}",
        t.what,
        transfer["state"],
        t.ends
    );
    Ok(())
}

/// Phase 7: per-shard summary, straight from each cell's admin API.
async fn print_summary(demo: &Demo, customers: &[DemoCustomer]) -> anyhow::Result<()> {
    let shards = demo
        .admin_get(
            &format!("{}/ops/v1/shards", demo.ops.trim_end_matches('/')),
            &demo.admin,
            "list shards",
        )
        .await?;
    let mut per_shard: BTreeMap<String, usize> = BTreeMap::new();
    for c in customers {
        *per_shard.entry(c.shard.clone()).or_default() += 1;
    }
    println!(
        "\n{:<10} {:>9} {:>8} {:>14} {:>12} {:>13}  trial balance",
        "shard", "customers", "(demo)", "events applied", "authorized", "dead letters"
    );
    for s in shards["items"].as_array().cloned().unwrap_or_default() {
        let id = s["id"].as_str().unwrap_or("?");
        let internal = s["internal_url"].as_str().unwrap_or("");
        let Some(token) = demo.shard_admins.get(id) else {
            println!("{id:<10} (no admin token given for this shard; summary skipped)");
            continue;
        };
        let sum = demo
            .admin_get(
                &format!("{}/admin/v1/summary", internal.trim_end_matches('/')),
                token,
                "shard summary",
            )
            .await?;
        println!(
            "{:<10} {:>9} {:>8} {:>14} {:>12} {:>13}  {}",
            id,
            sum["customers"].to_string(),
            per_shard.get(id).copied().unwrap_or(0),
            sum["events_applied"].to_string(),
            sum["authorizations"].to_string(),
            sum["dead_letters"].to_string(),
            trial_balance(&sum)
        );
    }
    Ok(())
}

/// A shard summary's trial balance, one `CUR balance` per currency.
fn trial_balance(summary: &Value) -> String {
    let trial: Vec<String> = summary["trial_balance"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|t| format!("{} {}", t["currency"].as_str().unwrap_or("?"), t["balance"]))
        .collect();
    if trial.is_empty() {
        "0".to_owned()
    } else {
        trial.join(", ")
    }
}
