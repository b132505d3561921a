//! The fault schedule: which fault, on what, held how long, drawn from one
//! seed, so a run's faults can be replayed exactly (`--seed`).

use rand::rngs::StdRng;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use serde::Serialize;

/// What a fault does to its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    KillShard,
    KillGlobal,
    KillBroker,
    KillPostgres,
    PauseShard,
    PauseGlobal,
    PauseBroker,
    PausePostgres,
    CutNetwork,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::KillShard,
        Kind::KillGlobal,
        Kind::KillBroker,
        Kind::KillPostgres,
        Kind::PauseShard,
        Kind::PauseGlobal,
        Kind::PauseBroker,
        Kind::PausePostgres,
        Kind::CutNetwork,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::KillShard => "SIGKILL shard process",
            Kind::KillGlobal => "SIGKILL global replica",
            Kind::KillBroker => "SIGKILL cell broker",
            Kind::KillPostgres => "SIGKILL cell Postgres",
            Kind::PauseShard => "SIGSTOP/SIGCONT shard process",
            Kind::PauseGlobal => "SIGSTOP/SIGCONT global replica",
            Kind::PauseBroker => "SIGSTOP/SIGCONT cell broker",
            Kind::PausePostgres => "SIGSTOP/SIGCONT cell Postgres",
            Kind::CutNetwork => "cell cut off the network",
        }
    }

    /// A fault of one shard cell (not of the global tier).
    pub fn is_cell(self) -> bool {
        !matches!(self, Kind::KillGlobal | Kind::PauseGlobal)
    }

    /// How long the fault lasts (ms): a kill is restarted after this, a
    /// pause continued, a cut healed.
    fn hold_range(self) -> (u64, u64) {
        match self {
            Kind::KillShard | Kind::KillGlobal | Kind::KillBroker | Kind::KillPostgres => {
                (200, 2_000)
            }
            Kind::PauseShard | Kind::PauseGlobal | Kind::PauseBroker | Kind::PausePostgres => {
                (500, 5_000)
            }
            Kind::CutNetwork => (1_000, 6_000),
        }
    }
}

/// One scheduled fault.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub index: usize,
    pub kind: Kind,
    /// Shard cell (1-based) or global replica (1-based).
    pub target: u32,
    /// Quiet time before the fault (ms), after the previous one recovered.
    pub gap_ms: u64,
    pub hold_ms: u64,
}

impl Fault {
    pub fn target_name(&self) -> String {
        match self.kind {
            Kind::KillGlobal | Kind::PauseGlobal if self.target == 1 => "global".to_owned(),
            Kind::KillGlobal | Kind::PauseGlobal => format!("global-{}", self.target),
            _ => format!("shard-{}", self.target),
        }
    }
}

/// `per_kind` faults of each of `kinds`, in a seeded random order, on
/// seeded random targets.
pub fn schedule(
    seed: u64,
    per_kind: u32,
    kinds: &[Kind],
    shards: u32,
    replicas: u32,
) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kinds_in_order: Vec<Kind> = kinds
        .iter()
        .flat_map(|k| std::iter::repeat_n(*k, per_kind as usize))
        .collect();
    kinds_in_order.shuffle(&mut rng);
    kinds_in_order
        .into_iter()
        .enumerate()
        .map(|(index, kind)| {
            let target = if kind.is_cell() {
                rng.gen_range(1..=shards)
            } else {
                rng.gen_range(1..=replicas)
            };
            let (lo, hi) = kind.hold_range();
            Fault {
                index,
                kind,
                target,
                gap_ms: rng.gen_range(500..=2_000),
                hold_ms: rng.gen_range(lo..=hi),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_replays_the_same_schedule() {
        let a = schedule(7, 3, &Kind::ALL, 2, 2);
        let b = schedule(7, 3, &Kind::ALL, 2, 2);
        let c = schedule(8, 3, &Kind::ALL, 2, 2);
        let key = |f: &Vec<Fault>| {
            f.iter()
                .map(|x| (x.kind, x.target, x.gap_ms, x.hold_ms))
                .collect::<Vec<_>>()
        };
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&c));
        assert_eq!(a.len(), 27);
        for k in Kind::ALL {
            assert_eq!(a.iter().filter(|f| f.kind == k).count(), 3);
        }
        assert!(a.iter().all(|f| (1..=2).contains(&f.target)));
    }
}
