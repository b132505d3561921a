//! The steady mixed load, as partners and apps send it, through global's
//! replicas (picked in turn, the next one tried when a replica refuses the
//! connection, as a load balancer would): single events and batches, card
//! authorizations, app logins that follow their links into the shard.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::record::{Accepted, Approval, Op, Recorder};

#[derive(Clone, Debug, Deserialize)]
pub struct Card {
    pub card_id: Uuid,
    pub pan: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Customer {
    pub customer_id: Uuid,
    pub shard: String,
    pub login: String,
    pub password: String,
    pub account_number: String,
    #[serde(default)]
    pub cards: Vec<Card>,
}

impl Customer {
    /// The shard cell's number (`shard-2` → 2).
    pub fn cell(&self) -> u32 {
        self.shard
            .strip_prefix("shard-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

/// Requests per second of each kind.
#[derive(Clone, Copy, Debug)]
pub struct Rates {
    pub events: f64,
    pub batches: f64,
    pub batch_size: usize,
    pub authorizations: f64,
    pub logins: f64,
}

pub struct World {
    pub client: reqwest::Client,
    pub globals: Vec<String>,
    pub partner_key: String,
    pub customers: Vec<Customer>,
    pub run: String,
    pub rec: Recorder,
    next_replica: AtomicUsize,
    next_id: AtomicU64,
    pub stopping: AtomicBool,
    /// Bounds the requests in flight (an open-loop generator that cannot
    /// queue without end); a tick that finds it full is counted as dropped.
    in_flight: Arc<Semaphore>,
    pub dropped: AtomicU64,
}

/// Most requests the load keeps in flight at once.
const MAX_IN_FLIGHT: usize = 256;

/// Statuses a partner gives up on: the event itself is refused.
fn final_refusal(status: u16) -> bool {
    matches!(status, 400 | 401 | 403 | 404 | 409 | 413 | 422)
}

/// Reasons that come from the card's cell (not global's stand-ins).
pub const CELL_REASONS: &[&str] = &[
    "approved",
    "insufficient_limit",
    "card_blocked",
    "currency_mismatch",
];

impl World {
    pub fn new(
        globals: Vec<String>,
        partner_key: String,
        customers: Vec<Customer>,
        run: String,
    ) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(1))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        Self {
            client,
            globals,
            partner_key,
            customers,
            run,
            rec: Recorder::new(),
            next_replica: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// POSTs to global (a replica in turn; the next when the connection is
    /// refused). `only` pins one replica. Returns the status and the body.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        only: Option<usize>,
    ) -> Result<(u16, Value), String> {
        let n = self.globals.len();
        let first = only.unwrap_or_else(|| self.next_replica.fetch_add(1, Ordering::Relaxed) % n);
        let tries = if only.is_some() { 1 } else { n };
        let mut last = String::new();
        for k in 0..tries {
            let url = format!("{}{path}", self.globals[(first + k) % n]);
            let r = self
                .client
                .post(&url)
                .bearer_auth(&self.partner_key)
                .json(body)
                .send()
                .await;
            match r {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
                    return Ok((status, v));
                }
                Err(e) if e.is_connect() => last = format!("connect: {e}"),
                Err(e) => {
                    return Err(if e.is_timeout() {
                        "timeout".into()
                    } else {
                        e.to_string()
                    })
                }
            }
        }
        Err(last)
    }

    pub fn deposit(&self, id: &str, c: &Customer, amount: i64) -> Value {
        json!({
            "event_id": id, "type": "deposit", "account_number": c.account_number,
            "amount": amount, "currency": "BRL", "occurred_at": chrono::Utc::now().to_rfc3339(),
        })
    }

    /// Sends one deposit as a partner does: the same event id again after a
    /// failure, with back-off, until a 2xx or a refusal (or 6 tries).
    pub async fn send_event(
        &self,
        customer: usize,
        amount: i64,
        only: Option<usize>,
        tries: u32,
    ) -> bool {
        let c = &self.customers[customer];
        let id = format!("chaos-{}-e{}", self.run, self.next_id());
        let body = self.deposit(&id, c, amount);
        self.rec.sent(&id, customer, amount);
        let mut why = String::new();
        for attempt in 0..tries {
            let sent = Instant::now();
            let r = self.post("/v1/events", &body, only).await;
            let ok = matches!(&r, Ok((s, _)) if (200..300).contains(s));
            self.rec.sample(Op::Event, c.cell(), sent, ok);
            match r {
                Ok((s, _)) if ok => {
                    let _ = s;
                    self.rec.accept(
                        id,
                        Accepted {
                            cell: c.cell(),
                            amount,
                        },
                    );
                    return true;
                }
                Ok((s, _)) if final_refusal(s) => {
                    self.rec.give_up(format!("refused {s}"));
                    return false;
                }
                Ok((s, _)) => why = format!("status {s}"),
                Err(e) => why = e,
            }
            if attempt + 1 == tries {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(3))).await;
        }
        self.rec.give_up(format!(
            "gave up after {tries} tries ({})",
            why.split(':').next().unwrap_or("")
        ));
        false
    }

