//! Shard benchmark: ledger postings per second (direct apply path and
//! end-to-end through the inbound topic) with a raw-INSERT baseline of the
//! same Postgres, and authorization latency p50/p99 at a fixed rate with the
//! `/healthz` and raw produce-ack latencies as baselines, and the direct
//! apply again with the analytical change log's triggers off (its cost).
//! Each figure is the median of `RUNS` runs.
//!
//! `cargo run --release -p cellbank-shard --example shard_bench`
//! (env: RUNS=3 EVENTS=20000 RATE=500 SECS=10; AUTH_SECS sets the closed
//! authorization loop's length apart, LINGER_MS the decision linger,
//! DEDUPE_WINDOW_SECS the authorizer's dedupe window, E2E_ONLY=1 the ledger
//! end to end alone)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cellbank_shard::cards::issue_card;
use cellbank_shard::customers::create_customer;
use cellbank_shard::ledger::event::{Body, CardRef, LedgerEvent};
use cellbank_shard::ledger::store;
use cellbank_shard::{Application, Settings};
use cellbank_shared::contract::{AuthorizationRequest, CreateCustomer, IssueCard, Merchant};
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{CustomerId, Epoch, EventId};
use cellbank_shared::kafka::{Producer, Topic};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::secret::Secret;
use cellbank_shared::testkit::{fresh_database, Broker};
use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

struct Cust {
    id: CustomerId,
    number: String,
    card: Uuid,
    pan_hash: String,
}

async fn setup_customers(pool: &PgPool, n: usize) -> Vec<Cust> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut tx = pool.begin().await.unwrap();
        let id = CustomerId::new();
        let c = create_customer(
            &mut tx,
            "01",
            &CreateCustomer {
                customer_id: id,
                name: "bench".into(),
                epoch: Epoch(1),
                currency: Currency::Brl,
            },
        )
        .await
        .unwrap();
        let card = Uuid::new_v4();
        let pan_hash = format!("bench-{}", card.simple());
        issue_card(
            &mut tx,
            id,
            &IssueCard {
                card_id: card,
                epoch: Epoch(1),
                pan_hash: pan_hash.clone(),
                last4: "4242".into(),
                credit_limit: Money::MAX_MINOR / 10,
                currency: Currency::Brl,
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        out.push(Cust {
            id,
            number: c.account_number,
            card,
            pan_hash,
        });
    }
    out
}

/// The mix of business events: deposits, withdrawals, settled purchases, bill payments.
fn body(c: &Cust, i: usize) -> (&'static str, serde_json::Value) {
    let amount = 100 + (i % 900) as i64;
    match i % 4 {
        0 => (
            "deposit",
            serde_json::json!({"amount": amount, "currency": "BRL", "account_number": c.number}),
        ),
        1 => (
            "withdrawal",
            serde_json::json!({"amount": amount, "currency": "BRL", "account_number": c.number}),
        ),
        2 => (
            "purchase_settled",
            serde_json::json!({"amount": amount, "currency": "BRL", "card_id": c.card}),
        ),
        _ => (
            "bill_payment",
            serde_json::json!({"amount": amount, "currency": "BRL", "card_id": c.card}),
        ),
    }
}

fn ledger_event(c: &Cust, i: usize, run: usize) -> LedgerEvent {
    let amount = Money::positive(100 + (i % 900) as i64, Currency::Brl).unwrap();
    let card = CardRef {
        card_id: Some(c.card),
        card_hash: None,
    };
    let body = match i % 4 {
        0 => Body::Account {
            credit: true,
            account_number: Some(c.number.clone()),
            amount,
        },
        1 => Body::Account {
            credit: false,
            account_number: Some(c.number.clone()),
            amount,
        },
        2 => Body::PurchaseSettled {
            card,
            network_reference: None,
            amount,
        },
        _ => Body::BillPayment { card, amount },
    };
    LedgerEvent {
        event_id: format!("direct-{run}-{i}"),
        event_type: "bench".into(),
        customer_id: c.id,
        epoch: Epoch(1),
        occurred_at: Utc::now(),
        source: "inbound",
        partner: None,
        body,
    }
}

/// Postings/s through `store::apply_batch`, `workers` concurrent transactions of `batch` events.
async fn direct_apply(
    pool: &PgPool,
    custs: &[Cust],
    events: usize,
    batch: usize,
    workers: usize,
    run: usize,
) -> (f64, f64) {
    let evs: Vec<LedgerEvent> = (0..events)
        .map(|i| ledger_event(&custs[i % custs.len()], i, run))
        .collect();
    // one partition per worker: customers are partitioned, so are their events
    let mut parts: Vec<Vec<LedgerEvent>> = vec![Vec::new(); workers];
    for (i, e) in evs.into_iter().enumerate() {
        parts[(i % custs.len()) % workers].push(e);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for part in parts {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut postings = 0usize;
            for chunk in part.chunks(batch) {
                let mut tx = pool.begin().await.unwrap();
                let done = store::apply_batch(&mut tx, chunk).await.unwrap();
                postings += done.postings as usize;
                tx.commit().await.unwrap();
            }
            postings
        }));
    }
    let mut postings = 0;
    for t in tasks {
        postings += t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    (postings as f64 / secs, events as f64 / secs)
}

