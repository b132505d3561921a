//! Several replicas of one cell (one database, one broker, as Kubernetes runs
//! them behind one Service): one decision-maker at a time. Authorizations
//! spread across the replicas never approve past a card's limit, a retried
//! network reference gets the same answer from every replica, and both hold
//! while the deciding replica is killed mid-run.

use std::time::Duration;

use cellbank_shared::contract::{AuthorizationDecision, Decision};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::testkit::{eventually, Broker};

use crate::support::*;

const LIMIT: i64 = 20_000;
const REQUESTS: usize = 600;

/// What one authorization attempt came to.
enum Outcome {
    Answered(i64, AuthorizationDecision),
    /// 503 or no connection: the network stands in or retries.
    NotAnswered,
}

async fn attempt(
    app_url: String,
    client: reqwest::Client,
    customer: CustomerId,
    pan: String,
    i: usize,
    prefix: &'static str,
) -> Outcome {
    let amount = 100 + (i % 7) as i64;
    let req = auth_request(customer, &pan, amount, &format!("{prefix}-{i}"));
    let sent = client
        .post(format!("{app_url}/internal/v1/authorizations"))
        .bearer_auth(INTERNAL)
        .json(&req)
        .send()
        .await;
    match sent {
        Ok(r) if r.status() == 200 => Outcome::Answered(amount, r.json().await.unwrap()),
        Ok(r) => {
            assert_eq!(r.status(), 503, "only a hand-over may refuse");
            Outcome::NotAnswered
        }
        Err(_) => Outcome::NotAnswered,
    }
}

/// Sums the approved amounts, checking declines are for the limit.
fn approved_total(outcomes: &[Outcome]) -> i64 {
    let mut total = 0;
    for o in outcomes {
        if let Outcome::Answered(amount, d) = o {
            match d.decision {
                Decision::Approved => total += amount,
                Decision::Declined => assert_eq!(d.reason, "insufficient_limit"),
            }
        }
    }
    total
}

/// The unsettled balance the ledger booked for the card with `pan`: every
/// approval any replica answered, once each.
async fn booked(app: &TestApp, pan: &str) -> i64 {
    let pool = app.pool().await;
    let card_id = app
        .state
        .authorizer
        .with_state(|s| s.card(pan).unwrap().card_id);
    sqlx::query_scalar(
        "SELECT COALESCE(sum(balance), 0)::bigint FROM book_accounts WHERE code = $1",
    )
    .bind(format!("card:{card_id}:unsettled"))
    .fetch_one(&pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_decide_as_one_even_when_the_decider_dies() {
    let broker = Broker::start().await;
    let first = TestApp::spawn(&broker).await;
    let replicas = vec![first.replica().await, first.replica().await];
    let mut apps = vec![first];
    apps.extend(replicas);
    let cust = apps[0].create_customer().await;
    let (_card, pan) = apps[0].issue_card(cust.customer_id, LIMIT).await;
    for a in &apps {
        a.wait_card_known(&pan).await;
        a.wait_ready().await;
    }
    let leaders = apps.iter().filter(|a| a.state.lease.leading().is_some());
    assert_eq!(leaders.count(), 1, "exactly one replica decides");

    // 600 at once, spread over the three replicas.
    let mut tasks = Vec::new();
    for i in 0..REQUESTS {
        let a = &apps[i % apps.len()];
        let (url, client, pan) = (a.base.clone(), a.client.clone(), pan.clone());
        tasks.push(tokio::spawn(attempt(
            url,
            client,
            cust.customer_id,
            pan,
            i,
            "calm",
        )));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Answered(..))));
    let approved = approved_total(&outcomes);
    assert!(
        approved <= LIMIT,
        "approved {approved} over a limit of {LIMIT}"
    );
    assert!(approved > LIMIT - 107, "the limit was used up: {approved}");

    // A retry lands anywhere and gets the first answer, authorization id included.
    let first_answer = apps[0]
        .authorize(&auth_request(cust.customer_id, &pan, 100, "calm-0"))
        .await;
    for a in &apps {
        let again = a
            .authorize(&auth_request(cust.customer_id, &pan, 100, "calm-0"))
            .await;
        assert_eq!(again, first_answer);
    }
    eventually(Duration::from_secs(30), "every approval booked", || async {
        booked(&apps[0], &pan).await == approved
    })
    .await;

    killed_mid_run(apps, &cust, LIMIT).await;
}

