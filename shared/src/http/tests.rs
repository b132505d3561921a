//! The standard layers over a small router: every error answer a problem,
//! whoever made it, and none repeating what was sent.

use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, Method, Request, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tower::ServiceExt as _;

use super::*;
use crate::problem::{ApiJson, PROBLEM_JSON};

const PAN: &str = "4111111111111111";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Card {
    pan: String,
    limit: i64,
}

fn app() -> Router {
    let settings = ServerSettings {
        request_timeout_ms: 200,
        body_limit_bytes: 2048,
        ..ServerSettings::default()
    };
    let nested = Router::new().route("/inner", get(|| async { "inner" }));
    let router = Router::new()
        .route(
            "/v1/customers/{id}/accounts",
            get(|Path(id): Path<uuid::Uuid>| async move { id.to_string() }),
        )
        .route("/cards", post(|ApiJson(_c): ApiJson<Card>| async { "ok" }))
        .route(
            "/notes",
            post(|s: String| async move { s.len().to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/readyz",
            get(|| async { readiness(vec![Check::failing("postgres", "database unreachable")]) }),
        )
        .nest("/nested", nested);
    with_standard_layers(router, &settings)
}

async fn send(method: Method, uri: &str, ct: Option<&str>, body: Vec<u8>) -> Response {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(ct) = ct {
        req = req.header(header::CONTENT_TYPE, ct);
    }
    app()
        .oneshot(req.body(Body::from(body)).unwrap())
        .await
        .unwrap()
}

/// The status, content type and body text of a problem answer, checked to
/// be a problem of that status with no submitted value in it.
async fn problem(resp: Response, status: StatusCode) -> serde_json::Value {
    assert_eq!(resp.status(), status);
    let ct = resp.headers()[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(ct, PROBLEM_JSON, "{status}");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(!text.contains(PAN) && !text.contains("ZZ"), "{text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["status"], status.as_u16(), "{text}");
    doc
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    problem(
        send(Method::GET, "/nope", None, vec![]).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        send(Method::GET, "/nested/nope", None, vec![]).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let r = send(Method::DELETE, "/cards", None, vec![]).await;
    assert_eq!(r.headers()[header::ALLOW], "POST");
    let doc = problem(r, StatusCode::METHOD_NOT_ALLOWED).await;
    assert_eq!(
        doc["type"],
        "https://cellbank.dev/problems/method-not-allowed"
    );
}

#[tokio::test]
async fn bad_path_segments_are_problems_without_the_segment() {
    for uri in [
        "/v1/customers/%ZZ/accounts",
        &format!("/v1/customers/{PAN}/accounts"),
    ] {
        let r = send(Method::GET, uri, None, vec![]).await;
        problem(r, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn wrong_content_type_and_large_bodies_are_problems() {
    let json = format!(r#"{{"pan": "{PAN}", "limit": 1}}"#).into_bytes();
    let r = send(Method::POST, "/cards", Some("text/plain"), json).await;
    problem(r, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    let big = format!(r#"{{"pan": "{}", "limit": 1}}"#, PAN.repeat(200)).into_bytes();
    let r = send(
        Method::POST,
        "/cards",
        Some("application/json"),
        big.clone(),
    )
    .await;
    let doc = problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(doc["errors"][0]["field"], "body");
    let r = send(Method::POST, "/notes", Some("text/plain"), big).await;
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
}

#[tokio::test]
async fn a_timeout_is_a_problem_with_retry_after() {
    let r = send(Method::GET, "/slow", None, vec![]).await;
    assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    problem(r, StatusCode::SERVICE_UNAVAILABLE).await;
}

#[tokio::test]
async fn readiness_keeps_its_report_with_fixed_details() {
    let r = send(Method::GET, "/readyz", None, vec![]).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["checks"][0]["detail"], "database unreachable");
    let c = Check::from_result(
        "broker",
        Err("connect 10.0.0.7:9092 refused"),
        "broker unreachable",
    );
    assert_eq!(c.detail.as_deref(), Some("broker unreachable"));
}

/// Over a real socket: a card number sent as a JSON number, or as a string
/// where a number belongs, is never repeated in the answer.
#[tokio::test]
async fn a_card_number_in_the_wrong_shape_is_not_echoed() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cards", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app()).await });
    let client = reqwest::Client::new();
    for body in [
        format!(r#"{{"pan": {PAN}, "limit": 1}}"#),
        format!(r#"{{"pan": "x", "limit": "{PAN}"}}"#),
        format!(r#"{{"pan": "x", "limit": 1, "{PAN}": {PAN}}}"#),
        format!(r#"{{"pan": "x", "limit": {PAN}.5}}"#),
    ] {
        let r = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 422, "{body}");
        assert_eq!(r.headers()["content-type"], PROBLEM_JSON);
        let text = r.text().await.unwrap();
        assert!(!text.contains(PAN), "{body} echoed: {text}");
    }
}

#[tokio::test]
async fn cors_only_when_origins_are_configured() {
    let preflight = || {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/cards")
            .header(header::ORIGIN, "https://app.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap()
    };
    let none = with_cors(app(), &[])
        .unwrap()
        .oneshot(preflight())
        .await
        .unwrap();
    assert!(none
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    let origins = ["https://app.example".to_owned()];
    let some = with_cors(app(), &origins)
        .unwrap()
        .oneshot(preflight())
        .await
        .unwrap();
    assert_eq!(
        some.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://app.example"
    );
    assert!(with_cors(app(), &["https://app.example/x".to_owned()]).is_err());
}

/// Past `max_in_flight` requests at once, across routes, a request is shed
/// at once with 503, `Retry-After` and a problem (over a real socket); once
/// the held ones finish, requests are served again.
#[tokio::test]
async fn requests_past_the_in_flight_bound_are_shed_at_once_on_every_route() {
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let hold = |gate: std::sync::Arc<tokio::sync::Semaphore>| {
        get(move || async move {
            let _ = gate.acquire().await;
            "held"
        })
    };
    let router = Router::new()
        .route("/hold-a", hold(gate.clone()))
        .route("/hold-b", hold(gate.clone()))
        .route("/quick", get(|| async { "quick" }));
    let settings = ServerSettings {
        max_in_flight: 2,
        ..ServerSettings::default()
    };
    let app = with_standard_layers(router, &settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let held: Vec<_> = ["/hold-a", "/hold-b"]
        .into_iter()
        .map(|p| tokio::spawn(client.get(format!("{base}{p}")).send()))
        .collect();
    // both held requests are in flight once a third one is refused
    let mut shed = None;
    for _ in 0..100 {
        let r = client.get(format!("{base}/quick")).send().await.unwrap();
        if r.status() == StatusCode::SERVICE_UNAVAILABLE {
            shed = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shed = shed.expect("a third request at once is shed");
    assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
    assert_eq!(shed.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
    let doc: serde_json::Value = shed.json().await.unwrap();
    assert_eq!(doc["status"], 503);
    gate.add_permits(2);
    for h in held {
        assert_eq!(h.await.unwrap().unwrap().text().await.unwrap(), "held");
    }
    let r = client.get(format!("{base}/quick")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "quick");
}
