//! The de-duplication window: which change ids (the cell's `seq`) a
//! partition has already exported, for the last `size` ids below the highest
//! seen. The log is at-least-once (the relay republishes what it had not
//! marked sent when it crashed), and redeliveries land close behind the
//! original, so a bounded window catches them in bounded memory.
//!
//! Ids are kept as runs (`lo..=hi`): the log's ids are nearly contiguous, so
//! a window of a million ids is a handful of runs, small enough to be saved
//! with every checkpoint (a redo then dedupes exactly as the first run did).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What the window says of an id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen: export it (now remembered).
    New,
    /// Seen in the window: a redelivery, drop it.
    Duplicate,
    /// Older than the window: it cannot tell, so it is exported (never lost;
    /// the logical tables dedupe by change id as a second line).
    BeyondWindow,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// How many ids below the highest seen are remembered.
    size: i64,
    /// Disjoint, non-adjacent runs of seen ids: `lo -> hi` (inclusive).
    runs: BTreeMap<i64, i64>,
}

impl Window {
    pub fn new(size: u64) -> Self {
        Self {
            size: i64::try_from(size.max(1)).unwrap_or(i64::MAX),
            runs: BTreeMap::new(),
        }
    }

    /// The same ids with another size (a setting changed between runs).
    pub fn resized(mut self, size: u64) -> Self {
        self.size = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        self.prune();
        self
    }

    /// The highest id seen.
    pub fn high(&self) -> Option<i64> {
        self.runs.values().next_back().copied()
    }

    /// Ids below this are forgotten.
    fn floor(&self) -> i64 {
        self.high()
            .map_or(i64::MIN, |h| h.saturating_sub(self.size - 1))
    }

    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.runs
            .range(..=id)
            .next_back()
            .is_some_and(|(_, &hi)| id <= hi)
    }

    /// Checks `id` and remembers it.
    pub fn admit(&mut self, id: i64) -> Verdict {
        if self.contains(id) {
            return Verdict::Duplicate;
        }
        if id < self.floor() {
            return Verdict::BeyondWindow;
        }
        self.insert(id);
        self.prune();
        Verdict::New
    }

    fn insert(&mut self, id: i64) {
        let below = self.runs.range(..id).next_back().map(|(&lo, &hi)| (lo, hi));
        let above = self.runs.get(&(id + 1)).copied();
        match (below, above) {
            (Some((lo, hi)), Some(ahi)) if hi + 1 == id => {
                self.runs.remove(&(id + 1));
                self.runs.insert(lo, ahi);
            }
            (Some((lo, hi)), _) if hi + 1 == id => {
                self.runs.insert(lo, id);
            }
            (_, Some(ahi)) => {
                self.runs.remove(&(id + 1));
                self.runs.insert(id, ahi);
            }
            _ => {
                self.runs.insert(id, id);
            }
        }
    }

    /// Forgets what fell below the floor.
    fn prune(&mut self) {
        let floor = self.floor();
        while let Some((&lo, &hi)) = self.runs.iter().next() {
            if hi < floor {
                self.runs.remove(&lo);
            } else {
                if lo < floor {
                    self.runs.remove(&lo);
                    self.runs.insert(floor, hi);
                }
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_redelivery_in_the_window_is_a_duplicate() {
        let mut w = Window::new(100);
        assert_eq!(w.admit(5), Verdict::New);
        assert_eq!(w.admit(6), Verdict::New);
        assert_eq!(w.admit(5), Verdict::Duplicate);
        assert_eq!(w.runs(), 1);
    }

    #[test]
    fn an_id_older_than_the_window_is_exported_not_dropped() {
        let mut w = Window::new(10);
        assert_eq!(w.admit(100), Verdict::New);
        assert_eq!(w.admit(91), Verdict::New);
        assert_eq!(w.admit(90), Verdict::BeyondWindow);
        assert_eq!(w.admit(100), Verdict::Duplicate);
    }

    proptest! {
        /// Against a model that remembers everything: inside the window the
        /// verdicts agree, the runs stay disjoint and bounded by the window.
        #[test]
        fn agrees_with_a_set_inside_the_window(
            ids in proptest::collection::vec(0i64..400, 1..600),
            size in 1u64..200,
        ) {
            let mut w = Window::new(size);
            let mut seen = BTreeSet::new();
            let mut high = i64::MIN;
            for id in ids {
                let floor = if high == i64::MIN { i64::MIN } else { high - size as i64 + 1 };
                let verdict = w.admit(id);
                if seen.contains(&id) && id >= floor {
                    prop_assert_eq!(verdict, Verdict::Duplicate);
                } else if id < floor {
                    prop_assert_eq!(verdict, Verdict::BeyondWindow);
                } else {
                    prop_assert_eq!(verdict, Verdict::New);
                    seen.insert(id);
                    high = high.max(id);
                }
                let mut prev_hi: Option<i64> = None;
                for (&lo, &hi) in &w.runs {
                    prop_assert!(lo <= hi);
                    if let Some(p) = prev_hi { prop_assert!(lo > p + 1, "runs touch: {:?}", w.runs); }
                    prev_hi = Some(hi);
                }
                if let (Some((&lo, _)), Some(h)) = (w.runs.iter().next(), w.high()) {
                    prop_assert!(h - lo < size as i64);
                }
            }
        }

        /// Saved and restored (as a checkpoint does), a window judges the same.
        #[test]
        fn survives_a_round_trip(ids in proptest::collection::vec(0i64..300, 1..300)) {
            let mut a = Window::new(50);
            for id in &ids { a.admit(*id); }
            let mut b: Window = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
            for id in 0..300 { prop_assert_eq!(a.admit(id), b.admit(id)); }
        }
    }
}
