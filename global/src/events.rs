//! Routing external events: each event is validated, its owner looked up
//! (card or account number), wrapped in the shared envelope and produced to
//! the owning shard's inbound topic, answered only once the broker
//! acknowledged it. The batch path does the same for up to 1,000 events in
//! one round trip, a bounded number at a time. Only partners with the
//! `events` scope may send events, each within its rate and its own
//! idempotency namespace; fields outside the contract are refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use cellbank_shared::contract::{RoutedEvent, EVENT_TYPES, MAX_FUTURE};
use cellbank_shared::envelope::Envelope;
use cellbank_shared::ids::{EventId, ShardId};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::pan::{Pan, PanHasher};
use cellbank_shared::problem::Problem;

use futures::StreamExt as _;

use crate::directory::{IdentifierKind, Shard};
use crate::error::ApiError;
use crate::metrics;
use crate::partners::extract::PartnerCaller;
use crate::partners::Scope;
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

/// Most events one batch may carry.
pub const MAX_BATCH: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/events", post(route_one))
        .route("/v1/events/batch", post(route_batch))
}

/// A validated external event, ready to be addressed.
#[derive(Debug)]
pub struct Inbound {
    pub event_id: EventId,
    pub event_type: String,
    pub identifier: (IdentifierKind, String),
    pub occurred_at: DateTime<Utc>,
    pub payload: RoutedEvent,
}

const KNOWN: &[&str] = &[
    "event_id",
    "type",
    "account_number",
    "pan",
    "amount",
    "currency",
    "occurred_at",
];
const RESERVED: &[&str] = &["card_hash", "card_last4", "customer_id", "epoch"];
/// Type-specific fields the contract defines (see the shard's event rules).
const TYPE_SPECIFIC: &[&str] = &["card_id", "network_reference"];

/// A refused field, named only when its name cannot be a submitted secret
/// (a short lowercase identifier); otherwise the event itself is named.
fn unknown_field(obj: &Map<String, Value>, prefix: &str) -> Option<Problem> {
    let name = obj
        .keys()
        .find(|k| !KNOWN.contains(&k.as_str()) && !TYPE_SPECIFIC.contains(&k.as_str()))?;
    let nameable = name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
        && name.bytes().filter(u8::is_ascii_digit).count() < 4;
    Some(if nameable {
        Problem::invalid(format!("{prefix}{name}"), "is not a field of events")
    } else {
        Problem::invalid(
            not_an_object(prefix).errors[0].field.clone(),
            "holds a field that is not part of the event contract",
        )
    })
}

fn text<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    field: &str,
) -> Result<Option<&'a str>, Problem> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Problem::invalid(
            format!("{prefix}{field}"),
            "must be a string",
        )),
    }
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    field: &str,
) -> Result<&'a str, Problem> {
    text(obj, prefix, field)?
        .ok_or_else(|| Problem::invalid(format!("{prefix}{field}"), "is required"))
}

/// Validates one event; `prefix` names its place in a batch (`events[3].`).
pub fn parse_event(value: Value, prefix: &str, hasher: &PanHasher) -> Result<Inbound, Problem> {
    let Value::Object(mut obj) = value else {
        return Err(not_an_object(prefix));
    };
    let f = |name: &str| format!("{prefix}{name}");
    let event_id = EventId::parse(required(&obj, prefix, "event_id")?)
        .map_err(|e| Problem::invalid(f("event_id"), e.to_string()))?;
    let event_type = event_type(&obj, prefix)?;
    let currency: Currency = required(&obj, prefix, "currency")?
        .parse()
        .map_err(|e: cellbank_shared::money::MoneyError| Problem::bad_money(f("currency"), &e))?;
    let amount = amount(&obj, prefix)?;
    Money::positive(amount, currency).map_err(|e| Problem::bad_money(f("amount"), &e))?;
    let occurred_at = occurred_at(&obj, prefix)?;
    let account_number = text(&obj, prefix, "account_number")?.map(str::to_owned);
    let pan = text(&obj, prefix, "pan")?;
    let owner = owner(account_number.as_deref(), pan, prefix, hasher)?;
    if let Some(r) = RESERVED.iter().find(|r| obj.contains_key(**r)) {
        return Err(Problem::invalid(f(r), "is reserved and may not be sent"));
    }
    if let Some(p) = unknown_field(&obj, prefix) {
        return Err(p);
    }
    type_specific(&obj, prefix, &event_type)?;
    for k in KNOWN {
        obj.remove(*k);
    }
    Ok(Inbound {
        event_id,
        event_type,
        identifier: owner.identifier,
        occurred_at,
        payload: RoutedEvent {
            amount,
            currency,
            account_number: account_number.map(|a| a.trim().to_owned()),
            card_hash: owner.card_hash,
            card_last4: owner.card_last4,
            extra: obj,
        },
    })
}