/// A second card; the deciding replica is killed after a third of the
/// requests went out; the survivors take over and the limit still holds.
async fn killed_mid_run(
    mut apps: Vec<TestApp>,
    cust: &cellbank_shared::contract::CustomerCreated,
    limit: i64,
) {
    let (_card, pan) = apps[1].issue_card(cust.customer_id, limit).await;
    for a in &apps {
        a.wait_card_known(&pan).await;
    }
    let leader = apps
        .iter()
        .position(|a| a.state.lease.leading().is_some())
        .expect("a leader");
    let targets: Vec<(String, reqwest::Client)> = apps
        .iter()
        .map(|a| (a.base.clone(), a.client.clone()))
        .collect();
    let mut tasks = Vec::new();
    let mut killed_at = None;
    for i in 0..REQUESTS {
        let (url, client) = targets[i % targets.len()].clone();
        tasks.push(tokio::spawn(attempt(
            url,
            client,
            cust.customer_id,
            pan.clone(),
            i,
            "storm",
        )));
        if i == REQUESTS / 3 {
            apps.remove(leader).abort().await;
            killed_at = Some(std::time::Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let answered = approved_total(&outcomes);
    assert!(
        answered <= limit,
        "answered approvals {answered} over {limit}"
    );
    let unanswered = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::NotAnswered))
        .count();
    eprintln!("{unanswered} of {REQUESTS} not answered around the kill (503 or no connection)");
    let survivor = &apps[0];
    eventually(Duration::from_secs(30), "a survivor decides", || async {
        apps.iter().any(|a| a.state.lease.leading().is_some())
    })
    .await;
    // A figure for the notes, not a check: the hand-over took at most this.
    if let Some(t) = killed_at {
        eprintln!("authorizer hand-over within {:?} of the kill", t.elapsed());
    }
    // Whatever was approved (answered or not), the ledger booked it once
    // and it stays within the limit.
    eventually(
        Duration::from_secs(30),
        "the survivors agree on the card",
        || async {
            let known = survivor
                .state
                .authorizer
                .with_state(|s| s.card(&pan).map(|c| c.pending.is_empty()));
            known == Some(true)
        },
    )
    .await;
    let total = booked(survivor, &pan).await;
    assert!(
        total >= answered,
        "an answered approval was lost: {total} < {answered}"
    );
    assert!(total <= limit, "booked {total} over a limit of {limit}");
    for a in apps {
        a.stop().await;
    }
}

/// Defect 10: every replica relayed every fact of the outbox, so the facts
/// topic carried duplicates (and two relays raced each other's order). One
/// replica relays at a time; when it is killed another takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_replica_relays_the_facts() {
    use cellbank_shared::kafka::Topic;
    let broker = Broker::start().await;
    let first = TestApp::spawn(&broker).await;
    let second = first.replica().await;
    let pool = first.pool().await;
    for i in 0..40 {
        let app = if i % 2 == 0 { &first } else { &second };
        app.create_customer().await;
    }
    let partitions = first.settings.kafka.partitions;
    let in_log = || async {
        read_all(&broker.bootstrap(), Topic::LedgerFacts.name(), partitions)
            .await
            .len() as i64
    };
    eventually(Duration::from_secs(30), "every fact relayed", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM ledger_facts WHERE sent_at IS NULL",
        )
        .await
            == 0
    })
    .await;
    let rows = scalar(&pool, "SELECT count(*) FROM ledger_facts").await;
    assert_eq!(in_log().await, rows, "each fact is in the log once");

    // Kill whichever relays; the other takes over.
    first.abort().await;
    second.create_customer().await;
    eventually(Duration::from_secs(30), "the survivor relays", || async {
        scalar(
            &pool,
            "SELECT count(*) FROM ledger_facts WHERE sent_at IS NULL",
        )
        .await
            == 0
    })
    .await;
    let rows = scalar(&pool, "SELECT count(*) FROM ledger_facts").await;
    assert_eq!(in_log().await, rows);
    second.stop().await;
}
