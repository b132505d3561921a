//! End to end with the real processes: `cellbank-global` and two
//! `cellbank-shard` processes, each cell with its own Postgres database and
//! its own broker. Customers are onboarded through global, events are routed
//! into the owning shard's broker and consumed there, the app follows the
//! HAL links straight to its shard, and SIGTERM stops every process cleanly.

mod processes;

use std::time::Duration;

use cellbank_shared::testkit::{eventually, free_port, fresh_database, Broker};
use cellbank_shared::token::TokenSigner;
use serde_json::{json, Value};

use processes::{global_bin, ready, shard_bin, Proc};

const ADMIN: &str = "e2e-admin-token";
const INTERNAL: &str = "e2e-internal-token";

async fn post(http: &reqwest::Client, url: &str, auth: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = http.post(url).json(&body);
    if let Some(t) = auth {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, url: &str, auth: &str) -> (u16, Value) {
    let r = http.get(url).bearer_auth(auth).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_routed_by_global_is_consumed_by_the_owning_shard_only() {
    cellbank_shared::telemetry::init_for_tests();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();

    // One broker and one database per cell.
    let global_broker = Broker::start().await;
    let shard_brokers = [Broker::start().await, Broker::start().await];
    let global_db = fresh_database("e2e_global").await;
    let shard_dbs = [
        fresh_database("e2e_shard1").await,
        fresh_database("e2e_shard2").await,
    ];

    let global_port = free_port();
    let ops_port = free_port();
    let global_url = format!("http://127.0.0.1:{global_port}");
    let ops_url = format!("http://127.0.0.1:{ops_port}");
    // Each cell has its own internal and admin tokens; global holds the
    // internal ones, never a shard's admin token.
    let internal = |n: usize| format!("{INTERNAL}-{n}");
    let shard_admin = |n: usize| format!("shard-admin-{n}");
    let common = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut global = Proc::spawn(
        "global",
        &global_bin(),
        &[
            common("CELLBANK__SERVER__PORT", &global_port.to_string()),
            common("CELLBANK__DATABASE__URL", &global_db),
            common("CELLBANK__KAFKA__BOOTSTRAP", &global_broker.bootstrap()),
            common(
                "CELLBANK__AUTH__SIGNING_KEY",
                &TokenSigner::generate_seed_b64(),
            ),
            common(
                "CELLBANK__AUTH__PAN_HMAC_KEY",
                "e2e-pan-key-0123456789abcdef",
            ),
            common("CELLBANK__AUTH__ADMIN_TOKEN", ADMIN),
            common(
                "CELLBANK__AUTH__SHARD_TOKENS",
                &format!(
                    "{{shard-1=\"{}\",shard-2=\"{}\"}}",
                    internal(1),
                    internal(2)
                ),
            ),
            common("CELLBANK__OPS__PORT", &ops_port.to_string()),
        ],
        dir.path(),
    );
    ready(&http, &global_url, &global).await;

    let mut shards = Vec::new();
    for (i, (broker, db)) in shard_brokers.iter().zip(&shard_dbs).enumerate() {
        let id = format!("shard-{}", i + 1);
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let p = Proc::spawn(
            &id,
            &shard_bin(),
            &[
                common("CELLBANK__SHARD__ID", &id),
                common("CELLBANK__SHARD__PUBLIC_URL", &url),
                common("CELLBANK__GLOBAL__URL", &global_url),
                common("CELLBANK__SERVER__PORT", &port.to_string()),
                common("CELLBANK__DATABASE__URL", db),
                common("CELLBANK__KAFKA__BOOTSTRAP", &broker.bootstrap()),
                common("CELLBANK__AUTH__ADMIN_TOKEN", &shard_admin(i + 1)),
                common("CELLBANK__AUTH__INTERNAL_TOKEN", &internal(i + 1)),
            ],
            dir.path(),
        );
        ready(&http, &url, &p).await;
        let (status, body) = post(
            &http,
            &format!("{ops_url}/ops/v1/shards"),
            Some(ADMIN),
            json!({"id": id, "public_url": url, "internal_url": url,
                   "broker_bootstrap": broker.bootstrap(), "capacity": 1000}),
        )
        .await;
        assert!(
            status == 201 || status == 200,
            "register {id}: {status} {body}"
        );
        shards.push((id, url, p));
    }

    // Onboard customers through global; placement spreads them over both shards.
    let mut customers = Vec::new();
    for i in 0..4 {
        let login = format!("e2e-{i}@cellbank.dev");
        let (status, doc) = post(
            &http,
            &format!("{global_url}/v1/customers"),
            None,
            json!({"name": format!("E2E {i}"), "login": login, "password": "e2e password"}),
        )
        .await;
        assert_eq!(status, 201, "onboard: {doc}");
        customers.push((
            login,
            doc["shard"].as_str().unwrap().to_owned(),
            doc["account_number"].as_str().unwrap().to_owned(),
        ));
    }
    for (id, ..) in &shards {
        assert!(
            customers.iter().any(|c| &c.1 == id),
            "placement put nobody on {id}: {customers:?}"
        );
    }

    // A partner sends the deposits: registered on the ops port, key shown once.
    let (status, partner) = post(
        &http,
        &format!("{ops_url}/ops/v1/partners"),
        Some(ADMIN),
        json!({"name": "e2e-rails", "scopes": ["events"]}),
    )
    .await;
    assert_eq!(status, 201, "register partner: {partner}");
    let key = partner["key"].as_str().unwrap().to_owned();

    // One deposit per customer, routed through global; one sent twice.
    for (i, (_, _, account)) in customers.iter().enumerate() {
        let event = json!({
            "event_id": format!("e2e-deposit-{i}"),
            "type": "deposit",
            "account_number": account,
            "amount": 10_000 + i as i64,
            "currency": "BRL",
            "occurred_at": "2026-11-28T12:00:00Z",
        });
        let times = if i == 0 { 2 } else { 1 };
        for _ in 0..times {
            let (status, body) = post(
                &http,
                &format!("{global_url}/v1/events"),
                Some(&key),
                event.clone(),
            )
            .await;
            assert_eq!(status, 202, "route event: {body}");
        }
    }

    // Each shard consumed exactly its own customers' events (the duplicate once).
    for (n, (id, url, _)) in shards.iter().enumerate() {
        let admin = shard_admin(n + 1);
        let expected = customers.iter().filter(|c| &c.1 == id).count() as i64;
        eventually(
            Duration::from_secs(30),
            "the shard applied its events",
            || async {
                let (_, s) = get(&http, &format!("{url}/admin/v1/summary"), &admin).await;
                s["events_applied"].as_i64() == Some(expected)
            },
        )
        .await;
        let (_, s) = get(&http, &format!("{url}/admin/v1/summary"), &admin).await;
        assert_eq!(s["shard_id"], json!(id));
        assert_eq!(s["customers"].as_i64(), Some(expected));
        for t in s["trial_balance"].as_array().unwrap() {
            assert_eq!(t["balance"].as_i64(), Some(0), "trial balance is zero: {s}");
        }
        let (status, _) = get(&http, &format!("{url}/admin/v1/summary"), ADMIN).await;
        assert_eq!(status, 401, "global's admin token does not open a cell");
    }

    // The app logs in at global and follows HAL links straight to its shard.
    for (i, (login, shard, _)) in customers.iter().enumerate() {
        let (status, doc) = post(
            &http,
            &format!("{global_url}/v1/login"),
            None,
            json!({"login": login, "password": "e2e password"}),
        )
        .await;
        assert_eq!(status, 200, "login: {doc}");
        let token = doc["access_token"].as_str().unwrap();
        let accounts = doc["_links"]["accounts"]["href"].as_str().unwrap();
        let shard_url = &shards.iter().find(|s| &s.0 == shard).unwrap().1;
        assert!(
            accounts.starts_with(shard_url.as_str()),
            "{accounts} is on {shard}"
        );
        let (status, list) = get(&http, accounts, token).await;
        assert_eq!(status, 200, "accounts: {list}");
        assert_eq!(
            list["_embedded"]["accounts"][0]["balance"].as_i64(),
            Some(10_000 + i as i64),
            "deposit applied once: {list}"
        );
        // The other shard refuses this customer's token.
        let other = &shards.iter().find(|s| &s.0 != shard).unwrap().1;
        let foreign = accounts.replacen(shard_url.as_str(), other, 1);
        let (status, _) = get(&http, &foreign, token).await;
        assert!(
            status == 401 || status == 403,
            "a token for {shard} is refused elsewhere ({status})"
        );
    }

    // SIGTERM: every process finishes in-flight work and exits cleanly.
    for (_, _, p) in &mut shards {
        let status = p.terminate().await;
        assert!(
            status.success(),
            "{} exited with {status}; log:\n{}",
            p.name,
            p.logs()
        );
    }
    let status = global.terminate().await;
    assert!(
        status.success(),
        "global exited with {status}; log:\n{}",
        global.logs()
    );
}

/// A burst of 300 logins at once (each a different client behind the trusted
/// proxy, so none is throttled) costs argon2 work a few at a time: global's
/// peak RSS stays under 512 MiB and the excess is told when to retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_concurrent_logins_keep_globals_memory_bounded() {
    cellbank_shared::telemetry::init_for_tests();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let broker = Broker::start().await;
    let db = fresh_database("e2e_burst").await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let env = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let global = Proc::spawn(
        "global",
        &global_bin(),
        &[
            env("CELLBANK__SERVER__PORT", &port.to_string()),
            env("CELLBANK__OPS__PORT", &free_port().to_string()),
            env("CELLBANK__DATABASE__URL", &db),
            env("CELLBANK__KAFKA__BOOTSTRAP", &broker.bootstrap()),
            env(
                "CELLBANK__AUTH__SIGNING_KEY",
                &TokenSigner::generate_seed_b64(),
            ),
            env(
                "CELLBANK__AUTH__PAN_HMAC_KEY",
                "e2e-pan-key-0123456789abcdef",
            ),
            env("CELLBANK__AUTH__ADMIN_TOKEN", ADMIN),
            env("CELLBANK__AUTH__TRUSTED_PROXIES", "[127.0.0.1]"),
        ],
        dir.path(),
    );
    ready(&http, &url, &global).await;
    let before = global.peak_rss_mib();
    let logins = (0..300).map(|i| {
        let (http, url) = (&http, &url);
        async move {
            let r = http
                .post(format!("{url}/v1/login"))
                .header(
                    "x-forwarded-for",
                    format!("10.9.{}.{}", i / 250, i % 250 + 1),
                )
                .json(&json!({"login": format!("nobody-{i}"), "password": "a password"}))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.headers().contains_key("retry-after"))
        }
    });
    let answers = futures::future::join_all(logins).await;
    let peak = global.peak_rss_mib();
    println!("global peak RSS: {before} MiB before the burst, {peak} MiB after");
    assert!(peak < 512, "peak RSS {peak} MiB");
    assert!(
        answers.iter().all(|(s, _)| *s == 401 || *s == 503),
        "{answers:?}"
    );
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| *retry),
        "shed logins say when to retry"
    );
}