/// When it happened: an RFC 3339 time at most [`MAX_FUTURE`] ahead (the
/// shard would dead-letter a later one).
fn occurred_at(obj: &Map<String, Value>, prefix: &str) -> Result<DateTime<Utc>, Problem> {
    let field = format!("{prefix}occurred_at");
    let at = DateTime::parse_from_rfc3339(required(obj, prefix, "occurred_at")?)
        .map_err(|_| Problem::invalid(&field, "must be an RFC 3339 timestamp"))?
        .with_timezone(&Utc);
    if at > Utc::now() + MAX_FUTURE {
        return Err(Problem::invalid(
            field,
            "must be at most 5 minutes in the future",
        ));
    }
    Ok(at)
}

/// The type-specific fields, as the shard reads them: a `card_id` is a
/// uuid, a `network_reference` 1 to 128 characters, and a reversal names
/// the authorization it reverses. Global refuses what the shard would
/// dead-letter, so a 202 means the event can be applied.
fn type_specific(obj: &Map<String, Value>, prefix: &str, event_type: &str) -> Result<(), Problem> {
    let f = |name: &str| format!("{prefix}{name}");
    if let Some(id) = text(obj, prefix, "card_id")? {
        uuid::Uuid::parse_str(id).map_err(|_| Problem::invalid(f("card_id"), "must be a uuid"))?;
    }
    match text(obj, prefix, "network_reference")? {
        Some(r) if r.is_empty() || r.len() > 128 => Err(Problem::invalid(
            f("network_reference"),
            "must be 1 to 128 characters",
        )),
        None if event_type == "authorization_reversed" => Err(Problem::invalid(
            f("network_reference"),
            "is required for authorization_reversed",
        )),
        _ => Ok(()),
    }
}

/// An event that is not a JSON object, named by its place in the request.
fn not_an_object(prefix: &str) -> Problem {
    let field = if prefix.is_empty() {
        "body".to_owned()
    } else {
        prefix.trim_end_matches('.').to_owned()
    };
    Problem::invalid(field, "must be a JSON object")
}

fn event_type(obj: &Map<String, Value>, prefix: &str) -> Result<String, Problem> {
    let event_type = required(obj, prefix, "type")?;
    if !EVENT_TYPES.contains(&event_type) {
        return Err(Problem::invalid(
            format!("{prefix}type"),
            format!(
                "unknown event type; expected one of {}",
                EVENT_TYPES.join(", ")
            ),
        ));
    }
    Ok(event_type.to_owned())
}

/// The amount in integer minor units (its sign is checked with the currency).
fn amount(obj: &Map<String, Value>, prefix: &str) -> Result<i64, Problem> {
    let field = format!("{prefix}amount");
    match obj.get("amount") {
        None | Some(Value::Null) => Err(Problem::invalid(field, "is required")),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
            Problem::invalid(
                field,
                "must be an integer number of minor units within range",
            )
        }),
        Some(_) => Err(Problem::invalid(
            field,
            "must be an integer number of minor units",
        )),
    }
}

/// Who an event is addressed to, and what of the card the shard may see.
struct Owner {
    identifier: (IdentifierKind, String),
    card_hash: Option<String>,
    card_last4: Option<String>,
}

