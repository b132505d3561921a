//! A whole platform of real processes for the tests that move customers:
//! one `cellbank-global` and N `cellbank-shard` processes, each cell with its
//! own database and broker, shards registered, a partner with both scopes,
//! and the calls a test makes (sign-up, cards, events, authorizations,
//! moves) as small helpers. Processes can be killed and started again.
#![allow(dead_code)]

use std::time::Duration;

use cellbank_shared::testkit::{free_port, fresh_database, Broker};
use cellbank_shared::token::TokenSigner;
use std::sync::Mutex;

use serde_json::{json, Value};
use sqlx::PgPool;

use super::{global_bin, ready, shard_bin, Proc};

pub const ADMIN: &str = "moves-admin-token";

fn internal(n: usize) -> String {
    format!("moves-internal-token-{n}")
}

pub fn shard_admin(n: usize) -> String {
    format!("moves-shard-admin-{n}")
}

/// One cell: its process, broker and database.
pub struct Cell {
    pub id: String,
    pub url: String,
    pub db: PgPool,
    pub proc: Mutex<Proc>,
    pub broker: Broker,
    env: Vec<(String, String)>,
}

pub struct Cluster {
    pub http: reqwest::Client,
    pub global_url: String,
    pub ops_url: String,
    pub global: Mutex<Proc>,
    pub cells: Vec<Cell>,
    pub partner_key: String,
    /// The partner's idempotency namespace (`partner:<id>`).
    pub partner_namespace: String,
    pub global_db: PgPool,
    global_env: Vec<(String, String)>,
    pub dir: tempfile::TempDir,
    _global_broker: Broker,
}

/// A customer as a test knows it.
#[derive(Clone, Debug)]
pub struct Customer {
    pub id: String,
    pub login: String,
    pub shard: String,
    pub account_number: String,
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_owned(), v.to_owned())
}

impl Cluster {
    /// Starts global and `shards` cells, registers the cells and a partner.
    pub async fn start(shards: usize, extra_global_env: &[(&str, &str)]) -> Cluster {
        let mut dir = tempfile::tempdir().unwrap();
        // MOVES_KEEP_LOGS=1 keeps the processes' logs for a post-mortem.
        if std::env::var_os("MOVES_KEEP_LOGS").is_some() {
            dir.disable_cleanup(true);
            eprintln!("logs kept in {}", dir.path().display());
        }
        let http = reqwest::Client::new();
        let global_broker = Broker::start().await;
        let global_db_url = fresh_database("moves_global").await;
        let (port, ops_port) = (free_port(), free_port());
        let global_url = format!("http://127.0.0.1:{port}");
        let ops_url = format!("http://127.0.0.1:{ops_port}");
        let tokens: Vec<String> = (1..=shards)
            .map(|n| format!("shard-{n}=\"{}\"", internal(n)))
            .collect();
        let mut global_env = vec![
            kv("CELLBANK__SERVER__PORT", &port.to_string()),
            kv("CELLBANK__DATABASE__URL", &global_db_url),
            kv("CELLBANK__KAFKA__BOOTSTRAP", &global_broker.bootstrap()),
            kv(
                "CELLBANK__AUTH__SIGNING_KEY",
                &TokenSigner::generate_seed_b64(),
            ),
            kv(
                "CELLBANK__AUTH__PAN_HMAC_KEY",
                "moves-pan-key-0123456789abcdef",
            ),
            kv("CELLBANK__AUTH__ADMIN_TOKEN", ADMIN),
            kv(
                "CELLBANK__AUTH__SHARD_TOKENS",
                &format!("{{{}}}", tokens.join(",")),
            ),
            kv("CELLBANK__OPS__PORT", &ops_port.to_string()),
            // See the cells' setting below: one Postgres for every cluster.
            kv("CELLBANK__DATABASE__MAX_CONNECTIONS", "10"),
        ];
        global_env.extend(extra_global_env.iter().map(|(k, v)| kv(k, v)));
        let global = Proc::spawn("global", &global_bin(), &global_env, dir.path());
        ready(&http, &global_url, &global).await;
        let global_db = PgPool::connect(&global_db_url).await.unwrap();
        let mut c = Cluster {
            http,
            global_url,
            ops_url,
            global: Mutex::new(global),
            cells: Vec::new(),
            partner_key: String::new(),
            partner_namespace: String::new(),
            global_db,
            global_env,
            dir,
            _global_broker: global_broker,
        };
        for n in 1..=shards {
            let cell = c.start_cell(n).await;
            c.cells.push(cell);
        }
        let (status, partner) = c
            .ops_post(
                "/ops/v1/partners",
                json!({"name": "moves-network", "scopes": ["events", "authorizations"], "rate_per_sec": 100000}),
            )
            .await;
        assert_eq!(status, 201, "register partner: {partner}");
        c.partner_key = partner["key"].as_str().unwrap().to_owned();
        c.partner_namespace = format!("partner:{}", partner["partner_id"].as_str().unwrap());
        c
    }

