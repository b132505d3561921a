//! The shard's hand-written OpenAPI 3 document (`GET /openapi.json`): every
//! route of the app API (customer token), the internal API global calls
//! (this shard's internal token) and the admin API (its admin token), with
//! parameters, bodies and answers (load-tests/schemathesis.sh holds the
//! service to it).

use axum::routing::get;
use axum::{Json, Router};
use cellbank_shared::openapi::{merged, object as fields};
use serde_json::{json, Value};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/openapi.json", get(|| async { Json(document()) }))
}

const HAL: &str = "application/hal+json";
const JS: &str = "application/json";

fn schema(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// An operation: a success of `media` shaped by `body_schema`, any 4xx as
/// a problem, and 503 (past the deadline, or the authorizer's lease
/// changing hands) as a problem too. `request` names its body's schema.
fn op(
    summary: &str,
    security: &str,
    ok: &str,
    media: &str,
    body_schema: Value,
    request: Option<&str>,
) -> Value {
    let problem = json!({ "description": "problem", "content": { "application/problem+json": { "schema": schema("Problem") } } });
    let mut o = json!({
        "summary": summary,
        "security": [{ security: [] }],
        "responses": {
            ok: { "description": "success", "content": { media: { "schema": body_schema } } },
            "4XX": problem.clone(),
            "503": problem
        }
    });
    if let Some(name) = request {
        o["requestBody"] =
            json!({ "required": true, "content": { JS: { "schema": schema(name) } } });
    }
    o
}

/// A success that answers 200 when the same request was already done.
fn repeatable(mut op: Value, ok: &str) -> Value {
    let again = op["responses"][ok].clone();
    op["responses"]["200"] = again;
    op
}

fn path(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn query(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema })
}

fn uuid() -> Value {
    json!({ "type": "string", "format": "uuid" })
}

fn object() -> Value {
    json!({ "type": "object" })
}

fn limit(max: i64) -> Value {
    query(
        "limit",
        json!({ "type": "integer", "minimum": 1, "maximum": max }),
    )
}

/// A path item whose operations share `params`.
fn item(params: Vec<Value>, ops: Value) -> Value {
    let mut item = ops;
    item["parameters"] = Value::Array(params);
    item
}

fn app_paths() -> Value {
    let c = path("customer_id", uuid());
    let a = path("account_id", uuid());
    let hal = |name: &str| schema(name);
    let mut transfer = repeatable(
        op(
            "transfer to one of the customer's own accounts (to_account_id), to another customer's account by number (to_account_number) or to another customer by login (to_login). 201: settled in this cell at once (own accounts, or a customer of this cell). 202: the recipient is in another cell or named by login: the money is reserved (out of from_account_id, state pending) and global's transfer service credits the recipient and settles it back: completed, or failed with a reason and the money returned. Follow the self link until the state is not pending. A repeated transfer_id answers 200 with the transfer as it stands (409 when it names another account, amount, currency or recipient)",
            "customer",
            "201",
            HAL,
            hal("Transfer"),
            Some("NewTransfer"),
        ),
        "201",
    );
    transfer["responses"]["202"] = transfer["responses"]["201"].clone();
    json!({
        "/v1/customers/{customer_id}": item(vec![c.clone()], json!({
            "get": op("the customer, with links to accounts, cards and transfers", "customer", "200", HAL, hal("Customer"), None) })),
        "/v1/customers/{customer_id}/accounts": item(vec![c.clone()], json!({
            "get": op("the customer's accounts with balances", "customer", "200", HAL, hal("Accounts"), None) })),
        "/v1/customers/{customer_id}/accounts/{account_id}": item(vec![c.clone(), a.clone(), query("as_of", json!({ "type": "string", "format": "date-time" }))], json!({
            "get": op("one account with its balance (as_of: its balance at a past business time)", "customer", "200", HAL, hal("Account"), None) })),
        "/v1/customers/{customer_id}/accounts/{account_id}/entries": item(vec![c.clone(), a, query("cursor", json!({ "type": "string" })), limit(500)], json!({
            "get": op("account entries, newest first, cursor-paginated", "customer", "200", HAL, hal("Entries"), None) })),
        "/v1/customers/{customer_id}/cards": item(vec![c.clone()], json!({
            "get": op("cards (last four digits), available limit and current bill", "customer", "200", HAL, hal("Cards"), None) })),
        "/v1/customers/{customer_id}/transfers": item(vec![c.clone()], json!({
            "get": op("the customer's transfers, newest first", "customer", "200", HAL, hal("Transfers"), None),
            "post": transfer })),
        "/v1/customers/{customer_id}/transfers/{transfer_id}": item(vec![c, path("transfer_id", uuid())], json!({
            "get": op("one transfer and its state", "customer", "200", HAL, hal("Transfer"), None) })),
    })
}

