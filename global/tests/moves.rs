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
    decisions: BTreeMap<String, Value>,
    repeats_differing: Vec<String>,
}

/// Partners' traffic for `a` (with a card) and `b` until `stop`: deposits,
/// authorizations, and repeats of earlier network references.
async fn load(
    c: Arc<Cluster>,
    a: Customer,
    pan: String,
    b: Customer,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut i = 0;
    while !stop.load(Ordering::Relaxed) {
        for (who, amount) in [(&a, 100 + i), (&b, 7)] {
            let id = format!("load-{}-{i}", who.id);
            match c.deposit(&id, &who.account_number, amount).await {
                202 => seen
                    .accepted
                    .entry(who.id.clone())
                    .or_default()
                    .push((id, amount)),
                _ => seen.refused += 1,
            }
        }
        let reference = format!("nr-{i}");
        let d = c.authorize(&pan, 700, &reference).await;
        seen.decisions.insert(reference, d);
        if i % 4 == 3 {
            let again = format!("nr-{}", i / 2);
            let d = c.authorize(&pan, 700, &again).await;
            let first = &seen.decisions[&again];
            if d["authorization_id"] != first["authorization_id"]
                || d["decision"] != first["decision"]
            {
                seen.repeats_differing
                    .push(format!("{again}: first {first}, then {d}"));
            }
        }
        i += 1;
    }
    seen
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_moves_online_while_traffic_flows_and_loses_or_doubles_nothing() {
    cellbank_shared::telemetry::init_for_tests();
    let c = Cluster::start(2, &[]).await;
    let (status, _) = send(
        c.http
            .put(format!("{}/ops/v1/credit-policy/BRL", c.ops_url))
            .json(&json!({"default_credit_limit": 20_000})),
        processes::cluster::ADMIN,
    )
    .await;
    assert_eq!(status, 200);
    let customers = c.sign_up("mover", 6).await;
    let a = customers
        .iter()
        .find(|x| x.shard == "shard-1")
        .expect("someone on shard-1")
        .clone();
    let b = customers
        .iter()
        .find(|x| x.shard == "shard-1" && x.id != a.id)
        .cloned()
        .unwrap_or_else(|| customers.iter().find(|x| x.id != a.id).unwrap().clone());
    let (_, pan) = c.issue_card(&a).await;
    for i in 0..3 {
        assert_eq!(
            c.deposit(&format!("before-{i}"), &a.account_number, 1_000)
                .await,
            202
        );
    }
    let first = c.authorize(&pan, 1_500, "nr-before").await;
    assert_eq!(first["decision"], "approved", "{first}");
    let old_login = c.login(&a).await;
    c.quiet().await;

    let c = Arc::new(c);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = tokio::spawn(load(
        c.clone(),
        a.clone(),
        pan.clone(),
        b.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mv = c.start_move(&a.id, "shard-2").await;
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
    let (_, placed) = c.ops_get(&format!("/ops/v1/customers/{}", a.id)).await;
    assert_eq!(placed["shard"], "shard-2", "{placed}");
    assert_eq!(placed["epoch"], 2, "{placed}");
    trial_balances_are_zero(&c).await;
    let accepted_a = seen.accepted.get(&a.id).cloned().unwrap_or_default();
    assert!(
        accepted_a.len() > 3,
        "the load reached the moving customer: {}",
        accepted_a.len()
    );
    every_accepted_event_counts_once(&c, &a, "shard-2", &accepted_a).await;
    every_accepted_event_counts_once(
        &c,
        &b,
        &b.shard,
        seen.accepted
            .get(&b.id)
            .map(Vec::as_slice)
            .unwrap_or_default(),
    )
    .await;

    // The moved customer's money is exactly what was accepted, on the new cell.
    let dead_a: BTreeSet<String> = dead(&c.cell("shard-1").db, &a.id)
        .await
        .union(&dead(&c.cell("shard-2").db, &a.id).await)
        .cloned()
        .collect();
    let expected: i64 = 3_000
        + accepted_a
            .iter()
            .filter(|(id, _)| !dead_a.contains(id))
            .map(|(_, n)| n)
            .sum::<i64>();
    assert_eq!(
        checking(&c.cell("shard-2").db, &a.account_number).await,
        expected
    );

    // No approval past the limit; every approval booked once on the owner.
    let approved: BTreeSet<String> = seen
        .decisions
        .values()
        .chain([&first])
        .filter(|d| d["decision"] == "approved")
        .map(|d| d["authorization_id"].as_str().unwrap().to_owned())
        .collect();
    let total = (approved.len() as i64 - 1) * 700 + 1_500;
    assert!(total <= 20_000, "approved {total} past the limit of 20000");
    let booked: Vec<String> = sqlx::query_scalar(
        "SELECT authorization_id::text FROM card_purchases WHERE customer_id = $1::uuid AND authorization_id IS NOT NULL",
    )
    .bind(&a.id)
    .fetch_all(&c.cell("shard-2").db)
    .await
    .unwrap();
    assert_eq!(
        booked.iter().cloned().collect::<BTreeSet<_>>(),
        approved,
        "every approval booked once on the new cell"
    );
    assert_eq!(booked.len(), approved.len());

    // The app: the old token and link get a problem that links to a new
    // login and to the customer on the new cell; logging in again works.
    let accounts = old_login["_links"]["accounts"]["href"].as_str().unwrap();
    let token = old_login["access_token"].as_str().unwrap();
    let (status, problem) = send(c.http.get(accounts), token).await;
    assert_eq!(status, 409, "{problem}");
    assert!(problem["_links"]["login"]["href"].is_string(), "{problem}");
    let moved_to = problem["_links"]["customer"]["href"].as_str().unwrap();
    assert!(moved_to.starts_with(&c.cell("shard-2").url), "{moved_to}");
    let login = c.login(&a).await;
    let accounts = login["_links"]["accounts"]["href"].as_str().unwrap();
    assert!(accounts.starts_with(&c.cell("shard-2").url), "{accounts}");
    let (status, list) = send(
        c.http.get(accounts),
        login["access_token"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{list}");
}
