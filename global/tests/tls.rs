//! Encryption in transit with the real processes: `cellbank-global` and one
//! `cellbank-shard` keep their databases on a private PostgreSQL server that
//! accepts TLS only (`sslmode=verify-full` against a CA the test makes), and
//! call each other through TLS-terminating proxies (`https://` urls trusted
//! through `tls.ca_file`). A customer onboarded through global is read on the
//! shard with a token the shard verified against keys fetched over TLS.
//! Skipped, saying why, where the PostgreSQL server binaries are missing.

mod processes;

use std::path::Path;
use std::time::Duration;

use cellbank_shared::testkit::{free_port, tls_proxy, Broker, TlsPostgres};
use cellbank_shared::token::TokenSigner;
use serde_json::{json, Value};

use processes::{global_bin, ready, shard_bin, Proc};

const ADMIN: &str = "tls-admin-token";
const INTERNAL: &str = "tls-internal-token";

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Connections to `dbs` the server has now, and how many of them are not
/// encrypted.
async fn connections(pg: &TlsPostgres, dbs: &[&str]) -> (i64, i64) {
    let pool = sqlx::PgPool::connect(&pg.url("postgres")).await.unwrap();
    let names: Vec<String> = dbs.iter().map(|d| d.to_string()).collect();
    sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT s.ssl)
           FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.datname = ANY($1)",
    )
    .bind(&names)
    .fetch_one(&pool)
    .await
    .unwrap()
}

fn db_name(url: &str) -> &str {
    let path = url.split('?').next().unwrap();
    path.rsplit('/').next().unwrap()
}

/// A tier's process, its plain url, and its https url through a proxy.
struct Tier {
    proc: Proc,
    url: String,
    https: String,
    /// Global's ops API (its own port); unused for the shard.
    ops: String,
}

/// Global on `db` (TLS), trusting the test CA for its calls to the shards.
async fn start_global(pg: &TlsPostgres, db: &str, broker: &Broker, dir: &Path) -> Tier {
    let port = free_port();
    let ops_port = free_port();
    let proc = Proc::spawn(
        "global",
        &global_bin(),
        &[
            ("CELLBANK__SERVER__PORT", port.to_string()),
            ("CELLBANK__OPS__PORT", ops_port.to_string()),
            ("CELLBANK__DATABASE__URL", db.to_owned()),
            ("CELLBANK__KAFKA__BOOTSTRAP", broker.bootstrap()),
            (
                "CELLBANK__AUTH__SIGNING_KEY",
                TokenSigner::generate_seed_b64(),
            ),
            (
                "CELLBANK__AUTH__PAN_HMAC_KEY",
                "tls-pan-key-0123456789abcdef".into(),
            ),
            ("CELLBANK__AUTH__ADMIN_TOKEN", ADMIN.into()),
            (
                "CELLBANK__AUTH__SHARD_TOKENS",
                format!("{{shard-1=\"{INTERNAL}\"}}"),
            ),
            ("CELLBANK__TLS__CA_FILE", pg.ca_path().display().to_string()),
        ],
        dir,
    );
    let mut global = tier(pg, proc, port).await;
    global.ops = format!("http://127.0.0.1:{ops_port}");
    global
}

/// shard-1 on `db` (TLS), fetching global's keys from `global_https`.
async fn start_shard(
    pg: &TlsPostgres,
    db: &str,
    broker: &Broker,
    global_https: &str,
    dir: &Path,
) -> Tier {
    let port = free_port();
    let proc = Proc::spawn(
        "shard-1",
        &shard_bin(),
        &[
            ("CELLBANK__SHARD__ID", "shard-1".into()),
            (
                "CELLBANK__SHARD__PUBLIC_URL",
                format!("http://127.0.0.1:{port}"),
            ),
            ("CELLBANK__GLOBAL__URL", global_https.to_owned()),
            ("CELLBANK__SERVER__PORT", port.to_string()),
            ("CELLBANK__DATABASE__URL", db.to_owned()),
            ("CELLBANK__KAFKA__BOOTSTRAP", broker.bootstrap()),
            (
                "CELLBANK__AUTH__ADMIN_TOKEN",
                "tls-shard-admin-token".into(),
            ),
            ("CELLBANK__AUTH__INTERNAL_TOKEN", INTERNAL.into()),
            ("CELLBANK__TLS__CA_FILE", pg.ca_path().display().to_string()),
        ],
        dir,
    );
    tier(pg, proc, port).await
}

