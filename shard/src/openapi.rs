//! The shard's hand-written OpenAPI 3 document (`GET /openapi.json`).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

fn op(summary: &str, security: &str, ok: &str, media: &str) -> Value {
    json!({
        "summary": summary,
        "security": [{ security: [] }],
        "responses": {
            ok: { "description": "success", "content": { media: {} } },
            "4XX": { "description": "problem", "content": { "application/problem+json": {} } }
        }
    })
}

fn customer_param() -> Value {
    json!([{ "name": "customer_id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }])
}

/// The document.
pub fn document() -> Value {
    let hal = "application/hal+json";
    let js = "application/json";
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Cellbank shard", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": {
            "customer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA) issued by global login" },
            "internal": { "type": "http", "scheme": "bearer" },
            "admin": { "type": "http", "scheme": "bearer" }
        }},
        "paths": {
            "/v1/customers/{customer_id}": { "parameters": customer_param(),
                "get": op("the customer, with links to accounts, cards and transfers", "customer", "200", hal) },
            "/v1/customers/{customer_id}/accounts": { "parameters": customer_param(),
                "get": op("the customer's accounts with balances", "customer", "200", hal) },
            "/v1/customers/{customer_id}/accounts/{account_id}": { "parameters": customer_param(),
                "get": op("one account with its balance (as_of=RFC3339 for a past business time)", "customer", "200", hal) },
            "/v1/customers/{customer_id}/accounts/{account_id}/entries": { "parameters": customer_param(),
                "get": op("account entries, newest first, cursor-paginated (cursor, limit)", "customer", "200", hal) },
            "/v1/customers/{customer_id}/cards": { "parameters": customer_param(),
                "get": op("cards (last four digits), available limit and current bill", "customer", "200", hal) },
            "/v1/customers/{customer_id}/transfers": { "parameters": customer_param(),
                "get": op("transfers between the customer's own accounts", "customer", "200", hal),
                "post": op("transfer between own accounts: {transfer_id?, from_account_id, to_account_id, amount, currency, description?}", "customer", "201", hal) },
            "/internal/v1/customers": { "post": op("create a customer (contract::CreateCustomer), idempotent", "internal", "201", js) },
            "/internal/v1/customers/{customer_id}/cards": { "parameters": customer_param(),
                "post": op("issue a card (contract::IssueCard)", "internal", "201", js) },
            "/internal/v1/customers/{customer_id}/placement": { "parameters": customer_param(),
                "put": op("the customer's placement here, explicitly: {state: active|fenced|moved_out, epoch}; active→fenced, fenced→active or moved_out at the same epoch, any→active at a higher one; 409 otherwise", "internal", "200", js) },
            "/internal/v1/authorizations": { "post": op("decide a purchase (contract::AuthorizationRequest); the replica holding the authorizer lease decides, any other forwards to it; 503 while the lease changes hands", "internal", "200", js) },
            "/admin/v1/dead-letters": { "get": op("dead-lettered messages (limit)", "admin", "200", js) },
            "/admin/v1/dead-letters/{id}/republish": { "post": op("republish one dead letter to its source topic (once: 409 if it was)", "admin", "200", js) },
            "/admin/v1/dead-letters/republish-all": { "post": op("republish every dead letter not yet republished", "admin", "200", js) },
            "/admin/v1/cards/{card_id}/block": { "post": op("block a card: the authorizer declines it (card_blocked)", "admin", "200", js) },
            "/admin/v1/cards/{card_id}/unblock": { "post": op("unblock a card", "admin", "200", js) },
            "/admin/v1/summary": { "get": op("counts and the trial balance per currency", "admin", "200", js) },
            "/admin/v1/consumers": { "get": op("the cell's consumers and whether an operator holds them", "admin", "200", js) },
            "/admin/v1/consumers/{name}/hold": {
                "put": op("hold a consumer: its partitions pause in every replica, the backlog waits in the log", "admin", "200", js),
                "delete": op("release a held consumer", "admin", "200", js)
            },
            "/healthz": { "get": { "summary": "liveness", "responses": { "200": { "description": "alive" } } } },
            "/readyz": { "get": { "summary": "readiness: postgres, broker, authorizer replayed", "responses": { "200": { "description": "ready" }, "503": { "description": "not ready" } } } },
            "/metrics": { "get": { "summary": "prometheus metrics", "responses": { "200": { "description": "text format" } } } }
        }
    })
}
