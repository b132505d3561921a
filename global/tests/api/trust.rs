//! The trust boundary: partners authenticate with keys of their own (scope,
//! rate, rotation, revocation), customers act only on themselves, and no
//! caller can hurt the others (login bursts, spoofed addresses, stale routes,
//! interrupted sign-ups).

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use cellbank_shared::testkit::eventually;

use crate::support::{event, Base, Cell, TestGlobal, ADMIN_TOKEN};

async fn problem(r: reqwest::Response, status: u16, case: &str) -> Value {
    assert_eq!(r.status().as_u16(), status, "{case}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/problem+json"), "{case}: {ct}");
    r.json().await.expect("a problem body")
}

fn authorization(pan: &str, reference: &str) -> Value {
    json!({
        "pan": pan, "amount": 1000, "currency": "BRL",
        "merchant": {"name": "Padaria", "mcc": "5812", "country": "BR"},
        "network_reference": reference,
    })
}

#[tokio::test]
async fn partners_need_a_live_key_with_the_scope_and_keep_to_their_rate() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::with_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;
    let doc = g.onboard("partner-target").await;
    let account = doc["account_number"].as_str().unwrap().to_owned();
    let pan = g.issue_card(doc["customer_id"].as_str().unwrap()).await["pan"]
        .as_str()
        .unwrap()
        .to_owned();

    let ev = event("p-1", &account, 100);
    let batch = json!({"events": [ev.clone()]});
    for (path, body) in [
        ("/v1/events", &ev),
        ("/v1/events/batch", &batch),
        ("/v1/authorizations", &authorization(&pan, "r-0")),
    ] {
        problem(g.post_anonymous(path, body).await, 401, path).await;
        problem(g.post_as("cbp_not-a-key", path, body).await, 401, path).await;
        problem(g.post_as(ADMIN_TOKEN, path, body).await, 401, path).await;
    }

    let events_only = g.add_partner(&["events"], None).await;
    let key = events_only["key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("cbp_"));
    let auth = authorization(&pan, "r-1");
    problem(
        g.post_as(&key, "/v1/authorizations", &auth).await,
        403,
        "no scope",
    )
    .await;
    assert_eq!(g.post_as(&key, "/v1/events", &ev).await.status(), 202);

    // One request a second: the second within the second is refused (both
    // are answered at once: the rate is checked before the body).
    let slow = g.add_partner(&["events"], Some(1)).await;
    let slow = slow["key"].as_str().unwrap();
    let invalid = json!({"event_id": "x"});
    problem(
        g.post_as(slow, "/v1/events", &invalid).await,
        422,
        "within its rate",
    )
    .await;
    let r = g.post_as(slow, "/v1/events", &invalid).await;
    assert!(r.headers().contains_key("retry-after"));
    problem(r, 429, "over its rate").await;
    assert_eq!(
        g.post("/v1/events", &ev).await.status(),
        202,
        "another partner is not throttled by this one"
    );

    // A card number sent as a number is refused without being echoed.
    let mut bad = ev.clone();
    bad.as_object_mut().unwrap().remove("account_number");
    bad["pan"] = json!(4111111111111111u64);
    let r = g.post("/v1/events", &bad).await;
    assert_eq!(r.status(), 422);
    assert!(!r.text().await.unwrap().contains("4111111111111111"));

    // Rotation: both keys work until the next rotation; revocation ends both.
    let p = g
        .add_partner(&["events", "authorizations"], Some(1000))
        .await;
    let id = p["partner_id"].as_str().unwrap();
    let first = p["key"].as_str().unwrap().to_owned();
    let rotated = g
        .admin(Method::POST, &format!("/ops/v1/partners/{id}/rotate"), None)
        .await;
    assert_eq!(rotated.status(), 200);
    let second = rotated.json::<Value>().await.unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for k in [&first, &second] {
        let r = g
            .post_as(k, "/v1/authorizations", &authorization(&pan, "r-2"))
            .await;
        assert_eq!(r.status(), 200, "both keys of a rotation work");
    }
    let third = g
        .admin(Method::POST, &format!("/ops/v1/partners/{id}/rotate"), None)
        .await
        .json::<Value>()
        .await
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    problem(
        g.post_as(&first, "/v1/events", &ev).await,
        401,
        "retired by the next rotation",
    )
    .await;
    assert_eq!(g.post_as(&third, "/v1/events", &ev).await.status(), 202);
    let shown: Value = g
        .admin(Method::GET, &format!("/ops/v1/partners/{id}"), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown["live_keys"], 2,
        "two keys live during a rotation: {shown}"
    );
    let r = g
        .admin(Method::DELETE, &format!("/ops/v1/partners/{id}"), None)
        .await;
    assert_eq!(r.status(), 200);
    for k in [&second, &third] {
        problem(g.post_as(k, "/v1/events", &ev).await, 401, "revoked").await;
    }
    let listed = g
        .admin(Method::GET, "/ops/v1/partners", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !listed.contains(&third) && !listed.contains("cbp_"),
        "keys are never listed"
    );
}

