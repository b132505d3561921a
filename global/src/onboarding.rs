//! Sign-up: places a new customer on the least loaded active shard, creates
//! them there, and registers their identifiers. A sign-up runs to its end
//! even if the client goes away; one interrupted anyway (a shard timeout, a
//! replica stopped) is completed or undone by [`complete_stalled`], and the
//! same request retried with the same password picks it up and succeeds.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use cellbank_shared::contract::{CreateCustomer, CustomerCreated};
use cellbank_shared::hal::{href, Hal};
use cellbank_shared::ids::{CustomerId, Epoch, ShardId};
use cellbank_shared::money::Currency;
use cellbank_shared::problem::{ApiJson, Problem};

use crate::cell_client::CellError;
use crate::credentials::{hash_password, normalise_login, validate_login, verify_stored};
use crate::directory::{self, Change, DirectoryError, IdentifierKind, PendingSignUp, Shard};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Deadline of onboarding calls to a shard.
const SHARD_CALL_DEADLINE: Duration = Duration::from_secs(5);

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/customers", post(onboard))
}

fn unavailable(e: sqlx::Error) -> ApiError {
    DirectoryError::Unavailable(e).into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewCustomer {
    name: String,
    login: String,
    password: String,
    #[serde(default)]
    currency: Option<Currency>,
}

/// A validated sign-up request.
#[derive(Clone)]
struct Applicant {
    name: String,
    login: String,
    currency: Currency,
}

impl NewCustomer {
    /// Checks the request; returns it normalised, the password aside.
    fn validate(&self) -> Result<Applicant, Problem> {
        let name = self.name.trim().to_owned();
        // A control character (NUL above all, which Postgres text refuses) is
        // no part of a name.
        if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
            return Err(Problem::invalid(
                "name",
                "must be 1 to 200 characters, none a control character",
            ));
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

/// Runs the sign-up in a task of its own, so a client that hangs up cannot
/// stop it between its steps.
#[tracing::instrument(skip_all, fields(customer_id, shard_id))]
async fn onboard(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<NewCustomer>,
) -> ApiResult<impl IntoResponse> {
    let applicant = body.validate()?;
    let span = tracing::Span::current();
    let task = tokio::spawn(tracing::Instrument::instrument(
        sign_up(state, applicant, body.password),
        span,
    ));
    let (status, doc) = task
        .await
        .map_err(|e| anyhow::anyhow!("sign-up task: {e}"))??;
    Ok((status, doc))
}

/// A new sign-up, or the retry of one (same login and password): an
/// unfinished one is completed, a finished one answered again.
async fn sign_up(
    state: AppState,
    applicant: Applicant,
    password: String,
) -> ApiResult<(StatusCode, Hal)> {
    if let Some(earlier) = retried(&state, &applicant.login, &password).await? {
        return resume(&state, earlier, &applicant).await;
    }
    let hash = state
        .password_work
        .run(move || hash_password(&password))
        .await??;
    let customer_id = CustomerId::new();
    tracing::Span::current().record("customer_id", tracing::field::display(&customer_id));
    let shard = reserve(&state, customer_id, &applicant, &hash).await?;
    let created = complete(
        &state,
        customer_id,
        &applicant.name,
        applicant.currency,
        &shard,
    )
    .await?;
    tracing::info!(customer_id = %customer_id, shard_id = %shard.id, "customer onboarded");
    Ok((
        StatusCode::CREATED,
        onboarded(customer_id, &applicant, &shard, &created),
    ))
}

/// The earlier sign-up this request repeats: its login exists and the
/// password is the one it was made with. Another password: 409.
async fn retried(
    state: &AppState,
    login: &str,
    password: &str,
) -> ApiResult<Option<PendingSignUp>> {
    let Some(earlier) = directory::sign_up_of(state.directory.pool(), login).await? else {
        return Ok(None);
    };
    let customer = CustomerId::from_uuid(earlier.customer_id);
    let stored = directory::password_hash(state.directory.pool(), customer).await?;
    let password = password.to_owned();
    let same = state
        .password_work
        .run(move || verify_stored(&password, stored.as_deref()))
        .await?;
    if !same {
        return Err(taken().into());
    }
    Ok(Some(earlier))
}

fn taken() -> Problem {
    Problem::conflict("login is already taken").field("login", "is already taken")
}

/// Completes (or re-answers) an earlier sign-up of the same applicant.
async fn resume(
    state: &AppState,
    earlier: PendingSignUp,
    applicant: &Applicant,
) -> ApiResult<(StatusCode, Hal)> {
    let customer_id = CustomerId::from_uuid(earlier.customer_id);
    let shard_id = ShardId::parse(&earlier.shard_id)
        .map_err(|e| DirectoryError::Corrupt(format!("shard id: {e}")))?;
    let shard = state.directory.shard(&shard_id).await?;
    let currency = earlier
        .currency
        .as_deref()
        .and_then(|c| c.parse().ok())
        .unwrap_or(applicant.currency);
    let created = complete(state, customer_id, &earlier.name, currency, &shard).await?;
    tracing::info!(customer_id = %customer_id, state = %earlier.state, "repeated sign-up answered");
    let applicant = Applicant {
        name: earlier.name,
        currency,
        ..applicant.clone()
    };
    let status = if earlier.state == "pending" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, onboarded(customer_id, &applicant, &shard, &created)))
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
    let currency = applicant.currency.to_string();
    directory::insert_customer(&mut tx, customer_id, &shard.id, &applicant.name, &currency).await?;
    directory::insert_identifier(
        &mut tx,
        IdentifierKind::Login,
        &applicant.login,
        customer_id,
        None,
    )
    .await
    .map_err(|e| match e {
        DirectoryError::Conflict(_) => ApiError::from(taken()),
        other => other.into(),
    })?;
    directory::insert_credentials(&mut tx, customer_id, password_hash).await?;
    tx.commit().await.map_err(unavailable)?;
    Ok(shard)
}

/// Steps 2 and 3, each safe to repeat: the customer in the shard (created
/// once, answered the same after), then the account number registered and
/// the customer activated. A shard that refuses the customer undoes the
/// sign-up; one that cannot answer leaves it pending, for a retry or for
/// [`complete_stalled`].
async fn complete(
    state: &AppState,
    customer_id: CustomerId,
    name: &str,
    currency: Currency,
    shard: &Shard,
) -> ApiResult<CustomerCreated> {
    let request = CreateCustomer {
        customer_id,
        name: name.to_owned(),
        epoch: Epoch::FIRST,
        currency,
    };
    let created: CustomerCreated = match state
        .cell_client
        .call(
            shard,
            "/internal/v1/customers",
            &request,
            SHARD_CALL_DEADLINE,
        )
        .await
    {
        Ok(c) => c,
        Err(e @ CellError::Rejected { .. }) => {
            undo(state, customer_id, &shard.id).await;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    activate(state, customer_id, &created.account_number).await?;
    Ok(created)
}

/// Registers the account number and activates the customer.
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
    state.feed.announce(Change::Customer { customer_id }).await;
    state
        .feed
        .announce(Change::Identifier {
            kind: IdentifierKind::Account,
            value: account_number.to_owned(),
        })
        .await;
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
async fn undo(state: &AppState, customer_id: CustomerId, shard: &ShardId) {
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
    match result {
        Ok(()) => {
            tracing::info!(customer_id = %customer_id, "sign-up undone: the shard refused it")
        }
        Err(e) => {
            tracing::error!(customer_id = %customer_id, error = format!("{e:#}"), "undo sign-up failed")
        }
    }
}

/// Completes sign-ups left pending (interrupted) every `every`, until shut
/// down: each is created in its shard and activated, or undone when the
/// shard refuses it. Safe beside other replicas doing the same: every step
/// is idempotent.
pub async fn complete_stalled(state: AppState, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let after = state.settings.routing.sign_up_stalled_after_secs as i64;
        let stalled = match directory::stalled_sign_ups(state.directory.pool(), after).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "list stalled sign-ups failed");
                continue;
            }
        };
        for s in stalled {
            let customer_id = CustomerId::from_uuid(s.customer_id);
            let outcome = async {
                let shard_id = ShardId::parse(&s.shard_id)
                    .map_err(|e| DirectoryError::Corrupt(format!("shard id: {e}")))?;
                let shard = state.directory.shard(&shard_id).await?;
                let currency = s.currency.as_deref().and_then(|c| c.parse().ok());
                complete(
                    &state,
                    customer_id,
                    &s.name,
                    currency.unwrap_or(Currency::Brl),
                    &shard,
                )
                .await
            }
            .await;
            match outcome {
                Ok(_) => tracing::info!(customer_id = %customer_id, "stalled sign-up completed"),
                Err(e) => {
                    tracing::warn!(customer_id = %customer_id, error = %e, "stalled sign-up not completed yet")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NUL (or any control character) in a name is refused up front:
    /// Postgres text cannot hold a NUL, and the sign-up would fail later.
    #[test]
    fn a_name_with_a_control_character_is_refused() {
        let mut c = NewCustomer {
            name: "Ada\u{0}Lovelace".into(),
            login: "ada@example.com".into(),
            password: "long enough password".into(),
            currency: None,
        };
        let p = c.validate().err().expect("refused");
        assert_eq!(p.errors[0].field, "name");
        c.name = "Ada Lovelace".into();
        assert!(c.validate().is_ok());
    }
}
