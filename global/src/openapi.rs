//! The OpenAPI 3 document of the global API, served at `/openapi.json`.

use std::sync::LazyLock;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(DOCUMENT.clone()) }))
}

fn problem_responses(codes: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    for c in codes {
        m.insert(
            (*c).to_owned(),
            json!({"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}),
        );
    }
    Value::Object(m)
}

fn op(
    summary: &str,
    body: Option<&str>,
    ok: (&str, &str, &str),
    errors: &[&str],
    admin: bool,
) -> Value {
    let mut responses = problem_responses(errors);
    responses[ok.0] =
        json!({"description": ok.1, "content": {ok.2: {"schema": {"type": "object"}}}});
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    if admin {
        o["security"] = json!([{"adminToken": []}]);
    }
    o
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let json_ = "application/json";
    let hal = "application/hal+json";
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Cellbank global API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The router tier: onboarding, event routing, authorizations, login and ops."},
        "paths": {
            "/v1/customers": {"post": op("Onboard a customer on the least loaded active shard", Some("NewCustomer"), ("201", "customer created", hal), &["400", "409", "415", "422", "503"], false)},
            "/v1/customers/{customer_id}/cards": {"post": op("Issue a card; the full PAN is returned only here", Some("NewCard"), ("201", "card issued", json_), &["400", "404", "415", "422", "503"], false)},
            "/v1/events": {"post": op("Route one event to its owner's shard (202 once acknowledged)", Some("Event"), ("202", "accepted", json_), &["400", "404", "415", "422", "503"], false)},
            "/v1/events/batch": {"post": op("Route up to 1000 events; per-item results", Some("EventBatch"), ("200", "per-item results", json_), &["400", "415", "422"], false)},
            "/v1/authorizations": {"post": op("Authorize a card purchase (stand-in decline on timeout)", Some("Authorization"), ("200", "decision", json_), &["400", "415", "422", "503"], false)},
            "/v1/login": {"post": op("Log in; links point at the customer's shard", Some("Login"), ("200", "token and links", hal), &["400", "401", "415", "422", "429"], false)},
            "/.well-known/jwks.json": {"get": {"summary": "Token verification keys", "responses": {"200": {"description": "JWKS"}}}},
            "/ops/v1/shards": {
                "get": op("List shards", None, ("200", "shards", json_), &["401"], true),
                "post": op("Register a shard", Some("NewShard"), ("201", "registered", json_), &["401", "409", "422"], true)
            },
            "/ops/v1/shards/{id}/drain": {"post": op("Stop placing customers on a shard", None, ("200", "draining", json_), &["401", "404", "422"], true)},
            "/ops/v1/customers/{customer_id}": {"get": op("Show a customer's placement and identifiers", None, ("200", "customer", json_), &["401", "404", "422"], true)},
            "/ops/v1/customers/{customer_id}/placement": {"put": op("Directory flip: point a customer at a shard under the next epoch", Some("Placement"), ("200", "placement", json_), &["401", "404", "422"], true)},
            "/ops/v1/lookup": {"get": op("Resolve an account number or login through the router cache", None, ("200", "placement", json_), &["401", "404", "422"], true)},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness (503 degraded when the directory database is down)", "responses": {"200": {"description": "ready"}, "503": {"description": "degraded or not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}}
        },
        "components": {
            "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}}}},
                "NewCustomer": {"type": "object", "required": ["name", "login", "password"], "properties": {
                    "name": {"type": "string"}, "login": {"type": "string"}, "password": {"type": "string", "minLength": 8},
                    "currency": {"type": "string", "enum": ["BRL", "USD", "EUR", "MXN", "COP"], "default": "BRL"}}},
                "NewCard": {"type": "object", "required": ["credit_limit", "currency"], "properties": {
                    "credit_limit": {"type": "integer", "minimum": 1}, "currency": {"type": "string"}}},
                "Event": {"type": "object", "required": ["event_id", "type", "amount", "currency", "occurred_at"],
                    "description": "Exactly one of account_number or pan; other fields pass through to the shard.",
                    "additionalProperties": true, "properties": {
                    "event_id": {"type": "string", "maxLength": 128}, "type": {"type": "string", "enum": cellbank_shared::contract::EVENT_TYPES},
                    "account_number": {"type": "string"}, "pan": {"type": "string"},
                    "amount": {"type": "integer", "minimum": 1, "description": "minor units"},
                    "currency": {"type": "string"}, "occurred_at": {"type": "string", "format": "date-time"}}},
                "EventBatch": {"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/Event"}}}},
                "Authorization": {"type": "object", "required": ["pan", "amount", "currency", "merchant", "network_reference"], "properties": {
                    "pan": {"type": "string"}, "amount": {"type": "integer", "minimum": 1}, "currency": {"type": "string"},
                    "merchant": {"type": "object", "required": ["name", "mcc", "country"], "properties": {
                        "name": {"type": "string"}, "mcc": {"type": "string"}, "country": {"type": "string"}}},
                    "network_reference": {"type": "string"}}},
                "Login": {"type": "object", "required": ["login", "password"], "properties": {
                    "login": {"type": "string"}, "password": {"type": "string"}}},
                "NewShard": {"type": "object", "required": ["id", "public_url", "internal_url", "broker_bootstrap", "capacity"], "properties": {
                    "id": {"type": "string", "pattern": "^shard-[1-9][0-9]*$"}, "public_url": {"type": "string"},
                    "internal_url": {"type": "string"}, "broker_bootstrap": {"type": "string"}, "capacity": {"type": "integer", "minimum": 1}}},
                "Placement": {"type": "object", "required": ["shard"], "properties": {"shard": {"type": "string"}}}
            }
        }
    })
});
