//! The cell boundary is the blast radius: a dead shard broker affects only
//! its customers; a dead directory database leaves cached routes working.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

use cellbank_shared::testkit::{eventually, pg_admin_url};

use crate::support::{event, Base, Cell, TestGlobal};

#[tokio::test]
async fn a_stopped_shard_broker_fails_only_that_shards_customers() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::with_broker(1).await;
    let mut two = Cell::with_broker(2).await;
    g.add_shard("shard-1", &one, 10).await;
    g.add_shard("shard-2", &two, 10).await;
    let a = g.onboard("alive").await;
    let b = g.onboard("doomed").await;
    let a_acct = a["account_number"].as_str().unwrap().to_owned();
    let b_acct = b["account_number"].as_str().unwrap().to_owned();
    assert_eq!(
        g.post("/v1/events", &event("a-0", &a_acct, 1))
            .await
            .status(),
        202
    );
    assert_eq!(
        g.post("/v1/events", &event("b-0", &b_acct, 1))
            .await
            .status(),
        202
    );

    two.broker.as_mut().unwrap().kill();

    // Shard-2's customers get 503 with Retry-After (after the produce timeout
    // at first, then at once while the breaker is open)...
    for i in 0..3 {
        let r = g
            .post("/v1/events", &event(&format!("b-{}", i + 1), &b_acct, 1))
            .await;
        assert_eq!(r.status(), 503);
        assert!(r.headers().contains_key("retry-after"));
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let started = Instant::now();
    let r = g.post("/v1/events", &event("b-9", &b_acct, 1)).await;
    assert_eq!(r.status(), 503);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "an open breaker answers fast"
    );

    // ...while shard-1's customers are served as before, and fast.
    for i in 0..5 {
        let started = Instant::now();
        let r = g
            .post("/v1/events", &event(&format!("a-{}", i + 1), &a_acct, 1))
            .await;
        assert_eq!(r.status(), 202);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
    let r = g
        .post(
            "/v1/events/batch",
            &json!({"events": [event("a-10", &a_acct, 1), event("b-10", &b_acct, 1)]}),
        )
        .await;
    let res: Value = r.json().await.unwrap();
    assert_eq!(res["results"][0]["status"], 202);
    assert_eq!(res["results"][1]["status"], 503);
    assert!(res["results"][1]["retry_after"].as_u64().unwrap() >= 1);

    let metrics = g.get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("global_produce_failures_total")
                && l.contains("shard=\"shard-2\"")),
        "produce failures are counted per shard"
    );
}

async fn set_connections(db: &str, allowed: bool) {
    let mut admin = sqlx::PgConnection::connect(&pg_admin_url()).await.unwrap();
    sqlx::query(&format!(
        "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS {allowed}"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    if !allowed {
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(db)
            .execute(&mut admin)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn the_directory_database_going_down_leaves_cached_lookups_working() {
    let base = Base::new().await;
    let db = base.db_url.rsplit('/').next().unwrap().to_owned();
    let g = TestGlobal::spawn(base.settings()).await;
    let one = Cell::with_broker(1).await;
    g.add_shard("shard-1", &one, 10).await;
    let a = g.onboard("steady").await;
    let acct = a["account_number"].as_str().unwrap().to_owned();
    assert_eq!(
        g.post("/v1/events", &event("s-1", &acct, 1)).await.status(),
        202
    );

    set_connections(&db, false).await;

    let r = g.get("/readyz").await.unwrap();
    assert_eq!(r.status(), 503);
    let ready: Value = r.json().await.unwrap();
    assert_eq!(ready["status"], "degraded");
    let pg = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "postgres")
        .unwrap()
        .clone();
    assert_eq!(pg["ok"], false, "{ready}");
    // A load balancer probe may choose to keep a degraded router in service.
    let r = g.get("/readyz?allow_degraded=true").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "degraded");

    for i in 2..5 {
        let r = g
            .post("/v1/events", &event(&format!("s-{i}"), &acct, 1))
            .await;
        assert_eq!(r.status(), 202, "cached routes keep working");
    }
    // What is not cached cannot be answered, and says so.
    let r = g.post("/v1/events", &event("s-x", "0100009999", 1)).await;
    assert_eq!(r.status(), 503);

    set_connections(&db, true).await;
    eventually(Duration::from_secs(10), "ready again", || async {
        g.get("/readyz")
            .await
            .map(|r| r.status() == 200)
            .unwrap_or(false)
    })
    .await;
    let r = g.post("/v1/events", &event("s-x2", "0100009999", 1)).await;
    assert_eq!(r.status(), 404);
}
