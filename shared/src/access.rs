//! Callers that prove themselves with a bearer secret, the same way in both
//! tiers: operators (the admin token) and global calling a cell (the cell's
//! internal token). Handlers or routers take [`Admin`] / [`Internal`] as an
//! extractor; the state hands over the expected secret through `FromRef`.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::problem::Problem;
use crate::secret::Secret;

/// The bearer token of a request, if it carries one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The operators' admin token the state expects.
#[derive(Clone)]
pub struct AdminToken(pub Secret);

/// The internal token global presents to a cell.
#[derive(Clone)]
pub struct InternalToken(pub Secret);

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

/// Proof that the request carried the cell's internal token (it is global).
#[derive(Debug, Clone, Copy)]
pub struct Internal;

#[allow(clippy::result_large_err)] // the Problem is the response itself
fn check(headers: &HeaderMap, expected: &Secret, who: &str) -> Result<(), Problem> {
    match bearer(headers) {
        Some(given) if !expected.is_empty() && expected.matches(given) => Ok(()),
        Some(_) => Err(Problem::unauthorized(format!(
            "the {who} token is not valid"
        ))),
        None => Err(Problem::unauthorized(format!(
            "authorization: Bearer <{who} token> is required"
        ))),
    }
}

impl<S> FromRequestParts<S> for Admin
where
    AdminToken: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        check(&parts.headers, &AdminToken::from_ref(state).0, "admin").map(|()| Admin)
    }
}

impl<S> FromRequestParts<S> for Internal
where
    InternalToken: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        check(
            &parts.headers,
            &InternalToken::from_ref(state).0,
            "internal",
        )
        .map(|()| Internal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_expected_secret_passes() {
        let s = Secret::new("s3cret");
        assert!(check(&headers(Some("Bearer s3cret")), &s, "admin").is_ok());
        let wrong = check(&headers(Some("Bearer nope")), &s, "admin").unwrap_err();
        assert_eq!(wrong.status, 401);
        assert!(!wrong.detail.unwrap().contains("s3cret"));
        assert_eq!(check(&headers(None), &s, "admin").unwrap_err().status, 401);
        assert!(check(&headers(Some("s3cret")), &s, "admin").is_err());
        // An unset secret lets nobody in, not an empty bearer.
        assert!(check(&headers(Some("Bearer ")), &Secret::default(), "admin").is_err());
    }
}
