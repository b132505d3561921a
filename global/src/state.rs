//! The shared application state handed to every handler, and the admin-token
//! extractor that guards the ops API.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use cellbank_shared::pan::PanHasher;
use cellbank_shared::problem::Problem;
use cellbank_shared::token::TokenSigner;

use crate::cell_client::CellClient;
use crate::directory::Directory;
use crate::feed::Feed;
use crate::login_guard::LoginGuard;
use crate::settings::Settings;

/// Cheap handles every handler may need.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub directory: Directory,
    pub feed: Feed,
    pub cell_client: CellClient,
    pub signer: Arc<TokenSigner>,
    pub pan_hasher: Arc<PanHasher>,
    pub login_guard: LoginGuard,
}

/// Compares in time independent of where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Proof that the request carried the admin token.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| Problem::unauthorized("the ops API requires the admin bearer token"))?;
        let expected = state.settings.auth.admin_token.expose();
        if constant_time_eq(given.trim().as_bytes(), expected.as_bytes()) {
            Ok(Admin)
        } else {
            Err(Problem::unauthorized("the admin token is not valid"))
        }
    }
}
