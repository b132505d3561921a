//! Global's transfer service: transfers between customers of different
//! cells (or to a login). The sender's cell reserves the money and hands the
//! transfer over ([`intake`]); the service ([`service`]) resolves the
//! recipient through the directory at credit time, credits the recipient's
//! cell, and settles the transfer back in the sender's cell: delivered, or —
//! when the credit is refused for good or not made within
//! `transfers.credit_timeout_ms` — returned with a reason. The state lives
//! in the directory database ([`repo`]); any replica drives a transfer under
//! a lease and a restarted one resumes it.
//!
//! Exactly once, whatever crashes: every call to a cell is idempotent on the
//! transfer (the credit on its bank-wide key, the settlement on the sender's
//! pending row); a cell a credit is sent to is recorded before the call; and
//! the money goes back only once every such cell (and the recipient's
//! current one) answered a void — after which none of them will credit it.

pub mod intake;
pub mod ops;
pub mod repo;
pub mod service;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// Where a transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Crediting the recipient's cell.
    Crediting,
    /// The credit's outcome is unknown past the bound: voiding it wherever
    /// it may have been made, to learn whether it was.
    Voiding,
    /// Credited: delivering the pending amount in the sender's cell.
    Delivering,
    /// Never credited: returning the money in the sender's cell.
    Returning,
    Completed,
    Failed,
}

impl Stage {
    pub const OPEN: [Stage; 4] = [
        Stage::Crediting,
        Stage::Voiding,
        Stage::Delivering,
        Stage::Returning,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Crediting => "crediting",
            Stage::Voiding => "voiding",
            Stage::Delivering => "delivering",
            Stage::Returning => "returning",
            Stage::Completed => "completed",
            Stage::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::OPEN
            .into_iter()
            .chain([Stage::Completed, Stage::Failed])
            .find(|st| st.as_str() == s)
    }

    pub fn is_final(self) -> bool {
        matches!(self, Stage::Completed | Stage::Failed)
    }
}

/// A transfer as the service keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct Transfer {
    pub transfer_key: Uuid,
    pub transfer_id: Uuid,
    pub from_customer_id: Uuid,
    pub source_shard: String,
    pub from_account_id: Uuid,
    pub amount: i64,
    pub currency: String,
    /// The recipient as the sender named them (one of the two).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_account_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_login: Option<String>,
    pub state: Stage,
    pub reason: Option<String>,
    pub to_customer_id: Option<Uuid>,
    pub to_shard: Option<String>,
    pub credit_shards: Vec<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    #[serde(skip)]
    pub traceparent: Option<String>,
    pub requested_at: DateTime<Utc>,
    pub accepted_at: DateTime<Utc>,
    pub credited_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}
