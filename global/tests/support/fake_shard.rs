//! A test peer that implements the shard's internal API from the contract
//! (customers, cards, authorizations), a canned admin API (dead letters) and
//! a readiness probe over a real socket, so the global
//! tier's calls to a shard can be exercised without the shard crate. The real
//! shard is exercised end to end by the platform's e2e test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use cellbank_shared::contract::{
    AuthorizationDecision, AuthorizationRequest, CardIssued, CreateCustomer, CustomerCreated,
    Decision, IssueCard,
};
use cellbank_shared::ids::CustomerId;

#[derive(Default)]
struct Books {
    customers: HashMap<CustomerId, CustomerCreated>,
    cards: HashMap<String, (CustomerId, IssueCard)>,
    authorizations: Vec<AuthorizationRequest>,
}

#[derive(Clone)]
struct Peer {
    number: u32,
    token: String,
    admin_token: String,
    seq: Arc<AtomicU64>,
    auth_delay_ms: Arc<AtomicU64>,
    /// Authorizations below this epoch are answered `stale_epoch`.
    min_epoch: Arc<AtomicU64>,
    /// Creating customers answers 503 while set.
    refuse_creates: Arc<std::sync::atomic::AtomicBool>,
    /// Creating customers answers 422 (the shard refuses them) while set.
    reject_creates: Arc<std::sync::atomic::AtomicBool>,
    /// Creating a customer answers only after this long.
    create_delay_ms: Arc<AtomicU64>,
    books: Arc<Mutex<Books>>,
}

/// A running fake shard; stops when dropped.
pub struct FakeShard {
    pub url: String,
    peer: Peer,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeShard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeShard {
    /// Serves shard `number`'s internal API, requiring `internal_token`.
    pub async fn start(number: u32, internal_token: &str) -> FakeShard {
        let peer = Peer {
            number,
            token: internal_token.to_owned(),
            admin_token: super::shard_admin_token(number),
            seq: Arc::new(AtomicU64::new(0)),
            auth_delay_ms: Arc::new(AtomicU64::new(0)),
            min_epoch: Arc::new(AtomicU64::new(0)),
            refuse_creates: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            reject_creates: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            create_delay_ms: Arc::new(AtomicU64::new(0)),
            books: Arc::new(Mutex::new(Books::default())),
        };
        let app = Router::new()
            .route("/internal/v1/customers", post(create_customer))
            .route(
                "/internal/v1/customers/{customer_id}/cards",
                post(issue_card),
            )
            .route("/internal/v1/authorizations", post(authorize))
            .route(
                "/readyz",
                get(|| async { Json(serde_json::json!({"status": "ready"})) }),
            )
            .route("/admin/v1/dead-letters", get(dead_letters))
            .route("/admin/v1/dead-letters/republish-all", post(republish_all))
            .route("/admin/v1/dead-letters/{id}/republish", post(republish_one))
            .with_state(peer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake shard");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake shard serves");
        });
        FakeShard { url, peer, task }
    }

    /// Makes the authorizer answer only after `delay`.
    pub fn delay_authorizations(&self, delay: Duration) {
        self.peer
            .auth_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answers authorizations below `epoch` with `stale_epoch`, as a shard
    /// whose customer's placement moved on does.
    pub fn require_epoch(&self, epoch: u64) {
        self.peer.min_epoch.store(epoch, Ordering::SeqCst);
    }

    /// Makes customer creation fail with 503 (a shard in trouble) or work.
    pub fn refuse_creates(&self, refuse: bool) {
        self.peer.refuse_creates.store(refuse, Ordering::SeqCst);
    }

    /// Makes customer creation answer 422 (the shard will not have them).
    pub fn reject_creates(&self, reject: bool) {
        self.peer.reject_creates.store(reject, Ordering::SeqCst);
    }

    /// Makes customer creation answer only after `delay`.
    pub fn delay_creates(&self, delay: Duration) {
        self.peer
            .create_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    pub fn customers(&self) -> Vec<CustomerId> {
        self.peer
            .books
            .lock()
            .unwrap()
            .customers
            .keys()
            .copied()
            .collect()
    }

    /// Card hashes this shard was given (never PANs).
    pub fn card_hashes(&self) -> Vec<String> {
        self.peer
            .books
            .lock()
            .unwrap()
            .cards
            .keys()
            .cloned()
            .collect()
    }

    pub fn authorizations(&self) -> Vec<AuthorizationRequest> {
        self.peer.books.lock().unwrap().authorizations.clone()
    }
}

fn authorized(peer: &Peer, headers: &HeaderMap) -> bool {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == format!("Bearer {}", peer.token))
        .unwrap_or(false);
    ok
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "bad internal token").into_response()
}

