//! Onboarding: places a new customer on the least loaded active shard,
//! creates them there, and registers their identifiers; and card issuing,
//! whose PAN global generates and only ever keeps as a keyed hash.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde::Deserialize;

use cellbank_shared::contract::{CardIssued, CreateCustomer, CustomerCreated, IssueCard};
use cellbank_shared::hal::{href, Hal};
use cellbank_shared::ids::{CustomerId, Epoch, ShardId};
use cellbank_shared::money::{Currency, Money};
use cellbank_shared::pan::Pan;
use cellbank_shared::problem::Problem;

use crate::credentials::{hash_password, normalise_login, validate_login};
use crate::directory::{self, Change, DirectoryError, IdentifierKind, Placement, Shard};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use cellbank_shared::problem::ApiJson;

/// Issuer identification number every PAN global generates starts with.
pub const BIN: &str = "537461";

/// Deadline of onboarding calls to a shard.
const SHARD_CALL_DEADLINE: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/customers", post(onboard))
        .route("/v1/customers/{customer_id}/cards", post(issue_card))
}

/// A customer id from a request path.
pub fn parse_customer_id(s: &str) -> Result<CustomerId, Problem> {
    s.parse()
        .map_err(|_| Problem::invalid("customer_id", "must be a uuid"))
}

fn unavailable(e: sqlx::Error) -> ApiError {
    DirectoryError::Unavailable(e).into()
}

#[derive(Deserialize)]
struct NewCustomer {
    name: String,
    login: String,
    password: String,
    #[serde(default)]
    currency: Option<Currency>,
}

impl NewCustomer {
    /// Checks the request; returns it normalised, the password aside.
    fn validate(&self) -> Result<Applicant, Problem> {
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Problem::invalid("name", "must be 1 to 200 characters"));
        }
        let login = normalise_login(&self.login);
        validate_login(&login)?;
        if self.password.chars().count() < 8 || self.password.len() > 256 {
            return Err(Problem::invalid("password", "must be 8 to 256 characters"));
        }
        Ok(Applicant {
            name,
            login,
            currency: self.currency.unwrap_or(Currency::Brl),
        })
    }
}

/// A validated onboarding request (its password is hashed separately).
struct Applicant {
    name: String,
    login: String,
    currency: Currency,
}

/// Onboarding in three steps: reserve in the directory, create in the shard
/// (undoing the reservation if the shard refuses), then activate.
#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn onboard(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewCustomer>,
) -> ApiResult<impl IntoResponse> {
    let applicant = body.validate()?;
    let password = body.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| anyhow::anyhow!("hash password task: {e}"))??;

    let customer_id = CustomerId::new();
    tracing::Span::current().record("customer_id", tracing::field::display(&customer_id));
    let shard = reserve(&state, customer_id, &applicant, &password_hash).await?;
    let created = create_in_shard(&state, customer_id, &applicant, &shard).await?;
    activate(&state, customer_id, &created.account_number).await?;
    state.feed.announce(Change::Customer { customer_id }).await;
    tracing::info!(customer_id = %customer_id, shard_id = %shard.id, "customer onboarded");
    let doc = onboarded(customer_id, &applicant, &shard, &created);
    Ok((StatusCode::CREATED, doc))
}

/// Step 1, in one transaction: a seat on a shard, the customer (pending),
/// their login and credentials. Returns the shard.
async fn reserve(
    state: &AppState,
    customer_id: CustomerId,
    applicant: &Applicant,
    password_hash: &str,
) -> ApiResult<Shard> {
    let mut tx = state.directory.pool().begin().await.map_err(unavailable)?;
    let shard = directory::take_seat(&mut tx).await?;
    tracing::Span::current().record("shard_id", tracing::field::display(&shard.id));
    directory::insert_customer(&mut tx, customer_id, &shard.id, &applicant.name).await?;
    directory::insert_identifier(
        &mut tx,
        IdentifierKind::Login,
        &applicant.login,
        customer_id,
        None,
    )
    .await
    .map_err(|e| match e {
        DirectoryError::Conflict(_) => ApiError::from(
            Problem::conflict("login is already taken").field("login", "is already taken"),
        ),
        other => other.into(),
    })?;
    directory::insert_credentials(&mut tx, customer_id, password_hash).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(shard)
}