/// Waits for the process to be ready and puts a TLS proxy in front of it.
async fn tier(pg: &TlsPostgres, proc: Proc, port: u16) -> Tier {
    let url = format!("http://127.0.0.1:{port}");
    ready(&reqwest::Client::new(), &url, &proc).await;
    let https = format!("https://localhost:{}", tls_proxy(pg.ca(), port).await);
    Tier {
        proc,
        url,
        https,
        ops: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_and_a_shard_run_on_postgres_over_tls_and_call_each_other_over_https() {
    cellbank_shared::telemetry::init_for_tests();
    let Some(pg) = TlsPostgres::start() else {
        return;
    };
    // The server refuses plaintext outright.
    let plaintext = sqlx::PgPool::connect(&pg.url_with_sslmode("postgres", "disable")).await;
    assert!(plaintext.is_err(), "a plaintext connection was accepted");

    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (global_broker, shard_broker) = (Broker::start().await, Broker::start().await);
    let global_db = pg.fresh_database("tls_global").await;
    let shard_db = pg.fresh_database("tls_shard").await;
    let global = start_global(&pg, &global_db, &global_broker, dir.path()).await;
    let shard = start_shard(&pg, &shard_db, &shard_broker, &global.https, dir.path()).await;

    // Global reaches the shard's internal API only through https.
    let (status, body) = call(
        http.post(format!("{}/ops/v1/shards", global.ops))
            .bearer_auth(ADMIN)
            .json(&json!({"id": "shard-1", "public_url": shard.url,
                          "internal_url": shard.https,
                          "broker_bootstrap": shard_broker.bootstrap(), "capacity": 100})),
    )
    .await;
    assert!(status == 201 || status == 200, "register: {status} {body}");
    onboard_and_read(&http, &global, &shard).await;

    let (total, clear) = connections(&pg, &[db_name(&global_db), db_name(&shard_db)]).await;
    assert!(
        total >= 2,
        "global and the shard hold connections ({total})"
    );
    assert_eq!(
        clear, 0,
        "every connection of global and the shard is encrypted"
    );
}

/// Onboards a customer through global (global → shard over https), logs in,
/// and reads the account on the shard (the shard verifies the token with
/// keys it fetched from global over https).
async fn onboard_and_read(http: &reqwest::Client, global: &Tier, shard: &Tier) {
    let (global_url, shard_url) = (&global.url, &shard.url);
    let login = "tls@cellbank.dev";
    let (status, doc) = call(
        http.post(format!("{global_url}/v1/customers"))
            .json(&json!({"name": "TLS Customer", "login": login, "password": "tls password"})),
    )
    .await;
    assert_eq!(
        status,
        201,
        "onboard: {doc}\nglobal:\n{}\nshard:\n{}",
        global.proc.logs(),
        shard.proc.logs()
    );
    assert_eq!(doc["shard"], json!("shard-1"));
    let (status, doc) = call(
        http.post(format!("{global_url}/v1/login"))
            .json(&json!({"login": login, "password": "tls password"})),
    )
    .await;
    assert_eq!(status, 200, "login: {doc}");
    let token = doc["access_token"].as_str().unwrap().to_owned();
    let accounts = doc["_links"]["accounts"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(accounts.starts_with(shard_url.as_str()), "{accounts}");
    // The shard may still be fetching global's keys through the proxy.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (status, list) = call(http.get(&accounts).bearer_auth(&token)).await;
        if status == 200 {
            assert!(list["_embedded"]["accounts"][0].is_object(), "{list}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "accounts: {status} {list}\nshard:\n{}",
            shard.proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
