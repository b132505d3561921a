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

/// Who may call an operation.
#[derive(Clone, Copy)]
enum Caller {
    Anyone,
    /// Operators, with global's admin token (the ops port).
    Admin,
    /// A registered partner's key with the named scope.
    Partner(&'static str),
    /// The customer's own access token, or the admin token.
    CustomerOrAdmin,
}

fn op(
    summary: &str,
    body: Option<&str>,
    ok: (&str, &str, &str),
    errors: &[&str],
    caller: Caller,
) -> Value {
    let mut responses = problem_responses(errors);
    responses[ok.0] =
        json!({"description": ok.1, "content": {ok.2: {"schema": {"type": "object"}}}});
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    match caller {
        Caller::Anyone => {}
        Caller::Admin => o["security"] = json!([{"adminToken": []}]),
        Caller::Partner(scope) => {
            o["security"] = json!([{"partnerKey": []}]);
            o["x-partner-scope"] = scope.into();
        }
        Caller::CustomerOrAdmin => {
            o["security"] = json!([{"customerToken": []}, {"adminToken": []}])
        }
    }
    o
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let json_ = "application/json";
    let hal = "application/hal+json";
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Cellbank global API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The router tier: onboarding, event routing, authorizations, login and ops. The /ops paths are served on the ops port only (ops.port), never on the public one."},
        "paths": {
            "/v1/customers": {"post": op("Onboard a customer on the least loaded active shard", Some("NewCustomer"), ("201", "customer created", hal), &["400", "409", "415", "422", "503"], Caller::Anyone)},
            "/v1/customers/{customer_id}/cards": {"post": op("Issue a card; the full PAN is returned only here", Some("NewCard"), ("201", "card issued", json_), &["400", "401", "403", "404", "415", "422", "503"], Caller::CustomerOrAdmin)},
            "/v1/events": {"post": op("Route one event to its owner's shard (202 once acknowledged)", Some("Event"), ("202", "accepted", json_), &["400", "401", "403", "404", "415", "422", "429", "503"], Caller::Partner("events"))},
            "/v1/events/batch": {"post": op("Route up to 1000 events; per-item results", Some("EventBatch"), ("200", "per-item results", json_), &["400", "401", "403", "415", "422", "429"], Caller::Partner("events"))},
            "/v1/authorizations": {"post": op("Authorize a card purchase (stand-in decline on timeout)", Some("Authorization"), ("200", "decision", json_), &["400", "401", "403", "415", "422", "429"], Caller::Partner("authorizations"))},
            "/v1/login": {"post": op("Log in; links point at the customer's shard", Some("Login"), ("200", "token and links", hal), &["400", "401", "415", "422", "429", "503"], Caller::Anyone)},
            "/.well-known/jwks.json": {"get": {"summary": "Token verification keys", "responses": {"200": {"description": "JWKS"}}}},
            "/ops/v1/shards": {
                "get": op("List shards", None, ("200", "shards", json_), &["401"], Caller::Admin),
                "post": op("Register a shard", Some("NewShard"), ("201", "registered", json_), &["401", "409", "422"], Caller::Admin)
            },
            "/ops/v1/shards/{id}/drain": {"post": op("Stop placing customers on a shard", None, ("200", "draining", json_), &["401", "404", "422"], Caller::Admin)},
            "/ops/v1/customers/{customer_id}": {"get": op("Show a customer's placement and identifiers", None, ("200", "customer", json_), &["401", "404", "422"], Caller::Admin)},
            "/ops/v1/shards/{id}/customers": {"get": op("A shard's active customers, oldest first (?limit=N, 1 to 100000; what a rebalance picks from)", None, ("200", "shard, count and customer ids", json_), &["401", "404", "422"], Caller::Admin)},
            "/ops/v1/customers/{customer_id}/placement": {"put": op("Repair a directory entry: point a customer at a shard under the next epoch, moving no data (refused unless force is true; POST /ops/v1/moves moves a customer)", Some("Placement"), ("200", "placement", json_), &["401", "404", "409", "422"], Caller::Admin)},
            "/ops/v1/moves": {
                "get": op("List moves, newest first (?phase=, ?customer_id=, ?limit= 1 to 1000)", None, ("200", "count and _embedded.moves", json_), &["401", "422"], Caller::Admin),
                "post": op("Plan a customer's move to another shard; global's mover drives it (online copy, a short freeze, verified, flipped)", Some("NewMove"), ("202", "the planned move", json_), &["401", "404", "409", "415", "422"], Caller::Admin)
            },
            "/ops/v1/moves/{id}": {"get": op("Show a move: its phase, progress, freeze and timings", None, ("200", "move", json_), &["401", "404", "422"], Caller::Admin)},
            "/ops/v1/moves/{id}/abort": {"post": op("Roll a move back (before its flip only; after it, move the customer back)", Some("MoveAbort"), ("202", "the move, aborting", json_), &["401", "404", "409", "422"], Caller::Admin)},
            "/ops/v1/moves/{id}/complete": {"post": op("Purge the source shard's copy of a completed move (a moved-out marker stays)", None, ("200", "the move, source copy purged", json_), &["401", "404", "409", "422", "502", "503"], Caller::Admin)},
            "/ops/v1/partners": {
                "get": op("List partners (never their keys)", None, ("200", "partners", json_), &["401"], Caller::Admin),
                "post": op("Register a partner; its key is answered once", Some("NewPartner"), ("201", "partner with its key", json_), &["401", "409", "422"], Caller::Admin)
            },
            "/ops/v1/partners/{id}": {
                "get": op("Show a partner (never its keys)", None, ("200", "partner", json_), &["401", "404", "422"], Caller::Admin),
                "delete": op("Revoke a partner and all its keys (as POST .../revoke)", None, ("200", "partner", json_), &["401", "404", "422"], Caller::Admin)
            },
            "/ops/v1/partners/{id}/rotate": {"post": op("A new key; the previous stays valid until the next rotation", None, ("200", "partner with its new key", json_), &["401", "404", "409", "422"], Caller::Admin)},
            "/ops/v1/partners/{id}/revoke": {"post": op("Revoke a partner and all its keys", None, ("200", "partner", json_), &["401", "404", "422"], Caller::Admin)},
            "/ops/v1/credit-policy": {"get": op("The credit policy: a new card's limit per currency", None, ("200", "policy", json_), &["401"], Caller::Admin)},
            "/ops/v1/credit-policy/{currency}": {"put": op("Set a currency's default credit limit", Some("CreditLimit"), ("200", "policy entry", json_), &["401", "422"], Caller::Admin)},
            "/ops/v1/lookup": {"get": op("Resolve an account number or login through the router cache", None, ("200", "placement", json_), &["401", "404", "422"], Caller::Admin)},
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "Readiness (503 degraded when the directory database is down)", "responses": {"200": {"description": "ready"}, "503": {"description": "degraded or not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text format"}}}}
        },
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "Global's admin token (operators; ops port)."},
                "partnerKey": {"type": "http", "scheme": "bearer", "description": "A partner's key (cbp_...), registered with POST /ops/v1/partners; each operation names the scope it needs in x-partner-scope."},
                "customerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "The access_token /v1/login answers; it acts only on its own customer."}
            },
            "schemas": {
                "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
                    "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object", "properties": {"field": {"type": "string"}, "reason": {"type": "string"}}}}}},
                "NewCustomer": {"type": "object", "required": ["name", "login", "password"], "properties": {
                    "name": {"type": "string"}, "login": {"type": "string"}, "password": {"type": "string", "minLength": 8},
                    "currency": {"type": "string", "enum": ["BRL", "USD", "EUR", "MXN", "COP"], "default": "BRL"}}},
                "NewCard": {"type": "object", "additionalProperties": false, "description": "The limit comes from the credit policy; a credit_limit is refused.", "properties": {
                    "currency": {"type": "string", "description": "the customer's own currency by default"}}},
                "NewPartner": {"type": "object", "required": ["name", "scopes"], "additionalProperties": false, "properties": {
                    "name": {"type": "string"}, "scopes": {"type": "array", "items": {"type": "string", "enum": ["events", "authorizations"]}},
                    "rate_per_sec": {"type": "integer", "minimum": 1}}},
                "CreditLimit": {"type": "object", "required": ["default_credit_limit"], "properties": {
                    "default_credit_limit": {"type": "integer", "minimum": 1, "description": "minor units"}}},
                "Event": {"type": "object", "required": ["event_id", "type", "amount", "currency", "occurred_at"],
                    "description": "Exactly one of account_number or pan; card_id and network_reference where the type uses them; any other field is refused.",
                    "additionalProperties": false, "properties": {
                    "card_id": {"type": "string", "format": "uuid"}, "network_reference": {"type": "string", "maxLength": 128},
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
                "Placement": {"type": "object", "required": ["shard"], "properties": {"shard": {"type": "string"},
                    "force": {"type": "boolean", "default": false, "description": "required: a placement change moves no data"}}},
                "NewMove": {"type": "object", "required": ["customer_id", "to"], "additionalProperties": false, "properties": {
                    "customer_id": {"type": "string", "format": "uuid"}, "to": {"type": "string", "pattern": "^shard-[1-9][0-9]*$"}}},
                "MoveAbort": {"type": "object", "additionalProperties": false, "description": "optional: no body, {} or a reason", "properties": {
                    "reason": {"type": "string", "maxLength": 500}}}
            }
        }
    })
});