/// Step 2: the customer and their checking account in the shard; undoes
/// step 1 when the shard does not create them.
async fn create_in_shard(
    state: &AppState,
    customer_id: CustomerId,
    applicant: &Applicant,
    shard: &Shard,
) -> ApiResult<CustomerCreated> {
    let request = CreateCustomer {
        customer_id,
        name: applicant.name.clone(),
        epoch: Epoch::FIRST,
        currency: applicant.currency,
    };
    let created = state
        .cell_client
        .call(
            shard,
            "/internal/v1/customers",
            &request,
            SHARD_CALL_DEADLINE,
        )
        .await;
    match created {
        Ok(c) => Ok(c),
        Err(e) => {
            undo_onboarding(state, customer_id, &shard.id).await;
            Err(e.into())
        }
    }
}

/// Step 3: registers the account number and activates the customer.
async fn activate(
    state: &AppState,
    customer_id: CustomerId,
    account_number: &str,
) -> ApiResult<()> {
    let mut tx = state.directory.pool().begin().await.map_err(unavailable)?;
    directory::insert_identifier(
        &mut tx,
        IdentifierKind::Account,
        account_number,
        customer_id,
        None,
    )
    .await?;
    directory::set_customer_state(&mut tx, customer_id, "active").await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(())
}

/// The onboarding answer, with links to the customer on their shard.
fn onboarded(
    customer_id: CustomerId,
    applicant: &Applicant,
    shard: &Shard,
    created: &CustomerCreated,
) -> Hal {
    let base = &shard.public_url;
    let path = format!("/v1/customers/{customer_id}");
    Hal::new(serde_json::json!({
        "customer_id": customer_id,
        "shard": shard.id,
        "epoch": Epoch::FIRST,
        "login": applicant.login,
        "account_id": created.account_id,
        "account_number": created.account_number,
        "currency": applicant.currency,
    }))
    .link("self", href(base, &path))
    .link("customer", href(base, &path))
    .link("accounts", href(base, &format!("{path}/accounts")))
    .link("cards", href(base, &format!("{path}/cards")))
    .link("transfers", href(base, &format!("{path}/transfers")))
    .link("login", "/v1/login")
}

/// Gives the seat back and forgets the customer when the shard refused them.
async fn undo_onboarding(state: &AppState, customer_id: CustomerId, shard: &ShardId) {
    let result = async {
        let mut tx = state.directory.pool().begin().await?;
        directory::delete_customer(&mut tx, customer_id)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        directory::release_seat(&mut tx, shard)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        tx.commit().await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(customer_id = %customer_id, error = format!("{e:#}"), "undo onboarding failed");
    }
}

#[derive(Deserialize)]
struct NewCard {
    credit_limit: i64,
    currency: Currency,
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
    ApiJson(body): ApiJson<NewCard>,
) -> ApiResult<impl IntoResponse> {
    let customer_id = parse_customer_id(&id)?;
    Money::positive(body.credit_limit, body.currency)
        .map_err(|e| Problem::invalid("credit_limit", e.to_string()))?;
    let span = tracing::Span::current();
    span.record("customer_id", tracing::field::display(&customer_id));
    let placement = state.directory.placement(customer_id).await?;
    span.record("shard_id", tracing::field::display(&placement.shard_id));
    if placement.state != "active" {
        return Err(Problem::conflict("the customer is not active").into());
    }
    let shard = state.directory.shard(&placement.shard_id).await?;
    // Register the PAN's hash first so a collision is caught before the shard sees it.
    let card = register_pan(&state, customer_id).await?;
    let issued = issue_in_shard(&state, &shard, &placement, &card, &body).await?;
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
            .map_err(unavailable)?;
        match directory::insert_identifier(
            &mut conn,
            IdentifierKind::Card,
            &hash,
            customer_id,
            Some(pan.last4()),
        )
        .await
        {
            Ok(()) => return Ok(RegisteredPan { pan, hash }),
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
    body: &NewCard,
) -> ApiResult<CardIssued> {
    let customer_id = placement.customer_id;
    let request = IssueCard {
        card_id: uuid::Uuid::now_v7(),
        epoch: placement.epoch,
        pan_hash: card.hash.clone(),
        last4: card.pan.last4().to_owned(),
        credit_limit: body.credit_limit,
        currency: body.currency,
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
}
