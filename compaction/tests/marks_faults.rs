//! The rollup marks log when a write fails (failpoint `marks-log-write`; needs the test
//! build's failpoints): the WAL is not released, and the next release writes every
//! outstanding mark — also those flagged for the failed write — so none is lost.

use fail::FailScenario;
use wattdb_compaction::rollup::DirtyMarks;
use wattdb_storage::{TableId, WalReleaseGuard};

#[test]
fn a_failed_marks_log_write_is_made_good_by_the_next_release() {
    if !wattdb_storage::failpoints::enabled() {
        eprintln!("skipping: needs --features wattdb-storage/failpoints (as scripts/test.sh)");
        return;
    }
    let scenario = FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let marks = DirtyMarks::open(dir.path(), chrono_tz::UTC).unwrap();
    let series = |i: usize| vec![format!("meter-{i}")];
    marks.add(TableId(7), (0..10).map(|i| (series(i), 900_000_000, true)));
    marks.before_wal_release().unwrap();
    // Ten more; the write that would make them durable fails.
    marks.add(
        TableId(7),
        (10..20).map(|i| (series(i), 900_000_000, false)),
    );
    fail::cfg("marks-log-write", "1*return").unwrap();
    assert!(marks.before_wal_release().is_err());
    // Nothing new since: the next release must still write the ten.
    marks.before_wal_release().unwrap();
    drop(marks);
    let reopened = DirtyMarks::open(dir.path(), chrono_tz::UTC).unwrap();
    assert_eq!(reopened.len(), 20, "marks lost after a failed log write");
    scenario.teardown();
}
