//! Helpers for the global tier's integration tests: a real global
//! `Application` on port 0 against a fresh database and a real global broker,
//! cells made of a fake shard peer (internal API) and a real broker, and a
//! reader for what landed on a cell's broker.
#![allow(dead_code)]

pub mod fake_shard;

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use serde_json::{json, Value};

use cellbank_global::{Application, Settings};
use cellbank_shared::config::Validate;
use cellbank_shared::envelope::Envelope;
use cellbank_shared::kafka::{BreakerConfig, Topic};
use cellbank_shared::secret::Secret;
use cellbank_shared::testkit::{eventually, Broker};
use cellbank_shared::token::TokenSigner;

use fake_shard::FakeShard;

pub const ADMIN_TOKEN: &str = "admin-test-token";

/// Shard `n`'s own internal token (per-cell credentials).
pub fn internal_token(n: u32) -> String {
    format!("internal-test-token-{n}")
}

/// Shard `n`'s own admin token.
pub fn shard_admin_token(n: u32) -> String {
    format!("shard-admin-test-token-{n}")
}
pub const PAN_KEY: &str = "pan-hmac-test-key-0123456789";

/// Settings for one global replica; replicas of one test share `signing_key`.
pub fn settings(db_url: &str, global_bootstrap: &str, signing_key: &str) -> Settings {
    let mut s = Settings::default();
    s.server.port = 0;
    s.database.url = Secret::new(db_url);
    s.database.connect_timeout_ms = 1000;
    s.database.max_connections = 8;
    s.kafka.bootstrap = global_bootstrap.to_owned();
    s.kafka.group_prefix = "test".into();
    s.kafka.produce_timeout_ms = 2000;
    s.auth.signing_key = Secret::new(signing_key);
    s.auth.pan_hmac_key = Secret::new(PAN_KEY);
    s.auth.admin_token = Secret::new(ADMIN_TOKEN);
    s.auth.shard_tokens = (1..=4)
        .map(|n| (format!("shard-{n}"), Secret::new(internal_token(n))))
        .collect();
    s.ops.port = 0;
    s.auth.login_max_failures = 3;
    s.routing.produce_timeout_ms = 1500;
    s.routing.authorization_timeout_ms = 300;
    s.routing.breaker = BreakerConfig {
        failure_threshold: 3,
        open_ms: 2000,
    };
    s.validate().expect("test settings are valid");
    s
}

/// A running global replica; stopped when dropped.
pub struct TestGlobal {
    pub url: String,
    /// The ops API, on its own port.
    pub ops_url: String,
    /// The key of a partner with every scope and a rate no test reaches;
    /// [`TestGlobal::post`] presents it.
    pub partner_key: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Drop for TestGlobal {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task.abort();
    }
}

impl TestGlobal {
    /// Builds and runs a replica and waits until it is ready.
    pub async fn spawn(settings: Settings) -> TestGlobal {
        cellbank_shared::telemetry::init_for_tests();
        let app = Application::build(settings).await.expect("build global");
        let url = format!("http://127.0.0.1:{}", app.port());
        let ops_url = format!("http://127.0.0.1:{}", app.ops_port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        let mut g = TestGlobal {
            url,
            ops_url,
            partner_key: String::new(),
            http: reqwest::Client::new(),
            stop: Some(tx),
            task,
        };
        eventually(Duration::from_secs(30), "global ready", || async {
            g.get("/readyz")
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        })
        .await;
        g.partner_key = g
            .add_partner(&["events", "authorizations"], Some(1_000_000))
            .await["key"]
            .as_str()
            .expect("a partner key")
            .to_owned();
        g
    }

    /// Where the router's cache says an account's owner lives (ops lookup).
    pub async fn lookup_account(&self, account: &str) -> Value {
        let path = format!("/ops/v1/lookup?kind=account&value={account}");
        let r = self.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(r.status(), 200);
        r.json().await.expect("lookup document")
    }

    /// Registers a partner (a fresh name) through the ops API; the 201 body.
    pub async fn add_partner(&self, scopes: &[&str], rate: Option<u32>) -> Value {
        let mut body = json!({
            "name": format!("partner-{}", uuid::Uuid::new_v4().simple()),
            "scopes": scopes,
        });
        if let Some(r) = rate {
            body["rate_per_sec"] = r.into();
        }
        let r = self
            .admin(reqwest::Method::POST, "/ops/v1/partners", Some(body))
            .await;
        assert_eq!(r.status(), 201, "add partner");
        r.json().await.expect("partner document")
    }

    /// A post with no credentials at all.
    pub async fn post_anonymous(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .expect("post to global")
    }

    /// A post with the given bearer token.
    pub async fn post_as(&self, token: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("post to global")
    }

    pub async fn get(&self, path: &str) -> reqwest::Result<reqwest::Response> {
        self.http.get(format!("{}{path}", self.url)).send().await
    }

    /// A post as the test partner.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.partner_key)
            .json(body)
            .send()
            .await
            .expect("post to global")
    }

