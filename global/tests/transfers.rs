//! Transfers between customers across cells, end to end with the real
//! processes (two global replicas and two cells, each cell with its own
//! database and broker):
//! random transfers — by account number to the other cell or the same one,
//! by login in any letter case, to numbers nobody has, more than the sender
//! holds, repeated by the app — while the source cell, either global replica
//! and the target cell are killed (SIGKILL) and restarted at random. Once quiet: no money
//! was made or lost (every customer holds exactly what the settled
//! transfers say, the sum is what was deposited), every cell's trial
//! balance is zero and nothing is pending or uncleared bank-wide, every
//! accepted transfer is completed or failed (returned) exactly once — the
//! same in the sender's cell and in global — and none is stuck.
//!
//! `TRANSFERS_SEED=n` replays a run; the seed is printed.

mod processes;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

use cellbank_shared::contract::transfer_key;
use cellbank_shared::ids::CustomerId;
use processes::cluster::{log_in, send, App, Cluster, Customer};

const FUNDS: i64 = 10_000;

/// How a transfer names its recipient.
#[derive(Clone, Debug)]
enum To {
    Number(usize),
    Login(usize),
    Nobody,
}

/// A transfer the app saw accepted.
#[derive(Clone, Debug)]
struct Accepted {
    id: Uuid,
    from: usize,
    to: To,
    amount: i64,
}

/// Posts the transfer until some cell answers it for good (the same
/// `transfer_id` each time, as an app retries): the final status. An app
/// whose customer moved logs in again and follows its new links; a cell
/// that cannot write the customer now (a move's cutover) is asked again.
async fn transfer(c: &Cluster, app: &mut App, body: &Value) -> u16 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (status, answer) = send(c.http.post(&app.transfers).json(body), &app.token).await;
        let relogin = answer["_links"]["login"]["href"].is_string();
        match status {
            200 | 201 | 202 | 422 => return status,
            401 | 409 if relogin => *app = log_in(c, &app.who).await,
            0 | 409 | 500..=599 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ => panic!("transfer {body}: {status} {answer}"),
        }
    }
}

