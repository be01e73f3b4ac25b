//! Records and an observer for the WAL's unit tests.

use std::sync::Mutex;

use super::{DurableObserver, WalRecord, WalSeq};
use crate::model::{TableId, ValidRow};

/// Collects (seq, first row's ts) of every durable record.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<(u64, i64)>>);

impl DurableObserver for Collect {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.0.lock().unwrap().push((seq.0, record.rows[0].ts));
    }
}

/// A write of one row at `ts`.
pub fn rec(ts: i64) -> WalRecord {
    WalRecord::write(
        TableId(1),
        vec![ValidRow {
            ts,
            tags: vec!["p1".into()],
            fields: vec![None],
        }],
    )
}
