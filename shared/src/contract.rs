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

/// How far ahead of its acceptance an event may be dated: global refuses a
/// later one, a shard dead-letters it.
pub const MAX_FUTURE: chrono::Duration = chrono::Duration::minutes(5);

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

/// `POST /internal/v1/transfers/{transfer_id}/credit`: a transfer from a
/// customer of another cell arrives for the account with this number, or for
/// this customer's account in the currency (a transfer to a login; global's
/// transfer service calls the recipient's cell). Exactly one recipient.
/// Idempotent on transfer_id; refused (409) once the id was voided there.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditTransfer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_account_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_customer_id: Option<CustomerId>,
    pub amount: i64,
    pub currency: Currency,
}

/// `POST /internal/v1/transfers/{transfer_id}/void`: global gives up a
/// credit it may or may not have made. The cell answers whether the credit
/// was booked (`received`) or, if not, records that it never will be
/// (`voided`): an id voided in a cell is refused there for ever after.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoidOutcome {
    Received,
    Voided,
}

/// The answer to a void.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VoidAnswer {
    pub transfer_id: uuid::Uuid,
    pub state: VoidOutcome,
}

/// `POST /internal/v1/transfers/{transfer_id}/deliver` and `.../return` on
/// the sender's cell: the credit was made (the pending amount is delivered)
/// or it never will be (the pending amount goes back to the sender, with the
/// reason). Each answers the transfer's state; a transfer settled the other
/// way is refused (409).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleTransfer {
    pub customer_id: CustomerId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `POST /internal/v1/transfers` on global (called by a cell with its own
/// internal token): a transfer whose sender's money is reserved in the
/// sender's cell, for global's transfer service to credit to the
/// recipient and settle back. Idempotent on transfer_id; the same id with
/// other details is refused (409).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandOffTransfer {
    pub transfer_id: uuid::Uuid,
    /// The cell that reserved the money (whose token authenticates the call).
    pub source_shard: String,
    pub from_customer_id: CustomerId,
    pub from_account_id: uuid::Uuid,
    pub amount: i64,
    pub currency: Currency,
    /// Exactly one of the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_account_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_login: Option<String>,
    /// When the sender asked (the start of its end-to-end latency).
    pub requested_at: chrono::DateTime<chrono::Utc>,
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

/// The cell's change log (Topic::CellChanges), read by the analytical
/// export: one committed insert or update of an exported entity.
pub mod changes {
    use serde::{Deserialize, Serialize};

    use crate::ids::CustomerId;

    /// The entities the change log carries, as their tables are named.
    pub const ENTITIES: [&str; 5] = ["postings", "customers", "accounts", "cards", "transfers"];

    /// One change. `seq` is the cell's change id: increasing in commit order
    /// per customer, unique in the cell, the same on every redelivery.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct Change {
        pub seq: i64,
        pub entity: String,
        /// `insert` or `update`.
        pub op: String,
        pub customer_id: CustomerId,
        /// The customer's epoch the row was written at.
        pub epoch: i64,
        /// When the change committed (the transaction's time), RFC 3339.
        pub changed_at: chrono::DateTime<chrono::Utc>,
        /// The row after the change: its exported columns only.
        pub row: serde_json::Map<String, serde_json::Value>,
    }
}

/// What global's mover and a cell say to each other while a customer moves
/// (the cells' `/internal/v1/moves/...` API).
pub mod moves {
    use serde::{Deserialize, Serialize};

    use crate::ids::{CustomerId, Epoch};

    /// The header of a fence marker in a cell's inbound log: the move's id.
    pub const FENCE_HEADER: &str = "cellbank-fence";

    /// One event of a customer's history, as a cell keeps it.
    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    pub struct HistoryEvent {
        pub event_id: String,
        pub namespace: String,
        pub epoch: Epoch,
        /// The customer's change counter at this event.
        pub version: i64,
        /// The change, as the cell records it (opaque to global).
        pub payload: serde_json::Value,
    }

    /// A consistent slice of a customer's history: the events after a
    /// version, read in one snapshot with the customer's placement.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct HistoryPage {
        pub customer_id: CustomerId,
        pub state: String,
        pub epoch: Epoch,
        /// The customer's committed version in the snapshot.
        pub version: i64,
        pub events: Vec<HistoryEvent>,
        /// Whether events after the last one returned exist in the snapshot.
        pub more: bool,
    }

    /// Who acts for the move: `attempt` fences out an older mover.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct MoveCall {
        pub customer_id: CustomerId,
        pub attempt: i64,
        /// The epoch the step acts at (fence: the current one; activate: the new one).
        #[serde(default)]
        pub epoch: Option<Epoch>,
        /// Moved out: the public base URL of the customer's new cell (the
        /// old cell links the app there).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub moved_to: Option<String>,
    }

    /// Events to import into the target.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct ImportBatch {
        pub customer_id: CustomerId,
        pub attempt: i64,
        pub events: Vec<HistoryEvent>,
    }

    /// What the target holds of the customer after an import.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Imported {
        pub version: i64,
        pub applied: usize,
    }

    /// Whether the source has finished with the customer's fenced tail.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct DrainStatus {
        pub state: String,
        pub version: i64,
        /// The inbound consumer has read this move's fence marker.
        pub inbound_fenced: bool,
        /// The deciding authorizer approves nothing more for the customer.
        pub authorizer_fenced: bool,
        /// Approvals the ledger has not booked yet.
        pub pending_holds: usize,
        pub drained: bool,
    }

    /// What a move compares between the two cells. Ids of book accounts are
    /// not compared (each cell numbers its own); codes and currencies are.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Digest {
        pub events: i64,
        pub postings: i64,
        /// Book account balances, `code/currency=amount`, sorted.
        pub balances: Vec<String>,
        /// Book accounts whose balance is not the sum of their postings.
        pub balances_off: i64,
        /// Movements whose entries do not sum to zero per currency.
        pub unbalanced_movements: i64,
        /// SHA-256 of every entry (event, entry, account code, currency,
        /// amount, business time in microseconds), in a collation-free order.
        pub entries_sha256: String,
        /// SHA-256 of the rows beside the ledger: accounts, cards, purchases,
        /// transfers.
        pub rows_sha256: String,
    }

    /// A dead letter another cell may own: global forwards it.
    #[derive(Clone, Debug, Serialize, Deserialize)]
    pub struct Straggler {
        pub id: i64,
        pub customer_id: CustomerId,
        /// The routed envelope, as it was produced.
        pub envelope: serde_json::Value,
    }
}

/// The bank-wide key of a transfer between customers: the sender's own
/// `transfer_id` is theirs to choose (idempotency within their books), so two
/// senders may pick the same one; the recipient's side and global's transfer
/// service know a transfer by this key, derived from both (a SHA-256 of the
/// sender and their id, as a version-8 UUID), which no client can choose.
pub fn transfer_key(from: CustomerId, transfer_id: uuid::Uuid) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"cellbank transfer key v1");
    h.update(from.as_uuid().as_bytes());
    h.update(transfer_id.as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod transfer_key_tests {
    use super::*;

    #[test]
    fn differs_per_sender_and_id_and_is_stable() {
        let (a, b) = (CustomerId::new(), CustomerId::new());
        let t = uuid::Uuid::now_v7();
        assert_eq!(transfer_key(a, t), transfer_key(a, t));
        assert_ne!(transfer_key(a, t), transfer_key(b, t));
        assert_ne!(transfer_key(a, t), transfer_key(a, uuid::Uuid::now_v7()));
        assert_ne!(transfer_key(a, t), t);
        assert_eq!(transfer_key(a, t).get_version_num(), 8);
    }
}
