//! Every error answer is `application/problem+json`: what the router,
//! axum's extractors and the timeout answer on their own (404, 405, a bad
//! path, 413, 415, a timeout) is rewritten into a problem of the same status,
//! keeping its headers (`Allow`, `Retry-After`) but never its body, which may
//! quote what the client sent.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::problem::{Problem, PROBLEM_JSON};

/// A response extension for an error answer whose body is meant as it is
/// (readiness: 503 with the checks); [`problems_only`] leaves it alone.
#[derive(Clone, Copy, Debug)]
pub struct NotAProblem;

/// Rewrites an error response that is not already a problem.
pub async fn problems_only(resp: Response) -> Response {
    let status = resp.status();
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if status.as_u16() < 400 || is_problem || resp.extensions().get::<NotAProblem>().is_some() {
        return resp;
    }
    let (parts, _body) = resp.into_parts();
    let mut out = problem_for(status).into_response();
    let kept = |name: &header::HeaderName| {
        ![
            header::CONTENT_TYPE,
            header::CONTENT_LENGTH,
            header::CONTENT_ENCODING,
            header::TRANSFER_ENCODING,
        ]
        .contains(name)
    };
    for name in parts.headers.keys().filter(|n| kept(n)) {
        out.headers_mut().remove(name);
    }
    for (name, value) in parts.headers.iter().filter(|(n, _)| kept(n)) {
        out.headers_mut().append(name.clone(), value.clone());
    }
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        out.headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert(HeaderValue::from_static("1"));
    }
    out
}

/// The problem for a bare status: a fixed title and detail, nothing echoed.
pub fn problem_for(status: StatusCode) -> Problem {
    match status {
        StatusCode::BAD_REQUEST => Problem::bad_request("the request could not be read"),
        StatusCode::NOT_FOUND => Problem::not_found("no such resource"),
        StatusCode::METHOD_NOT_ALLOWED => {
            Problem::new(status, "method-not-allowed", "method not allowed")
                .detail("this resource does not take that method (see the allow header)")
        }
        StatusCode::PAYLOAD_TOO_LARGE => Problem::payload_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            Problem::new(status, "unsupported-media-type", "expected a JSON body")
                .detail("content-type must be application/json")
        }
        StatusCode::SERVICE_UNAVAILABLE => Problem::unavailable("retry shortly", 1),
        StatusCode::INTERNAL_SERVER_ERROR => Problem::internal(),
        other => {
            let title = other
                .canonical_reason()
                .unwrap_or("error")
                .to_ascii_lowercase();
            Problem::new(other, &title.replace(' ', "-"), &title)
        }
    }
}

/// Bounds the request's handling to `limit`; a late one answers a 503
/// problem with `Retry-After`.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long",
        )
        .detail("the request did not finish in time; retry")
        .retry_after(1)
        .into_response(),
    }
}