async fn create_customer(
    State(peer): State<Peer>,
    headers: HeaderMap,
    Json(body): Json<CreateCustomer>,
) -> Response {
    if !authorized(&peer, &headers) {
        return unauthorized();
    }
    if peer.refuse_creates.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "busy").into_response();
    }
    if peer.reject_creates.load(Ordering::SeqCst) {
        return (StatusCode::UNPROCESSABLE_ENTITY, "no").into_response();
    }
    let delay = peer.create_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut books = peer.books.lock().unwrap();
    let created = books
        .customers
        .entry(body.customer_id)
        .or_insert_with(|| CustomerCreated {
            customer_id: body.customer_id,
            account_id: uuid::Uuid::new_v4(),
            account_number: format!(
                "{:02}{:08}",
                peer.number,
                peer.seq.fetch_add(1, Ordering::SeqCst) + 1
            ),
        })
        .clone();
    (StatusCode::CREATED, Json(created)).into_response()
}

async fn issue_card(
    State(peer): State<Peer>,
    headers: HeaderMap,
    Path(customer_id): Path<CustomerId>,
    Json(body): Json<IssueCard>,
) -> Response {
    if !authorized(&peer, &headers) {
        return unauthorized();
    }
    let mut books = peer.books.lock().unwrap();
    if !books.customers.contains_key(&customer_id) {
        return (StatusCode::NOT_FOUND, "unknown customer").into_response();
    }
    let issued = CardIssued {
        card_id: body.card_id,
        last4: body.last4.clone(),
        credit_limit: body.credit_limit,
        currency: body.currency,
    };
    books
        .cards
        .insert(body.pan_hash.clone(), (customer_id, body));
    (StatusCode::CREATED, Json(issued)).into_response()
}

async fn authorize(
    State(peer): State<Peer>,
    headers: HeaderMap,
    Json(body): Json<AuthorizationRequest>,
) -> Response {
    if !authorized(&peer, &headers) {
        return unauthorized();
    }
    let delay = peer.auth_delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let mut books = peer.books.lock().unwrap();
    books.authorizations.push(body.clone());
    let decision = match books.cards.get(&body.pan_hash) {
        _ if (body.epoch.0 as u64) < peer.min_epoch.load(Ordering::SeqCst) => {
            (Decision::Declined, "stale_epoch")
        }
        None => (Decision::Declined, "unknown_card"),
        Some((_, card)) if body.amount > card.credit_limit => {
            (Decision::Declined, "insufficient_limit")
        }
        Some(_) => (Decision::Approved, "approved"),
    };
    Json(AuthorizationDecision {
        decision: decision.0,
        reason: decision.1.to_owned(),
        authorization_id: uuid::Uuid::now_v7(),
    })
    .into_response()
}

/// Two canned dead letters, behind the admin token.
fn admin(peer: &Peer, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v == format!("Bearer {}", peer.admin_token))
        .unwrap_or(false)
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn dead_letters(
    State(peer): State<Peer>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Response {
    if !admin(&peer, &headers) {
        return unauthorized();
    }
    let items: Vec<serde_json::Value> = ["dl-1", "dl-2"]
        .iter()
        .take(q.limit.unwrap_or(50))
        .map(|id| serde_json::json!({"id": id, "source_topic": "cellbank.inbound", "error": "stale epoch", "status": "open"}))
        .collect();
    Json(serde_json::json!({ "items": items })).into_response()
}

async fn republish_one(
    State(peer): State<Peer>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if !admin(&peer, &headers) {
        return unauthorized();
    }
    if id != "dl-1" && id != "dl-2" {
        return (StatusCode::NOT_FOUND, "no such dead letter").into_response();
    }
    Json(serde_json::json!({"republished": 1})).into_response()
}

async fn republish_all(State(peer): State<Peer>, headers: HeaderMap) -> Response {
    if !admin(&peer, &headers) {
        return unauthorized();
    }
    Json(serde_json::json!({"republished": 2})).into_response()
}
