//! The cell's HTTP edges over real sockets: every error a problem (routes,
//! methods, paths, bodies), no submitted value repeated, and CORS only for
//! the app's configured origins.

use cellbank_shared::testkit::{fresh_database, Broker};
use cellbank_shared::token::TokenSigner;
use reqwest::{Method, Response};

use crate::support::*;

const APP: &str = "https://app.cellbank.test";
const PAN: &str = "4111111111111111";

async fn spawn_with_cors(broker: &Broker) -> TestApp {
    let db = fresh_database("shard_edges").await;
    let signer = TokenSigner::from_seed_b64(&TokenSigner::generate_seed_b64()).unwrap();
    let global = jwks_server(&signer).await;
    let mut s = settings(&db, &broker.bootstrap(), &global);
    s.cors.allowed_origins = vec![APP.into()];
    TestApp::start(s, signer).await
}

/// A problem of `status` that repeats nothing of `sent`.
async fn assert_problem(r: Response, status: u16, sent: &str) {
    assert_eq!(r.status(), status, "{sent}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    let text = r.text().await.unwrap();
    assert_eq!(ct, "application/problem+json", "{sent}: {text}");
    assert!(
        !text.contains(PAN) && !text.contains("%ZZ"),
        "{sent}: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_a_problem_and_cors_answers_only_the_apps_origins() {
    let broker = Broker::start().await;
    let app = spawn_with_cors(&broker).await;
    let c = app.create_customer().await.customer_id;
    let token = app.token(c, 1);
    let accounts = format!("/v1/customers/{c}/accounts");
    let admin = ADMIN.to_owned();
    let consumer = |name: &str| format!("/admin/v1/consumers/{name}/hold");
    for (method, path, bearer, status) in [
        (Method::GET, "/v1/nothing-here".to_owned(), &token, 404),
        (
            Method::GET,
            "/v1/customers/%ZZ/accounts".into(),
            &token,
            422,
        ),
        (Method::GET, format!("{accounts}/%FF"), &token, 422),
        (Method::PUT, consumer("%ZZ"), &admin, 404),
        (Method::PUT, consumer("%FF"), &admin, 400),
        (Method::DELETE, accounts.clone(), &token, 405),
        (
            Method::GET,
            format!("/v1/customers/{PAN}/accounts"),
            &token,
            422,
        ),
    ] {
        let r = app
            .client
            .request(method.clone(), app.url(&path))
            .bearer_auth(bearer)
            .send()
            .await
            .unwrap();
        assert_problem(r, status, &format!("{method} {path}")).await;
    }
    let post = |body: String, ct: &'static str| {
        app.client
            .post(app.url("/internal/v1/customers"))
            .bearer_auth(INTERNAL)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    let numeric =
        format!(r#"{{"customer_id": {PAN}, "name": "x", "epoch": 1, "currency": "BRL"}}"#);
    assert_problem(
        post(numeric.clone(), "application/json").await.unwrap(),
        422,
        &numeric,
    )
    .await;
    let wrong =
        format!(r#"{{"customer_id": "{c}", "name": "x", "epoch": "{PAN}", "currency": "{PAN}"}}"#);
    assert_problem(
        post(wrong.clone(), "application/json").await.unwrap(),
        422,
        &wrong,
    )
    .await;
    assert_problem(
        post(numeric.clone(), "text/plain").await.unwrap(),
        415,
        "text/plain",
    )
    .await;
    let card = format!(
        r#"{{"card_id": "{}", "epoch": 1, "pan_hash": "h", "last4": "1111", "credit_limit": -{PAN}, "currency": "BRL"}}"#,
        uuid::Uuid::new_v4()
    );
    let r = app
        .client
        .post(app.url(&format!("/internal/v1/customers/{c}/cards")))
        .bearer_auth(INTERNAL)
        .header("content-type", "application/json")
        .body(card.clone())
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, &card).await;
    let huge = format!(r#"{{"name": "{}"}}"#, PAN.repeat(100_000));
    assert_problem(post(huge, "application/json").await.unwrap(), 413, "huge").await;

    // CORS: a preflight from the app's origin is allowed, from another not.
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url(&accounts))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let r = preflight(APP).await.unwrap();
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], APP);
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("authorization"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("GET"));
    let r = preflight("https://elsewhere.test").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // An error answer to the app carries the headers too, so it can read it.
    let r = app
        .client
        .get(app.url(&accounts))
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["access-control-allow-origin"], APP);
    let exposed = r.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        exposed.contains("location") && exposed.contains("retry-after"),
        "{exposed}"
    );
    app.stop().await;
}