fn internal_paths() -> Value {
    let c = path("customer_id", uuid());
    let m = path("move_id", uuid());
    let customer_op = |summary: &str, ok: &str, request: &str| {
        repeatable(op(summary, "internal", ok, JS, object(), Some(request)), ok)
    };
    let step = |summary: &str| op(summary, "internal", "200", JS, object(), Some("MoveCall"));
    json!({
        "/internal/v1/customers": { "post": customer_op("create a customer (contract::CreateCustomer), idempotent", "201", "CreateCustomer") },
        "/internal/v1/customers/{customer_id}/cards": item(vec![c.clone()], json!({ "post": customer_op("issue a card (contract::IssueCard), idempotent", "201", "IssueCard") })),
        "/internal/v1/customers/{customer_id}/placement": item(vec![c.clone()], json!({
            "put": op("the customer's placement here, explicitly: active→fenced, fenced→active or moved_out at the same epoch, any→active at a higher one; 409 otherwise", "internal", "200", JS, schema("Placement"), Some("PlacementChange")) })),
        "/internal/v1/customers/{customer_id}/history": item(vec![c.clone(), query("after", json!({ "type": "integer", "format": "int64" })), limit(10_000)], json!({
            "get": op("a consistent page of the customer's history after a version (a move's export)", "internal", "200", JS, object(), None) })),
        "/internal/v1/customers/{customer_id}/digest": item(vec![c.clone()], json!({
            "get": op("what a move compares between the two cells", "internal", "200", JS, object(), None) })),
        "/internal/v1/customers/{customer_id}/drain": item(vec![c.clone()], json!({
            "get": op("whether the source is done with a fenced customer's tail", "internal", "200", JS, object(), None) })),
        "/internal/v1/moves/{move_id}/import": item(vec![m.clone()], json!({
            "post": op("import a page of a customer's history (idempotent)", "internal", "200", JS, object(), Some("ImportBatch")) })),
        "/internal/v1/moves/{move_id}/fence": item(vec![m.clone()], json!({ "post": step("fence the customer for a move") })),
        "/internal/v1/moves/{move_id}/unfence": item(vec![m.clone()], json!({ "post": step("release the fence of an aborted move") })),
        "/internal/v1/moves/{move_id}/moved-out": item(vec![m.clone()], json!({ "post": step("mark the customer moved out (the move flipped)") })),
        "/internal/v1/moves/{move_id}/activate": item(vec![m.clone()], json!({ "post": step("activate an imported customer at the new epoch") })),
        "/internal/v1/moves/{move_id}/purge": item(vec![m], json!({ "post": step("purge a moved-out customer's copy, keeping a marker") })),
        "/internal/v1/stragglers": item(vec![limit(1000)], json!({
            "get": op("dead inbound letters of customers that left this cell", "internal", "200", JS, json!({ "type": "array", "items": object() }), None) })),
        "/internal/v1/stragglers/{id}/forwarded": item(vec![path("id", json!({ "type": "integer", "format": "int64" }))], json!({
            "post": op("mark a straggler as forwarded to the customer's owner", "internal", "200", JS, object(), None) })),
        "/internal/v1/lag": { "get": op("the inbound consumer's lag", "internal", "200", JS, object(), None) },
        "/internal/v1/transfers/{transfer_key}/credit": item(vec![path("transfer_key", uuid())], json!({
            "post": customer_op("global's transfer service credits a transfer (by its bank-wide key, contract::transfer_key) to the account with this number, or to this customer's account in the currency (contract::CreditTransfer), once: a repeat answers 200. 404 when this cell holds no such account or customer (global resolves again), 409 while the customer is being moved, 409 transfer-refused when the key was voided here or credited with other details, 422 when the account is in another currency", "201", "CreditTransfer") })),
        "/internal/v1/transfers/{transfer_key}/void": item(vec![path("transfer_key", uuid())], json!({
            "post": op("global gives up a credit whose outcome it does not know: answers received when the credit is booked here, otherwise records the void (the key is never credited here afterwards) and answers voided; idempotent", "internal", "200", JS, schema("VoidAnswer"), None) })),
        "/internal/v1/transfers/{transfer_id}/deliver": item(vec![path("transfer_id", uuid())], json!({
            "post": op("the recipient was credited: the sender's pending transfer (contract::SettleTransfer names the sender) is delivered and completes; a repeat answers its state again, a transfer returned before is refused (409); 404 when the sender or transfer is not here, 409 while the sender is being moved", "internal", "200", JS, schema("Settled"), Some("SettleTransfer")) })),
        "/internal/v1/transfers/{transfer_id}/return": item(vec![path("transfer_id", uuid())], json!({
            "post": op("the recipient will never be credited: the sender's pending amount goes back to from_account_id and the transfer fails with the reason (required); a repeat answers its state again, a transfer delivered before is refused (409)", "internal", "200", JS, schema("Settled"), Some("SettleTransfer")) })),
    })
}