    /// Sends a batch of deposits; the items not accepted go again (same ids).
    pub async fn send_batch(&self, items: Vec<(usize, i64)>) {
        let mut pending: Vec<(String, usize, i64)> = items
            .into_iter()
            .map(|(c, a)| (format!("chaos-{}-b{}", self.run, self.next_id()), c, a))
            .collect();
        for (id, c, a) in &pending {
            self.rec.sent(id, *c, *a);
        }
        for attempt in 0..6u32 {
            let events: Vec<Value> = pending
                .iter()
                .map(|(id, c, a)| self.deposit(id, &self.customers[*c], *a))
                .collect();
            let sent = Instant::now();
            let r = self
                .post("/v1/events/batch", &json!({ "events": events }), None)
                .await;
            let mut retry = Vec::new();
            let mut refused = false;
            if let Ok((200, v)) = &r {
                let results = v["results"].as_array().cloned().unwrap_or_default();
                for (i, item) in pending.iter().enumerate() {
                    let status = results
                        .get(i)
                        .and_then(|x| x["status"].as_u64())
                        .unwrap_or(0) as u16;
                    if (200..300).contains(&status) {
                        let (id, c, a) = item.clone();
                        let cell = self.customers[c].cell();
                        self.rec.accept(id, Accepted { cell, amount: a });
                    } else if final_refusal(status) {
                        refused = true;
                        self.rec.give_up(format!("refused {status}"));
                    } else {
                        retry.push(item.clone());
                    }
                }
            } else if let Ok((s, _)) = &r {
                if final_refusal(*s) {
                    self.rec.give_up(format!("batch refused {s}"));
                    return;
                }
                retry = pending.clone();
            } else {
                retry = pending.clone();
            }
            self.rec
                .sample(Op::Batch, 0, sent, retry.is_empty() && !refused);
            if retry.is_empty() {
                return;
            }
            pending = retry;
            tokio::time::sleep(Duration::from_millis(250 << attempt.min(3))).await;
        }
        for _ in &pending {
            self.rec.give_up("batch item: gave up after 6 tries".into());
        }
    }

    /// One authorization; true when the card's cell answered it.
    pub async fn authorize(&self, customer: usize, amount: i64, only: Option<usize>) -> bool {
        let c = &self.customers[customer];
        let Some(card) = c.cards.first() else {
            return false;
        };
        let reference = format!("chaos-{}-a{}", self.run, self.next_id());
        let body = json!({
            "pan": card.pan, "amount": amount, "currency": "BRL", "network_reference": reference,
            "merchant": {"name": "Chaos Padaria", "mcc": "5411", "country": "BR"},
        });
        let sent = Instant::now();
        let r = self.post("/v1/authorizations", &body, only).await;
        let (ok, approved) = match &r {
            Ok((200, v)) => {
                let reason = v["reason"].as_str().unwrap_or("");
                (CELL_REASONS.contains(&reason), reason == "approved")
            }
            _ => (false, false),
        };
        self.rec.sample(Op::Authorization, c.cell(), sent, ok);
        if approved {
            let v = &r.as_ref().unwrap().1;
            let authorization_id = v["authorization_id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            self.rec.approve(Approval {
                card_id: card.card_id,
                reference,
                authorization_id,
                amount,
            });
        }
        ok
    }

    /// An app's login through global, then the customer link into its shard.
    pub async fn login_follow(&self, customer: usize, only: Option<usize>) -> bool {
        let c = &self.customers[customer];
        let sent = Instant::now();
        let ok = self.try_login_follow(c, only).await;
        self.rec.sample(Op::Login, c.cell(), sent, ok);
        ok
    }

    async fn try_login_follow(&self, c: &Customer, only: Option<usize>) -> bool {
        let Ok((200, doc)) = self
            .post(
                "/v1/login",
                &json!({"login": c.login, "password": c.password}),
                only,
            )
            .await
        else {
            return false;
        };
        let (Some(token), Some(href)) = (
            doc["access_token"].as_str(),
            doc["_links"]["accounts"]["href"].as_str(),
        ) else {
            return false;
        };
        matches!(self.client.get(href).bearer_auth(token).send().await, Ok(r) if r.status().as_u16() == 200)
    }

    /// Runs one kind of request at `rate` per second until stopped; each
    /// tick is its own task, within the in-flight bound.
    pub async fn drive(self: Arc<Self>, op: Op, rate: f64, rates: Rates, seed: u64) {
        if rate <= 0.0 {
            return;
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while !self.stopping.load(Ordering::Relaxed) {
            tick.tick().await;
            let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            let n = self.customers.len();
            let customer = rng.gen_range(0..n);
            let amount = rng.gen_range(100..=5_000);
            let batch: Vec<(usize, i64)> = (0..rates.batch_size)
                .map(|_| (rng.gen_range(0..n), rng.gen_range(100..=1_000)))
                .collect();
            let w = self.clone();
            tokio::spawn(async move {
                match op {
                    Op::Event => drop(w.send_event(customer, amount / 5, None, 6).await),
                    Op::Batch => w.send_batch(batch).await,
                    Op::Authorization => drop(w.authorize(customer, amount, None).await),
                    Op::Login => drop(w.login_follow(customer, None).await),
                }
                drop(permit);
            });
        }
    }

    /// Waits until every request in flight has finished (retries included).
    pub async fn drain(&self) {
        let _all = self.in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    }

    /// The customers of shard cell `cell`.
    pub fn of_cell(&self, cell: u32) -> Vec<usize> {
        (0..self.customers.len())
            .filter(|i| self.customers[*i].cell() == cell)
            .collect()
    }
}