/// Exactly one of an account number or a PAN; a PAN is replaced by its hash.
fn owner(
    account_number: Option<&str>,
    pan: Option<&str>,
    prefix: &str,
    hasher: &PanHasher,
) -> Result<Owner, Problem> {
    let f = |name: &str| format!("{prefix}{name}");
    match (account_number, pan) {
        (Some(a), None) => {
            let a = a.trim();
            if a.is_empty() || a.len() > 34 || !a.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(Problem::invalid(
                    f("account_number"),
                    "must be 1 to 34 letters or digits",
                ));
            }
            Ok(Owner {
                identifier: (IdentifierKind::Account, a.to_owned()),
                card_hash: None,
                card_last4: None,
            })
        }
        (None, Some(p)) => {
            let pan = Pan::parse(p).map_err(|e| Problem::invalid(f("pan"), e.to_string()))?;
            let hash = hasher.hash(&pan);
            Ok(Owner {
                identifier: (IdentifierKind::Card, hash.clone()),
                card_hash: Some(hash),
                card_last4: Some(pan.last4().to_owned()),
            })
        }
        _ => Err(Problem::invalid(
            f("account_number"),
            "exactly one of account_number or pan is required",
        )),
    }
}

/// The caller's correlation id, or the request id, or a new one.
fn correlation_id(headers: &HeaderMap) -> String {
    ["x-correlation-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Looks up the owner and envelopes the event (in the partner's namespace)
/// for its shard.
async fn address(
    state: &AppState,
    ev: Inbound,
    correlation_id: String,
    namespace: &str,
) -> Result<(Arc<Shard>, Envelope), ApiError> {
    let (kind, value) = &ev.identifier;
    let mut placement = state.directory.resolve(*kind, value).await?;
    if placement.state == "frozen" {
        // A move's cutover: the event waits for the flip, then goes to
        // whichever cell owns the customer.
        let until = tokio::time::Instant::now() + state.settings.moves.hold();
        placement = state
            .directory
            .unfrozen(placement.customer_id, until)
            .await?
            .ok_or_else(|| {
                Problem::unavailable("the customer is being moved between shards; retry", 1)
            })?;
    }
    let span = tracing::Span::current();
    span.record(
        "customer_id",
        tracing::field::display(&placement.customer_id),
    );
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    let shard = state.directory.shard(&placement.shard_id).await?;
    let env = Envelope {
        event_id: ev.event_id,
        customer_id: placement.customer_id,
        epoch: placement.epoch,
        event_type: ev.event_type,
        occurred_at: ev.occurred_at,
        accepted_at: Utc::now(),
        correlation_id,
        namespace: Some(namespace.to_owned()),
        payload: serde_json::to_value(&ev.payload).map_err(anyhow::Error::from)?,
    };
    Ok((shard, env))
}

/// Addresses the event and produces it; returns the shard.
async fn route(
    state: &AppState,
    ev: Inbound,
    correlation_id: String,
    namespace: &str,
) -> Result<ShardId, ApiError> {
    let (shard, env) = address(state, ev, correlation_id, namespace).await?;
    state.cell_client.produce(&shard, &env).await?;
    Ok(shard.id.clone())
}

/// Records onto the request's span (customer, shard); no span of its own.
async fn route_one(
    State(state): State<AppState>,
    partner: PartnerCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    state.partners.admit(&partner.0, Scope::Events, 1)?;
    let ev = parse_event(body, "", &state.pan_hasher)?;
    let event_id = ev.event_id.clone();
    let shard = route(&state, ev, correlation_id(&headers), &partner.namespace()).await?;
    metrics::observe_routing("event", started.elapsed().as_secs_f64());
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "event_id": event_id,
            "status": "accepted",
            "shard": shard,
        })),
    )
        .into_response())
}

/// Looks up to `routing.batch_lookup_concurrency` owners at once, so one
/// batch cannot flood the directory; then produces each shard's events as
/// one batch ([`CellClient::produce_batch`]). Answers in the batch's order.
async fn route_batch(
    State(state): State<AppState>,
    partner: PartnerCaller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let events = batch_events(body)?;
    state
        .partners
        .admit(&partner.0, Scope::Events, events.len() as u32)?;
    let correlation = correlation_id(&headers);
    let namespace = partner.namespace();
    let lookups = events
        .into_iter()
        .enumerate()
        .map(|(i, v)| address_item(&state, i, v, &correlation, &namespace));
    let addressed: Vec<Result<(Arc<Shard>, Envelope), ApiError>> = futures::stream::iter(lookups)
        .buffered(state.settings.routing.batch_lookup_concurrency)
        .collect()
        .await;
    let routed = produce_by_shard(&state, addressed).await;
    let results: Vec<Value> = routed
        .into_iter()
        .enumerate()
        .map(|(i, r)| line(i, r))
        .collect();
    let accepted = results.iter().filter(|r| r["status"] == 202).count();
    metrics::observe_routing("batch", started.elapsed().as_secs_f64());
    Ok(Json(serde_json::json!({
        "accepted": accepted,
        "rejected": results.len() - accepted,
        "results": results,
    }))
    .into_response())
}

