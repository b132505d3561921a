//! Every offset of a partition reaches its worker once and in order, even
//! from a broker that skips or repeats records.
//!
//! Kafka answers a fetch from an offset inside a producer's batch with that
//! whole batch, and the client drops what precedes the offset. tansu (the
//! broker run here) answers with the batches that *start* at or after it:
//! the rest of the batch is skipped and the next batch can come again and
//! again. That happens whenever a consumer starts from a committed offset
//! inside a batch (a restart, a rebalance) or resumes after a pause. The
//! runner tracks the next offset it expects per partition: a repeat is
//! dropped, a gap is never passed on; the partition is rewound to before
//! the gap and read forward again (records before the expected offset are
//! dropped as repeats).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::partitions::TopicPartition;

/// How far back the first rewind of a gap goes; the second goes to the
/// start of the log. tansu answers from the first batch that starts at or
/// after the offset asked for, so the rewind must reach the start of the
/// batch holding the gap; a producer batch holds at most a few thousand of
/// the cell's records.
pub(super) const REWIND_WINDOW: i64 = 10_000;

/// Rewinds of one gap before it is given up on as missing from the log.
pub(super) const MAX_REWINDS: u32 = 3;

/// After a rewind, records still on their way from before it may arrive:
/// for this long a gap waits for the rewind instead of counting as a
/// failed one.
pub(super) const SETTLE: Duration = Duration::from_millis(500);

/// What to do with a record, given the offset expected next.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// The expected one (or the first seen): pass it on.
    Next,
    /// Already passed on, or from before a rewind that is under way: drop it.
    Repeat,
    /// Records before it are missing: drop it and re-read from `from`
    /// (`None`: the start of the log). `attempt` counts the rewinds so far.
    Gap {
        expected: i64,
        from: Option<i64>,
        attempt: u32,
    },
    /// The gap outlived every rewind: those offsets are not in the log.
    Missing { expected: i64 },
    /// The first record after the start lies before it: the broker no
    /// longer has the committed offset (the client fell back to its reset
    /// policy). Passed on; the partition goes on from there.
    Reset { expected: i64 },
}

/// The next expected offset of each assigned partition.
#[derive(Default)]
pub(super) struct Continuity {
    next: HashMap<TopicPartition, i64>,
    /// Rewinds of the current gap, and when the last one was asked for.
    rewinds: HashMap<TopicPartition, (u32, Instant)>,
    /// Started partitions whose first record has not come yet.
    fresh: HashSet<TopicPartition>,
}

impl Continuity {
    /// The partition starts at `offset` (its committed offset).
    pub fn start(&mut self, tp: TopicPartition, offset: i64) {
        self.rewinds.remove(&tp);
        self.fresh.insert(tp.clone());
        self.next.insert(tp, offset);
    }

    /// The partition was revoked: nothing is expected of it any more.
    pub fn forget(&mut self, tp: &TopicPartition) {
        self.next.remove(tp);
        self.rewinds.remove(tp);
        self.fresh.remove(tp);
    }

    /// Judges `offset` of `tp` arriving at `now`; a record passed on moves
    /// the expectation.
    pub fn check(&mut self, tp: &TopicPartition, offset: i64, now: Instant) -> Verdict {
        let expected = match self.next.get(tp) {
            None => offset,
            Some(&next) => next,
        };
        let first = self.fresh.remove(tp);
        if offset < expected && first {
            self.next.insert(tp.clone(), offset + 1);
            return Verdict::Reset { expected };
        }
        if offset < expected {
            return Verdict::Repeat;
        }
        if offset == expected {
            self.rewinds.remove(tp);
            self.next.insert(tp.clone(), offset + 1);
            return Verdict::Next;
        }
        let (attempt, at) = self.rewinds.entry(tp.clone()).or_insert((0, now));
        if *attempt > 0 && now.duration_since(*at) < SETTLE {
            return Verdict::Repeat;
        }
        *attempt += 1;
        *at = now;
        let attempt = *attempt;
        if attempt > MAX_REWINDS {
            self.rewinds.remove(tp);
            self.next.insert(tp.clone(), offset + 1);
            return Verdict::Missing { expected };
        }
        let from = (attempt == 1).then(|| (expected - REWIND_WINDOW).max(0));
        Verdict::Gap {
            expected,
            from,
            attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp() -> TopicPartition {
        ("t".to_owned(), 0)
    }

    /// `n` settle periods after `t0`.
    fn later(t0: Instant, n: u32) -> Instant {
        t0 + SETTLE * n
    }

    #[test]
    fn in_order_records_pass_and_repeats_are_dropped() {
        let (mut c, t) = (Continuity::default(), Instant::now());
        c.start(tp(), 50);
        assert_eq!(c.check(&tp(), 50, t), Verdict::Next);
        assert_eq!(c.check(&tp(), 51, t), Verdict::Next);
        assert_eq!(c.check(&tp(), 50, t), Verdict::Repeat);
        assert_eq!(c.check(&tp(), 52, t), Verdict::Next);
    }

    #[test]
    fn a_gap_rewinds_near_then_to_the_start_and_is_reported_missing_at_last() {
        let (mut c, t) = (Continuity::default(), Instant::now());
        c.start(tp(), 12_000);
        let gap = |from, attempt| Verdict::Gap {
            expected: 12_000,
            from,
            attempt,
        };
        assert_eq!(c.check(&tp(), 12_050, t), gap(Some(2_000), 1));
        assert_eq!(c.check(&tp(), 12_060, t), Verdict::Repeat, "settling");
        assert_eq!(c.check(&tp(), 12_050, later(t, 1)), gap(None, 2));
        assert_eq!(c.check(&tp(), 12_050, later(t, 2)), gap(None, 3));
        assert_eq!(
            c.check(&tp(), 12_050, later(t, 3)),
            Verdict::Missing { expected: 12_000 }
        );
        assert_eq!(c.check(&tp(), 12_051, later(t, 3)), Verdict::Next);
    }

    #[test]
    fn a_first_record_before_the_committed_offset_is_a_reset_not_a_repeat() {
        let (mut c, t) = (Continuity::default(), Instant::now());
        c.start(tp(), 500);
        assert_eq!(c.check(&tp(), 0, t), Verdict::Reset { expected: 500 });
        assert_eq!(c.check(&tp(), 1, t), Verdict::Next);
        assert_eq!(c.check(&tp(), 0, t), Verdict::Repeat, "only the first");
    }

    #[test]
    fn a_filled_gap_resets_the_rewinds_and_a_new_start_forgets_the_old() {
        let (mut c, t) = (Continuity::default(), Instant::now());
        c.start(tp(), 5);
        let first = |v: &Verdict| matches!(v, Verdict::Gap { attempt: 1, .. });
        assert!(first(&c.check(&tp(), 9, t)));
        assert_eq!(c.check(&tp(), 3, t), Verdict::Repeat);
        assert_eq!(c.check(&tp(), 5, t), Verdict::Next);
        assert!(first(&c.check(&tp(), 9, t)), "a new gap starts over");
        c.forget(&tp());
        assert_eq!(
            c.check(&tp(), 9, t),
            Verdict::Next,
            "unknown start: first seen"
        );
    }
}
