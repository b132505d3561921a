//! Test helpers: a real shard `Application` on port 0 against a fresh
//! database and its own broker, plus a tiny stand-in for global's JWKS.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cellbank_shard::authorizer::lease::Route;
use cellbank_shard::state::AppState;
use cellbank_shard::{Application, Settings};
use cellbank_shared::contract::{CreateCustomer, CustomerCreated, IssueCard};
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch, EventId, ShardId};
use cellbank_shared::money::Currency;
use cellbank_shared::secret::Secret;
use cellbank_shared::testkit::{eventually, fresh_database, Broker};
use cellbank_shared::token::{Claims, TokenSigner, ISSUER};
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub const INTERNAL: &str = "internal-secret";
pub const ADMIN: &str = "admin-secret";
pub const SHARD: &str = "shard-3";

/// Serves `signer`'s JWKS at `/.well-known/jwks.json`; returns its base URL.
pub async fn jwks_server(signer: &TokenSigner) -> String {
    let jwks = signer.jwks();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}")
}

/// A stand-in for global's JWKS whose keys can change, counting its fetches.
#[derive(Clone)]
pub struct Jwks {
    pub url: String,
    doc: Arc<RwLock<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
}

impl Jwks {
    pub async fn serve(signer: &TokenSigner) -> Jwks {
        let doc = Arc::new(RwLock::new(signer.jwks()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (d, f, w) = (doc.clone(), fetches.clone(), delay_ms.clone());
        let app = axum::Router::new().route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let j = d.read().unwrap().clone();
                let wait = Duration::from_millis(w.load(Ordering::SeqCst));
                async move {
                    tokio::time::sleep(wait).await;
                    axum::Json(j)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Jwks {
            url: format!("http://127.0.0.1:{port}"),
            doc,
            fetches,
            delay_ms,
        }
    }

    /// From now on each answer takes `ms` milliseconds.
    pub fn slow_down(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// From now on the JWKS lists `signer`'s published keys.
    pub fn publish(&self, signer: &TokenSigner) {
        *self.doc.write().unwrap() = signer.jwks();
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// A token from global's login, signed by `signer`, for `customer` on this shard.
pub fn token_by(signer: &TokenSigner, customer: CustomerId, epoch: i64) -> String {
    let now = Utc::now().timestamp();
    signer.sign(&Claims {
        sub: customer,
        shard: ShardId::parse(SHARD).unwrap(),
        epoch: Epoch(epoch),
        iat: now,
        exp: now + 600,
        iss: ISSUER.into(),
    })
}

pub fn settings(db: &str, bootstrap: &str, global: &str) -> Settings {
    let mut s = Settings::default();
    s.shard.id = Some(SHARD.parse().unwrap());
    s.shard.public_url = "http://shard-3.test".into();
    s.global.url = global.into();
    s.server.port = 0;
    s.database.url = Secret::new(db);
    s.database.max_connections = 8;
    s.kafka.bootstrap = bootstrap.into();
    s.kafka.partitions = 2;
    s.auth.admin_token = Secret::new(ADMIN);
    s.auth.internal_token = Secret::new(INTERNAL);
    s.authorizer.snapshot_interval_secs = 1;
    // A short lease: a killed replica's successor takes over within seconds.
    s.authorizer.lease_ttl_ms = 2_000;
    s.authorizer.lease_renew_ms = 250;
    s
}

pub struct TestApp {
    pub base: String,
    pub state: AppState,
    pub signer: TokenSigner,
    pub settings: Settings,
    pub client: reqwest::Client,
    stop: CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    /// A fresh database and a running shard on `broker`.
    pub async fn spawn(broker: &Broker) -> TestApp {
        let db = fresh_database("shard_test").await;
        let signer = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
        let global = jwks_server(&signer).await;
        Self::start(settings(&db, &broker.bootstrap(), &global), signer).await
    }

    pub async fn start(settings: Settings, signer: TokenSigner) -> TestApp {
        cellbank_shared::telemetry::init_for_tests();
        let app = Application::build(settings.clone())
            .await
            .expect("build shard");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state();
        let stop = CancellationToken::new();
        let s2 = stop.clone();
        let handle = tokio::spawn(app.run_until_stopped(async move { s2.cancelled().await }));
        let t = TestApp {
            base,
            state,
            signer,
            settings,
            client: reqwest::Client::new(),
            stop,
            handle,
        };
        t.wait_ready().await;
        t
    }

    /// Ready, and its authorizations have somewhere to go (it decides, or
    /// knows the replica that does).
    pub async fn wait_ready(&self) {
        eventually(Duration::from_secs(30), "shard ready", || async {
            matches!(self.client.get(format!("{}/readyz", self.base)).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        eventually(Duration::from_secs(30), "an authorizer leader", || async {
            self.state.lease.route() != Route::NoLeader
        })
        .await;
    }

    /// Another replica of the same cell: same database, broker and keys.
    pub async fn replica(&self) -> TestApp {
        Self::start(self.settings.clone(), self.signer.clone()).await
    }

    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.handle.await;
    }

    /// Stops it abruptly: no graceful shutdown, no final snapshot.
    pub async fn abort(self) {
        self.handle.abort();
        let _ = self.handle.await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn token(&self, customer: CustomerId, epoch: i64) -> String {
        token_by(&self.signer, customer, epoch)
    }

    pub async fn create_customer(&self) -> CustomerCreated {
        let c = CreateCustomer {
            customer_id: CustomerId::new(),
            name: "Ada".into(),
            epoch: Epoch(1),
            currency: Currency::Brl,
        };
        let r = self
            .client
            .post(self.url("/internal/v1/customers"))
            .bearer_auth(INTERNAL)
            .json(&c)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }

    /// Issues a card with `limit`; returns (card_id, pan_hash).
    pub async fn issue_card(&self, customer: CustomerId, limit: i64) -> (uuid::Uuid, String) {
        let card_id = uuid::Uuid::new_v4();
        let pan_hash = format!("hash-{}", card_id.simple());
        let body = IssueCard {
            card_id,
            epoch: Epoch(1),
            pan_hash: pan_hash.clone(),
            last4: "1234".into(),
            credit_limit: limit,
            currency: Currency::Brl,
        };
        let r = self
            .client
            .post(self.url(&format!("/internal/v1/customers/{customer}/cards")))
            .bearer_auth(INTERNAL)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        (card_id, pan_hash)
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        self.state.pool.clone()
    }

    /// The explicit placement change (what a move does), expecting success.
    pub async fn place(&self, customer: CustomerId, state: &str, epoch: i64) -> serde_json::Value {
        let r = self.try_place(customer, state, epoch).await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    pub async fn try_place(
        &self,
        customer: CustomerId,
        state: &str,
        epoch: i64,
    ) -> reqwest::Response {
        self.client
            .put(self.url(&format!("/internal/v1/customers/{customer}/placement")))
            .bearer_auth(INTERNAL)
            .json(&serde_json::json!({ "state": state, "epoch": epoch }))
            .send()
            .await
            .unwrap()
    }

    /// GET on the admin API with the admin token, as JSON.
    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

pub fn envelope(
    id: &str,
    customer: CustomerId,
    epoch: i64,
    kind: &str,
    occurred_at: DateTime<Utc>,
    payload: serde_json::Value,
) -> Envelope {
    Envelope {
        event_id: EventId::parse(id).unwrap(),
        customer_id: customer,
        epoch: Epoch(epoch),
        event_type: kind.into(),
        occurred_at,
        accepted_at: Utc::now(),
        correlation_id: format!("corr-{id}"),
        namespace: None,
        payload,
    }
}

pub async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(pool)
        .await
        .unwrap()
}

pub fn auth_request(
    customer: CustomerId,
    pan_hash: &str,
    amount: i64,
    network_reference: &str,
) -> cellbank_shared::contract::AuthorizationRequest {
    auth_request_at(customer, pan_hash, amount, network_reference, 1)
}

pub fn auth_request_at(
    customer: CustomerId,
    pan_hash: &str,
    amount: i64,
    network_reference: &str,
    epoch: i64,
) -> cellbank_shared::contract::AuthorizationRequest {
    cellbank_shared::contract::AuthorizationRequest {
        customer_id: customer,
        epoch: Epoch(epoch),
        pan_hash: pan_hash.into(),
        amount,
        currency: Currency::Brl,
        merchant: cellbank_shared::contract::Merchant {
            name: "Padaria".into(),
            mcc: "5411".into(),
            country: "BR".into(),
        },
        network_reference: network_reference.into(),
    }
}

impl TestApp {
    pub async fn authorize(
        &self,
        req: &cellbank_shared::contract::AuthorizationRequest,
    ) -> cellbank_shared::contract::AuthorizationDecision {
        let r = self
            .client
            .post(self.url("/internal/v1/authorizations"))
            .bearer_auth(INTERNAL)
            .json(req)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// Waits until the authorizer knows the card (its ledger fact arrived).
    pub async fn wait_card_known(&self, pan_hash: &str) {
        eventually(
            Duration::from_secs(30),
            "authorizer knows the card",
            || async {
                self.state
                    .authorizer
                    .with_state(|s| s.card(pan_hash).is_some())
            },
        )
        .await;
    }
}

/// Every record of `topic` (all its partitions), read to a sentinel this
/// writes at each partition's end: the broker's high watermark can trail
/// what it serves, so counting by watermark is not exact.
pub async fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let producer =
        cellbank_shared::kafka::Producer::new(bootstrap, Duration::from_secs(10)).unwrap();
    let mine = uuid::Uuid::new_v4().to_string();
    for p in 0..partitions {
        producer
            .send_to(topic, Some(p), b"sentinel", mine.as_bytes(), &[])
            .await
            .unwrap();
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("read-all-{}", uuid::Uuid::new_v4()))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let (mut records, mut ended) = (Vec::new(), 0);
    while ended < partitions {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("read the topic to its sentinels")
            .unwrap();
        if m.key() == Some(b"sentinel".as_slice()) {
            // earlier reads left their sentinels too
            if m.payload() == Some(mine.as_bytes()) {
                ended += 1;
            }
        } else {
            records.push(m.payload().unwrap_or_default().to_vec());
        }
    }
    records
}
