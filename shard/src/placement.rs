//! A customer's placement in this cell: its state (active, fenced, moved
//! out) and epoch, and the one locked write path every writer of a
//! customer's data goes through. [`lock_for_write`] takes the customer's row
//! lock (serializing its writers, so facts reach the outbox in commit order)
//! and refuses a write to a customer that is not active here or at another
//! epoch. Only [`change`], an explicit operation (the primitive customer
//! moves use), moves the state or raises the epoch.

use std::collections::HashMap;
use std::fmt;

use cellbank_shared::ids::{CustomerId, Epoch};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::ledger::facts::{self, Fact};

/// Where a customer stands in this cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CustomerState {
    /// Owned here: writable at its epoch.
    Active,
    /// Being moved: nothing is written until the move completes or rolls back.
    Fenced,
    /// Another cell owns it now.
    MovedOut,
    /// A move is copying it in: only the move writes it until it is
    /// activated at a higher epoch.
    Importing,
}

impl CustomerState {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerState::Active => "active",
            CustomerState::Fenced => "fenced",
            CustomerState::MovedOut => "moved_out",
            CustomerState::Importing => "importing",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(CustomerState::Active),
            "fenced" => Some(CustomerState::Fenced),
            "moved_out" => Some(CustomerState::MovedOut),
            "importing" => Some(CustomerState::Importing),
            _ => None,
        }
    }
}

impl fmt::Display for CustomerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At which epoch, and from where, a write happens.
#[derive(Clone, Copy, Debug)]
pub enum WriteAt {
    /// The epoch the write carries (an event's, a token's): must be current.
    Epoch(Epoch),
    /// Whatever is current (an operator's write, which carries none).
    Current,
    /// An inbound event read from the cell's log: also written while the
    /// customer is fenced, until the inbound consumer has read the move's
    /// fence marker (everything accepted before the fence is applied here).
    Inbound(Epoch),
    /// The booking of an authorizer decision: also written while fenced (a
    /// fenced customer gets no new approvals, so what is booked was decided
    /// before the fence, and the move waits for it).
    Booking(Epoch),
    /// A move replaying the customer's history into this cell.
    Import,
}

/// Why a customer's data cannot be written (or its placement changed).
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("unknown customer {0}")]
    UnknownCustomer(CustomerId),
    #[error("stale epoch: the write has {write}, the customer is at {current}")]
    Stale { write: i64, current: i64 },
    #[error("epoch {write} is ahead of the customer's {current} here: only an explicit operation raises it")]
    Ahead { write: i64, current: i64 },
    #[error("customer {customer} is {state} here: not writable")]
    NotWritable {
        customer: CustomerId,
        state: CustomerState,
    },
    #[error("placement cannot go from {from} at epoch {from_epoch} to {to} at epoch {to_epoch}")]
    Transition {
        from: CustomerState,
        from_epoch: i64,
        to: CustomerState,
        to_epoch: i64,
    },
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The placement as locked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub customer_id: CustomerId,
    pub state: CustomerState,
    pub epoch: Epoch,
    /// The customer's change counter: the version of its latest event.
    pub version: i64,
    /// The inbound consumer has read the current fence's marker.
    #[serde(skip)]
    pub inbound_fenced: bool,
    /// The fence is a move's (an operator's fence has no marker to wait for).
    #[serde(skip)]
    pub moving: bool,
}

type PlacementRow = (uuid::Uuid, i64, String, i64, bool, bool);

const PLACEMENT_COLUMNS: &str =
    "customer_id, epoch, state, version, inbound_fenced, fence_move IS NOT NULL";

fn placement(
    (customer, epoch, state, version, inbound_fenced, moving): PlacementRow,
) -> Result<Placement, Refused> {
    let state = CustomerState::parse(&state)
        .ok_or_else(|| sqlx::Error::Decode(format!("customer state {state}").into()))?;
    Ok(Placement {
        customer_id: CustomerId::from_uuid(customer),
        state,
        epoch: Epoch(epoch),
        version,
        inbound_fenced,
        moving,
    })
}

/// Locks the customer's row until the caller's transaction ends.
pub async fn lock(conn: &mut PgConnection, customer: CustomerId) -> Result<Placement, Refused> {
    let row: Option<PlacementRow> = sqlx::query_as(&format!(
        "SELECT {PLACEMENT_COLUMNS} FROM customers WHERE customer_id = $1 FOR UPDATE"
    ))
    .bind(customer.as_uuid())
    .fetch_optional(&mut *conn)
    .await?;
    placement(row.ok_or(Refused::UnknownCustomer(customer))?)
}

/// Locks the rows of `customers` that exist, all in one statement and in one
/// order (by id), so two batches sharing customers wait for each other
/// instead of deadlocking.
pub async fn lock_all(
    conn: &mut PgConnection,
    customers: &[uuid::Uuid],
) -> Result<HashMap<CustomerId, Placement>, Refused> {
    let rows: Vec<PlacementRow> = sqlx::query_as(&format!(
        "SELECT {PLACEMENT_COLUMNS} FROM customers WHERE customer_id = ANY($1)
         ORDER BY customer_id FOR UPDATE"
    ))
    .bind(customers)
    .fetch_all(&mut *conn)
    .await?;
    rows.into_iter()
        .map(|r| placement(r).map(|p| (p.customer_id, p)))
        .collect()
}

