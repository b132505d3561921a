//! Batching: records from the log, de-duplicated by change id, grouped into
//! the files of the next flush (one per partition, entity and date), with
//! the offset range each partition's part covers. After a crash, the
//! pending flush of the checkpoint is rebuilt with exactly its ranges.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cellbank_shared::contract::changes::Change;
use chrono::NaiveDate;

use crate::checkpoint::{Checkpoint, Range};
use crate::tables::{self, Row};
use crate::window::{Verdict, Window};

/// A record as read from the log.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub partition: i32,
    pub offset: i64,
    pub payload: Option<Vec<u8>>,
}

/// A record that is not a change the exporter knows: kept as it came, with
/// why, in the flush's rejects file (never dropped).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Reject {
    pub partition: i32,
    pub offset: i64,
    pub error: String,
    pub payload: String,
}

/// Where one file's rows go.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileKey {
    pub partition: i32,
    pub entity: String,
    pub date: NaiveDate,
}

/// A closed batch: what one flush writes.
#[derive(Debug, Default)]
pub struct Flush {
    pub ranges: BTreeMap<i32, Range>,
    /// The window after this flush.
    pub window: Window,
    pub files: BTreeMap<FileKey, Vec<Row>>,
    pub rejects: BTreeMap<i32, Vec<Reject>>,
    pub rows: usize,
}

/// What became of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    Row,
    Duplicate,
    /// Older than the window: exported (see `Verdict::BeyondWindow`).
    BeyondWindow,
    Rejected,
    /// Past a redo's range: held for the batch after it.
    Held,
    /// An offset read before (the client went back, after a pause): skipped.
    Rewound,
}

#[derive(Debug)]
pub struct Batcher {
    window: Window,
    open: Flush,
    opened_at: Option<Instant>,
    /// A redo's ranges still to reach: the batch closes exactly there.
    redo: BTreeMap<i32, Range>,
    redoing: bool,
    /// Records read past a redo's ranges, for the next batch.
    held: Vec<Incoming>,
    /// Per partition, the offset after the last one read (or checkpointed).
    next: BTreeMap<i32, i64>,
}

impl Batcher {
    /// Continues from `ckpt`: its windows, and its pending flush to redo.
    pub fn resume(ckpt: &Checkpoint, window_size: u64) -> Self {
        let window = if ckpt.window == Window::default() {
            Window::new(window_size)
        } else {
            ckpt.window.clone().resized(window_size)
        };
        Self {
            window,
            open: Flush::default(),
            opened_at: None,
            redo: ckpt.pending.clone(),
            redoing: !ckpt.pending.is_empty(),
            held: Vec::new(),
            next: ckpt
                .partitions
                .iter()
                .map(|(p, pp)| (*p, pp.next))
                .collect(),
        }
    }

    /// Per partition, the offset to read next: where the log must go on
    /// from after a pause (see `export::hand_over`).
    pub fn positions(&self) -> &BTreeMap<i32, i64> {
        &self.next
    }

    /// Rows in the open batch.
    pub fn rows(&self) -> usize {
        self.open.rows
    }

    /// Records read past a redo, waiting.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    pub fn add(&mut self, rec: Incoming) -> Added {
        if self
            .next
            .get(&rec.partition)
            .is_some_and(|n| rec.offset < *n)
        {
            return Added::Rewound;
        }
        self.next.insert(rec.partition, rec.offset + 1);
        if self.redoing {
            match self.redo.get(&rec.partition) {
                Some(r) if rec.offset <= r.end => {}
                // Another partition, or past the range: the redo's batch
                // must hold exactly what the first attempt's did. (Past the
                // end without reaching it: a gap in the log's offsets.)
                _ => {
                    self.redo.remove(&rec.partition);
                    self.held.push(rec);
                    return Added::Held;
                }
            }
            if self.redo[&rec.partition].end == rec.offset {
                self.redo.remove(&rec.partition);
            }
        }
        self.opened_at.get_or_insert_with(Instant::now);
        let (p, offset) = (rec.partition, rec.offset);
        self.open
            .ranges
            .entry(p)
            .and_modify(|r| r.end = offset)
            .or_insert(Range {
                start: offset,
                end: offset,
            });
        let change = match parse(&rec) {
            Ok(c) => c,
            Err(error) => {
                let payload = String::from_utf8_lossy(rec.payload.as_deref().unwrap_or_default());
                self.open.rejects.entry(p).or_default().push(Reject {
                    partition: p,
                    offset,
                    error,
                    payload: payload.into_owned(),
                });
                return Added::Rejected;
            }
        };
        let verdict = self.window.admit(change.seq);
        if verdict == Verdict::Duplicate {
            return Added::Duplicate;
        }
        self.push_row(p, offset, change);
        match verdict {
            Verdict::BeyondWindow => Added::BeyondWindow,
            _ => Added::Row,
        }
    }

    fn push_row(&mut self, partition: i32, offset: i64, c: Change) {
        let row = Row {
            change_id: c.seq,
            op: c.op,
            customer_id: c.customer_id.to_string(),
            epoch: c.epoch,
            changed_at: c.changed_at,
            source_partition: partition,
            source_offset: offset,
            values: c.row,
        };
        let key = FileKey {
            partition,
            date: row.date(&c.entity),
            entity: c.entity,
        };
        self.open.files.entry(key).or_default().push(row);
        self.open.rows += 1;
    }

    /// Whether the open batch closes now: a redo when its ranges are all
    /// read (and never before); otherwise at `rows` rows or `age` old.
    pub fn due(&self, rows: usize, age: Duration) -> bool {
        if self.redoing {
            return self.redo.is_empty();
        }
        self.open.rows >= rows
            || (!self.open.ranges.is_empty() && self.opened_at.is_some_and(|t| t.elapsed() >= age))
    }

    /// Closes the open batch; records held past a redo open the next one.
    pub fn close(&mut self) -> Flush {
        let mut flush = std::mem::take(&mut self.open);
        self.opened_at = None;
        self.window.settle();
        flush.window = self.window.clone();
        if self.redoing {
            self.redoing = false;
            let held = std::mem::take(&mut self.held);
            // They were read already: read them again, in order.
            for rec in &held {
                let n = self.next.entry(rec.partition).or_insert(rec.offset);
                *n = (*n).min(rec.offset);
            }
            for rec in held {
                self.add(rec);
            }
        }
        flush
    }
}

