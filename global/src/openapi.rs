//! The OpenAPI 3 document of the global API, served at `/openapi.json`:
//! every operation with its parameters, its body, the shape of its success
//! and every problem it can answer (load-tests/schemathesis.sh holds the
//! service to it).

use std::sync::LazyLock;

use axum::routing::get;
use axum::{Json, Router};
use cellbank_shared::openapi::{merged, object};
use serde_json::{json, Map, Value};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

/// The document.
pub fn document() -> Value {
    DOCUMENT.clone()
}

const JSON: &str = "application/json";
const HAL: &str = "application/hal+json";
/// What a shard's URLs must look like (absolute, http or https).
const HTTP_URL: &str = "^https?://[^/]";

fn problem_responses(codes: &[&str]) -> Map<String, Value> {
    codes
        .iter()
        .map(|c| {
            let r = json!({"description": "problem", "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}});
            ((*c).to_owned(), r)
        })
        .collect()
}

/// A success response: status, description, media type and the body's schema.
type Success<'a> = (&'a str, &'a str, &'a str, Value);

fn schema(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Who may call an operation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Caller {
    Anyone,
    /// Operators, with global's admin token (the ops port).
    Admin,
    /// A registered partner's key with the named scope.
    Partner(&'static str),
    /// The customer's own access token, or the admin token.
    CustomerOrAdmin,
    /// A cell's own internal token (per-cell credentials).
    Cell,
}

/// An operation. Besides `errors`, every one can answer 503 (past its
/// deadline, or shed at capacity); one that takes a body 400 (unreadable),
/// 413 (too large), 415 (not JSON) and 422 (a field is wrong); one that
/// needs credentials 401.
fn op(summary: &str, body: Option<&str>, ok: Success, errors: &[&str], caller: Caller) -> Value {
    let mut codes = errors.to_vec();
    codes.push("503");
    if body.is_some() {
        codes.extend(["400", "413", "415", "422"]);
    }
    if caller != Caller::Anyone {
        codes.push("401");
    }
    let mut responses = problem_responses(&codes);
    let (status, description, media, body_schema) = ok;
    responses.insert(
        status.to_owned(),
        json!({"description": description, "content": {media: {"schema": body_schema}}}),
    );
    let mut o = json!({"summary": summary, "responses": responses});
    if let Some(name) = body {
        o["requestBody"] = json!({"required": true, "content": {JSON: {"schema": schema(name)}}});
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
        Caller::Cell => o["security"] = json!([{"cellToken": []}]),
    }
    o
}

/// A path or query parameter.
fn param(name: &str, place: &str, required: bool, schema: Value) -> Value {
    json!({"name": name, "in": place, "required": required, "schema": schema})
}

fn query(name: &str, required: bool, schema: Value) -> Value {
    param(name, "query", required, schema)
}

/// `?limit=`, from 1 to `max`.
fn limit(max: i64) -> Value {
    query(
        "limit",
        false,
        json!({"type": "integer", "minimum": 1, "maximum": max}),
    )
}

fn uuid_in_path(name: &str) -> Value {
    param(
        name,
        "path",
        true,
        json!({"type": "string", "format": "uuid"}),
    )
}

fn shard_in_path() -> Value {
    param(
        "id",
        "path",
        true,
        json!({"type": "string", "pattern": "^shard-[1-9][0-9]*$"}),
    )
}

/// A path item whose operations share `params`.
fn with_params(mut item: Value, params: &[Value]) -> Value {
    item["parameters"] = Value::Array(params.to_vec());
    item
}

/// An operation whose success answers 200 when the same request was done before.
fn repeated(mut op: Value) -> Value {
    let first = op["responses"]
        .as_object()
        .and_then(|r| r.iter().find(|(c, _)| c.starts_with('2')))
        .map(|(_, v)| v.clone());
    if let Some(ok) = first {
        op["responses"]["200"] = ok;
    }
    op
}

/// An operation whose body may be left out.
fn optional_body(mut op: Value) -> Value {
    op["requestBody"]["required"] = false.into();
    op
}

/// A plain GET answering a JSON object (probes, the document itself).
fn probe(summary: &str, media: &str, body: Value) -> Value {
    json!({"get": {"summary": summary, "responses": {"200": {"description": summary, "content": {media: {"schema": body}}}}}})
}

fn public_paths() -> Value {
    let mut customers = json!({"post": op("Onboard a customer on the least loaded active shard (a repeated sign-up answers the customer again, 200)", Some("NewCustomer"), ("201", "customer created", HAL, schema("Onboarded")), &["409"], Caller::Anyone)});
    customers["post"]["responses"]["200"] = json!({"description": "the same sign-up, repeated", "content": {HAL: {"schema": schema("Onboarded")}}});
    json!({
        "/v1/customers": customers,
        "/v1/customers/{customer_id}/cards": with_params(json!({"post": optional_body(op("Issue a card; the full PAN is returned only here", Some("NewCard"), ("201", "card issued", JSON, schema("CardIssued")), &["403", "404", "409"], Caller::CustomerOrAdmin))}), &[uuid_in_path("customer_id")]),
        "/v1/events": {"post": op("Route one event to its owner's shard (202 once acknowledged)", Some("Event"), ("202", "accepted", JSON, schema("EventAccepted")), &["403", "404", "429"], Caller::Partner("events"))},
        "/v1/events/batch": {"post": op("Route up to 1000 events; per-item results", Some("EventBatch"), ("200", "per-item results", JSON, schema("BatchResults")), &["403", "429"], Caller::Partner("events"))},
        "/v1/authorizations": {"post": op("Authorize a card purchase (stand-in decline on timeout)", Some("Authorization"), ("200", "decision", JSON, schema("AuthorizationDecision")), &["403", "429"], Caller::Partner("authorizations"))},
        "/internal/v1/transfers": {"post": repeated(op("A cell hands over a transfer whose sender's money it reserved (pending there), for the transfer service to credit the recipient — resolved through the directory at credit time — and settle back in the sender's cell: delivered (completed) or returned (failed, with a reason: unknown recipient, refused by the recipient's cell, or not credited within transfers.credit_timeout_ms). Idempotent on the sender and transfer_id; other details under the same ones 409. 403 unless the sender is (or was, before a move) a customer of the calling cell", Some("HandOffTransfer"), ("201", "taken over", JSON, schema("TransferHandedOver")), &["403", "409"], Caller::Cell))},
        "/v1/login": {"post": op("Log in; links point at the customer's shard", Some("Login"), ("200", "token and links", HAL, schema("LoggedIn")), &["401", "429"], Caller::Anyone)},
        "/.well-known/jwks.json": probe("Token verification keys", JSON, schema("Jwks")),
        "/openapi.json": probe("This document", JSON, json!({"type": "object"})),
    })
}

fn ops_paths() -> Value {
    let customer = [uuid_in_path("customer_id")];
    let mv = [uuid_in_path("id")];
    let partner = [uuid_in_path("id")];
    let phases = [
        "planned",
        "copying",
        "cutover",
        "flipped",
        "completed",
        "aborting",
        "aborted",
    ];
    let moves_query = [
        query("phase", false, json!({"type": "string", "enum": phases})),
        query("customer_id", false, uuid()),
        limit(1000),
    ];
    let lookup_query = [
        query(
            "kind",
            true,
            json!({"type": "string", "enum": ["account", "login"]}),
        ),
        query("value", true, json!({"type": "string", "minLength": 1})),
    ];
    json!({
        "/ops/v1/shards": {
            "get": op("List shards", None, ("200", "shards", JSON, schema("ShardList")), &[], Caller::Admin),
            "post": op("Register a shard", Some("NewShard"), ("201", "registered", JSON, schema("Shard")), &["409"], Caller::Admin)
        },
        "/ops/v1/shards/{id}/drain": with_params(json!({"post": op("Stop placing customers on a shard", None, ("200", "draining", JSON, schema("Shard")), &["404", "422"], Caller::Admin)}), &[shard_in_path()]),
        "/ops/v1/shards/{id}/customers": with_params(json!({"get": op("A shard's active customers, oldest first (what a rebalance picks from)", None, ("200", "shard, count and customer ids", JSON, schema("ShardCustomers")), &["400", "404", "422"], Caller::Admin)}), &[shard_in_path(), limit(100_000)]),
        "/ops/v1/customers/{customer_id}": with_params(json!({"get": op("Show a customer's placement and identifiers", None, ("200", "customer", JSON, schema("CustomerPlacement")), &["404", "422"], Caller::Admin)}), &customer),
        "/ops/v1/customers/{customer_id}/placement": with_params(json!({"put": op("Repair a directory entry: point a customer at a shard under the next epoch, moving no data (refused unless force is true; POST /ops/v1/moves moves a customer)", Some("Placement"), ("200", "placement", JSON, schema("Placed")), &["404", "409"], Caller::Admin)}), &customer),
        "/ops/v1/moves": {
            "parameters": moves_query,
            "get": op("List moves, newest first", None, ("200", "count and _embedded.moves", JSON, schema("MoveList")), &["400", "422"], Caller::Admin),
            "post": op("Plan a customer's move to another shard; global's mover drives it (online copy, a short freeze, verified, flipped)", Some("NewMove"), ("202", "the planned move", JSON, schema("Move")), &["404", "409"], Caller::Admin)
        },
        "/ops/v1/moves/{id}": with_params(json!({"get": op("Show a move: its phase, progress, freeze and timings", None, ("200", "move", JSON, schema("Move")), &["404", "422"], Caller::Admin)}), &mv),
        "/ops/v1/moves/{id}/abort": with_params(json!({"post": optional_body(op("Roll a move back (before its flip only; after it, move the customer back); the body is optional", Some("MoveAbort"), ("202", "the move, aborting", JSON, schema("Move")), &["404", "409"], Caller::Admin))}), &mv),
        "/ops/v1/moves/{id}/complete": with_params(json!({"post": op("Purge the source shard's copy of a completed move (a moved-out marker stays)", None, ("200", "the move, source copy purged", JSON, schema("Move")), &["404", "409", "422", "502"], Caller::Admin)}), &mv),
        "/ops/v1/partners": {
            "get": op("List partners (never their keys)", None, ("200", "partners", JSON, schema("PartnerList")), &[], Caller::Admin),
            "post": op("Register a partner; its key is answered once", Some("NewPartner"), ("201", "partner with its key", JSON, schema("PartnerWithKey")), &["409"], Caller::Admin)
        },
        "/ops/v1/partners/{id}": with_params(json!({
            "get": op("Show a partner (never its keys)", None, ("200", "partner", JSON, schema("Partner")), &["404", "422"], Caller::Admin),
            "delete": op("Revoke a partner and all its keys (as POST .../revoke)", None, ("200", "partner", JSON, schema("Partner")), &["404", "422"], Caller::Admin)
        }), &partner),
        "/ops/v1/partners/{id}/rotate": with_params(json!({"post": op("A new key; the previous stays valid until the next rotation", None, ("200", "partner with its new key", JSON, schema("PartnerWithKey")), &["404", "409", "422"], Caller::Admin)}), &partner),
        "/ops/v1/partners/{id}/revoke": with_params(json!({"post": op("Revoke a partner and all its keys", None, ("200", "partner", JSON, schema("Partner")), &["404", "422"], Caller::Admin)}), &partner),
        "/ops/v1/credit-policy": {"get": op("The credit policy: a new card's limit per currency", None, ("200", "policy", JSON, schema("CreditPolicy")), &[], Caller::Admin)},
        "/ops/v1/credit-policy/{currency}": with_params(json!({"put": op("Set a currency's default credit limit", Some("CreditLimit"), ("200", "policy entry", JSON, schema("CreditPolicyEntry")), &[], Caller::Admin)}), &[param("currency", "path", true, schema("Currency"))]),
        "/ops/v1/lookup": {"parameters": lookup_query, "get": op("Resolve an account number or login through the router cache", None, ("200", "placement", JSON, schema("Lookup")), &["400", "404", "422"], Caller::Admin)},
    })
}

/// The probes, served on both ports.
/// The ops API over global's transfer service.
fn transfer_ops_paths() -> Value {
    let transfers_query = [
        query(
            "state",
            false,
            json!({"type": "string", "enum": ["crediting", "voiding", "delivering", "returning", "completed", "failed"]}),
        ),
        limit(1000),
    ];
    json!({
        "/ops/v1/transfers": {"parameters": transfers_query, "get": op("The latest transfers between cells (newest first), optionally in one state", None, ("200", "transfers", JSON, schema("TransferList")), &["400", "422"], Caller::Admin)},
        "/ops/v1/transfers/{transfer_key}": with_params(json!({"get": op("One transfer between cells: its state, reason, the cells a credit went to, attempts and last error", None, ("200", "transfer", JSON, schema("GlobalTransfer")), &["404", "422"], Caller::Admin)}), &[uuid_in_path("transfer_key")]),
    })
}

fn probe_paths() -> Value {
    let ready = json!({"description": "ready (or degraded: serving from the cache)", "content": {JSON: {"schema": schema("Readiness")}}});
    let not_ready = json!({"description": "not ready: the checks say why (a report, not a problem)", "content": {JSON: {"schema": schema("Readiness")}}});
    json!({
        "/healthz": probe("Liveness", JSON, json!({"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}})),
        "/readyz": {"get": {"summary": "Readiness (503 when the directory database is down and the cache cannot serve)", "responses": {"200": ready, "503": not_ready}}},
        "/metrics": probe("Prometheus metrics", "text/plain", json!({"type": "string"})),
    })
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Cellbank global API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The router tier: onboarding, event routing, authorizations, login and ops. The /ops paths are served on the ops port only (ops.port), never on the public one."},
        "paths": merged([public_paths(), ops_paths(), transfer_ops_paths(), probe_paths()]),
        "components": {
            "securitySchemes": {
                "adminToken": {"type": "http", "scheme": "bearer", "description": "Global's admin token (operators; ops port)."},
                "partnerKey": {"type": "http", "scheme": "bearer", "description": "A partner's key (cbp_...), registered with POST /ops/v1/partners; each operation names the scope it needs in x-partner-scope."},
                "customerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "The access_token /v1/login answers; it acts only on its own customer."},
                "cellToken": {"type": "http", "scheme": "bearer", "description": "A cell's own internal token (auth.shard_tokens): a cell calls global with the token global calls it with."}
            },
            "schemas": merged([request_schemas(), public_answer_schemas(), ops_answer_schemas()]),
        }
    })
});

fn string() -> Value {
    json!({"type": "string"})
}

fn integer() -> Value {
    json!({"type": "integer"})
}

fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

/// A login as sign-up and login take it (case and surrounding blanks aside).
fn login() -> Value {
    json!({"type": "string", "pattern": "^[A-Za-z0-9._@+-]{3,64}$"})
}

/// A card number: 12 to 19 digits (spaces and dashes allowed between), and
/// it must pass the Luhn check.
fn pan() -> Value {
    json!({"type": "string", "pattern": "^[0-9][0-9 -]{10,}[0-9]$"})
}

fn array_of(items: Value) -> Value {
    json!({"type": "array", "items": items})
}

/// The request bodies, and the types they share with the answers.
fn request_schemas() -> Value {
    json!({
        "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
            "type": string(), "title": string(), "status": integer(), "detail": string(),
            "errors": array_of(object(&[("field", string()), ("reason", string())])),
            "_links": schema("Links")}},
        "Links": {"type": "object", "additionalProperties": object(&[("href", string())])},
        "Currency": {"type": "string", "enum": ["BRL", "USD", "EUR", "MXN", "COP"]},
        "HandOffTransfer": {"type": "object", "additionalProperties": false,
            "required": ["transfer_id", "source_shard", "from_customer_id", "from_account_id", "amount", "currency", "requested_at"],
            "description": "Exactly one of to_account_number or to_login (normalised: trimmed, lower-case).", "properties": {
            "transfer_id": uuid(), "source_shard": string(), "from_customer_id": uuid(), "from_account_id": uuid(),
            "amount": {"type": "integer", "minimum": 1}, "currency": schema("Currency"),
            "to_account_number": {"type": "string", "pattern": "^[0-9]{1,34}$"}, "to_login": login(),
            "requested_at": {"type": "string", "format": "date-time"}}},
        "NewCustomer": {"type": "object", "required": ["name", "login", "password"], "additionalProperties": false, "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}, "login": login(),
            "password": {"type": "string", "minLength": 8, "maxLength": 256},
            "currency": {"$ref": "#/components/schemas/Currency", "nullable": true}}},
        "NewCard": {"type": "object", "additionalProperties": false, "description": "Optional (no body: the customer's own currency). The limit comes from the credit policy; a credit_limit is refused.", "properties": {
            "currency": {"$ref": "#/components/schemas/Currency", "nullable": true}}},
        "NewPartner": {"type": "object", "required": ["name", "scopes"], "additionalProperties": false, "properties": {
            "name": string(), "scopes": {"type": "array", "items": {"type": "string", "enum": ["events", "authorizations"]}},
            "rate_per_sec": {"type": "integer", "minimum": 1}}},
        "CreditLimit": {"type": "object", "required": ["default_credit_limit"], "additionalProperties": false, "properties": {
            "default_credit_limit": {"type": "integer", "minimum": 1, "description": "minor units"}}},
        "Event": {"type": "object", "required": ["event_id", "type", "amount", "currency", "occurred_at"],
            "oneOf": [{"required": ["account_number"]}, {"required": ["pan"]}],
            "description": "Exactly one of account_number or pan; card_id and network_reference where the type uses them (authorization_reversed needs network_reference); any other field is refused. Dated at most 5 minutes ahead.",
            "additionalProperties": false, "properties": {
            "card_id": uuid(), "network_reference": {"type": "string", "minLength": 1, "maxLength": 128},
            "event_id": {"type": "string", "pattern": "^[!-~]{1,128}$"}, "type": {"type": "string", "enum": cellbank_shared::contract::EVENT_TYPES},
            "account_number": {"type": "string", "pattern": "^[A-Za-z0-9]{1,34}$"}, "pan": pan(),
            "amount": {"type": "integer", "minimum": 1, "description": "minor units"},
            "currency": schema("Currency"), "occurred_at": {"type": "string", "format": "date-time"}}},
        "EventBatch": {"type": "object", "required": ["events"], "properties": {
            "events": {"type": "array", "minItems": 1, "maxItems": 1000, "items": schema("Event")}}},
        "Authorization": {"type": "object", "required": ["pan", "amount", "currency", "merchant", "network_reference"], "properties": {
            "pan": pan(), "amount": {"type": "integer", "minimum": 1}, "currency": schema("Currency"),
            "merchant": object(&[("name", string()), ("mcc", string()), ("country", string())]),
            "network_reference": string()}},
        "Login": object(&[("login", login()), ("password", json!({"type": "string", "minLength": 1, "maxLength": 256}))]),
        "NewShard": {"type": "object", "required": ["id", "public_url", "internal_url", "broker_bootstrap", "capacity"], "properties": {
            "id": {"type": "string", "pattern": "^shard-[1-9][0-9]*$"}, "public_url": {"type": "string", "pattern": HTTP_URL},
            "internal_url": {"type": "string", "pattern": HTTP_URL}, "broker_bootstrap": string(), "capacity": {"type": "integer", "minimum": 1}}},
        "Placement": {"type": "object", "required": ["shard"], "properties": {"shard": string(),
            "force": {"type": "boolean", "default": false, "description": "required: a placement change moves no data"}}},
        "NewMove": {"type": "object", "required": ["customer_id", "to"], "additionalProperties": false, "properties": {
            "customer_id": uuid(), "to": {"type": "string", "pattern": "^shard-[1-9][0-9]*$"}}},
        "MoveAbort": {"type": "object", "additionalProperties": false, "description": "optional: no body, {} or a reason", "properties": {
            "reason": {"type": "string", "maxLength": 500}}}
    })
}

