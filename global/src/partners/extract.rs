//! The partner extractor: a handler that takes [`PartnerCaller`] only runs
//! for a request carrying a live partner key (401 otherwise); the handler
//! then admits it under its scope and rate (`Partners::admit`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use cellbank_shared::access::bearer;
use cellbank_shared::problem::Problem;

use super::PartnerRecord;
use crate::state::AppState;

/// The authenticated partner behind a request.
#[derive(Clone, Debug)]
pub struct PartnerCaller(pub Arc<PartnerRecord>);

impl FromRequestParts<AppState> for PartnerCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let partner = state.partners.authenticate(bearer(&parts.headers)).await?;
        tracing::Span::current().record("partner", tracing::field::display(&partner.name));
        Ok(PartnerCaller(partner))
    }
}

impl PartnerCaller {
    /// The idempotency namespace of this partner's event ids in a cell.
    pub fn namespace(&self) -> String {
        format!("partner:{}", self.0.partner_id)
    }
}
