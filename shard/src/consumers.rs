//! The cell's Kafka consumers in one table: each one's name (what operators
//! hold), consumer group, topic and runner settings are methods of
//! [`CellConsumer`], so nothing types them twice.

use cellbank_shared::ids::ShardId;
use cellbank_shared::kafka::{Hold, RunnerConfig, Topic};

use crate::settings::Settings;

/// A consumer every replica of the cell runs (in one group per consumer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CellConsumer {
    /// Routed events (envelopes from global) into the ledger.
    LedgerInbound,
    /// The authorizer's decisions into the ledger (approvals are booked).
    LedgerAuthorizations,
    /// Dead letters into the mortician's table.
    Mortician,
}

impl CellConsumer {
    pub const ALL: [CellConsumer; 3] = [
        CellConsumer::LedgerInbound,
        CellConsumer::LedgerAuthorizations,
        CellConsumer::Mortician,
    ];

    /// The name operators use (`/admin/v1/consumers/{name}/hold`).
    pub fn name(self) -> &'static str {
        match self {
            CellConsumer::LedgerInbound => "ledger-inbound",
            CellConsumer::LedgerAuthorizations => "ledger-authorizations",
            CellConsumer::Mortician => "mortician",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn topic(self) -> Topic {
        match self {
            CellConsumer::LedgerInbound => Topic::Inbound,
            CellConsumer::LedgerAuthorizations => Topic::Authorizations,
            CellConsumer::Mortician => Topic::DeadLetters,
        }
    }

    /// `<group prefix>-<shard>-<name>`: one group per consumer and cell.
    pub fn group(self, settings: &Settings, shard: &ShardId) -> String {
        format!("{}-{shard}-{}", settings.kafka.group_prefix, self.name())
    }

    /// The runner settings of this consumer, under the operator's `hold`.
    pub fn runner_config(self, settings: &Settings, shard: &ShardId, hold: Hold) -> RunnerConfig {
        let mut cfg = RunnerConfig::new(
            &settings.kafka.bootstrap,
            &self.group(settings, shard),
            &[self.topic().name()],
        );
        cfg.hold = hold;
        cfg.fetch_wait_ms = settings.kafka.fetch_wait_ms;
        let max_batch = settings.ledger.max_batch;
        match self {
            CellConsumer::LedgerInbound => {
                cfg.max_batch = max_batch;
                cfg.max_in_flight = max_batch.max(256) * 8;
                cfg.dead_letter_topic = Some(Topic::DeadLetters.name().to_owned());
            }
            CellConsumer::LedgerAuthorizations => {
                cfg.max_batch = max_batch;
                cfg.dead_letter_topic = Some(Topic::DeadLetters.name().to_owned());
            }
            CellConsumer::Mortician => cfg.max_batch = 64,
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_groups_differ() {
        let s = Settings::default();
        let shard: ShardId = "shard-3".parse().unwrap();
        let mut groups = std::collections::BTreeSet::new();
        for c in CellConsumer::ALL {
            assert_eq!(CellConsumer::parse(c.name()), Some(c));
            assert!(c.group(&s, &shard).contains("shard-3"));
            groups.insert(c.group(&s, &shard));
        }
        assert_eq!(groups.len(), CellConsumer::ALL.len());
        assert_eq!(CellConsumer::parse("nope"), None);
    }
}
