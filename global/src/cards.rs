//! Card issuing: a customer issues a card to themselves (their own access
//! token from login), or the back office does (the admin token). Global
//! generates the PAN and only ever keeps its keyed hash; the limit comes from
//! the credit policy, never from the request.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde_json::Value;

use cellbank_shared::access::bearer;
use cellbank_shared::contract::{CardIssued, IssueCard};
use cellbank_shared::ids::CustomerId;
use cellbank_shared::money::Currency;
use cellbank_shared::pan::Pan;
use cellbank_shared::problem::{decode_json, Problem};

use crate::directory::{self, Change, DirectoryError, IdentifierKind, Placement, Shard};
use crate::error::ApiResult;
use crate::state::AppState;

/// Issuer identification number every PAN global generates starts with.
pub const BIN: &str = "537461";

/// Deadline of the issuing call to a shard.
const SHARD_CALL_DEADLINE: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/customers/{customer_id}/cards", post(issue_card))
}

/// A customer id from a request path.
pub fn parse_customer_id(s: &str) -> Result<CustomerId, Problem> {
    s.parse()
        .map_err(|_| Problem::invalid("customer_id", "must be a uuid"))
}

/// Who may issue a card to `customer`: the customer themselves (a valid
/// token of theirs) or the back office (the admin token).
fn authorize(state: &AppState, headers: &HeaderMap, customer: CustomerId) -> Result<(), Problem> {
    let Some(token) = bearer(headers) else {
        return Err(Problem::unauthorized(
            "authorization: Bearer <access token from login> is required",
        ));
    };
    if state.settings.auth.admin_token.matches(token) {
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp();
    let claims = state
        .verifier
        .verify(token, now)
        .map_err(|_| Problem::unauthorized("the access token is not valid or has expired"))?;
    if claims.sub != customer {
        return Err(Problem::forbidden(
            "a customer may only issue cards to themselves",
        ));
    }
    Ok(())
}

/// The request's only field: the card's currency (the customer's by default).
fn requested_currency(body: &Value) -> Result<Option<Currency>, Problem> {
    let Value::Object(obj) = body else {
        return Err(Problem::invalid("body", "must be a JSON object"));
    };
    if obj.contains_key("credit_limit") {
        return Err(Problem::invalid(
            "credit_limit",
            "is set by the credit policy and cannot be requested",
        ));
    }
    if obj.keys().any(|k| k != "currency") {
        return Err(Problem::invalid("body", "may only hold `currency`"));
    }
    match obj.get("currency") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(c)) => c
            .parse()
            .map(Some)
            .map_err(|_| Problem::invalid("currency", "must be a supported ISO 4217 code")),
        Some(_) => Err(Problem::invalid("currency", "must be a string")),
    }
}

/// A random luhn-valid 16-digit PAN under our BIN.
fn generate_pan() -> Pan {
    let mut rng = rand::thread_rng();
    let body: String = (0..9)
        .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
        .collect();
    Pan::with_check_digit(&format!("{BIN}{body}")).expect("15 digits plus check digit is a pan")
}

#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn issue_card(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let customer_id = parse_customer_id(&id)?;
    authorize(&state, &headers, customer_id)?;
    // An empty body asks for a card in the customer's own currency.
    let body: Value = if body.is_empty() {
        serde_json::json!({})
    } else {
        decode_json(&body)?
    };
    let requested = requested_currency(&body)?;
    let span = tracing::Span::current();
    span.record("customer_id", tracing::field::display(&customer_id));
    let placement = state.directory.placement(customer_id).await?;
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    if placement.state != "active" {
        return Err(Problem::conflict("the customer is not active").into());
    }
    let currency = match requested {
        Some(c) => c,
        None => customer_currency(&state, customer_id).await?,
    };
    let limit = crate::credit::limit_for(&state, currency).await?;
    let shard = state.directory.shard(&placement.shard_id).await?;
    // Register the PAN's hash first so a collision is caught before the shard sees it.
    let card = register_pan(&state, customer_id).await?;
    let issued = issue_in_shard(&state, &shard, &placement, &card, limit, currency).await?;
    tracing::info!(customer_id = %customer_id, shard_id = %shard.id, card_id = %issued.card_id, "card issued");
    // The full PAN leaves global exactly once, here, as an issuer sends it to
    // the card manufacturer; it is neither stored nor logged.
    Ok((
        StatusCode::CREATED,
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({
            "card_id": issued.card_id,
            "customer_id": customer_id,
            "shard": shard.id,
            "pan": card.pan.expose(),
            "last4": issued.last4,
            "credit_limit": issued.credit_limit,
            "currency": issued.currency,
        })),
    ))
}