/// One shard's part of a batch: the shard, the events' places in the
/// batch, their envelopes.
type ShardBatch = (Arc<Shard>, Vec<usize>, Vec<Envelope>);

/// Produces the addressed events, one batch per shard, the shards at once;
/// answers each event's outcome in the order given.
async fn produce_by_shard(
    state: &AppState,
    addressed: Vec<Result<(Arc<Shard>, Envelope), ApiError>>,
) -> Vec<Result<(EventId, ShardId), ApiError>> {
    let mut outcomes: Vec<Option<Result<(EventId, ShardId), ApiError>>> =
        Vec::with_capacity(addressed.len());
    let mut by_shard: HashMap<ShardId, ShardBatch> = HashMap::new();
    for (i, a) in addressed.into_iter().enumerate() {
        match a {
            Ok((shard, env)) => {
                let group = by_shard
                    .entry(shard.id.clone())
                    .or_insert_with(|| (shard, Vec::new(), Vec::new()));
                group.1.push(i);
                group.2.push(env);
                outcomes.push(None);
            }
            Err(e) => outcomes.push(Some(Err(e))),
        }
    }
    let sends = by_shard.into_values().map(|(shard, at, envs)| async move {
        let acks = state.cell_client.produce_batch(&shard, &envs).await;
        let ids = envs.into_iter().map(|e| e.event_id);
        let done = ids
            .zip(acks)
            .map(|(id, ack)| ack.map(|()| (id, shard.id.clone())).map_err(ApiError::from));
        at.into_iter().zip(done).collect::<Vec<_>>()
    });
    for (i, outcome) in futures::future::join_all(sends).await.into_iter().flatten() {
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every addressed event was produced"))
        .collect()
}

/// The `events` array of a batch body, between 1 and [`MAX_BATCH`] long.
pub fn batch_events(body: Value) -> Result<Vec<Value>, Problem> {
    let Value::Object(mut obj) = body else {
        return Err(Problem::invalid(
            "body",
            "must be an object with an `events` array",
        ));
    };
    let events = match obj.remove("events") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(Problem::invalid("events", "must be an array")),
        None => return Err(Problem::invalid("events", "is required")),
    };
    if events.is_empty() {
        return Err(Problem::invalid("events", "must hold at least one event"));
    }
    if events.len() > MAX_BATCH {
        return Err(Problem::invalid(
            "events",
            format!(
                "holds {} events; at most {MAX_BATCH} are allowed per batch",
                events.len()
            ),
        ));
    }
    Ok(events)
}

/// Validates and addresses the `i`th event of a batch.
async fn address_item(
    state: &AppState,
    i: usize,
    v: Value,
    correlation: &str,
    namespace: &str,
) -> Result<(Arc<Shard>, Envelope), ApiError> {
    let ev = parse_event(v, &format!("events[{i}]."), &state.pan_hasher)?;
    address(state, ev, correlation.to_owned(), namespace).await
}