#[tokio::test]
async fn a_customer_issues_cards_only_to_themselves_at_the_policy_limit() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;
    let ana = g.onboard("ana-cards").await;
    let bia = g.onboard("bia-cards").await;
    let (ana_id, bia_id) = (
        ana["customer_id"].as_str().unwrap(),
        bia["customer_id"].as_str().unwrap(),
    );
    let session: Value = g
        .post_anonymous(
            "/v1/login",
            &json!({"login": "ana-cards", "password": "correct horse battery"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let token = session["access_token"].as_str().unwrap();
    let issue = session["_links"]["issue_card"]["href"].as_str().unwrap();
    assert_eq!(issue, format!("/v1/customers/{ana_id}/cards"));

    let body = json!({"currency": "BRL"});
    problem(g.post_anonymous(issue, &body).await, 401, "no token").await;
    problem(
        g.post_as("not-a-token", issue, &body).await,
        401,
        "bad token",
    )
    .await;
    let other = format!("/v1/customers/{bia_id}/cards");
    problem(
        g.post_as(token, &other, &body).await,
        403,
        "someone else's card",
    )
    .await;
    let p = problem(
        g.post_as(
            token,
            issue,
            &json!({"credit_limit": 1_000_000_000_000_000i64, "currency": "BRL"}),
        )
        .await,
        422,
        "a caller-chosen limit",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "credit_limit");
    assert!(!p.to_string().contains("1000000000000000"));
    assert!(cell.shard.card_hashes().is_empty(), "nothing was issued");

    let card: Value = g.post_as(token, issue, &body).await.json().await.unwrap();
    assert_eq!(card["credit_limit"], 500_000, "the configured default");
    let r = g
        .admin(
            Method::PUT,
            "/ops/v1/credit-policy/BRL",
            Some(json!({"default_credit_limit": 750_000})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let card: Value = g
        .post_as(token, issue, &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(card["credit_limit"], 750_000, "the operators' policy");
    let r = g.post_as(ADMIN_TOKEN, &other, &body).await;
    assert_eq!(r.status(), 201, "the back office may issue for anyone");
}

async fn login_from(g: &TestGlobal, forwarded: &str, login: &str, password: &str) -> u16 {
    g.http
        .post(format!("{}/v1/login", g.url))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn spoofed_forwarded_for_does_not_bypass_the_login_limit() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;
    g.onboard("limited").await;
    // The test's peer (127.0.0.1) is not a trusted proxy: a header per try
    // must not make each try look like a new client.
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses
            .push(login_from(&g, &format!("198.51.100.{i}"), "limited", "wrong password").await);
    }
    assert!(statuses.contains(&429), "{statuses:?}");

    // Behind a trusted proxy the forwarded client counts: a stranger locks
    // out only themselves.
    let mut s = base.settings();
    s.auth.trusted_proxies = vec!["127.0.0.1".into()];
    let behind = TestGlobal::spawn(s).await;
    let mut stranger = Vec::new();
    for _ in 0..8 {
        stranger.push(login_from(&behind, "203.0.113.5", "limited", "wrong password").await);
    }
    assert!(stranger.contains(&429), "{stranger:?}");
    let owner = login_from(&behind, "192.0.2.44", "limited", "correct horse battery").await;
    assert_eq!(owner, 200, "the owner is not locked out by a stranger");
}

#[tokio::test]
async fn a_lost_directory_invalidation_is_healed() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;
    let doc = g.onboard("moved-on").await;
    let id = doc["customer_id"].as_str().unwrap().to_owned();
    let pan = g.issue_card(&id).await["pan"].as_str().unwrap().to_owned();
    let d: Value = g
        .post("/v1/authorizations", &authorization(&pan, "h-1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(d["decision"], "approved", "{d}");

    // The placement moves to epoch 2 and the announcement never arrives.
    let pool = sqlx::PgPool::connect(&base.db_url).await.unwrap();
    sqlx::query("UPDATE customers SET epoch = 2 WHERE customer_id = $1::uuid")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    cell.shard.require_epoch(2);
    let d: Value = g
        .post("/v1/authorizations", &authorization(&pan, "h-2"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        d["decision"], "approved",
        "the stale entry was dropped and the call retried: {d}"
    );
    let epochs: Vec<i64> = cell
        .shard
        .authorizations()
        .iter()
        .map(|a| a.epoch.0)
        .collect();
    assert_eq!(
        epochs,
        vec![1, 1, 2],
        "one stale try, one retry at the new epoch"
    );
}

async fn cached_epoch(g: &TestGlobal, account: &str) -> i64 {
    g.lookup_account(account).await["epoch"].as_i64().unwrap()
}

/// A replica that committed a change and stopped before announcing it left
/// it in the outbox: the relay announces it and the other replica's stale
/// entry goes. A change made while the broker is down is kept, not lost.
#[tokio::test]
async fn a_change_that_was_not_announced_is_kept_and_relayed() {
    let base = Base::new().await;
    let g1 = TestGlobal::spawn(base.settings()).await;
    let g2 = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g1.add_shard("shard-1", &cell, 100).await;
    let doc = g1.onboard("relayed").await;
    let (id, account) = (
        doc["customer_id"].as_str().unwrap().to_owned(),
        doc["account_number"].as_str().unwrap().to_owned(),
    );
    assert_eq!(cached_epoch(&g2, &account).await, 1);

    let pool = sqlx::PgPool::connect(&base.db_url).await.unwrap();
    let kept = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM directory_outbox")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    sqlx::query("UPDATE customers SET epoch = 2 WHERE customer_id = $1::uuid")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        cached_epoch(&g2, &account).await,
        1,
        "stale until announced"
    );
    sqlx::query(
        "INSERT INTO directory_outbox (change, created_at)
         VALUES (jsonb_build_object('change', 'customer', 'customer_id', $1::text), now() - interval '5 seconds')",
    )
    .bind(&id)
    .execute(&pool)
    .await
    .unwrap();
    eventually(
        Duration::from_secs(30),
        "the relay announced the change",
        || async { kept().await == 0 && cached_epoch(&g2, &account).await == 2 },
    )
    .await;

    let mut broker = base.global_broker;
    broker.kill();
    let r = g1
        .admin(Method::POST, "/ops/v1/shards/shard-1/drain", None)
        .await;
    assert_eq!(r.status(), 200, "the change itself is committed");
    assert!(
        kept().await >= 1,
        "the unannounced change is kept for the relay"
    );
}

#[tokio::test]
async fn an_interrupted_sign_up_completes_when_the_same_request_is_retried() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;
    let body =
        json!({"name": "Retry Me", "login": "retry-me", "password": "correct horse battery"});
    cell.shard.refuse_creates(true);
    let r = g.post_anonymous("/v1/customers", &body).await;
    assert_eq!(r.status(), 503, "the shard could not create the customer");
    cell.shard.refuse_creates(false);
    let r = g.post_anonymous("/v1/customers", &body).await;
    assert_eq!(r.status(), 201, "the same request, retried, succeeds");
    let first: Value = r.json().await.unwrap();
    let r = g.post_anonymous("/v1/customers", &body).await;
    assert_eq!(
        r.status(),
        200,
        "once more: the same customer, answered again"
    );
    let again: Value = r.json().await.unwrap();
    assert_eq!(first["customer_id"], again["customer_id"]);
    assert_eq!(first["account_number"], again["account_number"]);
    assert_eq!(cell.shard.customers().len(), 1);
    let mut other = body.clone();
    other["password"] = "another password".into();
    problem(
        g.post_anonymous("/v1/customers", &other).await,
        409,
        "someone else",
    )
    .await;
    let r = g
        .post_anonymous(
            "/v1/login",
            &json!({"login": "retry-me", "password": "correct horse battery"}),
        )
        .await;
    assert_eq!(r.status(), 200);
}

/// A signing-key rotation in flight: one replica still signs with the old
/// key (next: the new one), another already with the new one (next: the
/// old one). Both publish both keys, and a token of either is accepted by
/// either.
#[tokio::test]
async fn tokens_of_both_keys_work_during_a_rotation() {
    use cellbank_shared::secret::Secret;
    use cellbank_shared::token::TokenSigner;
    let base = Base::new().await;
    let (old, new) = (base.signing_key.clone(), TokenSigner::generate_seed_b64());
    let mut before = base.settings();
    before.auth.next_signing_key = Secret::new(new.clone());
    let mut after = base.settings();
    after.auth.signing_key = Secret::new(new);
    after.auth.next_signing_key = Secret::new(old);
    let g1 = TestGlobal::spawn(before).await;
    let g2 = TestGlobal::spawn(after).await;
    let cell = Cell::without_broker(1).await;
    g1.add_shard("shard-1", &cell, 100).await;
    let id = g1.onboard("rotating").await["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let jwks = |g: &TestGlobal| {
        let url = format!("{}/.well-known/jwks.json", g.url);
        async move {
            let doc: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
            let mut kids: Vec<String> = doc["keys"]
                .as_array()
                .unwrap()
                .iter()
                .map(|k| k["kid"].as_str().unwrap().to_owned())
                .collect();
            kids.sort();
            kids
        }
    };
    assert_eq!(jwks(&g1).await.len(), 2);
    assert_eq!(jwks(&g1).await, jwks(&g2).await, "both publish both keys");
    let login = json!({"login": "rotating", "password": "correct horse battery"});
    let token = |g: &TestGlobal| {
        let login = login.clone();
        let url = format!("{}/v1/login", g.url);
        async move {
            let doc: Value = reqwest::Client::new()
                .post(url)
                .json(&login)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            doc["access_token"].as_str().unwrap().to_owned()
        }
    };
    let (t1, t2) = (token(&g1).await, token(&g2).await);
    let issue = format!("/v1/customers/{id}/cards");
    for (g, t) in [(&g2, &t1), (&g1, &t2)] {
        let r = g.post_as(t, &issue, &json!({})).await;
        assert_eq!(r.status(), 201, "a token of the other key is accepted");
    }
}

/// A client that hangs up mid sign-up, and a shard that is down and later
/// refuses the customer: the platform completes the first and undoes the
/// second (the login is free again), with nobody retrying.
#[tokio::test]
async fn interrupted_sign_ups_are_completed_or_undone_by_the_platform() {
    let base = Base::new().await;
    let mut s = base.settings();
    s.routing.sign_up_stalled_after_secs = 1;
    let g = TestGlobal::spawn(s).await;
    let cell = Cell::without_broker(1).await;
    g.add_shard("shard-1", &cell, 100).await;

    cell.shard.delay_creates(Duration::from_secs(5));
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let hung_up = impatient
        .post(format!("{}/v1/customers", g.url))
        .json(&json!({"name": "Gone", "login": "hung-up", "password": "correct horse battery"}))
        .send()
        .await;
    assert!(hung_up.is_err(), "the client gave up");
    // While the shard does not hold the customer, the right password gets
    // no token and no links to it: 503, retry (found when faster password
    // hashing let a login in before the shard had the customer).
    let login = json!({"login": "hung-up", "password": "correct horse battery"});
    let early = g.post_anonymous("/v1/login", &login).await;
    assert_eq!(
        early.status(),
        503,
        "a login before the shard has the customer"
    );
    assert_eq!(early.headers()["retry-after"], "1");
    assert!(cell.shard.customers().is_empty());
    cell.shard.delay_creates(Duration::ZERO);
    eventually(Duration::from_secs(20), "the sign-up completed", || async {
        g.post_anonymous("/v1/login", &login).await.status() == 200
    })
    .await;
    assert_eq!(cell.shard.customers().len(), 1);

    cell.shard.refuse_creates(true);
    let body = json!({"name": "Refused", "login": "refused", "password": "correct horse battery"});
    assert_eq!(g.post_anonymous("/v1/customers", &body).await.status(), 503);
    cell.shard.refuse_creates(false);
    cell.shard.reject_creates(true);
    let mut other = body.clone();
    other["password"] = "someone else entirely".into();
    eventually(
        Duration::from_secs(20),
        "the refused sign-up was undone",
        || async {
            let r = g.post_anonymous("/v1/customers", &other).await;
            r.status() == 502
        },
    )
    .await;
    cell.shard.reject_creates(false);
    let r = g.post_anonymous("/v1/customers", &other).await;
    assert_eq!(r.status(), 201, "the login was freed for someone else");
}
