//! The double-entry ledger: pure rules, event parsing, the Postgres apply path,
//! its consumers and the outbox of facts for the authorizer.

pub mod batch;
pub mod event;
pub mod expiry;
pub mod facts;
pub mod intake;
pub mod memory;
pub mod rulebook;
pub mod store;