    async fn start_cell(&self, n: usize) -> Cell {
        let id = format!("shard-{n}");
        let broker = Broker::start().await;
        let db_url = fresh_database(&format!("moves_shard{n}")).await;
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let env = vec![
            kv("CELLBANK__SHARD__ID", &id),
            kv("CELLBANK__SHARD__PUBLIC_URL", &url),
            kv("CELLBANK__GLOBAL__URL", &self.global_url),
            kv("CELLBANK__SERVER__PORT", &port.to_string()),
            kv("CELLBANK__DATABASE__URL", &db_url),
            kv("CELLBANK__KAFKA__BOOTSTRAP", &broker.bootstrap()),
            kv("CELLBANK__AUTH__ADMIN_TOKEN", &shard_admin(n)),
            kv("CELLBANK__AUTH__INTERNAL_TOKEN", &internal(n)),
            // tansu answers a waiting fetch only when it times out: a short
            // wait keeps a move's fence marker from idling in the log.
            kv("CELLBANK__KAFKA__FETCH_WAIT_MS", "20"),
            // A test binary runs its clusters side by side on one Postgres
            // (100 connections): a cell's pool of 16 plus its two relays'
            // lock connections, times six cells and their globals, reached
            // it in CI (the test's own pool then timed out).
            kv("CELLBANK__DATABASE__MAX_CONNECTIONS", "8"),
        ];
        let proc = Proc::spawn(&id, &shard_bin(), &env, self.dir.path());
        ready(&self.http, &url, &proc).await;
        let (status, body) = self
            .ops_post(
                "/ops/v1/shards",
                json!({"id": id, "public_url": url, "internal_url": url,
                       "broker_bootstrap": broker.bootstrap(), "capacity": 100000}),
            )
            .await;
        assert!(
            status == 201 || status == 200,
            "register {id}: {status} {body}"
        );
        Cell {
            id,
            url,
            db: PgPool::connect(&db_url).await.unwrap(),
            proc: Mutex::new(proc),
            broker,
            env,
        }
    }

    pub fn cell(&self, id: &str) -> &Cell {
        self.cells.iter().find(|c| c.id == id).unwrap()
    }

    /// SIGKILLs a cell's process (its broker and database stay).
    pub fn kill_cell(&self, id: &str) {
        self.cell(id).proc.lock().unwrap().kill();
    }

    /// Starts a killed cell's process again, same settings.
    pub async fn restart_cell(&self, id: &str, name: &str) {
        let cell = self.cell(id);
        let p = Proc::spawn(name, &shard_bin(), &cell.env, self.dir.path());
        ready(&self.http, &cell.url, &p).await;
        *cell.proc.lock().unwrap() = p;
    }

    /// SIGKILLs global (its database and broker stay).
    pub fn kill_global(&self) {
        self.global.lock().unwrap().kill();
    }

    /// Starts a killed global again, same settings.
    pub async fn restart_global(&self, name: &str) {
        let p = Proc::spawn(name, &global_bin(), &self.global_env, self.dir.path());
        ready(&self.http, &self.global_url, &p).await;
        *self.global.lock().unwrap() = p;
    }

