//! The de-duplication window: which change ids (the cell's `seq`) the cell's
//! export has already written, for the last `size` ids below the highest
//! seen. The log is at-least-once (the relay republishes what it had not
//! marked sent when it crashed), and redeliveries land close behind the
//! original, so a bounded window catches them in bounded memory.
//!
//! One window per cell, over every partition: the cell's ids are nearly
//! contiguous, so a window of a million ids is a handful of runs (`lo..=hi`),
//! small enough to be saved with every checkpoint. The floor moves only when
//! a batch closes (`settle`), never within one: every copy of an id is in one
//! partition (keyed by customer), so a batch's verdicts do not depend on how
//! its partitions were interleaved, and a redo dedupes exactly as the first
//! attempt did.

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
    /// Ids below this are forgotten (set when a batch closes).
    #[serde(default = "no_floor")]
    floor: i64,
}

fn no_floor() -> i64 {
    i64::MIN
}

impl Window {
    pub fn new(size: u64) -> Self {
        Self {
            size: i64::try_from(size.max(1)).unwrap_or(i64::MAX),
            runs: BTreeMap::new(),
            floor: i64::MIN,
        }
    }

    /// The same ids with another size (a setting changed between runs),
    /// applied from the next `settle`.
    pub fn resized(mut self, size: u64) -> Self {
        self.size = i64::try_from(size.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// The highest id seen.
    pub fn high(&self) -> Option<i64> {
        self.runs.values().next_back().copied()
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
        if id < self.floor {
            return Verdict::BeyondWindow;
        }
        self.insert(id);
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

    /// At a batch's close: the floor moves up to `size` ids below the
    /// highest seen, and what fell below it is forgotten.
    pub fn settle(&mut self) {
        let Some(high) = self.high() else { return };
        self.floor = self.floor.max(high.saturating_sub(self.size - 1));
        let floor = self.floor;
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
        assert_eq!(
            w.admit(80),
            Verdict::New,
            "the floor moves only at a batch's close"
        );
        w.settle();
        assert_eq!(w.admit(90), Verdict::BeyondWindow);
        assert_eq!(w.admit(100), Verdict::Duplicate);
        assert_eq!(w.admit(91), Verdict::Duplicate);
    }

    proptest! {
        /// Against a model that remembers everything: inside the window the
        /// verdicts agree, the runs stay disjoint and, once settled, within
        /// the window.
        #[test]
        fn agrees_with_a_set_inside_the_window(
            ops in proptest::collection::vec(prop_oneof![9 => (0i64..400).prop_map(Some), 1 => Just(None)], 1..600),
            size in 1u64..200,
        ) {
            let mut w = Window::new(size);
            let mut seen = BTreeSet::new();
            let mut floor = i64::MIN;
            for op in ops {
                let Some(id) = op else {
                    w.settle();
                    if let Some(&h) = seen.iter().next_back() {
                        floor = floor.max(h - size as i64 + 1);
                    }
                    if let (Some((&lo, _)), Some(h)) = (w.runs.iter().next(), w.high()) {
                        prop_assert!(h - lo < size as i64);
                    }
                    continue;
                };
                let verdict = w.admit(id);
                if seen.contains(&id) && id >= floor {
                    prop_assert_eq!(verdict, Verdict::Duplicate);
                } else if id < floor {
                    prop_assert_eq!(verdict, Verdict::BeyondWindow);
                } else {
                    prop_assert_eq!(verdict, Verdict::New);
                    seen.insert(id);
                }
                let mut prev_hi: Option<i64> = None;
                for (&lo, &hi) in &w.runs {
                    prop_assert!(lo <= hi);
                    if let Some(p) = prev_hi { prop_assert!(lo > p + 1, "runs touch: {:?}", w.runs); }
                    prev_hi = Some(hi);
                }
            }
        }

        /// Saved and restored (as a checkpoint does), a window judges the same.
        #[test]
        fn survives_a_round_trip(ids in proptest::collection::vec(0i64..300, 1..300)) {
            let mut a = Window::new(50);
            for id in &ids { a.admit(*id); }
            a.settle();
            let mut b: Window = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
            for id in 0..300 { prop_assert_eq!(a.admit(id), b.admit(id)); }
        }
    }
}
