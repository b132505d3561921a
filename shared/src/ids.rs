//! Domain identifiers: customers, shards, events and placement epochs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why an identifier could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{0}` is not a valid uuid")]
    NotUuid(String),
    #[error("shard id must look like `shard-<n>` with n >= 1, got `{0}`")]
    BadShard(String),
    #[error("event id must be 1 to 128 printable ascii characters")]
    BadEventId,
}

/// A customer: the unit of partitioning. Every row and event carries one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerId(Uuid);

impl CustomerId {
    /// A new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(id: Uuid) -> Self {
        Self(id)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for CustomerId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for CustomerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| IdError::NotUuid(s.to_owned()))
    }
}

/// A cell, named `shard-<n>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShardId(String);

impl ShardId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let n = s
            .strip_prefix("shard-")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n >= 1);
        match n {
            Some(n) if format!("shard-{n}") == s => Ok(Self(s.to_owned())),
            _ => Err(IdError::BadShard(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `n` of `shard-<n>`.
    pub fn number(&self) -> u32 {
        self.0["shard-".len()..].parse().unwrap_or(0)
    }
}

impl fmt::Display for ShardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ShardId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ShardId> for String {
    fn from(s: ShardId) -> Self {
        s.0
    }
}

impl FromStr for ShardId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The id an external producer gives an event; the idempotency key downstream.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdError::BadEventId)
        }
    }

    pub fn generate() -> Self {
        Self(Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for EventId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<EventId> for String {
    fn from(s: EventId) -> Self {
        s.0
    }
}

/// A customer's placement version: it increases every time the customer moves.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct Epoch(pub i64);

impl Epoch {
    pub const FIRST: Epoch = Epoch(1);

    pub fn next(self) -> Self {
        Epoch(self.0 + 1)
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_are_canonical() {
        assert!(ShardId::parse("shard-1").is_ok());
        assert!(ShardId::parse("shard-12").is_ok());
        for bad in [
            "shard-0", "shard-01", "shard-", "Shard-1", "shard-1x", "x", "shard--1",
        ] {
            assert!(ShardId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn event_ids_are_bounded_printable() {
        assert!(EventId::parse("evt-1").is_ok());
        assert!(EventId::parse("").is_err());
        assert!(EventId::parse("a b").is_err());
        assert!(EventId::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn customer_id_round_trips() {
        let id = CustomerId::new();
        assert_eq!(id.to_string().parse::<CustomerId>().unwrap(), id);
        assert!("nope".parse::<CustomerId>().is_err());
    }
}
