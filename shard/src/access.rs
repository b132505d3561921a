//! Who may call the app's API: [`CustomerAccess`] is the extractor every
//! customer handler takes. It parses the customer from the path and checks
//! the token from global's login (signature, this shard, this customer, the
//! customer's current epoch). Operators and global prove themselves with
//! `cellbank_shared::access::{Admin, Internal}`.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use cellbank_shared::access::bearer;
use cellbank_shared::ids::CustomerId;
use cellbank_shared::token::Claims;

use crate::error::ApiError;
use crate::signing_keys::KeysError;
use crate::state::AppState;

/// A request by the customer named in the path, with a valid token for them
/// on this shard at their current epoch.
#[derive(Debug, Clone)]
pub struct CustomerAccess {
    pub customer: CustomerId,
    pub claims: Claims,
}

impl FromRequestParts<AppState> for CustomerAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, s)
            .await
            .map_err(|_| ApiError::invalid("customer_id", "must be a uuid"))?;
        let customer = parse_customer(params.get("customer_id").map_or("", String::as_str))?;
        tracing::Span::current().record("customer_id", tracing::field::display(customer));
        let claims = verify(s, &parts.headers, customer).await?;
        Ok(Self { customer, claims })
    }
}

pub fn parse_customer(raw: &str) -> Result<CustomerId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::invalid("customer_id", "must be a uuid"))
}

/// The customer's epoch, state and (moved out) new cell here, from its row
/// or, once its copy was purged, its moved-out marker.
async fn placed_here(
    s: &AppState,
    customer: CustomerId,
) -> Result<(Option<i64>, String, Option<String>), ApiError> {
    let row: Option<(i64, String, Option<String>)> = sqlx::query_as(
        "SELECT epoch, state, moved_to FROM customers WHERE customer_id = $1
         UNION ALL
         SELECT epoch, 'moved_out', moved_to FROM moved_out_customers WHERE customer_id = $1
         LIMIT 1",
    )
    .bind(customer.as_uuid())
    .fetch_optional(&s.pool)
    .await?;
    Ok(match row {
        Some((e, state, to)) => (Some(e), state, to),
        None => (None, String::new(), None),
    })
}

/// Checks the app's token for `customer`: signed by global, for this shard,
/// at the customer's current epoch or newer, about this customer.
async fn verify(
    s: &AppState,
    headers: &http::HeaderMap,
    customer: CustomerId,
) -> Result<Claims, ApiError> {
    let relogin = |status, detail: &str| ApiError::Relogin {
        status,
        detail: detail.to_owned(),
        login: s.login_url(),
        moved_to: None,
    };
    let token = bearer(headers).ok_or_else(|| {
        relogin(
            StatusCode::UNAUTHORIZED,
            "authorization: Bearer <token from global login> is required",
        )
    })?;
    let claims = match s.keys.verify(token, chrono::Utc::now().timestamp()).await {
        Ok(c) => c,
        Err(e @ KeysError::NotLoaded) => return Err(ApiError::Unavailable(e.to_string())),
        Err(KeysError::Token(e)) => return Err(relogin(StatusCode::UNAUTHORIZED, &e.to_string())),
    };
    if claims.shard != s.shard_id {
        return Err(relogin(
            StatusCode::UNAUTHORIZED,
            &format!("token is for {}, this is {}", claims.shard, s.shard_id),
        ));
    }
    if claims.sub != customer {
        return Err(ApiError::Forbidden(
            "the token is for another customer".into(),
        ));
    }
    let (epoch, state, moved_to) = placed_here(s, customer).await?;
    if let Some(base) = moved_to.filter(|_| state == "moved_out") {
        let path = format!("/v1/customers/{customer}");
        return Err(ApiError::Relogin {
            status: StatusCode::CONFLICT,
            detail: "the customer moved to another cell: log in again".into(),
            login: s.login_url(),
            moved_to: Some(cellbank_shared::hal::href(&base, &path)),
        });
    }
    match epoch.filter(|_| state != "importing") {
        None => Err(relogin(
            StatusCode::UNAUTHORIZED,
            "this customer does not live in this shard",
        )),
        Some(e) if e > claims.epoch.0 => Err(relogin(
            StatusCode::CONFLICT,
            &format!(
                "token is for epoch {}, the customer is at {e}",
                claims.epoch
            ),
        )),
        Some(_) => Ok(claims),
    }
}
