//! The analytical export end to end, with the real processes (global, two
//! cells each with its own database and broker, an exporter per cell): a
//! random workload — sign-ups, deposits (one of them late, at a business
//! date weeks back), cards and authorizations, transfers within and across
//! cells, a customer moving between the cells — while each exporter is
//! SIGKILLed and restarted at random (mid-batch, mid-flush) and part of each
//! cell's change log is redelivered. Once quiet, DuckDB over both cells'
//! Parquet finds, per entity, exactly the rows the cells hold: the same
//! count and the same sums per customer, the trial balance zero per cell
//! and in total, no two files covering the same offsets (a redo rewrote,
//! never added), and every posting filed under its business date.
//!
//! `EXPORT_SEED=n` replays a run; the seed is printed.

mod processes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::sync::Mutex;

use cellbank_shared::kafka::{client_config, Topic};
use cellbank_shared::testkit::free_port;
use processes::cluster::{log_in, send, App, Cell, Cluster, Customer};
use processes::{global_bin, ready, Proc};

/// The exporter's binary, built beside global's by `cargo test --workspace`.
fn exporter_bin() -> PathBuf {
    let bin = global_bin().with_file_name("cellbank-exporter");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace first (`cargo test --workspace` does)",
        bin.display()
    );
    bin
}

/// One cell's exporter: restartable with the same settings.
struct Exporter {
    name: String,
    url: String,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
    kills: usize,
}

