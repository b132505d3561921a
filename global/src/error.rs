//! The one API error type of the global tier, mapped to problem+json in a
//! single place: 4xx say what was wrong, 5xx say nothing internal.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use cellbank_shared::problem::Problem;

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
    /// The problem this error answers, without side effects.
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
            ApiError::Directory(DirectoryError::Unavailable(_)) => {
                Problem::unavailable("the directory is temporarily unavailable", 1)
            }
            ApiError::Cell(CellError::Unavailable {
                shard, retry_after, ..
            }) => Problem::unavailable(format!("{shard} is temporarily unavailable"), *retry_after),
            ApiError::Cell(CellError::Timeout { shard, .. }) => {
                Problem::unavailable(format!("{shard} did not answer in time"), 1)
            }
            ApiError::Cell(CellError::TooLarge { .. }) => Problem::payload_too_large(),
            ApiError::Cell(CellError::Rejected { .. }) => Problem::new(
                StatusCode::BAD_GATEWAY,
                "bad-gateway",
                "shard refused the request",
            ),
            ApiError::Directory(DirectoryError::Corrupt(_)) | ApiError::Internal(_) => {
                Problem::internal()
            }
        }
    }

    /// The problem to answer, after logging the cause of a failure that is
    /// ours (a 5xx) once. Call it where the response is made.
    pub fn into_problem(self) -> Problem {
        let p = self.to_problem();
        if p.status >= 500 {
            tracing::error!(status = p.status, error = %format!("{:#}", anyhow::Error::new(self)), "request failed");
        }
        p
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // A cell that is down or slow is not global at capacity: its wait
        // does not shrink global's admission for the other cells.
        let cell = matches!(
            self,
            ApiError::Cell(CellError::Unavailable { .. } | CellError::Timeout { .. })
        );
        let mut resp = self.into_problem().into_response();
        if cell {
            resp.extensions_mut()
                .insert(cellbank_shared::http::WaitedOnAFailure);
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