fn authorizer_paths() -> Value {
    let c = path("customer_id", uuid());
    json!({
        "/internal/v1/authorizations": { "post": op("decide a purchase (contract::AuthorizationRequest); the replica holding the authorizer lease decides, any other forwards to it; 503 while the lease changes hands", "internal", "200", JS, schema("AuthorizationDecision"), Some("AuthorizationRequest")) },
        "/internal/v1/authorizer/customers/{customer_id}": item(vec![c.clone()], json!({
            "get": op("the deciding replica's view of a customer", "internal", "200", JS, object(), None) })),
        "/internal/v1/authorizer/customers/{customer_id}/decisions": item(vec![c.clone()], json!({
            "get": op("the customer's recent decisions (a move carries them over)", "internal", "200", JS, json!({ "type": "array", "items": object() }), None) })),
        "/internal/v1/authorizer/customers/{customer_id}/placement": item(vec![c], json!({
            "post": op("a move's fence, release or activation, as the authorizer keeps it", "internal", "200", JS, object(), Some("AuthorizerPlacement")) })),
        "/internal/v1/authorizer/carried": { "post": op("decisions carried over from a move's source", "internal", "200", JS, object(), Some("CarriedDecisions")) },
    })
}

fn admin_paths() -> Value {
    let card = path("card_id", uuid());
    let consumer = path("name", json!({ "type": "string" }));
    let admin = |summary: &str, body: Value| op(summary, "admin", "200", JS, body, None);
    let dead_letters = [
        limit(1000),
        query(
            "status",
            json!({ "type": "string", "enum": ["dead", "republished", "forwarded"] }),
        ),
    ];
    json!({
        "/admin/v1/dead-letters": item(dead_letters.to_vec(), json!({ "get": admin("dead-lettered messages", schema("Items")) })),
        "/admin/v1/dead-letters/{id}/republish": item(vec![path("id", json!({ "type": "integer", "format": "int64" }))], json!({
            "post": admin("republish one dead letter to its source topic (once: 409 if it was)", object()) })),
        "/admin/v1/dead-letters/republish-all": { "post": admin("republish every dead letter not yet republished", object()) },
        "/admin/v1/cards/{card_id}/block": item(vec![card.clone()], json!({ "post": admin("block a card: the authorizer declines it (card_blocked)", object()) })),
        "/admin/v1/cards/{card_id}/unblock": item(vec![card], json!({ "post": admin("unblock a card", object()) })),
        "/admin/v1/summary": { "get": admin("counts and the trial balance per currency", object()) },
        "/admin/v1/consumers": { "get": admin("the cell's consumers and whether an operator holds them", schema("ConsumerHolds")) },
        "/admin/v1/consumers/{name}/hold": item(vec![consumer], json!({
            "put": admin("hold a consumer: its partitions pause in every replica, the backlog waits in the log", object()),
            "delete": admin("release a held consumer", object()) })),
    })
}

