//! `wattdb wal inspect` and `wattdb wal salvage`: what an operator has when the server
//! refuses to start on a damaged WAL (it never cuts acknowledged records away itself).
//! Both work on a stopped server's data directory.

use std::path::Path;

use anyhow::{Context, Result};
use wattdb_storage::wal::salvage::{self, SegmentReport};
use wattdb_storage::wal::segment::SegmentEnd;

fn describe(r: &SegmentReport) -> String {
    let name = r.path.file_name().map_or_else(
        || r.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let format = r.version.map_or("?".to_string(), |v| v.to_string());
    let seqs = match r.seqs {
        Some((a, b)) => format!("seq {}..={}", a.0, b.0),
        None => "no records".to_string(),
    };
    let end = match &r.end {
        SegmentEnd::Clean => "clean".to_string(),
        SegmentEnd::Torn { offset, reason } if r.newest => {
            format!("torn tail at byte {offset} ({reason}): cut off at the next start")
        }
        SegmentEnd::Torn { offset, reason } => {
            format!("DAMAGED at byte {offset}: {reason} (torn, but not the newest segment)")
        }
        SegmentEnd::Damaged { offset, reason } => format!("DAMAGED at byte {offset}: {reason}"),
    };
    let mut out = format!(
        "{name}: {} bytes, format {format}, {} intact records before any damage and {} \
         after, {seqs}; {end}",
        r.bytes, r.records, r.beyond
    );
    for (seq, offset, why) in &r.undecodable {
        out.push_str(&format!(
            "\n  DAMAGED: record seq {} at byte {offset} does not decode: {why}",
            seq.0
        ));
    }
    out
}

/// Print what each segment of `data_dir`'s WAL holds; `Ok(true)` if the server starts
/// on it.
pub fn inspect(data_dir: &Path) -> Result<bool> {
    let dir = data_dir.join("wal");
    let reports =
        salvage::inspect(&dir).with_context(|| format!("reading the WAL in {}", dir.display()))?;
    for r in &reports {
        println!("{}", describe(r));
    }
    let starts = reports.iter().all(SegmentReport::starts);
    if starts {
        println!(
            "{} segment(s); the server starts on this WAL",
            reports.len()
        );
    } else {
        println!(
            "{} segment(s); the server does not start on this WAL: copy its intact records \
             out with `wattdb wal salvage --data-dir {} --to <new folder>`",
            reports.len(),
            data_dir.display()
        );
    }
    Ok(starts)
}

/// Copy every intact record of `data_dir`'s WAL into `to` and say what to do next.
pub fn salvage(data_dir: &Path, to: &Path) -> Result<()> {
    let dir = data_dir.join("wal");
    let report = salvage::salvage(&dir, to)
        .with_context(|| format!("salvaging the WAL in {}", dir.display()))?;
    println!(
        "copied {} intact record(s) into {} segment(s) in {}",
        report.records,
        report.segments,
        to.display()
    );
    for (path, seq, why) in &report.undecodable {
        println!(
            "left behind: record seq {} of {} does not decode: {why}",
            seq.0,
            path.display()
        );
    }
    println!(
        "next, with the server stopped: mv {wal} {wal}.damaged && mv {to} {wal}, then start \
         wattdb (keep {wal}.damaged until the data is checked)",
        wal = dir.display(),
        to = to.display()
    );
    Ok(())
}