    /// Starts another global replica on the same database and broker, with
    /// ports of its own: the process and its public URL.
    pub async fn spawn_global_replica(&self, name: &str) -> (Proc, String) {
        let (port, ops) = (free_port(), free_port());
        let env: Vec<(String, String)> = self
            .global_env
            .iter()
            .map(|(k, v)| match k.as_str() {
                "CELLBANK__SERVER__PORT" => (k.clone(), port.to_string()),
                "CELLBANK__OPS__PORT" => (k.clone(), ops.to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        let p = Proc::spawn(name, &global_bin(), &env, self.dir.path());
        let url = format!("http://127.0.0.1:{port}");
        ready(&self.http, &url, &p).await;
        (p, url)
    }

    /// Global's log so far (for a failure message).
    pub fn global_log(&self) -> String {
        tail(&self.global.lock().unwrap().logs())
    }

    pub async fn ops_post(&self, path: &str, body: Value) -> (u16, Value) {
        send(
            self.http
                .post(format!("{}{path}", self.ops_url))
                .json(&body),
            ADMIN,
        )
        .await
    }

    pub async fn ops_get(&self, path: &str) -> (u16, Value) {
        send(self.http.get(format!("{}{path}", self.ops_url)), ADMIN).await
    }

    /// Signs up `n` customers; answers them with their shard.
    pub async fn sign_up(&self, tag: &str, n: usize) -> Vec<Customer> {
        let mut out = Vec::new();
        for i in 0..n {
            let login = format!("{tag}-{i}@cellbank.dev");
            let r = self
                .http
                .post(format!("{}/v1/customers", self.global_url))
                .json(&json!({"name": format!("{tag} {i}"), "login": login, "password": "moves password"}))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let doc: Value = r.json().await.unwrap_or(Value::Null);
            assert_eq!(status, 201, "sign up: {doc}");
            out.push(Customer {
                id: doc["customer_id"].as_str().unwrap().to_owned(),
                login,
                shard: doc["shard"].as_str().unwrap().to_owned(),
                account_number: doc["account_number"].as_str().unwrap().to_owned(),
            });
        }
        out
    }

    /// Logs in: the login document (token and HAL links).
    pub async fn login(&self, c: &Customer) -> Value {
        let r = self
            .http
            .post(format!("{}/v1/login", self.global_url))
            .json(&json!({"login": c.login, "password": "moves password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        r.json().await.unwrap()
    }

    /// Issues a card (as the back office): (card id, PAN).
    pub async fn issue_card(&self, c: &Customer) -> (String, String) {
        let (status, card) = send(
            self.http
                .post(format!("{}/v1/customers/{}/cards", self.global_url, c.id))
                .json(&json!({})),
            ADMIN,
        )
        .await;
        assert_eq!(status, 201, "issue card: {card}");
        (
            card["card_id"].as_str().unwrap().to_owned(),
            card["pan"].as_str().unwrap().to_owned(),
        )
    }

    /// Sends a deposit as the partner: the status global answered.
    pub async fn deposit(&self, event_id: &str, account: &str, amount: i64) -> u16 {
        let body = json!({
            "event_id": event_id, "type": "deposit", "account_number": account,
            "amount": amount, "currency": "BRL", "occurred_at": "2026-11-28T12:00:00Z",
        });
        let key = self.partner_key.clone();
        send(
            self.http
                .post(format!("{}/v1/events", self.global_url))
                .json(&body),
            &key,
        )
        .await
        .0
    }

    /// Asks for an authorization as the network: the decision.
    pub async fn authorize(&self, pan: &str, amount: i64, reference: &str) -> Value {
        let (status, d) = self.try_authorize(pan, amount, reference).await;
        assert_eq!(status, 200, "authorization: {d}");
        d
    }

    /// Like [`Self::authorize`]: the status (0 if global did not answer).
    pub async fn try_authorize(&self, pan: &str, amount: i64, reference: &str) -> (u16, Value) {
        let body = json!({
            "pan": pan, "amount": amount, "currency": "BRL", "network_reference": reference,
            "merchant": {"name": "Moves Store", "mcc": "5411", "country": "BR"},
        });
        let key = self.partner_key.clone();
        let url = format!("{}/v1/authorizations", self.global_url);
        send(self.http.post(url).json(&body), &key).await
    }

    /// Plans a move: the move resource (202).
    pub async fn start_move(&self, customer: &str, to: &str) -> Value {
        let (status, mv) = self
            .ops_post("/ops/v1/moves", json!({"customer_id": customer, "to": to}))
            .await;
        assert_eq!(status, 202, "plan move: {mv}");
        mv
    }

    /// Waits until the move is completed or aborted; answers it.
    pub async fn finished_move(&self, id: &str, within: Duration) -> Value {
        self.move_reaches(id, &["completed", "aborted"], within)
            .await
    }

    /// Waits until the move is in one of `phases`; answers it.
    pub async fn move_reaches(&self, id: &str, phases: &[&str], within: Duration) -> Value {
        let path = format!("/ops/v1/moves/{id}");
        let deadline = std::time::Instant::now() + within;
        loop {
            let (status, mv) = self.ops_get(&path).await;
            if status == 200 && phases.iter().any(|p| mv["phase"] == *p) {
                return mv;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "move {id} did not reach {phases:?} within {within:?}: {mv}\nglobal log:\n{}",
                self.global_log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every cell's consumers have read their logs to the end
    /// and nothing changes any more (events applied, dead letters, facts
    /// relayed) for a couple of seconds.
    pub async fn quiet(&self) {
        for (n, cell) in self.cells.iter().enumerate() {
            let url = format!("{}/internal/v1/lag", cell.url);
            let token = internal(n + 1);
            let mut lag = Value::Null;
            for _ in 0..120 {
                lag = send(self.http.get(&url), &token).await.1;
                if lag["total"] == 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            assert_eq!(lag["total"], 0, "{} never caught up: {lag}", cell.id);
        }
        self.stable().await;
    }

    async fn stable(&self) {
        let mut last = None;
        let mut stable = 0;
        for _ in 0..240 {
            let mut now = Vec::new();
            for cell in &self.cells {
                let counts: (i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM dead_letters),
                            (SELECT count(*) FROM ledger_facts WHERE sent_at IS NULL)",
                )
                .fetch_one(&cell.db)
                .await
                .unwrap();
                now.push(counts);
            }
            if last.as_ref() == Some(&now) && now.iter().all(|c| c.2 == 0) {
                stable += 1;
                if stable >= 4 {
                    return;
                }
            } else {
                stable = 0;
            }
            last = Some(now);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("the cells never went quiet");
    }
}

/// A customer as their app knows them after logging in: its token, its
/// `transfers` link and its first account.
#[derive(Clone)]
pub struct App {
    pub who: Customer,
    pub token: String,
    pub transfers: String,
    pub account_id: String,
}

/// Logs in and follows the login's links to the customer's accounts.
pub async fn log_in(c: &Cluster, who: &Customer) -> App {
    let doc = c.login(who).await;
    let token = doc["access_token"].as_str().unwrap().to_owned();
    let accounts = doc["_links"]["accounts"]["href"].as_str().unwrap();
    let (status, list) = send(c.http.get(accounts), &token).await;
    assert_eq!(status, 200, "accounts: {list}");
    App {
        who: who.clone(),
        token,
        transfers: doc["_links"]["transfers"]["href"]
            .as_str()
            .unwrap()
            .to_owned(),
        account_id: list["_embedded"]["accounts"][0]["account_id"]
            .as_str()
            .unwrap()
            .to_owned(),
    }
}

/// The last lines of a log, for a failure message.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Sends with a bearer token: the status and JSON body; status 0 when
/// nothing answered (a process the test killed).
pub async fn send(req: reqwest::RequestBuilder, token: &str) -> (u16, Value) {
    let Ok(r) = req.bearer_auth(token).send().await else {
        return (0, Value::Null);
    };
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}
