//! The one API error type of the shard: every handler failure maps to a
//! problem+json response in a single match; 5xx say nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cellbank_shared::db::{classify, PgFailure};
use cellbank_shared::money::MoneyError;
use cellbank_shared::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A transfer this cell will never credit (voided, or credited before
    /// with other details): final, unlike a [`ApiError::Conflict`].
    #[error("transfer refused: {0}")]
    TransferRefused(String),
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The token is for another shard, an older epoch, or no longer valid:
    /// the app must log in again at global.
    #[error("log in again: {detail}")]
    Relogin {
        status: StatusCode,
        detail: String,
        login: String,
        /// The customer on their new cell, when they moved.
        moved_to: Option<String>,
    },
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// A 422 for an amount [`Money`] refused, without repeating the amount.
    pub fn bad_amount(field: &str, e: &MoneyError) -> Self {
        Self::invalid(field, cellbank_shared::problem::money_reason(e))
    }
}

/// Postgres failures a handler did not map itself: a duplicate key is a
/// conflict naming its constraint, a value the database cannot store is the
/// request's fault, a lost race or an unreachable database asks the caller
/// to retry, anything else is internal.
impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match classify(&e) {
            PgFailure::UniqueViolation { constraint } => ApiError::Conflict(format!(
                "it already exists ({})",
                constraint.as_deref().unwrap_or("unique key")
            )),
            PgFailure::Retryable | PgFailure::Unavailable => {
                tracing::warn!(error = %e, "database busy or unreachable");
                ApiError::Unavailable("the cell's database is busy; retry".into())
            }
            // 22xxx: a value no column can hold (a NUL in text, a number out
            // of range) came from the request: the caller's to fix.
            PgFailure::DataException => {
                tracing::warn!(error = %e, "the database refused a value");
                ApiError::invalid(
                    "body",
                    "holds a value the cell cannot store (a NUL character, or a number out of range)",
                )
            }
            _ => ApiError::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

impl From<crate::ledger::store::ApplyError> for ApiError {
    fn from(e: crate::ledger::store::ApplyError) -> Self {
        use crate::ledger::event::InvalidEvent;
        use crate::ledger::store::ApplyError;
        match e {
            ApplyError::Invalid(InvalidEvent::StaleEpoch { .. } | InvalidEvent::NotHere(_)) => {
                ApiError::Conflict(e.to_string())
            }
            ApplyError::Invalid(InvalidEvent::UnknownCustomer(c)) => {
                ApiError::NotFound(format!("customer {c}"))
            }
            ApplyError::Invalid(i) => ApiError::invalid("body", i.to_string()),
            ApplyError::Db(db) => db.into(),
        }
    }
}

impl From<crate::placement::Refused> for ApiError {
    fn from(r: crate::placement::Refused) -> Self {
        use crate::placement::Refused;
        match r {
            Refused::Db(e) => e.into(),
            Refused::UnknownCustomer(c) => ApiError::NotFound(format!("customer {c}")),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            ApiError::Invalid { field, reason } => Problem::invalid(field, reason),
            ApiError::NotFound(d) => Problem::not_found(d),
            ApiError::Conflict(d) => Problem::conflict(d),
            ApiError::TransferRefused(d) => Problem::new(
                StatusCode::CONFLICT,
                "transfer-refused",
                "this cell will not credit the transfer",
            )
            .detail(d),
            ApiError::Unauthorized(d) => Problem::unauthorized(d),
            ApiError::Relogin {
                status,
                detail,
                login,
                moved_to,
            } => {
                let mut links = serde_json::json!({ "login": { "href": login } });
                if let Some(href) = moved_to {
                    links["customer"] = serde_json::json!({ "href": href });
                }
                Problem::new(status, "login-required", "log in again at global")
                    .detail(detail)
                    .links(links)
            }
            ApiError::Forbidden(d) => Problem::forbidden(d),
            ApiError::Unavailable(d) => Problem::unavailable(d, 1),
            ApiError::Internal(e) => {
                tracing::error!(error = %format!("{e:#}"), "request failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
