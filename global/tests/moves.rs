//! Customer moves between shards, end to end with the real processes: a
//! customer moves while partners send events and authorizations (repeated
//! network references included) to it and to others; once quiet, every
//! accepted event is applied exactly once or dead-lettered, the trial
//! balances are zero, the moved customer's money is what was sent, no card
//! is approved past its limit, and the app recovers through links alone.

mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;

use processes::cluster::{send, Cluster, Customer};

/// What the load saw: accepted deposits per customer and every decision.
#[derive(Default)]
struct Seen {
    accepted: BTreeMap<String, Vec<(String, i64)>>,
    refused: usize,
    /// First answers by (customer, reference).
    decisions: BTreeMap<(String, String), Value>,
    repeats_differing: Vec<String>,
    /// App requests (following the login's links) that failed otherwise
    /// than with a problem linking to a new login.
    app_failures: Vec<String>,
    app_reads: usize,
    app_relogins: usize,
}

/// A customer the load sends to, with its card's PAN (if any).
#[derive(Clone)]
struct Target {
    who: Customer,
    pan: Option<String>,
}

/// Partners' traffic for `targets` until `stop`: deposits, authorizations,
/// and repeats of earlier network references. What global refused or did
/// not answer (a process the test killed) is not accepted, so not counted.
async fn load(c: Arc<Cluster>, targets: Vec<Target>, stop: Arc<AtomicBool>) -> Seen {
    let who: Vec<Customer> = targets.iter().map(|t| t.who.clone()).collect();
    let app = tokio::spawn(app_loop(c.clone(), who, stop.clone()));
    let mut seen = Seen::default();
    let mut i: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        for t in &targets {
            let id = format!("load-{}-{i}", t.who.id);
            let amount = 100 + i % 50;
            match retried(|| c.deposit(&id, &t.who.account_number, amount)).await {
                202 => seen
                    .accepted
                    .entry(t.who.id.clone())
                    .or_default()
                    .push((id, amount)),
                _ => seen.refused += 1,
            }
            let Some(pan) = &t.pan else { continue };
            decide(&c, &mut seen, &t.who, pan, &format!("nr-{i}")).await;
            if i % 4 == 3 {
                decide(&c, &mut seen, &t.who, pan, &format!("nr-{}", i / 2)).await;
            }
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let app = app.await.unwrap();
    seen.app_reads = app.app_reads;
    seen.app_relogins = app.app_relogins;
    seen.app_failures = app.app_failures;
    seen
}

/// The app of each customer, reading its accounts every 20 ms until `stop`;
/// then each app reads until it succeeds once more (at most 30 s), so an
/// app whose session a late move ended has logged in again and read from
/// its new cell whatever the machine's speed (a debug build's password
/// hashing on a loaded machine takes seconds).
async fn app_loop(c: Arc<Cluster>, who: Vec<Customer>, stop: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let mut sessions: Vec<Option<Value>> = vec![None; who.len()];
    while !stop.load(Ordering::Relaxed) {
        for (w, session) in who.iter().zip(sessions.iter_mut()) {
            app_read(&c, &mut seen, w, session).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (w, session) in who.iter().zip(sessions.iter_mut()) {
        for _ in 0..300 {
            if app_read(&c, &mut seen, w, session).await == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    seen
}

/// The app reads its accounts by following its login's link, as an app
/// that only follows links does: a `login-required` problem sends it to log
/// in again (at the `login` link) and it goes on from the new links.
/// Returns the read's status (0: not sent, global is down).
async fn app_read(
    c: &Cluster,
    seen: &mut Seen,
    who: &Customer,
    session: &mut Option<Value>,
) -> u16 {
    if session.is_none() {
        let (status, doc) = send(
            c.http
                .post(format!("{}/v1/login", c.global_url))
                .json(&json!({"login": who.login, "password": "moves password"})),
            "",
        )
        .await;
        if status != 200 {
            return 0; // global is down (a test killed it): the app retries later
        }
        seen.app_relogins += 1;
        *session = Some(doc);
    }
    let doc = session.as_ref().unwrap();
    let url = doc["_links"]["accounts"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = send(c.http.get(&url), doc["access_token"].as_str().unwrap()).await;
    match status {
        200 => seen.app_reads += 1,
        401 | 409 if body["_links"]["login"]["href"].is_string() => *session = None,
        // A cell a test killed, or restarting: the app retries.
        0 | 503 => {}
        _ => seen.app_failures.push(format!("{status} {body}")),
    }
    status
}

/// Answers of calls whose outcome is unknown (global was killed before it
/// answered) are asked again with the same id, as partners do, until global
/// answers: only then is it known whether the event was accepted.
async fn retried<T: Outcome, F: std::future::Future<Output = T>>(mut call: impl FnMut() -> F) -> T {
    for _ in 0..600 {
        let out = call().await;
        if out.answered() {
            return out;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("global never answered again");
}

trait Outcome {
    fn answered(&self) -> bool;
}

impl Outcome for u16 {
    fn answered(&self) -> bool {
        *self != 0
    }
}

impl Outcome for (u16, Value) {
    fn answered(&self) -> bool {
        self.0 != 0
    }
}

/// One authorization of 700; a repeat must get the first answer.
async fn decide(c: &Cluster, seen: &mut Seen, who: &Customer, pan: &str, reference: &str) {
    let (status, d) = retried(|| c.try_authorize(pan, 700, reference)).await;
    if status != 200 {
        return;
    }
    let key = (who.id.clone(), reference.to_owned());
    let Some(first) = seen.decisions.get(&key).cloned() else {
        seen.decisions.insert(key, d);
        return;
    };
    if first["authorization_id"] == d["authorization_id"] && first["decision"] == d["decision"] {
        return;
    }
    // A stand-in is global's own answer when it could not hear the decider
    // in time (which may have decided): a repeat then learns the decider's
    // first answer, which is the one that binds.
    if is_stand_in(&first) && !is_stand_in(&d) {
        seen.decisions.insert(key, d);
    } else if !is_stand_in(&first) && !is_stand_in(&d) {
        seen.repeats_differing
            .push(format!("{reference}: first {first}, then {d}"));
    }
}

fn is_stand_in(d: &Value) -> bool {
    [
        "stand_in_timeout",
        "shard_unavailable",
        "customer_moving",
        "stale_epoch",
        "directory_unavailable",
    ]
    .contains(&d["reason"].as_str().unwrap_or_default())
}

/// Event ids of `customer` applied in a cell (partner namespace).
async fn applied(db: &PgPool, customer: &str) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT event_id FROM events WHERE customer_id = $1::uuid AND namespace LIKE 'partner:%'",
    )
    .bind(customer)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn dead(db: &PgPool, customer: &str) -> BTreeSet<String> {
    sqlx::query_scalar(
        "SELECT event_id FROM dead_letters
         WHERE customer_id = $1::uuid AND status = 'dead' AND event_id IS NOT NULL",
    )
    .bind(customer)
    .fetch_all(db)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn trial_balances_are_zero(c: &Cluster) {
    for cell in &c.cells {
        let off: Vec<(String, i64)> = sqlx::query_as(
            "SELECT currency, sum(balance)::bigint FROM book_accounts GROUP BY currency HAVING sum(balance) <> 0",
        )
        .fetch_all(&cell.db)
        .await
        .unwrap();
        assert!(
            off.is_empty(),
            "{}'s trial balance is not zero: {off:?}",
            cell.id
        );
    }
}

/// The balance of the customer's checking account in a cell's ledger.
async fn checking(db: &PgPool, account_number: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT abs(b.balance) FROM book_accounts b JOIN accounts a ON b.code = 'account:' || a.account_id
         WHERE a.number = $1",
    )
    .bind(account_number)
    .fetch_one(db)
    .await
    .unwrap()
}

/// Accepted = applied at the owner + dead-lettered, per event id; none twice.
async fn every_accepted_event_counts_once(
    c: &Cluster,
    who: &Customer,
    owner: &str,
    accepted: &[(String, i64)],
) {
    let applied = applied(&c.cell(owner).db, &who.id).await;
    let mut dead_letters = BTreeSet::new();
    for cell in &c.cells {
        dead_letters.extend(dead(&cell.db, &who.id).await);
    }
    for (id, _) in accepted {
        let here = applied.contains(id) as u8 + dead_letters.contains(id) as u8;
        assert_eq!(
            here,
            1,
            "accepted event {id} of {} is applied or dead once (applied: {}, dead: {})",
            who.id,
            applied.contains(id),
            dead_letters.contains(id)
        );
    }
}

/// Everything a move must keep, checked once quiet for one customer: where
/// the directory says it lives, every accepted event applied there once or
/// dead-lettered, its money exactly what was accepted (`base` before the
/// load), no approval past `limit`, every approval booked once.
async fn customer_is_whole(
    c: &Cluster,
    seen: &Seen,
    who: &Customer,
    base: i64,
    limit: i64,
    extra_approved: &[Value],
) {
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", who.id)).await;
    let owner = placed["shard"].as_str().unwrap().to_owned();
    let accepted = seen.accepted.get(&who.id).cloned().unwrap_or_default();
    every_accepted_event_counts_once(c, who, &owner, &accepted).await;
    let mut dead_letters = BTreeSet::new();
    for cell in &c.cells {
        dead_letters.extend(dead(&cell.db, &who.id).await);
    }
    let expected = base
        + accepted
            .iter()
            .filter(|(id, _)| !dead_letters.contains(id))
            .map(|(_, n)| n)
            .sum::<i64>();
    assert_eq!(
        checking(&c.cell(&owner).db, &who.account_number).await,
        expected,
        "{}'s money on {owner}",
        who.id
    );
    let approved: BTreeMap<String, i64> = seen
        .decisions
        .iter()
        .filter(|((id, _), d)| id == &who.id && d["decision"] == "approved")
        .map(|(_, d)| (d["authorization_id"].as_str().unwrap().to_owned(), 700))
        .chain(extra_approved.iter().map(|d| {
            (
                d["authorization_id"].as_str().unwrap().to_owned(),
                d["amount"].as_i64().unwrap_or(0),
            )
        }))
        .collect();
    let booked: Vec<(String, i64)> = sqlx::query_as(
        "SELECT authorization_id::text, coalesce(authorized_amount, 0) FROM card_purchases
         WHERE customer_id = $1::uuid AND authorization_id IS NOT NULL",
    )
    .bind(&who.id)
    .fetch_all(&c.cell(&owner).db)
    .await
    .unwrap();
    let booked_set: BTreeSet<String> = booked.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(booked.len(), booked_set.len(), "an approval booked twice");
    // The ledger is the truth: what it holds never passes the limit. Every
    // approval the network heard of is in it; the ledger may also hold an
    // approval the network only got a stand-in for (the decider's answer
    // was lost on the way: its hold expires or a reversal releases it).
    let total: i64 = booked.iter().map(|(_, n)| n).sum();
    assert!(
        total <= limit,
        "{} holds {total} of approvals past the limit of {limit}",
        who.id
    );
    let missing: Vec<&String> = approved
        .keys()
        .filter(|id| !booked_set.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "approvals not booked on {owner}: {missing:?}"
    );
}

/// One platform at a time: each test runs seven processes and four brokers
/// on two cores, and a freeze measured against another test's load says
/// little.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Once quiet, after the load on `targets`: repeats got their first
/// answers, the apps never failed, the trial balances are zero, and every
/// target is whole.
async fn everyone_is_whole(c: &Cluster, seen: &Seen, targets: &[Target]) {
    c.quiet().await;
    assert!(
        seen.repeats_differing.is_empty(),
        "repeats answered differently: {:?}",
        seen.repeats_differing
    );
    assert!(
        seen.app_failures.is_empty(),
        "the app failed: {:?}",
        seen.app_failures
    );
    trial_balances_are_zero(c).await;
    for t in targets {
        customer_is_whole(c, seen, &t.who, BASE, LIMIT, &[]).await;
    }
}

/// A platform of two cells, a credit limit of `LIMIT`, and `n` customers
/// on shard-1 with a card and `BASE` deposited before anything moves.
async fn platform(n: usize, global_env: &[(&str, &str)]) -> (Arc<Cluster>, Vec<Target>) {
    let c = Cluster::start(2, global_env).await;
    let (status, _) = send(
        c.http
            .put(format!("{}/ops/v1/credit-policy/BRL", c.ops_url))
            .json(&json!({"default_credit_limit": LIMIT})),
        processes::cluster::ADMIN,
    )
    .await;
    assert_eq!(status, 200);
    let mut targets = Vec::new();
    let mut round = 0;
    while targets.len() < n {
        for who in c.sign_up(&format!("mover{round}"), 2 * n).await {
            if who.shard == "shard-1" && targets.len() < n {
                let (_, pan) = c.issue_card(&who).await;
                assert_eq!(
                    c.deposit(&format!("base-{}", who.id), &who.account_number, BASE)
                        .await,
                    202
                );
                targets.push(Target {
                    who,
                    pan: Some(pan),
                });
            }
        }
        round += 1;
    }
    c.quiet().await;
    (Arc::new(c), targets)
}

const LIMIT: i64 = 20_000;
const BASE: i64 = 3_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_moves_online_while_traffic_flows_and_loses_or_doubles_nothing() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let (c, targets) = platform(2, &[]).await;
    let (a, b) = (targets[0].clone(), targets[1].clone());
    let pan = a.pan.clone().unwrap();
    let first = c.authorize(&pan, 1_500, "nr-before").await;
    assert_eq!(first["decision"], "approved", "{first}");
    let old_login = c.login(&a.who).await;

    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(c.clone(), targets.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mv = c.start_move(&a.who.id, "shard-2").await;
    assert_eq!(mv["phase"], "planned");
    let href = mv["_links"]["self"]["href"].as_str().unwrap().to_owned();
    let done = c
        .finished_move(mv["id"].as_str().unwrap(), Duration::from_secs(60))
        .await;
    assert_eq!(done["phase"], "completed", "{done}");
    assert_eq!(
        href,
        format!("/ops/v1/moves/{}", done["id"].as_str().unwrap())
    );
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    // A repeat of a reference decided before the move gets its first answer.
    let again = c.authorize(&pan, 1_500, "nr-before").await;
    assert_eq!(again["authorization_id"], first["authorization_id"]);
    c.quiet().await;

    eprintln!("move: {done}");
    assert!(
        seen.repeats_differing.is_empty(),
        "repeats answered differently: {:?}",
        seen.repeats_differing
    );
    assert!(
        seen.app_failures.is_empty(),
        "the app failed: {:?}",
        seen.app_failures
    );
    assert!(
        seen.app_reads >= 2 && seen.app_relogins >= 3,
        "the app read {} times and logged in {} times",
        seen.app_reads,
        seen.app_relogins
    );
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", a.who.id)).await;
    assert_eq!(
        (&placed["shard"], &placed["epoch"]),
        (&json!("shard-2"), &json!(2)),
        "{placed}"
    );
    assert!(
        seen.accepted.get(&a.who.id).map_or(0, Vec::len) > 3,
        "the load reached the moving customer"
    );
    trial_balances_are_zero(&c).await;
    let mut first = first.clone();
    first["amount"] = json!(1_500);
    customer_is_whole(&c, &seen, &a.who, BASE, LIMIT, &[first]).await;
    customer_is_whole(&c, &seen, &b.who, BASE, LIMIT, &[]).await;

    // The app: the old token and link get a problem that links to a new
    // login and to the customer on the new cell; logging in again works.
    let accounts = old_login["_links"]["accounts"]["href"].as_str().unwrap();
    let token = old_login["access_token"].as_str().unwrap();
    let (status, problem) = send(c.http.get(accounts), token).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["_links"]["login"]["href"].is_string(), "{problem}");
    let moved_to = problem["_links"]["customer"]["href"].as_str().unwrap();
    assert!(moved_to.starts_with(&c.cell("shard-2").url), "{moved_to}");
    let login = c.login(&a.who).await;
    let accounts = login["_links"]["accounts"]["href"].as_str().unwrap();
    assert!(accounts.starts_with(&c.cell("shard-2").url), "{accounts}");
    let (status, list) = send(
        c.http.get(accounts),
        login["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{list}");

    // The operator completes the move: the old cell's copy is purged, a
    // moved-out marker stays and still sends the old link to the new cell.
    let complete = done["_links"]["complete"]["href"].as_str().unwrap();
    let (status, purged) = c.ops_post(complete, json!({})).await;
    assert_eq!(
        (status, &purged["source_copy"]),
        (200, &json!("purged")),
        "{purged}"
    );
    let src = &c.cell("shard-1").db;
    for table in [
        "customers",
        "accounts",
        "cards",
        "book_accounts",
        "events",
        "postings",
    ] {
        let left: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {table} WHERE customer_id = $1::uuid"
        ))
        .bind(&a.who.id)
        .fetch_one(src)
        .await
        .unwrap();
        assert_eq!(left, 0, "{table} still holds the moved customer");
    }
    let old = old_login["_links"]["accounts"]["href"].as_str().unwrap();
    let (status, problem) = send(c.http.get(old), token).await;
    assert_eq!(status, 409, "{problem}");
    let link = problem["_links"]["customer"]["href"].as_str().unwrap();
    assert!(link.starts_with(&c.cell("shard-2").url), "{link}");
    trial_balances_are_zero(&c).await;
}

/// Global's mover is SIGKILLed in each phase of a move (before the
/// preflight, during the copy, inside the freeze, after the flip), with
/// traffic flowing; a new global process resumes the move under a new
/// attempt once the old lease ran out, and every move ends completed with
/// nothing lost or doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_killed_in_any_phase_is_resumed_and_the_move_completes() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = [
        ("CELLBANK__MOVES__STEP_DELAY_MS", "600"),
        ("CELLBANK__MOVES__LEASE_TTL_MS", "1500"),
    ];
    let (c, targets) = platform(4, &env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(c.clone(), targets.clone(), stop.clone()));
    let phases = [
        ("planned", 0),
        ("copying", 0),
        ("cutover", 900),
        ("flipped", 0),
    ];
    for (n, (t, (phase, later))) in targets.iter().zip(phases).enumerate() {
        let mv = c.start_move(&t.who.id, "shard-2").await;
        let id = mv["id"].as_str().unwrap();
        // In the phase, with a mover driving it (its lease taken).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while c.move_reaches(id, &[phase], Duration::from_secs(30)).await["attempt"] == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "no mover took the move"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(later)).await;
        c.kill_global();
        c.restart_global(&format!("global-{n}")).await;
        let done = c.finished_move(id, Duration::from_secs(60)).await;
        assert_eq!(done["phase"], "completed", "killed in {phase}: {done}");
        assert!(
            done["attempt"].as_i64().unwrap() >= 2,
            "resumed by a new attempt: {done}"
        );
        eprintln!("killed in {phase}: {done}");
    }
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    everyone_is_whole(&c, &seen, &targets).await;
}

/// The source cell is SIGKILLed during a copy, the target cell inside a
/// freeze; each is started again and each move ends cleanly (completed, or
/// rolled back with the customer whole on its source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_or_target_killed_mid_move_ends_cleanly() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = [("CELLBANK__MOVES__STEP_DELAY_MS", "600")];
    let (c, targets) = platform(2, &env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(c.clone(), targets.clone(), stop.clone()));
    for (n, (t, (cell, phase, later))) in targets
        .iter()
        .zip([("shard-1", "copying", 0), ("shard-2", "cutover", 900)])
        .enumerate()
    {
        let mv = c.start_move(&t.who.id, "shard-2").await;
        let id = mv["id"].as_str().unwrap();
        c.move_reaches(id, &[phase], Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(later)).await;
        c.kill_cell(cell);
        tokio::time::sleep(Duration::from_millis(500)).await;
        c.restart_cell(cell, &format!("{cell}-again-{n}")).await;
        let done = c.finished_move(id, Duration::from_secs(90)).await;
        eprintln!("{cell} killed in {phase}: {done}");
        let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", t.who.id)).await;
        let expected = if done["phase"] == "completed" {
            "shard-2"
        } else {
            "shard-1"
        };
        assert_eq!(placed["shard"], expected, "{done} {placed}");
        assert_eq!(placed["state"], "active", "{placed}");
    }
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    everyone_is_whole(&c, &seen, &targets).await;
}

async fn move_one_and_wait(c: &Cluster, customer: &str, to: &str) -> Value {
    let mv = c.start_move(customer, to).await;
    c.finished_move(mv["id"].as_str().unwrap(), Duration::from_secs(60))
        .await
}

/// The customer's change counter in a cell (0 if it has no events there).
async fn version(db: &PgPool, customer: &str) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM events WHERE customer_id = $1::uuid")
        .bind(customer)
        .fetch_one(db)
        .await
        .unwrap()
}

/// A deposit as a router replica that missed the hold produces it: straight
/// into a cell's inbound log, at the epoch it last knew.
async fn straggle(c: &Cluster, cell: &str, who: &Customer, event_id: &str, amount: i64) {
    use cellbank_shared::envelope::Envelope;
    use cellbank_shared::ids::{CustomerId, Epoch, EventId};
    let env = Envelope {
        event_id: EventId::parse(event_id).unwrap(),
        customer_id: who.id.parse::<CustomerId>().unwrap(),
        epoch: Epoch(1),
        event_type: "deposit".into(),
        occurred_at: chrono::Utc::now(),
        accepted_at: chrono::Utc::now(),
        correlation_id: "straggler".into(),
        namespace: Some(c.partner_namespace.clone()),
        payload: json!({"amount": amount, "currency": "BRL", "account_number": who.account_number}),
    };
    let p = cellbank_shared::kafka::Producer::new(
        &c.cell(cell).broker.bootstrap(),
        Duration::from_secs(5),
    )
    .unwrap();
    p.send_envelope(cellbank_shared::kafka::Topic::Inbound.name(), &env)
        .await
        .unwrap();
}

/// Stragglers — events a router replica that missed the move's hold sends
/// to the old cell after its fence, and a redelivery of an event the move
/// already copied — are refused there, forwarded to the new cell with their
/// ids, and applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stragglers_reaching_the_old_cell_are_forwarded_and_applied_once() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let (c, targets) = platform(1, &[("CELLBANK__MOVES__STEP_DELAY_MS", "700")]).await;
    let a = targets[0].who.clone();
    let (src, dst) = (&c.cell("shard-1").db, &c.cell("shard-2").db);
    let mv = c.start_move(&a.id, "shard-2").await;
    let id = mv["id"].as_str().unwrap();
    // Inside the freeze, once the source is fenced, drained and the tail
    // copied: a straggler arrives at the old cell before the flip.
    c.move_reaches(id, &["cutover"], Duration::from_secs(30))
        .await;
    let copied = || async {
        let fenced: bool =
            sqlx::query_scalar("SELECT inbound_fenced FROM customers WHERE customer_id = $1::uuid")
                .bind(&a.id)
                .fetch_one(src)
                .await
                .unwrap();
        fenced && version(src, &a.id).await == version(dst, &a.id).await
    };
    cellbank_shared::testkit::eventually(Duration::from_secs(20), "the tail is copied", copied)
        .await;
    assert_eq!(
        c.ops_get(&format!("/ops/v1/moves/{id}")).await.1["phase"],
        "cutover"
    );
    straggle(&c, "shard-1", &a, "straggler-in-freeze", 11).await;
    let done = c.finished_move(id, Duration::from_secs(30)).await;
    assert_eq!(done["phase"], "completed", "{done}");
    // After the move: a new straggler, and a redelivery of a copied event.
    straggle(&c, "shard-1", &a, "straggler-after", 13).await;
    straggle(&c, "shard-1", &a, &format!("base-{}", a.id), BASE).await;
    let applied_once = || async {
        let ids = applied(dst, &a.id).await;
        ids.contains("straggler-in-freeze") && ids.contains("straggler-after")
    };
    cellbank_shared::testkit::eventually(
        Duration::from_secs(30),
        "the stragglers were forwarded",
        applied_once,
    )
    .await;
    c.quiet().await;
    assert_eq!(
        checking(dst, &a.account_number).await,
        BASE + 11 + 13,
        "each applied once, the redelivery not again"
    );
    let forwarded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM dead_letters WHERE status = 'forwarded'")
            .fetch_one(src)
            .await
            .unwrap();
    // The redelivery is a duplicate at the old cell (applied there before
    // the move, copied with it): answered as done, nothing to forward.
    assert_eq!(
        forwarded, 2,
        "the old cell refused and forwarded both stragglers"
    );
    assert!(
        dead(src, &a.id).await.is_empty() && dead(dst, &a.id).await.is_empty(),
        "nothing left dead"
    );
    trial_balances_are_zero(&c).await;

    // And back: a reverse move to the old cell at the next epoch, which
    // applies only what happened since (the rest it has, by version).
    assert_eq!(c.deposit("after-move", &a.account_number, 17).await, 202);
    c.quiet().await;
    let back = move_one_and_wait(&c, &a.id, "shard-1").await;
    assert_eq!(back["phase"], "completed", "{back}");
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", a.id)).await;
    assert_eq!(
        (&placed["shard"], &placed["epoch"]),
        (&json!("shard-1"), &json!(3)),
        "{placed}"
    );
    assert_eq!(checking(src, &a.account_number).await, BASE + 11 + 13 + 17);
    assert_eq!(c.deposit("after-return", &a.account_number, 19).await, 202);
    c.quiet().await;
    assert_eq!(
        checking(src, &a.account_number).await,
        BASE + 11 + 13 + 17 + 19
    );
    trial_balances_are_zero(&c).await;
}