/// The currency the customer signed up with (BRL for customers from before
/// it was recorded).
async fn customer_currency(state: &AppState, customer: CustomerId) -> ApiResult<Currency> {
    let code: Option<String> =
        sqlx::query_scalar("SELECT currency FROM customers WHERE customer_id = $1")
            .bind(customer.as_uuid())
            .fetch_optional(state.directory.pool())
            .await
            .map_err(DirectoryError::Unavailable)?
            .flatten();
    Ok(code.and_then(|c| c.parse().ok()).unwrap_or(Currency::Brl))
}

/// A generated PAN whose hash the directory registered for its customer.
struct RegisteredPan {
    pan: Pan,
    hash: String,
}

/// Generates a PAN and registers its hash, drawing again on a collision (up
/// to five draws).
async fn register_pan(state: &AppState, customer_id: CustomerId) -> ApiResult<RegisteredPan> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let pan = generate_pan();
        let hash = state.pan_hasher.hash(&pan);
        let mut conn = state
            .directory
            .pool()
            .acquire()
            .await
            .map_err(DirectoryError::Unavailable)?;
        match directory::insert_identifier(
            &mut conn,
            IdentifierKind::Card,
            &hash,
            customer_id,
            Some(pan.last4()),
        )
        .await
        {
            Ok(()) => {
                let change = Change::Identifier {
                    kind: IdentifierKind::Card,
                    value: hash.clone(),
                };
                state.feed.announce(change).await;
                return Ok(RegisteredPan { pan, hash });
            }
            Err(DirectoryError::Conflict(_)) if attempt < 5 => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Issues the card in the customer's shard; forgets the PAN's hash when the
/// shard does not.
async fn issue_in_shard(
    state: &AppState,
    shard: &Shard,
    placement: &Placement,
    card: &RegisteredPan,
    credit_limit: i64,
    currency: Currency,
) -> ApiResult<CardIssued> {
    let customer_id = placement.customer_id;
    let request = IssueCard {
        card_id: uuid::Uuid::now_v7(),
        epoch: placement.epoch,
        pan_hash: card.hash.clone(),
        last4: card.pan.last4().to_owned(),
        credit_limit,
        currency,
    };
    let issued = state
        .cell_client
        .call(
            shard,
            &format!("/internal/v1/customers/{customer_id}/cards"),
            &request,
            SHARD_CALL_DEADLINE,
        )
        .await;
    match issued {
        Ok(i) => Ok(i),
        Err(e) => {
            if let Ok(mut conn) = state.directory.pool().acquire().await {
                if let Err(e) =
                    directory::delete_identifier(&mut conn, IdentifierKind::Card, &card.hash).await
                {
                    tracing::error!(error = %e, "forget card identifier failed");
                }
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_pans_are_luhn_valid_under_our_bin() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let pan = generate_pan();
            assert_eq!(pan.expose().len(), 16);
            assert!(pan.expose().starts_with(BIN));
            assert!(Pan::parse(pan.expose()).is_ok());
            seen.insert(pan.expose().to_owned());
        }
        assert!(seen.len() > 190, "random enough");
    }

    #[test]
    fn the_request_cannot_choose_a_limit() {
        let p = requested_currency(&serde_json::json!({"credit_limit": 1_000_000_000_000_000i64}))
            .unwrap_err();
        assert_eq!(p.errors[0].field, "credit_limit");
        assert_eq!(requested_currency(&serde_json::json!({})).unwrap(), None);
        assert_eq!(
            requested_currency(&serde_json::json!({"currency": "USD"})).unwrap(),
            Some(Currency::Usd)
        );
        assert!(requested_currency(&serde_json::json!({"limit": 5})).is_err());
    }
}