/// What the public API answers.
fn public_answer_schemas() -> Value {
    let links = ("_links", schema("Links"));
    let result = json!({"type": "object", "required": ["index", "status"], "properties": {
        "index": integer(), "status": integer(), "event_id": string(), "shard": string(),
        "problem": schema("Problem"), "retry_after": integer()}});
    json!({
        "TransferHandedOver": object(&[("transfer_key", uuid()), ("transfer_id", uuid()),
            ("state", json!({"type": "string", "enum": ["crediting", "voiding", "delivering", "returning", "completed", "failed"]}))]),
        "Onboarded": object(&[("customer_id", uuid()), ("shard", string()), ("epoch", integer()), ("login", string()),
            ("account_id", uuid()), ("account_number", string()), ("currency", schema("Currency")), links.clone()]),
        "CardIssued": object(&[("card_id", uuid()), ("customer_id", uuid()), ("shard", string()), ("pan", string()),
            ("last4", string()), ("credit_limit", integer()), ("currency", schema("Currency"))]),
        "EventAccepted": object(&[("event_id", string()), ("status", json!({"type": "string", "enum": ["accepted"]})), ("shard", string())]),
        "BatchResults": object(&[("accepted", integer()), ("rejected", integer()), ("results", array_of(result))]),
        "AuthorizationDecision": object(&[("decision", json!({"type": "string", "enum": ["approved", "declined"]})),
            ("reason", string()), ("authorization_id", uuid())]),
        "LoggedIn": object(&[("customer_id", uuid()), ("shard", string()), ("epoch", integer()), ("access_token", string()),
            ("token_type", json!({"type": "string", "enum": ["Bearer"]})), ("expires_in", integer()), links]),
        "Jwks": object(&[("keys", array_of(object(&[("kty", string()), ("crv", string()), ("kid", string()), ("x", string())])))]),
        "Readiness": object(&[("status", json!({"type": "string", "enum": ["ready", "degraded", "not-ready"]})), ("checks", array_of(json!({"type": "object"})))]),
    })
}

