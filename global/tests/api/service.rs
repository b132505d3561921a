//! Health, readiness, metrics, OpenAPI and JWKS endpoints.

use serde_json::Value;

use crate::support::{Base, TestGlobal};

#[tokio::test]
async fn serves_health_readiness_metrics_openapi_and_jwks() {
    let base = Base::new().await;
    let g = TestGlobal::spawn(base.settings()).await;

    let r = g.get("/healthz").await.unwrap();
    assert_eq!(r.status(), 200);

    let ready: Value = g.get("/readyz").await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["postgres", "broker", "directory_feed"]);

    let metrics = g.get("/metrics").await.unwrap().text().await.unwrap();
    for name in [
        "http_requests_total",
        "global_directory_cache_lookups_total",
        "global_routing_duration_seconds",
        "global_directory_cache_hit_ratio",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    let doc: Value = g.get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/events",
        "/v1/events/batch",
        "/v1/authorizations",
        "/v1/login",
        "/v1/customers",
        "/ops/v1/shards",
        "/ops/v1/shards/{id}/customers",
        "/ops/v1/moves",
        "/ops/v1/moves/{id}",
        "/ops/v1/moves/{id}/abort",
        "/ops/v1/moves/{id}/complete",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from openapi"
        );
    }

    let jwks: Value = g
        .get("/.well-known/jwks.json")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
}
