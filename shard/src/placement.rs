//! A customer's placement in this cell: its state (active, fenced, moved
//! out) and epoch, and the one locked write path every writer of a
//! customer's data goes through. [`lock_for_write`] takes the customer's row
//! lock (serializing its writers, so facts reach the outbox in commit order)
//! and refuses a write to a customer that is not active here or at another
//! epoch. Only [`change`], an explicit operation (the primitive customer
//! moves use), moves the state or raises the epoch.

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
}

impl CustomerState {
    pub fn as_str(self) -> &'static str {
        match self {
            CustomerState::Active => "active",
            CustomerState::Fenced => "fenced",
            CustomerState::MovedOut => "moved_out",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(CustomerState::Active),
            "fenced" => Some(CustomerState::Fenced),
            "moved_out" => Some(CustomerState::MovedOut),
            _ => None,
        }
    }
}

impl fmt::Display for CustomerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// At which epoch a write happens.
#[derive(Clone, Copy, Debug)]
pub enum WriteAt {
    /// The epoch the write carries (an event's, a token's): must be current.
    Epoch(Epoch),
    /// Whatever is current (an operator's write, which carries none).
    Current,
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
}

/// Locks the customer's row until the caller's transaction ends.
async fn lock(conn: &mut PgConnection, customer: CustomerId) -> Result<Placement, Refused> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT epoch, state FROM customers WHERE customer_id = $1 FOR UPDATE")
            .bind(customer.as_uuid())
            .fetch_optional(&mut *conn)
            .await?;
    let (epoch, state) = row.ok_or(Refused::UnknownCustomer(customer))?;
    let state = CustomerState::parse(&state)
        .ok_or_else(|| sqlx::Error::Decode(format!("customer state {state}").into()))?;
    Ok(Placement {
        customer_id: customer,
        state,
        epoch: Epoch(epoch),
    })
}

/// The one write path: locks the customer and checks it is active here at
/// the write's epoch. Returns the epoch to stamp the write with.
pub async fn lock_for_write(
    conn: &mut PgConnection,
    customer: CustomerId,
    at: WriteAt,
) -> Result<Epoch, Refused> {
    let p = lock(conn, customer).await?;
    if p.state != CustomerState::Active {
        return Err(Refused::NotWritable {
            customer,
            state: p.state,
        });
    }
    match at {
        WriteAt::Current => Ok(p.epoch),
        WriteAt::Epoch(e) if e.0 < p.epoch.0 => Err(Refused::Stale {
            write: e.0,
            current: p.epoch.0,
        }),
        WriteAt::Epoch(e) if e.0 > p.epoch.0 => Err(Refused::Ahead {
            write: e.0,
            current: p.epoch.0,
        }),
        WriteAt::Epoch(e) => Ok(e),
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
    sqlx::query("UPDATE customers SET state = $2, epoch = $3 WHERE customer_id = $1")
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
    })
}