/// The `i`th line of a batch's results, a problem included when it failed.
fn line(i: usize, outcome: Result<(EventId, ShardId), ApiError>) -> Value {
    match outcome {
        Ok((event_id, shard)) => serde_json::json!({
            "index": i, "status": 202, "event_id": event_id, "shard": shard,
        }),
        Err(e) => {
            let p = e.into_problem();
            let mut item = serde_json::json!({ "index": i, "status": p.status, "problem": p });
            if let Some(secs) = p.retry_after {
                item["retry_after"] = secs.into();
            }
            item
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> PanHasher {
        PanHasher::new(b"0123456789abcdef")
    }

    fn base() -> Value {
        serde_json::json!({
            "event_id": "e-1", "type": "deposit", "account_number": "0100000001",
            "amount": 250, "currency": "BRL", "occurred_at": "2026-11-28T12:00:00Z",
            "memo": {"note": "kept"},
        })
    }

    #[test]
    fn refuses_fields_outside_the_contract_without_echoing_them() {
        let p = parse_event(base(), "", &hasher()).unwrap_err();
        assert_eq!(p.errors[0].field, "memo");
        let mut v = base();
        v.as_object_mut().unwrap().remove("memo");
        v["4111111111111111"] = 1.into();
        let p = parse_event(v, "events[2].", &hasher()).unwrap_err();
        assert_eq!(p.errors[0].field, "events[2]");
        assert!(!serde_json::to_string(&p).unwrap().contains("4111"));
    }

    #[test]
    fn keeps_type_specific_fields_and_drops_known_ones() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("memo");
        v["network_reference"] = "ref-1".into();
        let ev = parse_event(v, "", &hasher()).unwrap();
        assert_eq!(
            ev.identifier,
            (IdentifierKind::Account, "0100000001".into())
        );
        assert_eq!(ev.payload.amount, 250);
        let payload = serde_json::to_value(&ev.payload).unwrap();
        assert_eq!(payload["network_reference"], "ref-1");
        assert!(payload.get("event_id").is_none());
        assert!(payload.get("occurred_at").is_none());
    }

    #[test]
    fn replaces_the_pan_by_its_hash() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("memo");
        v.as_object_mut().unwrap().remove("account_number");
        v["pan"] = "4111 1111 1111 1111".into();
        let ev = parse_event(v, "", &hasher()).unwrap();
        let hash = hasher().hash(&Pan::parse("4111111111111111").unwrap());
        assert_eq!(ev.identifier, (IdentifierKind::Card, hash.clone()));
        let payload = serde_json::to_string(&ev.payload).unwrap();
        assert!(!payload.contains("4111"), "{payload}");
        assert_eq!(ev.payload.card_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(ev.payload.card_last4.as_deref(), Some("1111"));
    }

    #[test]
    fn names_the_field_with_its_batch_position() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("memo");
        v["amount"] = (-1).into();
        let p = parse_event(v, "events[7].", &hasher()).unwrap_err();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors[0].field, "events[7].amount");
        let p = parse_event(serde_json::json!(3), "events[2].", &hasher()).unwrap_err();
        assert_eq!(p.errors[0].field, "events[2]");
    }

    /// What the shard would dead-letter is refused here: a 202 promises the
    /// event can be applied (fuzz/ holds the parser to this against the
    /// shard's reading of arbitrary payloads).
    #[test]
    fn refuses_what_the_shard_would_dead_letter() {
        let cases = [
            (
                serde_json::json!({"card_id": "not-a-uuid"}),
                "card_id",
                "deposit",
            ),
            (serde_json::json!({"card_id": 7}), "card_id", "deposit"),
            (
                serde_json::json!({"network_reference": ""}),
                "network_reference",
                "deposit",
            ),
            (
                serde_json::json!({"network_reference": "r".repeat(129)}),
                "network_reference",
                "purchase_settled",
            ),
            (
                serde_json::json!({}),
                "network_reference",
                "authorization_reversed",
            ),
            (
                serde_json::json!({"occurred_at": "9999-01-01T00:00:00Z"}),
                "occurred_at",
                "deposit",
            ),
        ];
        for (patch, field, event_type) in cases {
            let mut v = base();
            v.as_object_mut().unwrap().remove("memo");
            v["type"] = event_type.into();
            for (k, x) in patch.as_object().unwrap() {
                v[k] = x.clone();
            }
            let p = parse_event(v, "events[1].", &hasher()).unwrap_err();
            assert_eq!(p.errors[0].field, format!("events[1].{field}"), "{patch}");
        }
        let mut v = base();
        v.as_object_mut().unwrap().remove("memo");
        v["type"] = "authorization_reversed".into();
        v["network_reference"] = "ref-1".into();
        v["card_id"] = "0190a0b0-0000-7000-8000-000000000001".into();
        v["occurred_at"] = (Utc::now() + chrono::Duration::minutes(4))
            .to_rfc3339()
            .into();
        assert!(parse_event(v, "", &hasher()).is_ok());
    }
}