fn probe_paths() -> Value {
    let ready = |d: &str| json!({ "description": d, "content": { JS: { "schema": object() } } });
    json!({
        "/healthz": { "get": { "summary": "liveness", "responses": { "200": ready("alive") } } },
        "/readyz": { "get": { "summary": "readiness: postgres, broker, authorizer replayed", "responses": { "200": ready("ready"), "503": ready("not ready: the checks say why (a report, not a problem)") } } },
        "/metrics": { "get": { "summary": "prometheus metrics", "responses": { "200": { "description": "text format", "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
        "/openapi.json": { "get": { "summary": "this document", "responses": { "200": ready("the document") } } },
    })
}

/// The document.
pub fn document() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Cellbank shard", "version": env!("CARGO_PKG_VERSION") },
        "components": {
            "securitySchemes": {
                "customer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT (EdDSA) issued by global login" },
                "internal": { "type": "http", "scheme": "bearer" },
                "admin": { "type": "http", "scheme": "bearer" }
            },
            "schemas": merged(vec![request_schemas(), answer_schemas()])
        },
        "paths": merged(vec![app_paths(), internal_paths(), authorizer_paths(), admin_paths(), probe_paths()])
    })
}

fn string() -> Value {
    json!({ "type": "string" })
}

fn integer() -> Value {
    json!({ "type": "integer", "format": "int64" })
}

/// An identifier from elsewhere: 1 to 128 characters.
fn short() -> Value {
    json!({ "type": "string", "minLength": 1, "maxLength": 128 })
}

/// A HAL collection: `_embedded.<rel>` holds the items.
fn collection(rel: &str, item: Value) -> Value {
    let embedded = fields(&[(rel, json!({ "type": "array", "items": item }))]);
    fields(&[("_embedded", embedded), ("_links", schema("Links"))])
}

fn request_schemas() -> Value {
    let merchant = fields(&[("name", string()), ("mcc", string()), ("country", string())]);
    let history_event = fields(&[
        ("event_id", string()),
        ("namespace", string()),
        ("epoch", integer()),
        ("version", integer()),
        ("payload", object()),
    ]);
    json!({
        "Problem": { "type": "object", "required": ["type", "title", "status"], "properties": {
            "type": string(), "title": string(), "status": integer(), "detail": string(),
            "errors": { "type": "array", "items": fields(&[("field", string()), ("reason", string())]) },
            "_links": schema("Links") } },
        "Links": { "type": "object", "additionalProperties": fields(&[("href", string())]) },
        "Currency": { "type": "string", "enum": ["BRL", "USD", "EUR", "MXN", "COP"] },
        "NewTransfer": { "type": "object", "required": ["from_account_id", "amount", "currency"],
            "description": "exactly one of to_account_id (own account), to_account_number (any customer's account) or to_login (any customer, by login)", "properties": {
            "transfer_id": uuid(), "from_account_id": uuid(), "to_account_id": uuid(),
            "to_account_number": { "type": "string", "pattern": "^[0-9]{1,34}$" },
            "to_login": { "type": "string", "minLength": 3, "maxLength": 64, "description": "compared trimmed and lower-cased" },
            "amount": { "type": "integer", "minimum": 1, "description": "minor units" },
            "currency": schema("Currency"), "description": { "type": "string", "maxLength": 140 } } },
        "CreditTransfer": { "type": "object", "required": ["amount", "currency"], "additionalProperties": false,
            "description": "exactly one of to_account_number or to_customer_id", "properties": {
            "to_account_number": { "type": "string", "pattern": "^[0-9]{1,34}$" }, "to_customer_id": uuid(),
            "amount": { "type": "integer", "minimum": 1 }, "currency": schema("Currency") } },
        "SettleTransfer": { "type": "object", "required": ["customer_id"], "additionalProperties": false, "properties": {
            "customer_id": uuid(), "reason": { "type": "string", "minLength": 1, "maxLength": 200, "description": "required to return" } } },
        "CreateCustomer": fields(&[("customer_id", uuid()), ("name", json!({ "type": "string", "minLength": 1, "maxLength": 200 })), ("epoch", json!({ "type": "integer", "minimum": 1 })), ("currency", schema("Currency"))]),
        "IssueCard": fields(&[("card_id", uuid()), ("epoch", json!({ "type": "integer", "minimum": 1 })), ("pan_hash", short()), ("last4", json!({ "type": "string", "pattern": "^[0-9]{4}$" })),
            ("credit_limit", json!({ "type": "integer", "minimum": 1 })), ("currency", schema("Currency"))]),
        "PlacementChange": fields(&[("state", json!({ "type": "string", "enum": ["active", "fenced", "moved_out", "importing"] })), ("epoch", json!({ "type": "integer", "format": "int64", "minimum": 1 }))]),
        "AuthorizationRequest": fields(&[("customer_id", uuid()), ("epoch", integer()), ("pan_hash", short()), ("amount", json!({ "type": "integer", "minimum": 1 })),
            ("currency", schema("Currency")), ("merchant", merchant), ("network_reference", short())]),
        "MoveCall": { "type": "object", "required": ["customer_id", "attempt"], "properties": {
            "customer_id": uuid(), "attempt": integer(), "epoch": { "type": "integer", "nullable": true }, "moved_to": string() } },
        "ImportBatch": fields(&[("customer_id", uuid()), ("attempt", integer()), ("events", json!({ "type": "array", "items": history_event }))]),
        "AuthorizerPlacement": fields(&[("state", json!({ "type": "string", "enum": ["fenced", "released", "active"] })), ("epoch", integer())]),
        "CarriedDecisions": { "type": "array", "items": object() },
    })
}