/// The one write path: locks the customer and checks it is active here at
/// the write's epoch. Returns the epoch to stamp the write with.
pub async fn lock_for_write(
    conn: &mut PgConnection,
    customer: CustomerId,
    at: WriteAt,
) -> Result<Epoch, Refused> {
    check_write(&lock(conn, customer).await?, at)
}

/// Whether the locked placement `p` takes a write `at`: the epoch to stamp
/// it with, or why not.
pub fn check_write(p: &Placement, at: WriteAt) -> Result<Epoch, Refused> {
    use CustomerState::*;
    let customer = p.customer_id;
    let writable = match (at, p.state) {
        (WriteAt::Import, state) => state == Importing,
        (_, Active) => true,
        (WriteAt::Inbound(_), Fenced) => p.moving && !p.inbound_fenced,
        (WriteAt::Booking(_), Fenced) => p.moving,
        _ => false,
    };
    // A write that carries an older epoch is stale wherever it lands (a
    // straggler of a move): said before "not writable", so global forwards it.
    let carried = match at {
        WriteAt::Epoch(e) | WriteAt::Inbound(e) | WriteAt::Booking(e) => Some(e),
        WriteAt::Current | WriteAt::Import => None,
    };
    match carried {
        Some(e) if e.0 < p.epoch.0 => Err(Refused::Stale {
            write: e.0,
            current: p.epoch.0,
        }),
        _ if !writable => Err(Refused::NotWritable {
            customer,
            state: p.state,
        }),
        Some(e) if e.0 > p.epoch.0 => Err(Refused::Ahead {
            write: e.0,
            current: p.epoch.0,
        }),
        Some(e) => Ok(e),
        None => Ok(p.epoch),
    }
}

/// The explicit operation that moves a customer's placement here:
/// - `active(e) -> fenced(e)`: a move's cutover starts;
/// - `fenced(e) -> active(e)`: the move rolled back;
/// - `fenced(e) -> moved_out(e)`: the other cell owns it now;
/// - `any(e) -> active(e')` with `e' > e`: activated at a higher epoch (the
///   target of a move, or a customer moving back).
///
/// Repeating the current placement is a no-op. The change reaches the
/// authorizer as a customer fact and the customer's history as `event_id`.
pub async fn change(
    conn: &mut PgConnection,
    customer: CustomerId,
    to: CustomerState,
    to_epoch: Epoch,
    event_id: &str,
) -> Result<Placement, Refused> {
    use CustomerState::*;
    let p = lock(conn, customer).await?;
    let same = to_epoch == p.epoch;
    let allowed = match (p.state, to) {
        _ if same && p.state == to => return Ok(p),
        (Active, Fenced) | (Fenced, Active) | (Fenced, MovedOut) => same,
        // A customer that moved out comes back: a move imports it again.
        (MovedOut, Importing) => same,
        (_, Active) => to_epoch.0 > p.epoch.0,
        _ => false,
    };
    if !allowed {
        return Err(Refused::Transition {
            from: p.state,
            from_epoch: p.epoch.0,
            to,
            to_epoch: to_epoch.0,
        });
    }
    // Leaving the fence (rolled back, moved out, activated) forgets it.
    sqlx::query(
        "UPDATE customers SET state = $2, epoch = $3,
             fence_move = CASE WHEN $2 = 'fenced' THEN fence_move END,
             inbound_fenced = CASE WHEN $2 = 'fenced' THEN inbound_fenced ELSE false END
         WHERE customer_id = $1",
    )
    .bind(customer.as_uuid())
    .bind(to.as_str())
    .bind(to_epoch.0)
    .execute(&mut *conn)
    .await?;
    let fact = Fact::Customer {
        customer_id: customer,
        epoch: to_epoch,
        state: Some(to),
    };
    facts::record(conn, &fact).await?;
    let change = crate::history::Change::Placement { state: to };
    crate::history::record(conn, customer, to_epoch, event_id, &change).await?;
    Ok(Placement {
        customer_id: customer,
        state: to,
        epoch: to_epoch,
        version: p.version + 1,
        inbound_fenced: false,
        moving: false,
    })
}

/// A move's own step here, at the customer's current epoch: fence it (naming
/// the move), release the fence, mark it moved out, or mark it importing.
/// Kept out of the customer's history, which a move copies and must read
/// the same in both cells; the authorizer still learns it as a fact. The
/// caller holds the lock ([`lock`]) and has checked the transition.
pub async fn set_for_move(
    conn: &mut PgConnection,
    p: &Placement,
    to: CustomerState,
    fence_move: Option<uuid::Uuid>,
) -> Result<Placement, Refused> {
    sqlx::query(
        "UPDATE customers SET state = $2, fence_move = $3, inbound_fenced = false
         WHERE customer_id = $1",
    )
    .bind(p.customer_id.as_uuid())
    .bind(to.as_str())
    .bind(fence_move)
    .execute(&mut *conn)
    .await?;
    let fact = Fact::Customer {
        customer_id: p.customer_id,
        epoch: p.epoch,
        state: Some(to),
    };
    facts::record(conn, &fact).await?;
    Ok(Placement {
        state: to,
        inbound_fenced: false,
        moving: fence_move.is_some(),
        ..*p
    })
}