/// An operator aborts a move during its copy: the move rolls back, the
/// customer is whole and writable on its source, and the target's partial
/// copy is purged; the customer can then move again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_move_rolls_back_and_leaves_nothing_behind() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let (c, targets) = platform(1, &[("CELLBANK__MOVES__STEP_DELAY_MS", "500")]).await;
    let a = targets[0].who.clone();
    let mv = c.start_move(&a.id, "shard-2").await;
    let id = mv["id"].as_str().unwrap();
    c.move_reaches(id, &["copying"], Duration::from_secs(30))
        .await;
    let copied = || async { version(&c.cell("shard-2").db, &a.id).await > 0 };
    cellbank_shared::testkit::eventually(Duration::from_secs(20), "a copy began", copied).await;
    let (status, _) = c
        .ops_post(
            &format!("/ops/v1/moves/{id}/abort"),
            json!({"reason": "test"}),
        )
        .await;
    assert_eq!(status, 202);
    let done = c.finished_move(id, Duration::from_secs(30)).await;
    assert_eq!(done["phase"], "aborted", "{done}");
    assert!(done["reason"].as_str().unwrap().contains("test"), "{done}");
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", a.id)).await;
    assert_eq!(
        (&placed["shard"], &placed["state"], &placed["epoch"]),
        (&json!("shard-1"), &json!("active"), &json!(1))
    );
    assert_eq!(
        version(&c.cell("shard-2").db, &a.id).await,
        0,
        "the target's copy is purged"
    );
    assert_eq!(c.deposit("after-abort", &a.account_number, 5).await, 202);
    c.quiet().await;
    assert_eq!(
        checking(&c.cell("shard-1").db, &a.account_number).await,
        BASE + 5
    );
    // Past the flip an abort is refused; the customer can move again.
    let again = move_one_and_wait(&c, &a.id, "shard-2").await;
    assert_eq!(again["phase"], "completed", "{again}");
    let (status, problem) = c
        .ops_post(
            &format!("/ops/v1/moves/{}/abort", again["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(
        checking(&c.cell("shard-2").db, &a.account_number).await,
        BASE + 5
    );
    trial_balances_are_zero(&c).await;
}

/// An operator aborts a move inside its freeze, after the source's fence
/// refused a straggler: the flip does not happen, the customer is active on
/// its source again, and the refused event comes back to it, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_inside_the_freeze_returns_refused_events_to_the_source() {
    cellbank_shared::telemetry::init_for_tests();
    let _serial = ONE_AT_A_TIME.lock().await;
    let (c, targets) = platform(1, &[("CELLBANK__MOVES__STEP_DELAY_MS", "1500")]).await;
    let a = targets[0].who.clone();
    let (src, dst) = (&c.cell("shard-1").db, &c.cell("shard-2").db);
    let mv = c.start_move(&a.id, "shard-2").await;
    let id = mv["id"].as_str().unwrap();
    c.move_reaches(id, &["cutover"], Duration::from_secs(30))
        .await;
    let fenced = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT inbound_fenced FROM customers WHERE customer_id = $1::uuid",
        )
        .bind(&a.id)
        .fetch_one(src)
        .await
        .unwrap()
    };
    cellbank_shared::testkit::eventually(
        Duration::from_secs(20),
        "the fence marker was read",
        fenced,
    )
    .await;
    straggle(&c, "shard-1", &a, "refused-by-the-fence", 11).await;
    let refused = || async { dead(src, &a.id).await.contains("refused-by-the-fence") };
    cellbank_shared::testkit::eventually(Duration::from_secs(20), "the fence refused it", refused)
        .await;
    let (status, _) = c
        .ops_post(
            &format!("/ops/v1/moves/{id}/abort"),
            json!({"reason": "inside the freeze"}),
        )
        .await;
    assert_eq!(status, 202);
    let done = c.finished_move(id, Duration::from_secs(30)).await;
    assert_eq!(done["phase"], "aborted", "{done}");
    assert!(done["flipped_at"].is_null(), "{done}");
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", a.id)).await;
    assert_eq!(
        (&placed["shard"], &placed["state"], &placed["epoch"]),
        (&json!("shard-1"), &json!("active"), &json!(1))
    );
    let back = || async { applied(src, &a.id).await.contains("refused-by-the-fence") };
    cellbank_shared::testkit::eventually(
        Duration::from_secs(30),
        "the refused event came back",
        back,
    )
    .await;
    c.quiet().await;
    assert_eq!(checking(src, &a.account_number).await, BASE + 11);
    assert_eq!(version(dst, &a.id).await, 0, "the target's copy is purged");
    assert!(dead(src, &a.id).await.is_empty(), "nothing left dead");
    trial_balances_are_zero(&c).await;
}
