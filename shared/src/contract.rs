//! The contract between global and the shards: event types routed into a
//! cell, the payload global puts in their envelope, and the bodies of the
//! shard's internal endpoints (`/internal/v1/...`) that global calls.
//!
//! Internal endpoints require `authorization: Bearer <auth.internal_token>`.

use serde::{Deserialize, Serialize};

use crate::ids::{CustomerId, Epoch};
use crate::money::Currency;

/// External event types global accepts and routes into the owning shard.
pub const EVENT_TYPES: &[&str] = &[
    "deposit",
    "withdrawal",
    "bill_payment",
    "purchase_settled",
    "refund",
    "chargeback",
    "authorization_reversed",
    "late_fee",
    "transfer_in",
    "transfer_out",
    "credit_limit_changed",
];

/// Envelope `payload` of a routed event: the external fields with the PAN
/// replaced by its keyed hash and last four digits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoutedEvent {
    /// Strictly positive minor units.
    pub amount: i64,
    pub currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_number: Option<String>,
    /// HMAC of the PAN (see [`crate::pan::PanHasher`]); the PAN itself never travels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_last4: Option<String>,
    /// Remaining type-specific fields, passed through untouched.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `POST /internal/v1/customers`: create a customer (and checking account) in the cell.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateCustomer {
    pub customer_id: CustomerId,
    pub name: String,
    pub epoch: Epoch,
    pub currency: Currency,
}

/// 201 answer to [`CreateCustomer`]; repeating the same request answers the same.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CustomerCreated {
    pub customer_id: CustomerId,
    pub account_id: uuid::Uuid,
    pub account_number: String,
}

/// `POST /internal/v1/customers/{customer_id}/cards`: issue a credit card.
/// Global generates the PAN; the cell gets only its hash and last four digits.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssueCard {
    pub card_id: uuid::Uuid,
    pub epoch: Epoch,
    pub pan_hash: String,
    pub last4: String,
    pub credit_limit: i64,
    pub currency: Currency,
}

/// 201 answer to [`IssueCard`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CardIssued {
    pub card_id: uuid::Uuid,
    pub last4: String,
    pub credit_limit: i64,
    pub currency: Currency,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Merchant {
    pub name: String,
    pub mcc: String,
    pub country: String,
}

/// `POST /internal/v1/authorizations`: decide a card purchase from memory.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthorizationRequest {
    pub customer_id: CustomerId,
    pub epoch: Epoch,
    pub pan_hash: String,
    pub amount: i64,
    pub currency: Currency,
    pub merchant: Merchant,
    pub network_reference: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Approved,
    Declined,
}

/// The decision; a repeated `network_reference` answers the first decision again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationDecision {
    pub decision: Decision,
    /// `approved`, `insufficient_limit`, `card_blocked`, `unknown_card`,
    /// `stale_epoch`, or (from global) `stand_in_timeout`, `shard_unavailable`.
    pub reason: String,
    pub authorization_id: uuid::Uuid,
}