/// Baseline: single-row INSERTs of a posting-sized row, same batching and concurrency.
async fn raw_inserts(pool: &PgPool, rows: usize, batch: usize, workers: usize) -> f64 {
    sqlx::query("CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, event_id text, customer_id uuid, amount bigint, at timestamptz)")
        .execute(pool)
        .await
        .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mine = rows / workers;
            for chunk in (0..mine).collect::<Vec<_>>().chunks(batch) {
                let mut tx = pool.begin().await.unwrap();
                for i in chunk {
                    sqlx::query("INSERT INTO bench_raw (event_id, customer_id, amount, at) VALUES ($1, $2, $3, now())")
                        .bind(format!("raw-{w}-{i}"))
                        .bind(Uuid::new_v4())
                        .bind(*i as i64)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                }
                tx.commit().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    rows as f64 / start.elapsed().as_secs_f64()
}

fn settings(db: &str, bootstrap: &str) -> Settings {
    let mut s = Settings::default();
    s.shard.id = Some("shard-1".parse().unwrap());
    s.shard.public_url = "http://127.0.0.1".into();
    s.global.url = "http://127.0.0.1:9".into();
    s.server.port = 0;
    s.database.url = Secret::new(db);
    s.kafka.bootstrap = bootstrap.into();
    s.kafka.partitions = 4;
    s.authorizer.decision_linger_ms = env("LINGER_MS", 0) as u32;
    s.kafka.fetch_wait_ms = env("FETCH_WAIT_MS", 500) as u32;
    s.authorizer.dedupe_window_secs = env("DEDUPE_WINDOW_SECS", 300) as u64;
    s.auth.admin_token = Secret::new("a");
    s.auth.internal_token = Secret::new("i");
    s.telemetry.filter = "error".into();
    s
}

/// Open-loop requests at `rate`/s for `secs`: latencies in ms (errors counted apart).
async fn fixed_rate<F, Fut>(rate: usize, secs: usize, mut make: F) -> (Vec<f64>, usize)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let total = rate * secs;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let f = make(i);
        tasks.push(tokio::spawn(async move {
            let t = Instant::now();
            let ok = f.await;
            (t.elapsed().as_secs_f64() * 1000.0, ok)
        }));
    }
    let mut lat = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (ms, ok) = t.await.unwrap();
        if ok {
            lat.push(ms);
        } else {
            errors += 1;
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    (lat, errors)
}

/// Callers of the closed-loop throughput phases.
const CALLERS: usize = 64;

/// One authorization at the shard: the decision, or `None` when it failed.
fn authorization(
    client: reqwest::Client,
    url: String,
    customer_id: CustomerId,
    pan_hash: String,
    network_reference: String,
) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
    let req = AuthorizationRequest {
        customer_id,
        epoch: Epoch(1),
        pan_hash,
        amount: 1000,
        currency: Currency::Brl,
        merchant: Merchant {
            name: "m".into(),
            mcc: "5411".into(),
            country: "BR".into(),
        },
        network_reference,
    };
    async move {
        let r = client
            .post(url)
            .bearer_auth("i")
            .json(&req)
            .send()
            .await
            .ok()?;
        if r.status() != 200 {
            return None;
        }
        let v = r.json::<serde_json::Value>().await.ok()?;
        v["decision"].as_str().map(str::to_owned)
    }
}

/// The `i`-th request of a phase: the cards taken in turn, each with a fresh
/// network reference `{prefix}-{i}`.
fn card_authorization(
    client: &reqwest::Client,
    url: &str,
    cards: &[(CustomerId, String)],
    i: usize,
    prefix: &str,
) -> impl std::future::Future<Output = Option<String>> + Send + 'static {
    let (customer, pan_hash) = cards[i % cards.len()].clone();
    authorization(
        client.clone(),
        url.to_owned(),
        customer,
        pan_hash,
        format!("{prefix}-{i}"),
    )
}

/// One raw produce, acknowledged: the baselines' unit of work.
async fn raw_ack(p: Producer, i: usize) -> bool {
    p.send(
        "cellbank.ledger-facts",
        b"k",
        format!("{i}").as_bytes(),
        &[],
    )
    .await
    .is_ok()
}

