//! Customer moves between shards: the move's state machine, kept in the
//! directory database (this module), and the mover that drives it
//! ([`mover`]). A move goes `planned → copying → cutover → flipped →
//! completed`, or to `aborting → aborted` before the flip. Any replica may
//! drive a move under a lease; each takeover raises the move's `attempt`,
//! which conditions every write here and every step the cells accept.
//!
//! What went wrong in other systems' moves, and why it cannot here:
//! - *A stop position taken before writes truly stopped; long transactions
//!   committing after the switch.* Every write of a customer takes its row
//!   lock and checks its state under it, and the version a move copies by is
//!   taken under that lock (a trigger), so versions commit in order; the
//!   fence takes the same lock. A transaction either committed before the
//!   fence (and is copied) or is refused after it. Log records accepted
//!   before the fence are applied at the source before the tail is copied
//!   (the drain waits for the fence marker and for the authorizer's
//!   approvals to be booked).
//! - *Switching while replication lags.* The preflight waits while the
//!   source's consumers lag (`moves.max_source_lag`); the flip happens only
//!   after the drain and a verified tail.
//! - *Buffering stuck for the whole window.* A held request waits at most
//!   `moves.hold_ms` (an authorization, within its own deadline, then a
//!   `customer_moving` stand-in decline) and reads the directory itself.
//! - *A half-finished switch with no single source of truth.* The directory
//!   is it: the flip is one transaction conditioned on the old placement and
//!   epoch, with the move's phase in the same database.
//! - *Resume points in the middle of a transaction.* A resumed copy restarts
//!   from the target's own version: each import batch is one transaction and
//!   events keep their source version, so a batch is applied whole or not.
//! - *Verifier false positives from collation or time precision.* Digests
//!   order text with `COLLATE "C"` and compare times as integer microseconds.
//! - *Leftovers of an aborted move blocking the next one.* Only open moves
//!   are unique per customer; an abort purges the target's copy; a fence
//!   marker names its move, so an old one changes nothing.
//! - *Copies killed by idle-in-transaction timeouts.* No transaction spans
//!   the copy: each page is a short read-only snapshot, each import batch its
//!   own transaction.
//! - *A catch-up loop that never converges.* Rounds are bounded
//!   (`moves.max_rounds`); the cutover copies the rest under the fence.

pub mod mover;
pub mod repo;
pub mod steps;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use cellbank_shared::ids::{CustomerId, ShardId};

/// Where a move stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Accepted; nothing done yet.
    Planned,
    /// The source serves while the history is copied, in catch-up rounds.
    Copying,
    /// The freeze: traffic held, the source fenced, the tail copied and
    /// verified, the directory flipped.
    Cutover,
    /// The target owns the customer; the source is told it moved out.
    Flipped,
    Completed,
    /// Rolling back (before the flip only).
    Aborting,
    Aborted,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planned => "planned",
            Phase::Copying => "copying",
            Phase::Cutover => "cutover",
            Phase::Flipped => "flipped",
            Phase::Completed => "completed",
            Phase::Aborting => "aborting",
            Phase::Aborted => "aborted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Phase::Planned,
            Phase::Copying,
            Phase::Cutover,
            Phase::Flipped,
            Phase::Completed,
            Phase::Aborting,
            Phase::Aborted,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Whether the move is over (its customer can move again).
    pub fn is_final(self) -> bool {
        matches!(self, Phase::Completed | Phase::Aborted)
    }

    /// Whether the directory may still roll the move back.
    pub fn before_flip(self) -> bool {
        matches!(self, Phase::Planned | Phase::Copying | Phase::Cutover)
    }
}

/// A move as the directory keeps it.
#[derive(Clone, Debug, Serialize)]
pub struct Move {
    pub id: Uuid,
    pub customer_id: CustomerId,
    pub from: ShardId,
    pub to: ShardId,
    pub from_epoch: i64,
    pub phase: Phase,
    pub reason: Option<String>,
    #[serde(skip)]
    pub abort_requested: Option<String>,
    pub copied_version: i64,
    pub copied_events: i64,
    pub rounds: i32,
    pub attempt: i64,
    pub requested_by: String,
    pub source_copy: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub frozen_at: Option<DateTime<Utc>>,
    pub flipped_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How long the customer's traffic was held, in milliseconds.
    pub freeze_ms: Option<f64>,
    /// Milliseconds per step of the latest attempt.
    pub timings: serde_json::Map<String, serde_json::Value>,
}

impl Move {
    /// Notes how long a step took (kept with the move at its next write).
    pub fn took(&mut self, step: &str, since: tokio::time::Instant) {
        let ms = (since.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
        self.timings.insert(step.to_owned(), ms.into());
    }
}

/// Why a move step could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    /// Another replica took the move over (a newer attempt): stop.
    #[error("move {0} was taken over by a newer attempt")]
    Superseded(Uuid),
    /// The move cannot go on and rolls back (before the flip).
    #[error("{0}")]
    Abort(String),
    /// Worth retrying: a shard or the directory did not answer.
    #[error("{0}")]
    Retry(String),
    /// A cell refused the step for what the customer is there (a 409 to
    /// this attempt): retried like any failure, except where the step says
    /// the move cannot go on (the fence).
    #[error("{0}")]
    Refused(String),
}

impl From<sqlx::Error> for MoveError {
    fn from(e: sqlx::Error) -> Self {
        MoveError::Retry(format!("directory database: {e}"))
    }
}

impl From<crate::cell_client::CellError> for MoveError {
    fn from(e: crate::cell_client::CellError) -> Self {
        use crate::cell_client::CellError;
        match e {
            // A 409 naming an older attempt means a newer mover acts: that
            // one is only worth retrying (the lease check then stops this one).
            CellError::Rejected {
                status: 409,
                ref body,
                ..
            } if !body.contains("superseded") => MoveError::Refused(e.to_string()),
            other => MoveError::Retry(other.to_string()),
        }
    }
}
