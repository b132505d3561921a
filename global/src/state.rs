//! The shared application state handed to every handler, and what the
//! shared `Admin` extractor that guards the ops API needs of it.

use std::sync::Arc;

use axum::extract::FromRef;
use cellbank_shared::access::AdminToken;

use cellbank_shared::pan::PanHasher;
use cellbank_shared::token::{TokenSigner, TokenVerifier};

use crate::cell_client::CellClient;
use crate::credentials::PasswordWork;
use crate::directory::Directory;
use crate::feed::Feed;
use crate::login_guard::LoginGuard;
use crate::partners::Partners;
use crate::settings::Settings;

/// Cheap handles every handler may need.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub directory: Directory,
    pub feed: Feed,
    pub cell_client: CellClient,
    pub signer: Arc<TokenSigner>,
    /// Verifies the tokens this tier signed (a customer acting on themselves).
    pub verifier: Arc<TokenVerifier>,
    pub pan_hasher: Arc<PanHasher>,
    pub login_guard: LoginGuard,
    pub partners: Partners,
    /// Bounds the argon2 work running at once.
    pub password_work: PasswordWork,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
    /// Wakes the transfer service when a cell hands a transfer over.
    pub transfers: crate::transfers::service::Handle,
}

impl FromRef<AppState> for AdminToken {
    fn from_ref(s: &AppState) -> Self {
        AdminToken(s.settings.auth.admin_token.clone())
    }
}