/// Closed loop: `callers` callers, each sending its next request when its
/// last one is answered, for `secs`: successful answers per second, and the
/// same per second of the run (a rate that changes under load shows there).
async fn closed_loop<F, Fut>(callers: usize, secs: usize, make: F) -> (f64, Vec<usize>)
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    use std::sync::Arc;
    let until = Instant::now() + Duration::from_secs(secs as u64);
    let (next, ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let (make, next, ok) = (make.clone(), next.clone(), ok.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if make(next.fetch_add(1, Ordering::Relaxed)).await {
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let mut per_second = Vec::with_capacity(secs);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    for _ in 0..secs {
        tick.tick().await;
        let now = ok.load(Ordering::Relaxed);
        per_second.push(now - last);
        last = now;
    }
    for t in tasks {
        t.await.unwrap();
    }
    (ok.load(Ordering::Relaxed) as f64 / secs as f64, per_second)
}

#[tokio::main]
async fn main() {
    let runs = env("RUNS", 3);
    let events = env("EVENTS", 20_000);
    let rate = env("RATE", 500);
    let secs = env("SECS", 10);
    let batch = env("BATCH", 256);
    let workers = 4;
    cellbank_shared::telemetry::init_for_tests();
    let (mut direct_p, mut direct_e, mut raw, mut e2e_p, mut e2e_e, mut startup) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut auth50, mut auth99, mut health50, mut health99, mut ack50, mut ack99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut auth_max, mut produce_max) = (vec![], vec![]);
    let mut approved_errors = 0;
    let mut direct_nolog = vec![];
    for run in 0..runs {
        // -- ledger, direct apply path
        let db = fresh_database("shard_bench").await;
        let pool = PgPool::connect(&db).await.unwrap();
        cellbank_shard::MIGRATOR.run(&pool).await.unwrap();
        let custs = setup_customers(&pool, 256).await;
        // E2E_ONLY=1 runs the end-to-end phase alone (to profile it).
        if env("E2E_ONLY", 0) == 0 {
            let (p, e) = direct_apply(&pool, &custs, events, batch, workers, run).await;
            direct_p.push(p);
            direct_e.push(e);
            raw.push(raw_inserts(&pool, events * 4, batch, workers).await);
            // The same apply with the analytical change log's triggers off:
            // what capturing every change in the same transaction costs.
            let bare = fresh_database("shard_bench").await;
            let bare = PgPool::connect(&bare).await.unwrap();
            cellbank_shard::MIGRATOR.run(&bare).await.unwrap();
            for t in ["postings", "customers", "accounts", "cards", "transfers"] {
                for trigger in [format!("{t}_change"), format!("{t}_change_update")] {
                    sqlx::query(&format!("ALTER TABLE {t} DISABLE TRIGGER {trigger}"))
                        .execute(&bare)
                        .await
                        .unwrap();
                }
            }
            let bare_custs = setup_customers(&bare, 256).await;
            let (p, _) = direct_apply(&bare, &bare_custs, events, batch, workers, run).await;
            direct_nolog.push(p);
        }

        // -- ledger, end to end: a pre-filled inbound topic consumed by the running shard
        let topic_broker = Broker::start().await;
        topic_broker
            .create_topics(
                &Topic::SHARD.iter().map(|t| t.name()).collect::<Vec<_>>(),
                4,
            )
            .await;
        let producer = Producer::new(&topic_broker.bootstrap(), Duration::from_secs(30)).unwrap();
        let sends = (0..events).map(|i| {
            let c = &custs[i % custs.len()];
            let (kind, payload) = body(c, i);
            let env = Envelope {
                event_id: EventId::parse(&format!("e2e-{run}-{i}")).unwrap(),
                customer_id: c.id,
                epoch: Epoch(1),
                event_type: kind.into(),
                occurred_at: Utc::now(),
                accepted_at: Utc::now(),
                correlation_id: "bench".into(),
                namespace: None,
                payload,
            };
            let producer = producer.clone();
            async move {
                producer
                    .send_envelope(Topic::Inbound.name(), &env)
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(sends).await;
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
            .fetch_one(&pool)
            .await
            .unwrap();
        let app = Application::build(settings(&db, &topic_broker.bootstrap()))
            .await
            .unwrap();
        let port = app.port();
        let state = app.state();
        let stop = tokio_util::sync::CancellationToken::new();
        let s2 = stop.clone();
        let start = Instant::now();
        let handle = tokio::spawn(app.run_until_stopped(async move { s2.cancelled().await }));
        // The clock runs from the first applied event: the shard's start-up
        // (migrations, the authorizer's replay, the consumer group's join)
        // is reported apart, not averaged into the throughput.
        // Polled every 20 ms over the key's index: a scan every 5 ms took a
        // good part of a core from the Postgres being measured.
        let mut first: Option<(Instant, i64)> = None;
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM events WHERE event_id >= 'e2e-' AND event_id < 'e2e.'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if n > 0 && first.is_none() {
                first = Some((Instant::now(), n));
            }
            if n as usize >= events {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (first_at, first_n) = first.expect("events were applied");
        let secs_e2e = first_at.elapsed().as_secs_f64();
        startup.push(first_at.duration_since(start).as_secs_f64());
        let after: i64 = sqlx::query_scalar("SELECT count(*) FROM postings")
            .fetch_one(&pool)
            .await
            .unwrap();
        let per_event = (after - before) as f64 / events as f64;
        let steady = (events as i64 - first_n) as f64 / secs_e2e;
        e2e_p.push(steady * per_event);
        e2e_e.push(steady);
        if env("E2E_ONLY", 0) == 1 {
            stop.cancel();
            let _ = handle.await;
            continue;
        }

        // -- authorization latency at a fixed rate, with baselines at the same rate
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        loop {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // and this (only) replica holds the authorizer lease
        while state.lease.route() != cellbank_shard::authorizer::lease::Route::Decide {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let cards: Vec<(CustomerId, String)> =
            custs.iter().map(|c| (c.id, c.pan_hash.clone())).collect();
        let url = format!("{base}/internal/v1/authorizations");
        let (lat, errs) = fixed_rate(rate, secs, |i| {
            let sent = card_authorization(&client, &url, &cards, i, &format!("bench-{run}"));
            async move { sent.await.as_deref() == Some("approved") }
        })
        .await;
        approved_errors += errs;
        auth50.push(pct(&lat, 0.5));
        auth99.push(pct(&lat, 0.99));
        let (lat, _) = fixed_rate(rate, secs, |_| {
            let client = client.clone();
            let url = format!("{base}/healthz");
            async move {
                client
                    .get(url)
                    .send()
                    .await
                    .map(|r| r.status() == 200)
                    .unwrap_or(false)
            }
        })
        .await;
        health50.push(pct(&lat, 0.5));
        health99.push(pct(&lat, 0.99));
        let acks =
            Producer::with_linger(&topic_broker.bootstrap(), Duration::from_secs(10), 0).unwrap();
        let (lat, _) = fixed_rate(rate, secs, |i| raw_ack(acks.clone(), i)).await;
        ack50.push(pct(&lat, 0.5));
        ack99.push(pct(&lat, 0.99));

        // -- throughput, closed loop: decisions against the raw producer
        let (client2, url2, cards2) = (client.clone(), url.clone(), cards.clone());
        let approved = std::sync::Arc::new(AtomicUsize::new(0));
        let counted = approved.clone();
        let auth_secs = env("AUTH_SECS", secs);
        let (decided, per_second) = closed_loop(CALLERS, auth_secs, move |i| {
            let sent = card_authorization(&client2, &url2, &cards2, i, &format!("max-{run}"));
            let counted = counted.clone();
            async move {
                let decision = sent.await;
                if decision.as_deref() == Some("approved") {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
                decision.is_some()
            }
        })
        .await;
        eprintln!(
            "run {run}: decisions per second {per_second:?}; approved {} of {:.0}",
            approved.load(Ordering::Relaxed),
            decided * auth_secs as f64
        );
        auth_max.push(decided);
        let p = acks.clone();
        produce_max.push(
            closed_loop(CALLERS, secs, move |i| raw_ack(p.clone(), i))
                .await
                .0,
        );
        stop.cancel();
        let _ = handle.await;
        eprintln!("run {run} done");
    }
    println!(
        "runs={runs} events={events} batch={batch} workers={workers} rate={rate}/s for {secs}s"
    );
    println!(
        "ledger direct apply: {:.0} postings/s ({:.0} events/s)",
        median(direct_p),
        median(direct_e)
    );
    println!(
        "baseline raw single-row INSERT, same batching: {:.0} rows/s",
        median(raw)
    );
    println!(
        "ledger direct apply without the change log's triggers: {:.0} postings/s",
        median(direct_nolog)
    );
    println!(
        "ledger end to end via inbound topic, from the first applied event: {:.0} postings/s ({:.0} events/s); shard start to first applied event {:.2} s",
        median(e2e_p),
        median(e2e_e),
        median(startup)
    );
    println!(
        "authorization p50 {:.2} ms p99 {:.2} ms (not approved or failed: {approved_errors})",
        median(auth50),
        median(auth99)
    );
    let (a, p) = (median(auth_max), median(produce_max));
    println!(
        "authorization throughput, {CALLERS} callers closed loop: {a:.0} decisions/s; baseline raw produce (linger 0), {CALLERS} callers: {p:.0} acks/s ({:.2}x)",
        a / p
    );
    println!(
        "baseline GET /healthz p50 {:.2} ms p99 {:.2} ms",
        median(health50),
        median(health99)
    );
    println!(
        "baseline raw produce ack (linger 0) p50 {:.2} ms p99 {:.2} ms",
        median(ack50),
        median(ack99)
    );
}
