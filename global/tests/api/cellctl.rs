//! The `cellctl` binary against a running global tier and a shard's admin API.

use serde_json::{json, Value};

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

/// `cellctl moves`, `rebalance --dry-run` and `move --no-wait` against
/// fake shards: what they show and plan. (A move that runs to its end needs
/// real shards: tests/moves.rs.)
#[tokio::test]
async fn cellctl_lists_shows_plans_and_starts_moves() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let (one, two) = (Cell::without_broker(1).await, Cell::without_broker(2).await);
    g.add_shard("shard-1", &one, 50).await;
    let mut customers = Vec::new();
    for login in ["mover-a", "mover-b", "mover-c"] {
        let doc = g.onboard(login).await;
        customers.push(doc["customer_id"].as_str().unwrap().to_owned());
    }
    g.add_shard("shard-2", &two, 50).await;

    let (ok, out, err) = cellctl(&g, ADMIN_TOKEN, &["moves", "list", "--json"]).await;
    assert!(ok, "{err}");
    let list: Value = serde_json::from_str(&out).expect("moves list --json is JSON");
    assert_eq!(list["count"], 0, "{out}");
    assert_eq!(list["_embedded"]["moves"], json!([]), "{out}");

    let unknown = uuid::Uuid::new_v4().to_string();
    let (ok, out, err) = cellctl(&g, ADMIN_TOKEN, &["moves", "show", &unknown]).await;
    assert!(!ok, "an unknown move is an error: {out}");
    assert!(
        err.contains("404") && err.contains(&format!("move {unknown}")),
        "{err}"
    );

    let args = [
        "rebalance",
        "--from",
        "shard-1",
        "--to",
        "shard-2",
        "--count",
        "2",
        "--dry-run",
    ];
    let (ok, out, err) = cellctl(&g, ADMIN_TOKEN, &[&args[..], &["--json"]].concat()).await;
    assert!(ok, "{err}");
    let plan: Value = serde_json::from_str(&out).expect("rebalance --json is one JSON document");
    assert_eq!(plan["dry_run"], true, "{out}");
    assert_eq!(
        plan["plan"],
        json!(customers[..2]),
        "the oldest first: {out}"
    );
    let (ok, out, _) = cellctl(&g, ADMIN_TOKEN, &args).await;
    assert!(
        ok && out.contains("dry run") && out.contains(&customers[1]),
        "{out}"
    );
    let r = g.admin(reqwest::Method::GET, "/ops/v1/moves", None).await;
    let moves: Value = r.json().await.unwrap();
    assert_eq!(moves["count"], 0, "a dry run moves nobody: {moves}");

    let (ok, out, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &[
            "move",
            &customers[2],
            "--to",
            "shard-2",
            "--no-wait",
            "--json",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let mv: Value = serde_json::from_str(&out).expect("move --json is JSON");
    assert_eq!(mv["phase"], "planned", "{out}");
    assert_eq!(
        (&mv["customer_id"], &mv["from"], &mv["to"]),
        (&json!(customers[2]), &json!("shard-1"), &json!("shard-2")),
        "{out}"
    );
    let id = mv["id"].as_str().unwrap();
    assert_eq!(mv["_links"]["self"]["href"], format!("/ops/v1/moves/{id}"));

    let (ok, out, err) = cellctl(&g, ADMIN_TOKEN, &["moves", "show", id, "--json"]).await;
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["id"], id);
    let customer = ["--customer", &customers[2]];
    let (ok, out, _) = cellctl(
        &g,
        ADMIN_TOKEN,
        &[&["moves", "list", "--json"][..], &customer].concat(),
    )
    .await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["count"],
        1,
        "{out}"
    );
    let (ok, _, err) = cellctl(
        &g,
        ADMIN_TOKEN,
        &["move", &customers[2], "--to", "shard-2", "--no-wait"],
    )
    .await;
    assert!(
        !ok && err.contains("409"),
        "one open move per customer: {err}"
    );

    let (ok, _, err) = cellctl(&g, ADMIN_TOKEN, &["moves", "complete", id]).await;
    assert!(
        !ok && err.contains("409"),
        "only a completed move completes: {err}"
    );
    let abort = ["moves", "abort", id, "--reason", "operator test", "--json"];
    let (ok, out, err) = cellctl(&g, ADMIN_TOKEN, &abort).await;
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["id"],
        id,
        "{out}"
    );

    let (ok, help, _) = cellctl(&g, ADMIN_TOKEN, &["--help"]).await;
    assert!(ok);
    assert!(
        help.contains("cellctl move CUSTOMER_ID --to") && help.contains("cellctl rebalance --from"),
        "{help}"
    );
}
