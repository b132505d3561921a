//! The one API error type of the global tier, mapped to problem+json in a
//! single place: 4xx say what was wrong, 5xx say nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use cellbank_shared::problem::Problem;

use crate::cells::CellError;
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