    /// A raw post as the test partner.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.partner_key)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .expect("post to global")
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.ops_url))
            .bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("ops call to global")
    }

    pub async fn add_shard(&self, id: &str, cell: &Cell, capacity: i64) {
        let r = self
            .admin(
                reqwest::Method::POST,
                "/ops/v1/shards",
                Some(json!({
                    "id": id,
                    "public_url": cell.public_url,
                    "internal_url": cell.shard.url,
                    "broker_bootstrap": cell.bootstrap,
                    "capacity": capacity,
                })),
            )
            .await;
        assert_eq!(
            r.status(),
            201,
            "add shard: {}",
            r.text().await.unwrap_or_default()
        );
    }

    /// Onboards a customer; returns the 201 document.
    pub async fn onboard(&self, login: &str) -> Value {
        let r = self
            .post(
                "/v1/customers",
                &json!({"name": format!("Customer {login}"), "login": login, "password": "correct horse battery"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.expect("onboarding document")
    }

    /// Issues a card as the back office (the credit policy sets its
    /// limit: 500,000 BRL by default); returns the 201 body (with the PAN).
    pub async fn issue_card(&self, customer_id: &str) -> Value {
        let r = self
            .post_as(
                ADMIN_TOKEN,
                &format!("/v1/customers/{customer_id}/cards"),
                &json!({"currency": "BRL"}),
            )
            .await;
        assert_eq!(r.status(), 201);
        r.json().await.expect("card document")
    }
}

/// One cell as global sees it: a fake internal API and (optionally) a real broker.
pub struct Cell {
    pub number: u32,
    pub public_url: String,
    pub shard: FakeShard,
    pub broker: Option<Broker>,
    pub bootstrap: String,
}

impl Cell {
    /// A cell with a real broker holding the inbound topic.
    pub async fn with_broker(number: u32) -> Cell {
        let broker = Broker::start().await;
        broker.create_topics(&[Topic::Inbound.name()], 4).await;
        let bootstrap = broker.bootstrap();
        Cell {
            number,
            public_url: format!("http://shard-{number}.cellbank.test:8081"),
            shard: FakeShard::start(number, &internal_token(number)).await,
            broker: Some(broker),
            bootstrap,
        }
    }

    /// A cell whose broker global never needs to reach in the test.
    pub async fn without_broker(number: u32) -> Cell {
        Cell {
            number,
            public_url: format!("http://shard-{number}.cellbank.test:8081"),
            shard: FakeShard::start(number, &internal_token(number)).await,
            broker: None,
            bootstrap: format!("127.0.0.1:{}", cellbank_shared::testkit::free_port()),
        }
    }
}

/// A fresh database, a global broker, and the signing key replicas share.
pub struct Base {
    pub db_url: String,
    pub global_broker: Broker,
    pub signing_key: String,
}

impl Base {
    pub async fn new() -> Base {
        let db_url = cellbank_shared::testkit::fresh_database("global").await;
        let global_broker = Broker::start().await;
        Base {
            db_url,
            global_broker,
            signing_key: TokenSigner::generate_seed_b64(),
        }
    }

    pub fn settings(&self) -> Settings {
        settings(
            &self.db_url,
            &self.global_broker.bootstrap(),
            &self.signing_key,
        )
    }
}

/// An event body for an account.
pub fn event(event_id: &str, account_number: &str, amount: i64) -> Value {
    json!({
        "event_id": event_id,
        "type": "deposit",
        "account_number": account_number,
        "amount": amount,
        "currency": "BRL",
        "occurred_at": "2026-11-28T12:00:00Z",
    })
}

/// Reads inbound envelopes from a cell's broker until `n` arrived (or
/// `within` passed), then keeps reading for `settle` to catch extras.
pub async fn read_inbound(
    bootstrap: &str,
    n: usize,
    within: Duration,
    settle: Duration,
) -> Vec<(String, Envelope)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("test-reader-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("create test consumer");
    consumer
        .subscribe(&[Topic::Inbound.name()])
        .expect("subscribe inbound");
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    let mut settle_until: Option<tokio::time::Instant> = None;
    loop {
        let until = match settle_until {
            Some(t) => t,
            None => deadline,
        };
        let now = tokio::time::Instant::now();
        if now >= until {
            break;
        }
        match tokio::time::timeout(until - now, consumer.recv()).await {
            Ok(Ok(m)) => {
                let key =
                    String::from_utf8(m.key().unwrap_or_default().to_vec()).expect("utf8 key");
                let env = Envelope::decode(m.payload().unwrap_or_default()).expect("an envelope");
                out.push((key, env));
                if out.len() >= n && settle_until.is_none() {
                    settle_until = Some(tokio::time::Instant::now() + settle);
                }
            }
            Ok(Err(e)) => panic!("consume inbound: {e}"),
            Err(_) => break,
        }
    }
    out
}
