//! The `cellctl` binary against a running global tier and a shard's admin API.

use crate::support::{shard_admin_token, Base, Cell, TestGlobal, ADMIN_TOKEN};

async fn cellctl(g: &TestGlobal, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cellctl"))
        .args(args)
        .env("CELLCTL_OPS_URL", &g.ops_url)
        .env("CELLCTL_ADMIN_TOKEN", token)
        .env("CELLCTL_SHARD_ADMIN_TOKEN", shard_admin_token(1))
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

#[tokio::test]
async fn cellctl_manages_partners_and_documents_it() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let (ok, key, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &[
            "partners",
            "add",
            "--name",
            "network",
            "--scope",
            "authorizations",
            "--print-key",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("cbp_"), "{key}");
    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["partners", "list"]).await;
    assert!(ok);
    assert!(
        out.contains("\"network\"") && !out.contains(&key),
        "the key is never listed: {out}"
    );
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "network")
        .unwrap()["partner_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, new_key, _) =
        cellctl(&g, ADMIN_TOKEN, &["partners", "rotate", &id, "--print-key"]).await;
    assert!(ok);
    assert_ne!(new_key.trim(), key);
    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &["partners", "revoke", &id]).await;
    assert!(ok);
    assert!(out.contains("revoked_at"), "{out}");
    let (ok, help, _) = cellctl(&g, ADMIN_TOKEN, &["--help"]).await;
    assert!(ok);
    assert!(
        help.contains("partners") && help.contains("cellctl partners add"),
        "{help}"
    );
}