/// What the ops API answers.
fn ops_answer_schemas() -> Value {
    let time = json!({"type": "string", "format": "date-time"});
    let maybe_time = json!({"type": "string", "format": "date-time", "nullable": true});
    let partner = [
        ("partner_id", uuid()),
        ("name", string()),
        ("scopes", array_of(string())),
        ("rate_per_sec", integer()),
        ("created_at", time.clone()),
        ("revoked_at", maybe_time),
        ("live_keys", integer()),
    ];
    let mut with_key = partner.to_vec();
    with_key.push(("key", string()));
    let placed = [
        ("customer_id", uuid()),
        ("shard", string()),
        ("epoch", integer()),
        ("state", string()),
    ];
    let mut customer = placed.to_vec();
    customer.push(("identifiers", array_of(json!({"type": "object"}))));
    json!({
        "Shard": object(&[("id", string()), ("public_url", string()), ("internal_url", string()), ("broker_bootstrap", string()),
            ("state", string()), ("capacity", integer()), ("customers", integer())]),
        "ShardList": object(&[("items", array_of(schema("Shard")))]),
        "ShardCustomers": object(&[("shard", string()), ("count", integer()), ("customers", array_of(uuid()))]),
        "CustomerPlacement": object(&customer),
        "Placed": object(&placed),
        "Lookup": object(&placed),
        "Move": object(&[("id", uuid()), ("customer_id", uuid()), ("from", string()), ("to", string()), ("phase", string()),
            ("attempt", integer()), ("created_at", time.clone()), ("_links", schema("Links"))]),
        "MoveList": object(&[("count", integer()), ("_embedded", object(&[("moves", array_of(schema("Move")))])), ("_links", schema("Links"))]),
        "Partner": object(&partner),
        "PartnerWithKey": object(&with_key),
        "PartnerList": object(&[("items", array_of(schema("Partner")))]),
        "CreditPolicyEntry": object(&[("currency", schema("Currency")), ("default_credit_limit", integer()), ("source", string())]),
        "CreditPolicy": object(&[("items", array_of(schema("CreditPolicyEntry")))]),
        "GlobalTransfer": object(&[("transfer_key", uuid()), ("transfer_id", uuid()), ("from_customer_id", uuid()), ("source_shard", string()),
            ("amount", integer()), ("currency", string()),
            ("state", json!({"type": "string", "enum": ["crediting", "voiding", "delivering", "returning", "completed", "failed"]})),
            ("credit_shards", array_of(string())), ("attempts", integer()), ("requested_at", time.clone()), ("_links", schema("Links"))]),
        "TransferList": object(&[("count", integer()), ("_embedded", object(&[("transfers", array_of(schema("GlobalTransfer")))])), ("_links", schema("Links"))]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What schemathesis found missing: every templated path declares its
    /// parameters, every operation documents a 503 problem, one that takes
    /// a body documents 400, 413 and 415, and every success has a schema.
    #[test]
    fn every_operation_is_complete() {
        let doc = document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                assert!(declared.contains(&name), "{path}: {name} is not declared");
            }
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" {
                    continue;
                }
                let responses = op["responses"].as_object().unwrap();
                let ok = responses.keys().find(|c| c.starts_with('2')).unwrap();
                assert!(!responses[ok]["content"].is_null(), "{method} {path}: {ok}");
                if path.starts_with("/v1/") || path.starts_with("/ops/") {
                    assert!(responses.contains_key("503"), "{method} {path}: 503");
                }
                if !op["requestBody"].is_null() {
                    for code in ["400", "413", "415", "422"] {
                        assert!(responses.contains_key(code), "{method} {path}: {code}");
                    }
                }
            }
        }
    }

    /// A repeated sign-up answers 200 with the customer again: documented.
    #[test]
    fn documents_the_repeated_sign_up() {
        let doc = document();
        let responses = &doc["paths"]["/v1/customers"]["post"]["responses"];
        assert!(responses["200"].is_object() && responses["201"].is_object());
    }
}