/// One app's random transfers; answers those accepted.
async fn sender(
    c: Arc<Cluster>,
    apps: Arc<Vec<App>>,
    me: usize,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Vec<Accepted> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut accepted = Vec::new();
    let mut app = apps[me].clone();
    while !stop.load(Ordering::Relaxed) {
        let other = (me + rng.gen_range(1..apps.len())) % apps.len();
        let to = match rng.gen_range(0..10) {
            0..=5 => To::Number(other),
            6..=7 => To::Login(other),
            _ => To::Nobody,
        };
        let amount = rng.gen_range(1..=3_000);
        let id = Uuid::new_v4();
        let mut body = json!({"transfer_id": id, "from_account_id": apps[me].account_id,
                              "amount": amount, "currency": "BRL"});
        match &to {
            To::Number(i) => body["to_account_number"] = json!(apps[*i].who.account_number),
            To::Login(i) => body["to_login"] = json!(apps[*i].who.login.to_uppercase()),
            To::Nobody => {
                body["to_account_number"] =
                    json!(format!("77{}", rng.gen_range(10_000_000..99_999_999)))
            }
        }
        let status = transfer(&c, &mut app, &body).await;
        if status != 422 {
            accepted.push(Accepted {
                id,
                from: me,
                to: to.clone(),
                amount,
            });
            if rng.gen_bool(0.2) {
                assert_ne!(
                    transfer(&c, &mut app, &body).await,
                    422,
                    "a repeat is not refused"
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
    }
    accepted
}

/// Kills and restarts a global replica or a cell at random until `stop`;
/// everything runs again when it returns. Answers what it killed.
async fn chaos(c: Arc<Cluster>, seed: u64, stop: Arc<AtomicBool>) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut killed = Vec::new();
    let mut n = 0;
    // The second global replica: it drives transfers beside the first (the
    // cells hand over to the first).
    let mut replica = Some(c.spawn_global_replica("global-b").await.0);
    // Each of the four first, in a random order; then any.
    let first = rng.gen_range(0..4);
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..1_200))).await;
        let down = Duration::from_millis(rng.gen_range(200..3_000));
        let victim = if n < 4 {
            (first + n) % 4
        } else {
            rng.gen_range(0..4)
        };
        n += 1;
        match victim {
            3 => {
                drop(replica.take());
                tokio::time::sleep(down).await;
                replica = Some(c.spawn_global_replica(&format!("global-b-{n}")).await.0);
                killed.push("global-b".to_owned());
            }
            0 => {
                c.kill_global();
                tokio::time::sleep(down).await;
                c.restart_global(&format!("global-{n}")).await;
                killed.push("global".to_owned());
            }
            i => {
                let id = format!("shard-{i}");
                c.kill_cell(&id);
                tokio::time::sleep(down).await;
                c.restart_cell(&id, &format!("{id}-{n}")).await;
                killed.push(id);
            }
        }
    }
    killed
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// Waits until global holds no open transfer and no cell a pending one or
/// an unsent hand-off.
async fn settled(c: &Cluster) {
    for _ in 0..240 {
        let mut open = count(
            &c.global_db,
            "SELECT count(*) FROM transfers WHERE state NOT IN ('completed', 'failed')",
        )
        .await;
        for cell in &c.cells {
            open += count(
                &cell.db,
                "SELECT count(*) FROM transfers JOIN customers c USING (customer_id)
                 WHERE transfers.state = 'pending' AND c.state = 'active'",
            )
            .await;
            open += count(
                &cell.db,
                "SELECT count(*) FROM transfer_handoffs WHERE handed_at IS NULL",
            )
            .await;
        }
        if open == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, stuck) = c.ops_get("/ops/v1/transfers?limit=20").await;
    panic!("transfers stuck: {stuck}\nglobal log:\n{}", c.global_log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_across_cells_survive_crashes_and_conserve_money() {
    let seed: u64 = std::env::var("TRANSFERS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    eprintln!("TRANSFERS_SEED={seed}");
    let env = [
        ("CELLBANK__TRANSFERS__CREDIT_TIMEOUT_MS", "2000"),
        ("CELLBANK__TRANSFERS__LEASE_TTL_MS", "1500"),
    ];
    let c = Arc::new(Cluster::start(2, &env).await);
    let customers = c.sign_up("xfer", 6).await;
    for shard in ["shard-1", "shard-2"] {
        assert!(customers.iter().filter(|x| x.shard == shard).count() >= 2);
    }
    for who in &customers {
        assert_eq!(
            c.deposit(&format!("fund-{}", who.id), &who.account_number, FUNDS)
                .await,
            202
        );
    }
    c.quiet().await;
    let mut apps = Vec::new();
    for who in &customers {
        apps.push(log_in(&c, who).await);
    }
    let apps = Arc::new(apps);

    let stop = Arc::new(AtomicBool::new(false));
    let chaos = tokio::spawn(chaos(c.clone(), seed, stop.clone()));
    let senders: Vec<_> = (0..apps.len())
        .map(|me| {
            tokio::spawn(sender(
                c.clone(),
                apps.clone(),
                me,
                seed ^ (me as u64 + 1),
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(20)).await;
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    let killed = chaos.await.unwrap();
    eprintln!("{} transfers accepted; killed {killed:?}", accepted.len());
    // Transfers book synchronously (no consumer in their path): settled is quiet.
    settled(&c).await;
    check(&c, &apps, &accepted).await;
}

/// Moves `who` to the cell `to` and waits until the move is over.
async fn moved(c: &Cluster, who: &Customer, to: &str) -> Value {
    let mv = c.start_move(&who.id, to).await;
    let id = mv["id"].as_str().unwrap().to_owned();
    c.finished_move(&id, Duration::from_secs(60)).await
}

/// Customers move between the cells while transfers flow to and from them
/// (by number and by login): a recipient is credited in whichever cell owns
/// them at credit time, a sender's pending transfer settles in the cell it
/// moved to, and the apps follow their links after logging in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfers_follow_customers_moving_between_cells() {
    let seed: u64 = rand::thread_rng().gen();
    eprintln!("seed {seed}");
    let c = Arc::new(Cluster::start(2, &[]).await);
    let customers = c.sign_up("follow", 4).await;
    for who in &customers {
        assert_eq!(
            c.deposit(&format!("fund-{}", who.id), &who.account_number, FUNDS)
                .await,
            202
        );
    }
    c.quiet().await;
    let mut apps = Vec::new();
    for who in &customers {
        apps.push(log_in(&c, who).await);
    }
    let apps = Arc::new(apps);
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..apps.len())
        .map(|me| {
            tokio::spawn(sender(
                c.clone(),
                apps.clone(),
                me,
                seed ^ me as u64,
                stop.clone(),
            ))
        })
        .collect();
    let (a, b) = (&customers[0], &customers[1]);
    let (from_a, from_b) = (a.shard.clone(), b.shard.clone());
    let mut phases = Vec::new();
    for (who, to) in [(b, &from_a), (a, &from_b), (b, &from_b), (a, &from_a)] {
        tokio::time::sleep(Duration::from_millis(500)).await;
        phases.push(moved(&c, who, to).await["phase"].clone());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    for s in senders {
        accepted.extend(s.await.unwrap());
    }
    eprintln!("{} transfers accepted; moves {phases:?}", accepted.len());
    assert!(phases.iter().all(|p| p == "completed"), "{phases:?}");
    settled(&c).await;
    check(&c, &apps, &accepted).await;
}

/// A transfer's state in its sender's cell (where the sender is active now)
/// and in global (if global carried it).
async fn states(c: &Cluster, apps: &[App], t: &Accepted) -> (String, Option<String>) {
    let sender = &apps[t.from].who;
    let mut here = Vec::new();
    for cell in &c.cells {
        let state: Option<String> = sqlx::query_scalar(
            "SELECT t.state FROM transfers t JOIN customers c USING (customer_id)
             WHERE c.state = 'active' AND t.customer_id = $1::uuid AND t.transfer_id = $2",
        )
        .bind(&sender.id)
        .bind(t.id)
        .fetch_optional(&cell.db)
        .await
        .unwrap();
        here.extend(state);
    }
    assert_eq!(
        here.len(),
        1,
        "{t:?}: one active copy of the sender: {here:?}"
    );
    let key = transfer_key(CustomerId::from_uuid(sender.id.parse().unwrap()), t.id);
    let global: Option<String> =
        sqlx::query_scalar("SELECT state FROM transfers WHERE transfer_key = $1")
            .bind(key)
            .fetch_optional(&c.global_db)
            .await
            .unwrap();
    (here.remove(0), global)
}

/// Events with this id of customers active in their cell, across every
/// cell (a moved customer's old copy is not counted).
async fn events(c: &Cluster, id: &str) -> i64 {
    let mut n = 0;
    for cell in &c.cells {
        n += sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events e JOIN customers c USING (customer_id)
             WHERE c.state = 'active' AND e.event_id = $1",
        )
        .bind(id)
        .fetch_one(&cell.db)
        .await
        .unwrap();
    }
    n
}

/// A sum over the books of customers active in their cell, bank-wide.
async fn books(c: &Cluster, code: &str, customer: Option<&str>) -> i64 {
    let mut n = 0;
    for cell in &c.cells {
        n += sqlx::query_scalar::<_, i64>(
            "SELECT coalesce(sum(b.balance), 0)::bigint FROM book_accounts b
             JOIN customers c USING (customer_id)
             WHERE c.state = 'active' AND b.code LIKE $1
               AND ($2::uuid IS NULL OR b.customer_id = $2::uuid)",
        )
        .bind(code)
        .bind(customer)
        .fetch_one(&cell.db)
        .await
        .unwrap();
    }
    n
}

/// Checks one accepted transfer: settled one way, the same in the sender's
/// cell and in global, its movements booked once each. Answers its state.
async fn check_one(c: &Cluster, apps: &[App], t: &Accepted) -> String {
    let (here, global) = states(c, apps, t).await;
    let sender = &apps[t.from].who;
    match global {
        // Settled within the sender's cell (the recipient was there then).
        None => assert_eq!(here, "completed", "{t:?}"),
        Some(g) => assert_eq!(here, g, "{t:?}: the sender's cell and global agree"),
    }
    let key = transfer_key(CustomerId::from_uuid(sender.id.parse().unwrap()), t.id);
    let received = events(c, &format!("transfer:{key}:received")).await;
    let delivered = events(c, &format!("transfer:{}:delivered", t.id)).await;
    let returned = events(c, &format!("transfer:{}:returned", t.id)).await;
    assert_eq!(
        events(c, &format!("transfer:{}", t.id)).await,
        1,
        "{t:?} sent once"
    );
    match here.as_str() {
        "completed" => assert_eq!((received, delivered, returned), (1, 1, 0), "{t:?}"),
        "failed" => assert_eq!((received, delivered, returned), (0, 0, 1), "{t:?}"),
        other => panic!("{t:?} is {other} once quiet"),
    }
    if matches!(t.to, To::Nobody) {
        assert_eq!(here, "failed", "{t:?}: nobody has that number");
    }
    here
}

/// The invariants, once quiet.
async fn check(c: &Cluster, apps: &[App], accepted: &[Accepted]) {
    let mut expected: BTreeMap<usize, i64> = (0..apps.len()).map(|i| (i, FUNDS)).collect();
    let (mut completed, mut failed) = (0, 0);
    for t in accepted {
        if check_one(c, apps, t).await == "completed" {
            let (To::Number(to) | To::Login(to)) = t.to else {
                unreachable!("checked: nobody's number fails")
            };
            *expected.get_mut(&t.from).unwrap() -= t.amount;
            *expected.get_mut(&to).unwrap() += t.amount;
            completed += 1;
        } else {
            failed += 1;
        }
    }
    eprintln!("{completed} completed, {failed} failed (returned)");
    let mut total = 0;
    for (i, app) in apps.iter().enumerate() {
        let held = -books(c, "account:%", Some(&app.who.id)).await;
        assert_eq!(
            held, expected[&i],
            "customer {i} holds what the settled transfers say"
        );
        total += held;
    }
    assert_eq!(total, FUNDS * apps.len() as i64, "no money made or lost");
    for cell in &c.cells {
        let trial: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(balance), 0)::bigint FROM book_accounts")
                .fetch_one(&cell.db)
                .await
                .unwrap();
        assert_eq!(trial, 0, "{}'s trial balance", cell.id);
    }
    let (pending, clearing) = (
        books(c, "transfers_pending", None).await,
        books(c, "transfer_clearing", None).await,
    );
    assert_eq!(
        (pending, clearing),
        (0, 0),
        "nothing pending, the clearing nets out bank-wide"
    );
}

/// The trace id in the log line of `log` that has `message` and `needle`.
fn trace_in(log: &str, message: &str, needle: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains(message) && l.contains(needle))
        .find_map(|l| {
            let v: Value = serde_json::from_str(l).ok()?;
            v["fields"]["trace_id"].as_str().map(str::to_owned)
        })
}

/// One trace follows a transfer between cells: the trace the sender's cell
/// started when it reserved the transfer is the one global settles it in and
/// the one both cells credit and settle it in (the hand-off carries it).
#[tokio::test]
async fn one_trace_follows_a_transfer_across_cells() {
    let c = Cluster::start(2, &[]).await;
    let customers = c.sign_up("trace", 2).await;
    let (a, b) = (&customers[0], &customers[1]);
    assert_ne!(a.shard, b.shard);
    assert_eq!(
        c.deposit(&format!("fund-{}", a.id), &a.account_number, FUNDS)
            .await,
        202
    );
    c.quiet().await;
    let app = log_in(&c, a).await;
    let id = Uuid::new_v4();
    let body = json!({"transfer_id": id, "from_account_id": app.account_id,
                      "to_account_number": b.account_number, "amount": 1_234, "currency": "BRL"});
    let (status, mut t) = send(c.http.post(&app.transfers).json(&body), &app.token).await;
    assert_eq!((status, t["state"].as_str()), (202, Some("pending")), "{t}");
    let href = t["_links"]["self"]["href"].as_str().unwrap().to_owned();
    for _ in 0..200 {
        if t["state"] != "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        t = send(c.http.get(&href), &app.token).await.1;
    }
    assert_eq!(t["state"], "completed", "{t}");
    let key = transfer_key(CustomerId::from_uuid(a.id.parse().unwrap()), id).to_string();
    let source = c.cell(&a.shard).proc.lock().unwrap().logs();
    let trace =
        trace_in(&source, "transfer reserved", &id.to_string()).expect("the reservation is logged");
    assert_ne!(trace, "0".repeat(32), "a real trace id");
    let global = c.global.lock().unwrap().logs();
    let target = c.cell(&b.shard).proc.lock().unwrap().logs();
    assert_eq!(
        trace_in(&global, "transfer settled", &key).as_deref(),
        Some(trace.as_str()),
        "global"
    );
    assert_eq!(
        trace_in(&target, "transfer credited", &key).as_deref(),
        Some(trace.as_str()),
        "the recipient's cell"
    );
    assert_eq!(
        trace_in(&source, "transfer settled", &id.to_string()).as_deref(),
        Some(trace.as_str()),
        "the sender's cell"
    );
}
