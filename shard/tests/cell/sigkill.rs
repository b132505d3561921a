//! Kill -9 the real `cellbank-shard` binary in the middle of a stream of
//! events, restart it, and show every event applied exactly once and
//! accepted = applied + dead-lettered once quiet.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::*;
use cellbank_shared::contract::{CreateCustomer, CustomerCreated};
use cellbank_shared::ids::{CustomerId, Epoch};
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::money::Currency;
use cellbank_shared::testkit::{eventually, free_port, fresh_database, Broker};
use cellbank_shared::token::TokenSigner;
use chrono::Utc;

/// The shard process, SIGKILLed when dropped so a failing test leaves no orphan.
struct Shard(Child);

impl Shard {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn start(env: &[(String, String)], log: &std::path::Path) -> Shard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_cellbank-shard"))
        .envs(env.iter().cloned())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .map(Shard)
        .expect("start cellbank-shard")
}

async fn ready(client: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(60), "shard binary ready", || async {
        matches!(client.get(format!("{base}/readyz")).send().await, Ok(r) if r.status() == 200)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_applies_every_event_exactly_once() {
    let broker = Broker::start().await;
    let db = fresh_database("shard_sigkill").await;
    let signer = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
    let global = jwks_server(&signer).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let env: Vec<(String, String)> = [
        ("CELLBANK__SHARD__ID", SHARD),
        ("CELLBANK__SHARD__PUBLIC_URL", base.as_str()),
        ("CELLBANK__GLOBAL__URL", global.as_str()),
        ("CELLBANK__SERVER__PORT", &port.to_string()),
        ("CELLBANK__DATABASE__URL", db.as_str()),
        ("CELLBANK__KAFKA__BOOTSTRAP", &broker.bootstrap()),
        ("CELLBANK__KAFKA__PARTITIONS", "4"),
        ("CELLBANK__AUTH__ADMIN_TOKEN", ADMIN),
        ("CELLBANK__AUTH__INTERNAL_TOKEN", INTERNAL),
        ("CELLBANK__LEDGER__MAX_BATCH", "64"),
        ("CELLBANK__TELEMETRY__FILTER", "info"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let dir = tempfile_dir();
    let log = dir.join("shard.log");
    let client = reqwest::Client::new();
    let mut child = start(&env, &log);
    ready(&client, &base).await;

    let mut customers = Vec::new();
    for _ in 0..8 {
        let body = CreateCustomer {
            customer_id: CustomerId::new(),
            name: "k".into(),
            epoch: Epoch(1),
            currency: Currency::Brl,
        };
        let r = client
            .post(format!("{base}/internal/v1/customers"))
            .bearer_auth(INTERNAL)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        customers.push(r.json::<CustomerCreated>().await.unwrap());
    }

    // 3000 deposits (every 97th invalid, every 13th delivered twice), produced one by one
    const N: usize = 3000;
    let bootstrap = broker.bootstrap();
    let custs = customers.clone();
    let producing = tokio::spawn(async move {
        let producer = Producer::new(&bootstrap, Duration::from_secs(10)).unwrap();
        let mut expected: HashMap<CustomerId, i64> = HashMap::new();
        let (mut valid, mut invalid) = (0i64, 0i64);
        for i in 0..N {
            let c = &custs[i % custs.len()];
            let amount = 1 + (i as i64 % 100);
            let kind = if i % 97 == 0 { "teleport" } else { "deposit" };
            let env = envelope(
                &format!("k-{i}"),
                c.customer_id,
                1,
                kind,
                Utc::now(),
                serde_json::json!({"amount": amount, "currency": "BRL", "account_number": c.account_number}),
            );
            producer
                .send_envelope(Topic::Inbound.name(), &env)
                .await
                .unwrap();
            if i % 13 == 0 {
                producer
                    .send_envelope(Topic::Inbound.name(), &env)
                    .await
                    .unwrap();
            }
            if kind == "deposit" {
                valid += 1;
                *expected.entry(c.customer_id).or_default() += amount;
            } else {
                invalid += 1;
            }
        }
        (expected, valid, invalid)
    });

    let pool = sqlx::PgPool::connect(&db).await.unwrap();
    eventually(Duration::from_secs(60), "consumption under way", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM events WHERE source = 'inbound'",
        )
        .await
            >= 300
    })
    .await;
    child.kill(); // SIGKILL mid-stream
    let at_kill = scalar(
        &pool,
        "SELECT count(*) FROM events WHERE source = 'inbound'",
    )
    .await;
    assert!(at_kill < N as i64, "killed mid-stream ({at_kill} applied)");

    let mut child = start(&env, &log);
    ready(&client, &base).await;
    let (expected, valid, invalid) = producing.await.unwrap();
    eventually(
        Duration::from_secs(90),
        "quiet: every event applied or dead-lettered",
        || async {
            let applied = scalar(
                &pool,
                "SELECT count(*) FROM events WHERE source = 'inbound'",
            )
            .await;
            let dead = scalar(
                &pool,
                "SELECT count(DISTINCT headers->>'cellbank-event-id') FROM dead_letters",
            )
            .await;
            applied == valid && dead == invalid
        },
    )
    .await;
    // accepted = applied + dead-lettered, counted per event id: no id is
    // stored twice as a dead letter, none is both applied and dead.
    let twice = scalar(
        &pool,
        "SELECT count(*) FROM (SELECT headers->>'cellbank-event-id' FROM dead_letters
           GROUP BY 1 HAVING count(*) > 1) t",
    )
    .await;
    assert_eq!(twice, 0, "a dead letter stored twice");
    let both = scalar(
        &pool,
        "SELECT count(*) FROM dead_letters d JOIN events e
           ON e.event_id = d.headers->>'cellbank-event-id' AND e.namespace = 'partner'",
    )
    .await;
    assert_eq!(both, 0, "an event both applied and dead-lettered");
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM dead_letters").await,
        invalid
    );
    assert_eq!(valid + invalid, N as i64);
    for c in &customers {
        let balance: i64 = sqlx::query_scalar(
            "SELECT -balance FROM book_accounts WHERE customer_id = $1 AND code = 'account:' || $2::text",
        )
        .bind(c.customer_id.as_uuid())
        .bind(c.account_id.to_string())
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(
            balance, expected[&c.customer_id],
            "each deposit counted exactly once"
        );
    }
    assert_eq!(
        scalar(
            &pool,
            "SELECT COALESCE(sum(balance), 0)::bigint FROM book_accounts"
        )
        .await,
        0
    );
    let dup_postings = scalar(
        &pool,
        "SELECT count(*) FROM (SELECT 1 FROM postings GROUP BY customer_id, namespace, event_id
           HAVING count(*) <> 2) t",
    )
    .await;
    assert_eq!(dup_postings, 0);
    child.kill();
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("shard-sigkill-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