fn answer_schemas() -> Value {
    let links = ("_links", schema("Links"));
    let time = json!({ "type": "string", "format": "date-time" });
    json!({
        "Customer": fields(&[("customer_id", uuid()), ("name", string()), ("epoch", integer()), ("currency", schema("Currency")), links.clone()]),
        "Account": fields(&[("account_id", uuid()), ("kind", string()), ("number", string()), ("currency", schema("Currency")), ("balance", integer()), links.clone()]),
        "Accounts": collection("accounts", schema("Account")),
        "Entries": collection("entries", object()),
        "Cards": collection("cards", object()),
        "Transfer": { "type": "object", "required": ["transfer_id", "from_account_id", "amount", "currency", "state", "created_at"], "properties": {
            "transfer_id": uuid(), "from_account_id": uuid(),
            "to_account_id": { "type": "string", "format": "uuid", "nullable": true, "description": "an own account" },
            "to_account_number": { "type": "string", "nullable": true, "description": "another customer's account" },
            "to_login": { "type": "string", "nullable": true, "description": "another customer, by login" },
            "amount": integer(), "currency": schema("Currency"), "description": string(),
            "state": { "type": "string", "enum": ["pending", "completed", "failed"], "description": "pending until global's transfer service settles a transfer to another cell; failed means the money was returned" },
            "reason": { "type": "string", "nullable": true, "description": "why a failed transfer failed" },
            "created_at": time.clone(), "settled_at": { "type": "string", "format": "date-time", "nullable": true },
            "_links": schema("Links") } },
        "VoidAnswer": fields(&[("transfer_id", uuid()), ("state", json!({ "type": "string", "enum": ["received", "voided"] }))]),
        "Settled": fields(&[("transfer_id", uuid()), ("state", json!({ "type": "string", "enum": ["completed", "failed"] }))]),
        "Transfers": collection("transfers", schema("Transfer")),
        "Placement": fields(&[("customer_id", uuid()), ("state", string()), ("epoch", integer()), ("version", integer())]),
        "AuthorizationDecision": fields(&[("decision", json!({ "type": "string", "enum": ["approved", "declined"] })), ("reason", string()), ("authorization_id", uuid())]),
        "Items": fields(&[("items", json!({ "type": "array", "items": object() }))]),
        "ConsumerHolds": { "type": "array", "items": fields(&[("name", string()), ("held", json!({ "type": "boolean" }))]) },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every route the shard serves is documented, with its path
    /// parameters, a success schema and its problems (4xx and 503).
    #[test]
    fn every_operation_is_complete() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/internal/v1/moves/{move_id}/import",
            "/internal/v1/authorizer/carried",
            "/internal/v1/stragglers/{id}/forwarded",
            "/internal/v1/lag",
            "/admin/v1/consumers/{name}/hold",
        ] {
            assert!(paths.contains_key(path), "{path} is not documented");
        }
        for (path, item) in paths {
            let declared: Vec<&str> = item["parameters"]
                .as_array()
                .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            for name in path.split('{').skip(1).filter_map(|s| s.split('}').next()) {
                assert!(declared.contains(&name), "{path}: {name} is not declared");
            }
            for (method, op) in item.as_object().unwrap() {
                if method == "parameters" || !op["security"].is_array() {
                    continue;
                }
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.contains_key("4XX") && responses.contains_key("503"));
                let ok = responses.keys().find(|c| c.starts_with('2')).unwrap();
                assert!(responses[ok]["content"].is_object(), "{method} {path}");
            }
        }
    }

    /// The consumers list is an array of holds, as the handler answers.
    #[test]
    fn consumers_are_an_array() {
        let doc = document();
        assert_eq!(
            doc["components"]["schemas"]["ConsumerHolds"]["type"],
            "array"
        );
    }
}
