//! The `cellctl` binary against a running global tier and a shard's admin API.

use crate::support::{Base, Cell, TestGlobal, ADMIN_TOKEN};

async fn cellctl(g: &TestGlobal, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellctl"))
        .args(args)
        .env("CELLCTL_GLOBAL_URL", &g.url)
        .env("CELLCTL_ADMIN_TOKEN", token)
        .output()
        .await
        .expect("run cellctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn cellctl_manages_shards_shows_customers_and_dead_letters() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;

    let (ok, out, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &[
            "shards",
            "add",
            "--id",
            "shard-1",
            "--public-url",
            &cell.public_url,
            "--internal-url",
            &cell.shard.url,
            "--broker-bootstrap",
            &cell.bootstrap,
            "--capacity",
            "50",
        ],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("\"shard-1\""), "{out}");

    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["shards", "list"]).await;
    assert!(ok);
    let row = out
        .lines()
        .find(|l| l.starts_with("shard-1"))
        .expect("a row for shard-1");
    assert!(row.contains("active") && row.contains("50"), "{row}");

    let doc = g.onboard("operator-view").await;
    let id = doc["customer_id"].as_str().unwrap();
    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["customers", "show", id]).await;
    assert!(ok);
    assert!(
        out.contains(id) && out.contains("shard-1") && out.contains("account"),
        "{out}"
    );

    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["health"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("global") && out.contains("shard-1"), "{out}");

    let (ok, out, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &["dead-letters", "list", "--shard", "shard-1"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("dl-1") && out.contains("stale epoch"), "{out}");
    let (ok, out, _) = cellctl(
        &g,
        ADMIN_TOKEN,
        &[
            "dead-letters",
            "republish",
            "--shard",
            "shard-1",
            "--id",
            "dl-1",
        ],
    )
    .await;
    assert!(ok);
    assert!(out.contains("\"republished\": 1"), "{out}");
    let (ok, out, _) = cellctl(
        &g,
        ADMIN_TOKEN,
        &["dead-letters", "republish", "--shard", "shard-1", "--all"],
    )
    .await;
    assert!(ok);
    assert!(out.contains("\"republished\": 2"), "{out}");
    let (ok, _, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &["dead-letters", "list", "--shard", "shard-9"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("no shard shard-9"), "{err}");

    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["shards", "drain", "shard-1"]).await;
    assert!(ok);
    assert!(out.contains("draining"), "{out}");

    let (ok, _, err) = cellctl(&g, "wrong-token", &["shards", "list"]).await;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
}
