//! Logical topics and their physical names.

/// Every topic a cell or the global tier uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Shard broker: external events routed in by global, keyed by customer.
    Inbound,
    /// Shard broker: decisions the authorizer made (its own log).
    Authorizations,
    /// Shard broker: ledger facts the authorizer follows (settlements, payments, limits).
    LedgerFacts,
    /// Shard broker: messages no consumer could process, with their error.
    DeadLetters,
    /// Shard broker: the cell's committed state changes, for the analytical export.
    CellChanges,
    /// Global broker: directory changes, so every replica drops stale cache entries.
    DirectoryChanges,
}

impl Topic {
    pub const SHARD: [Topic; 5] = [
        Topic::Inbound,
        Topic::Authorizations,
        Topic::LedgerFacts,
        Topic::DeadLetters,
        Topic::CellChanges,
    ];
    pub const GLOBAL: [Topic; 1] = [Topic::DirectoryChanges];

    pub fn name(self) -> &'static str {
        match self {
            Topic::Inbound => "cellbank.inbound",
            Topic::Authorizations => "cellbank.authorizations",
            Topic::LedgerFacts => "cellbank.ledger-facts",
            Topic::DeadLetters => "cellbank.dead-letters",
            Topic::CellChanges => "cellbank.cell-changes",
            Topic::DirectoryChanges => "cellbank.directory-changes",
        }
    }

    pub fn from_name(name: &str) -> Option<Topic> {
        Self::SHARD
            .into_iter()
            .chain(Self::GLOBAL)
            .find(|t| t.name() == name)
    }
}