/// The change a record carries, or why it is not one.
fn parse(rec: &Incoming) -> Result<Change, String> {
    let bytes = rec.payload.as_deref().ok_or("the record has no payload")?;
    let c: Change = serde_json::from_slice(bytes).map_err(|e| format!("not a change: {e}"))?;
    if tables::columns(&c.entity).is_none() {
        return Err(format!("no table for entity {:?}", c.entity));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::PartitionProgress;

    fn change(seq: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "seq": seq, "entity": "postings", "op": "insert",
            "customer_id": "0190c1d8-8a4b-7cc0-9a3c-1f0d5b0e2a11", "epoch": 1,
            "changed_at": "2026-12-05T10:00:00Z",
            "row": {"id": seq, "amount": 5, "business_time": "2026-12-01T09:00:00+00:00"}
        }))
        .unwrap()
    }

    fn rec(partition: i32, offset: i64, seq: i64) -> Incoming {
        Incoming {
            partition,
            offset,
            payload: Some(change(seq)),
        }
    }

    #[test]
    fn redeliveries_are_dropped_and_rows_filed_by_business_date() {
        let mut b = Batcher::resume(&Checkpoint::default(), 100);
        assert_eq!(b.add(rec(0, 0, 1)), Added::Row);
        assert_eq!(b.add(rec(0, 1, 2)), Added::Row);
        assert_eq!(b.add(rec(0, 2, 1)), Added::Duplicate);
        let f = b.close();
        assert_eq!(f.rows, 2);
        assert_eq!(f.ranges[&0], Range { start: 0, end: 2 });
        let key = f.files.keys().next().unwrap();
        assert_eq!(key.date.to_string(), "2026-12-01");
    }

    #[test]
    fn a_record_that_is_no_change_is_kept_as_a_reject() {
        let mut b = Batcher::resume(&Checkpoint::default(), 100);
        let bad = Incoming {
            partition: 1,
            offset: 7,
            payload: Some(b"{\"seq\": \"x\"}".to_vec()),
        };
        assert_eq!(b.add(bad), Added::Rejected);
        let f = b.close();
        assert_eq!(f.rejects[&1].len(), 1);
        assert_eq!(f.ranges[&1], Range { start: 7, end: 7 });
    }

    #[test]
    fn a_redo_closes_exactly_at_the_pending_ranges() {
        let mut ckpt = Checkpoint::default();
        ckpt.partitions.insert(0, PartitionProgress { next: 10 });
        ckpt.pending.insert(0, Range { start: 10, end: 11 });
        let mut b = Batcher::resume(&ckpt, 100);
        assert_eq!(b.add(rec(1, 0, 50)), Added::Held);
        assert_eq!(b.add(rec(0, 10, 20)), Added::Row);
        assert!(!b.due(1, Duration::ZERO), "a redo ignores the row bound");
        assert_eq!(b.add(rec(0, 11, 21)), Added::Row);
        assert_eq!(b.add(rec(0, 12, 22)), Added::Held);
        assert!(b.due(usize::MAX, Duration::MAX));
        let f = b.close();
        assert_eq!(f.ranges.len(), 1);
        assert_eq!(f.ranges[&0], Range { start: 10, end: 11 });
        assert_eq!(b.rows(), 2, "held records open the next batch");
        let next = b.close();
        assert_eq!(next.ranges[&1], Range { start: 0, end: 0 });
        assert_eq!(next.ranges[&0], Range { start: 12, end: 12 });
    }
}
