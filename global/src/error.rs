//! The one API error type of the global tier, mapped to problem+json in a
//! single place: 4xx say what was wrong, 5xx say nothing internal.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use cellbank_shared::problem::{ApiJson, Problem};

use crate::cell_client::CellError;
use crate::directory::DirectoryError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A fully formed 4xx problem (validation, auth).
    #[error("{}", .0.detail.clone().unwrap_or_default())]
    Problem(Problem),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Cell(#[from] CellError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> Self {
        ApiError::Problem(p)
    }
}

impl ApiError {
    pub fn to_problem(&self) -> Problem {
        match self {
            ApiError::Problem(p) => p.clone(),
            ApiError::Directory(DirectoryError::NotFound(what)) => {
                Problem::not_found(format!("unknown {what}"))
            }
            ApiError::Directory(DirectoryError::Conflict(what)) => Problem::conflict(what.clone()),
            ApiError::Directory(DirectoryError::NoCapacity) => {
                Problem::unavailable("no active shard has room for a new customer", 30)
            }
            ApiError::Directory(e @ DirectoryError::Unavailable(_)) => {
                tracing::error!(error = %e, "directory unavailable");
                Problem::unavailable("the directory is temporarily unavailable", 1)
            }
            ApiError::Directory(e @ DirectoryError::Corrupt(_)) => {
                tracing::error!(error = %e, "directory corrupt");
                Problem::internal()
            }
            ApiError::Cell(CellError::Unavailable {
                shard, retry_after, ..
            }) => Problem::unavailable(format!("{shard} is temporarily unavailable"), *retry_after),
            ApiError::Cell(CellError::Timeout { shard, .. }) => {
                Problem::unavailable(format!("{shard} did not answer in time"), 1)
            }
            ApiError::Cell(e @ CellError::Rejected { .. }) => {
                tracing::error!(error = %e, "shard refused a call from global");
                Problem::new(
                    StatusCode::BAD_GATEWAY,
                    "bad-gateway",
                    "shard refused the request",
                )
            }
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "internal error");
                Problem::internal()
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.to_problem().into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The JSON body extractor of the global API: [`ApiJson`]'s problems, with a
/// missing field named as the field itself (`merchant.mcc`: is required)
/// rather than as the object that lacks it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Input<T>(pub T);

impl<T, S> FromRequest<S> for Input<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        ApiJson::<T>::from_request(req, state)
            .await
            .map(|ApiJson(v)| Input(v))
            .map_err(name_missing_field)
    }
}

fn name_missing_field(mut p: Problem) -> Problem {
    let Some(e) = p.errors.first_mut() else {
        return p;
    };
    let Some(name) = e
        .reason
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    else {
        return p;
    };
    e.field = if e.field == "body" {
        name.to_owned()
    } else {
        format!("{}.{name}", e.field)
    };
    e.reason = "is required".to_owned();
    p.detail = Some(format!("{}: is required", e.field));
    p
}