impl Exporter {
    fn new(cell: &Cell, root: &Path) -> Exporter {
        let port = free_port();
        let env = [
            ("CELLBANK__SHARD__ID", cell.id.clone()),
            ("CELLBANK__KAFKA__BOOTSTRAP", cell.broker.bootstrap()),
            ("CELLBANK__KAFKA__FETCH_WAIT_MS", "20".into()),
            ("CELLBANK__SERVER__PORT", port.to_string()),
            (
                "CELLBANK__EXPORT__STORE_URL",
                format!("file://{}", root.display()),
            ),
            // Small batches: many flushes, so a kill lands in one.
            ("CELLBANK__EXPORT__BATCH_ROWS", "120".into()),
            ("CELLBANK__EXPORT__BATCH_MS", "300".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Exporter {
            name: format!("exporter-{}", cell.id),
            url: format!("http://127.0.0.1:{port}"),
            env,
            proc: None,
            kills: 0,
        }
    }

    async fn start(&mut self, http: &reqwest::Client, dir: &Path) {
        let n = self.kills;
        let p = Proc::spawn(
            &format!("{}-{n}", self.name),
            &exporter_bin(),
            &self.env,
            dir,
        );
        ready(http, &self.url, &p).await;
        self.proc = Some(p);
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
            self.kills += 1;
        }
    }
}

/// Reads up to `n` records of the cell's change log and produces them
/// again, as a relay that crashed before marking them sent would.
async fn redeliver(cell: &Cell, n: usize) -> usize {
    let topic = Topic::CellChanges.name();
    let mut cfg = client_config(&cell.broker.bootstrap());
    cfg.set("group.id", "export-test-redeliver")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = cfg.create().unwrap();
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .unwrap();
    let partitions = meta.topics()[0].partitions().len() as i32;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut picked: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while picked.len() < n && std::time::Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            picked.push((
                m.key().unwrap_or_default().to_vec(),
                m.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    let producer: FutureProducer = client_config(&cell.broker.bootstrap()).create().unwrap();
    for (k, v) in &picked {
        producer
            .send(
                FutureRecord::to(topic).key(k).payload(v),
                Duration::from_secs(5),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    picked.len()
}

/// Sends a transfer as the app would, logging in again after a move.
async fn transfer(c: &Cluster, app: &mut App, to: &Customer, amount: i64) {
    let body = json!({"transfer_id": uuid::Uuid::new_v4(), "from_account_id": app.account_id,
                      "amount": amount, "currency": "BRL", "to_account_number": to.account_number});
    for _ in 0..50 {
        let (status, answer) = send(c.http.post(&app.transfers).json(&body), &app.token).await;
        match status {
            200..=202 | 422 => return,
            401 | 409 if answer["_links"]["login"]["href"].is_string() => {
                *app = log_in(c, &app.who).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Partners' and apps' traffic until `stop`.
async fn workload(
    c: Arc<Cluster>,
    apps: Vec<App>,
    pans: Vec<String>,
    seed: u64,
    stop: Arc<AtomicBool>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut apps = apps;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let me = rng.gen_range(0..apps.len());
        match rng.gen_range(0..10) {
            0..=2 => {
                let who = apps[me].who.account_number.clone();
                let _ = c
                    .deposit(
                        &format!("export-dep-{seed}-{i}"),
                        &who,
                        rng.gen_range(100..5_000),
                    )
                    .await;
            }
            3..=4 if !pans.is_empty() => {
                let pan = &pans[rng.gen_range(0..pans.len())];
                let _ = c
                    .try_authorize(
                        pan,
                        rng.gen_range(1..300),
                        &format!("export-auth-{seed}-{i}"),
                    )
                    .await;
            }
            _ => {
                let other = (me + rng.gen_range(1..apps.len())) % apps.len();
                let to = apps[other].who.clone();
                transfer(&c, &mut apps[me], &to, rng.gen_range(1..200)).await;
            }
        }
    }
}

/// What the cells hold for the customers they own, in the summary's shape.
async fn held(c: &Cluster) -> Value {
    let mut postings = serde_json::Map::new();
    let mut by_account = serde_json::Map::new();
    let mut owners = serde_json::Map::new();
    let mut accounts = serde_json::Map::new();
    let mut cards = serde_json::Map::new();
    let mut transfers = serde_json::Map::new();
    let mut rows: BTreeMap<&str, i64> = BTreeMap::new();
    let mut trial = serde_json::Map::new();
    const OWNED: &str = "customer_id IN (SELECT customer_id FROM customers WHERE state = 'active')";
    for cell in &c.cells {
        let db = &cell.db;
        let q = format!(
            "SELECT customer_id::text, count(*), sum(amount)::bigint,
                    sum(CASE WHEN amount > 0 THEN amount ELSE 0 END)::bigint
             FROM postings WHERE {OWNED} GROUP BY 1"
        );
        for (cust, n, s, d) in sqlx::query_as::<_, (String, i64, i64, i64)>(&q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            *rows.entry("postings").or_default() += n;
            postings.insert(cust, json!({"rows": n, "sum": s, "debits": d}));
        }
        let q = format!(
            "SELECT p.customer_id::text || '/' || b.code, sum(p.amount)::bigint
             FROM postings p JOIN book_accounts b ON b.id = p.book_account_id
             WHERE p.{OWNED} GROUP BY 1"
        );
        for (k, s) in sqlx::query_as::<_, (String, i64)>(&q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            by_account.insert(k, json!(s));
        }
        let q = "SELECT customer_id::text, epoch, state FROM customers WHERE state = 'active'";
        for (cust, epoch, state) in sqlx::query_as::<_, (String, i64, String)>(q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            *rows.entry("customers").or_default() += 1;
            owners.insert(
                cust,
                json!({"shard": cell.id, "epoch": epoch, "state": state}),
            );
        }
        let q =
            format!("SELECT customer_id::text, count(*) FROM accounts WHERE {OWNED} GROUP BY 1");
        for (cust, n) in sqlx::query_as::<_, (String, i64)>(&q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            *rows.entry("accounts").or_default() += n;
            accounts.insert(cust, json!(n));
        }
        let q = format!(
            "SELECT customer_id::text, count(*), sum(credit_limit)::bigint, count(*) FILTER (WHERE blocked)
             FROM cards WHERE {OWNED} GROUP BY 1"
        );
        for (cust, n, l, b) in sqlx::query_as::<_, (String, i64, i64, i64)>(&q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            *rows.entry("cards").or_default() += n;
            cards.insert(cust, json!({"rows": n, "limit": l, "blocked": b}));
        }
        let q = format!(
            "SELECT customer_id::text || '/' || state, count(*), sum(amount)::bigint
             FROM transfers WHERE {OWNED} GROUP BY 1"
        );
        for (k, n, a) in sqlx::query_as::<_, (String, i64, i64)>(&q)
            .fetch_all(db)
            .await
            .unwrap()
        {
            *rows.entry("transfers").or_default() += n;
            transfers.insert(k, json!({"rows": n, "amount": a}));
        }
        let t: i64 = sqlx::query_scalar("SELECT coalesce(sum(amount), 0)::bigint FROM postings")
            .fetch_one(db)
            .await
            .unwrap();
        trial.insert(cell.id.clone(), json!(t));
    }
    json!({
        "postings": {"rows": rows.get("postings"), "by_customer": postings, "by_account": by_account},
        "customers": {"rows": rows.get("customers"), "owners": owners},
        "accounts": {"rows": rows.get("accounts"), "by_customer": accounts},
        "cards": {"rows": rows.get("cards"), "by_customer": cards},
        "transfers": {"rows": rows.get("transfers"), "by_customer_state": transfers},
        "trial_balance": {"by_shard": trial},
    })
}

/// DuckDB's summary of the dataset (shard/exporter/analytics/query.py).
fn exported(root: &Path) -> Result<Value, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shard/exporter/analytics/query.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg("--root")
        .arg(root)
        .arg("summary")
        .output()
        .expect("run python3 (the README's install adds duckdb)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("summary is not JSON: {e}"))
}

/// The parts of the summary that must equal what the cells hold.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    v["trial_balance"] = json!({"by_shard": v["trial_balance"]["by_shard"].take()});
    if let Some(o) = v.as_object_mut() {
        for derived in ["raw_rows_by_shard", "late_rows_misfiled", "late_dates"] {
            o.remove(derived);
        }
    }
    v
}

/// Where two JSON documents differ, as `path: got != want` lines.
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            let keys: std::collections::BTreeSet<&String> = g.keys().chain(w.keys()).collect();
            for k in keys {
                let (a, b) = (
                    g.get(k).unwrap_or(&Value::Null),
                    w.get(k).unwrap_or(&Value::Null),
                );
                differences(&format!("{path}/{k}"), a, b, out);
            }
        }
        (g, w) if g != w => out.push(format!("{path}: exported {g} != held {w}")),
        _ => {}
    }
}

/// Every file's (shard, partition, start, end) from its name.
fn file_ranges(root: &Path) -> Vec<(String, String, i64, i64)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".parquet") else {
                continue;
            };
            let parts: Vec<&str> = stem.rsplitn(4, '-').collect();
            if parts.len() == 4 && dir.to_string_lossy().contains("shard=") {
                let entity_dir = p
                    .components()
                    .rev()
                    .nth(3)
                    .unwrap()
                    .as_os_str()
                    .to_string_lossy()
                    .into_owned();
                out.push((
                    format!("{}/{}", parts[3], entity_dir),
                    parts[2].to_owned(),
                    parts[1].parse().unwrap(),
                    parts[0].parse().unwrap(),
                ));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_cell_exports_exactly_what_it_holds_through_kills_and_redeliveries() {
    let seed = std::env::var("EXPORT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("EXPORT_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let c = Arc::new(Cluster::start(2, &[]).await);
    let root = c.dir.path().join("dataset");
    let mut exporters = Vec::new();
    for cell in &c.cells {
        let mut e = Exporter::new(cell, &root);
        e.start(&c.http, c.dir.path()).await;
        exporters.push(e);
    }
    let exporters = Arc::new(Mutex::new(exporters));

    let customers = c.sign_up("export", 8).await;
    assert!(
        customers.iter().any(|x| x.shard == "shard-1")
            && customers.iter().any(|x| x.shard == "shard-2"),
        "the customers landed on one cell: {customers:?}"
    );
    let mut pans = Vec::new();
    for who in customers.iter().step_by(2) {
        pans.push(c.issue_card(who).await.1);
    }
    let mut apps = Vec::new();
    for who in &customers {
        assert_eq!(
            c.deposit(
                &format!("export-seed-{}", who.id),
                &who.account_number,
                50_000
            )
            .await,
            202
        );
        apps.push(log_in(&c, who).await);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(workload(c.clone(), apps, pans, seed, stop.clone()));
    // Kill an exporter at random moments (mid-batch or mid-flush) and start it again.
    let killer = {
        let (c, exporters, stop) = (c.clone(), exporters.clone(), stop.clone());
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5151);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(800..2_500))).await;
                let mut ex = exporters.lock().await;
                let e = &mut ex[rng.gen_range(0..2)];
                e.kill();
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
                e.start(&c.http, c.dir.path()).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_secs(4)).await;
    let redelivered_early = redeliver(&c.cells[0], 150).await + redeliver(&c.cells[1], 150).await;
    // A customer moves from one cell to the other mid-load.
    let mover = customers[rng.gen_range(0..customers.len())].clone();
    let to = if mover.shard == "shard-1" {
        "shard-2"
    } else {
        "shard-1"
    };
    let mv = c.start_move(&mover.id, to).await;
    let mv = c
        .finished_move(mv["id"].as_str().unwrap(), Duration::from_secs(120))
        .await;
    assert_eq!(mv["phase"], "completed", "the move: {mv}");
    // A late event: a deposit whose business date is weeks back.
    let late = &customers[rng.gen_range(0..customers.len())];
    let body = json!({"event_id": format!("export-late-{seed}"), "type": "deposit",
        "account_number": late.account_number, "amount": 777, "currency": "BRL",
        "occurred_at": "2026-10-03T09:30:00Z"});
    let key = c.partner_key.clone();
    let (status, _) = send(
        c.http
            .post(format!("{}/v1/events", c.global_url))
            .json(&body),
        &key,
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_secs(6)).await;
    let redelivered_late = redeliver(&c.cells[0], 400).await + redeliver(&c.cells[1], 400).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.unwrap();
    killer.await.unwrap();
    let kills: usize = exporters.lock().await.iter().map(|e| e.kills).sum();
    eprintln!(
        "redelivered {redelivered_early} + {redelivered_late} records; {kills} exporter kills"
    );
    assert!(kills >= 3, "too few kills to mean anything: {kills}");
    c.quiet().await;

    let want = held(&c).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    let got = loop {
        let got = exported(&root);
        if let Ok(g) = &got {
            if comparable(g) == want {
                break g.clone();
            }
        }
        if std::time::Instant::now() > deadline {
            let logs: Vec<String> = exporters
                .lock()
                .await
                .iter()
                .filter_map(|e| e.proc.as_ref().map(|p| processes::cluster::tail(&p.logs())))
                .collect();
            let diff = match got {
                Ok(g) => {
                    let mut out = Vec::new();
                    differences("", &comparable(&g), &want, &mut out);
                    out.join("\n")
                }
                Err(e) => e,
            };
            panic!(
                "the export never matched the cells:\n{diff}\nexporter logs:\n{}",
                logs.join("\n---\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    };
    assert_eq!(got["trial_balance"]["total"], 0, "bank-wide trial balance");
    for (shard, t) in got["trial_balance"]["by_shard"].as_object().unwrap() {
        assert_eq!(t, 0, "{shard}'s exported trial balance");
    }
    assert_eq!(
        got["late_rows_misfiled"], 0,
        "a posting outside its business date's partition"
    );
    assert!(
        got["late_dates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "2026-10-03"),
        "the late deposit's day: {got}"
    );
    // Both cells exported the mover (before and after), but it counts once.
    assert_eq!(got["customers"]["owners"][&mover.id]["shard"], to);

    // A redo rewrote its files under the same names: no two files of a
    // cell's partition cover overlapping offsets.
    let mut ranges: BTreeMap<(String, String), Vec<(i64, i64)>> = BTreeMap::new();
    for (shard_entity, p, s, e) in file_ranges(&root) {
        ranges.entry((shard_entity, p)).or_default().push((s, e));
    }
    for (k, mut rs) in ranges {
        rs.sort();
        rs.dedup();
        for w in rs.windows(2) {
            assert!(
                w[0].1 < w[1].0,
                "{k:?}: files {:?} and {:?} overlap",
                w[0],
                w[1]
            );
        }
    }
}
