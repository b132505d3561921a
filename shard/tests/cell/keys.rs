//! Key rotation without an outage: global publishes the next key ahead of
//! the swap and the previous one after it; a token naming a key the cell has
//! not seen reloads global's keys at once (rate-limited, one reload for all
//! the requests waiting on it) although the periodic reload is minutes away.

use std::time::Duration;

use cellbank_shared::ids::CustomerId;
use cellbank_shared::testkit::{eventually, fresh_database, Broker};
use cellbank_shared::token::TokenSigner;

use crate::support::*;

async fn status(app: &TestApp, c: CustomerId, signer: &TokenSigner) -> u16 {
    app.client
        .get(app.url(&format!("/v1/customers/{c}")))
        .bearer_auth(token_by(signer, c, 1))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_on_first_sight_and_reloads_are_rate_limited() {
    let broker = Broker::start().await;
    let db = fresh_database("shard_keys").await;
    let seeds: Vec<String> = (0..3).map(|_| TokenSigner::generate_seed_b64()).collect();
    let (old, new) = (seeds[0].as_str(), seeds[1].as_str());
    let old_only = TokenSigner::from_seed_b64(old).unwrap();
    let jwks = Jwks::serve(&old_only).await;
    let mut s = settings(&db, &broker.bootstrap(), &jwks.url);
    s.global.jwks_min_refresh_ms = 3_000;
    let app = TestApp::start(s, old_only.clone()).await;
    let c = app.create_customer().await.customer_id;
    eventually(Duration::from_secs(30), "keys loaded", || async {
        status(&app, c, &old_only).await == 200
    })
    .await;
    let loaded = jwks.fetches();

    // Ahead of the swap global lists old and new, and still signs with old.
    jwks.publish(&TokenSigner::from_seeds_b64(old, Some(new)).unwrap());
    assert_eq!(status(&app, c, &old_only).await, 200);

    // The swap: new signs, old stays listed. The cell last loaded [old]; its
    // first sight of the new key reloads once for eight requests at once
    // (global answers slowly, so they all arrive during that reload).
    let after = TokenSigner::from_seeds_b64(new, Some(old)).unwrap();
    jwks.publish(&after);
    jwks.slow_down(500);
    let firsts = futures::future::join_all((0..8).map(|_| status(&app, c, &after))).await;
    assert_eq!(
        firsts,
        vec![200; 8],
        "the new key is accepted on first sight"
    );
    assert_eq!(jwks.fetches(), loaded + 1, "one reload shared by all");
    jwks.slow_down(0);
    assert_eq!(status(&app, c, &old_only).await, 200, "old tokens live on");
    assert_eq!(status(&app, c, &after).await, 200);
    assert_eq!(jwks.fetches(), loaded + 1, "known keys need no reload");

    // A key global never published: refused, without a reload per request.
    let stranger = TokenSigner::from_seed_b64(&seeds[2]).unwrap();
    for _ in 0..5 {
        assert_eq!(status(&app, c, &stranger).await, 401);
    }
    assert_eq!(
        jwks.fetches(),
        loaded + 1,
        "at most one reload per interval"
    );
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(status(&app, c, &stranger).await, 401);
    assert_eq!(jwks.fetches(), loaded + 2, "after the interval, one more");
    app.stop().await;
}
