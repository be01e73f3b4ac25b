//! A stopped server's WAL looked at without changing it (`wattdb wal inspect`) and every
//! intact record of a damaged one copied out (`wattdb wal salvage`). wattdb refuses to
//! start on a damaged WAL rather than drop acknowledged writes; these are what the
//! operator has instead.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::record::{WalRecord, WalSeq};
use super::segment::{
    FORMAT_VERSION, SegmentEnd, SegmentRecord, SegmentWriter, list_segments, parse_segment,
    read_bytes,
};

/// What one segment holds.
#[derive(Debug)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub version: Option<u32>,
    /// Intact records before any damage.
    pub records: usize,
    /// The first and last sequence number of every intact record, after damage too.
    pub seqs: Option<(WalSeq, WalSeq)>,
    pub end: SegmentEnd,
    /// Intact records after the damage.
    pub beyond: usize,
    /// Intact records that do not decode: (seq, offset, why).
    pub undecodable: Vec<(WalSeq, u64, String)>,
    pub newest: bool,
}

impl SegmentReport {
    /// Whether the server starts on it: clean, or the newest segment with a torn tail.
    pub fn starts(&self) -> bool {
        self.undecodable.is_empty()
            && match self.end {
                SegmentEnd::Clean => true,
                SegmentEnd::Torn { .. } => self.newest,
                SegmentEnd::Damaged { .. } => false,
            }
    }
}

/// Every segment of the WAL in `dir`, oldest first. Reads only.
pub fn inspect(dir: &Path) -> Result<Vec<SegmentReport>> {
    let segments = list_segments(dir)?;
    let count = segments.len();
    let mut reports = Vec::with_capacity(count);
    for (i, (first_seq, path)) in segments.into_iter().enumerate() {
        let data = read_bytes(&path)?;
        let parsed = parse_segment(&data, first_seq);
        let version = parsed.version.unwrap_or(FORMAT_VERSION);
        let all: Vec<&SegmentRecord> = parsed.records.iter().chain(&parsed.beyond).collect();
        let undecodable = all
            .iter()
            .filter_map(|r| {
                WalRecord::decode_version(&r.body, version)
                    .err()
                    .map(|e| (r.seq, r.offset, e.to_string()))
            })
            .collect();
        reports.push(SegmentReport {
            bytes: data.len() as u64,
            version: parsed.version,
            records: parsed.records.len(),
            seqs: all.first().zip(all.last()).map(|(a, b)| (a.seq, b.seq)),
            beyond: parsed.beyond.len(),
            end: parsed.end,
            undecodable,
            newest: i + 1 == count,
            path,
        });
    }
    Ok(reports)
}

/// What a salvage copied.
#[derive(Debug, Default)]
pub struct SalvageReport {
    pub records: usize,
    pub segments: usize,
    /// Intact records left behind because they do not decode: (segment, seq, why).
    pub undecodable: Vec<(PathBuf, WalSeq, String)>,
}

/// Copy every intact, decodable record of the WAL in `dir` — before and after any
/// damage, in sequence order, with its sequence number — into new segments (current
/// format) in `to`, which must not exist or be empty. `dir` is not changed.
pub fn salvage(dir: &Path, to: &Path) -> Result<SalvageReport> {
    let io_err = |source| Error::WalIo {
        path: to.to_path_buf(),
        source,
    };
    if to.exists() && std::fs::read_dir(to).map_err(io_err)?.next().is_some() {
        return Err(Error::WalIo {
            path: to.to_path_buf(),
            source: std::io::Error::other("the salvage target must be a new or empty folder"),
        });
    }
    std::fs::create_dir_all(to).map_err(io_err)?;
    let mut report = SalvageReport::default();
    let mut last = 0u64;
    for (first_seq, path) in list_segments(dir)? {
        let data = read_bytes(&path)?;
        let parsed = parse_segment(&data, first_seq);
        let version = parsed.version.unwrap_or(FORMAT_VERSION);
        let mut writer: Option<SegmentWriter> = None;
        for r in parsed.records.iter().chain(&parsed.beyond) {
            if r.seq.0 <= last {
                continue;
            }
            let payload = match WalRecord::decode_version(&r.body, version)
                .and_then(|record| record.encode())
            {
                Ok(p) => p,
                Err(e) => {
                    report
                        .undecodable
                        .push((path.clone(), r.seq, e.to_string()));
                    continue;
                }
            };
            let w = match &mut writer {
                Some(w) => w,
                None => {
                    report.segments += 1;
                    writer.insert(SegmentWriter::create(to, r.seq)?)
                }
            };
            w.append(r.seq, &payload)?;
            report.records += 1;
            last = r.seq.0;
        }
        if let Some(mut w) = writer {
            w.sync()?;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wal::segment::HEADER_LEN;
    use crate::wal::test_records::{Collect, rec};
    use crate::wal::{Wal, WalConfig};

    /// A segment of records `seqs` (ts = seq × 10), and where each frame starts.
    fn segment(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> (PathBuf, Vec<usize>) {
        let mut w = SegmentWriter::create(dir, WalSeq(*seqs.start())).unwrap();
        let mut offsets = Vec::new();
        for s in seqs {
            offsets.push(w.bytes() as usize);
            w.append(WalSeq(s), &rec(s as i64 * 10).encode().unwrap())
                .unwrap();
        }
        w.sync().unwrap();
        (w.path().to_path_buf(), offsets)
    }

    fn replay(dir: &Path) -> crate::error::Result<Vec<(u64, i64)>> {
        let obs = Arc::new(Collect::default());
        let (wal, _) = Wal::open(
            WalConfig::new(dir.to_path_buf()),
            obs.clone(),
            WalSeq(1),
            Default::default(),
        )?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(wal.shutdown());
        let got = obs.0.lock().unwrap().clone();
        Ok(got)
    }

    /// An older segment damaged in the middle and a newer one with an intact record
    /// that does not decode: the WAL refuses to open, inspect says why per segment, and
    /// salvage copies every other record — those after the damage too — into a WAL that
    /// opens and replays them with their sequence numbers.
    #[test]
    fn salvage_copies_every_intact_record_of_a_damaged_wal() {
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("wal");
        std::fs::create_dir_all(&wal).unwrap();
        let (first, offsets) = segment(&wal, 1..=4);
        let mut data = std::fs::read(&first).unwrap();
        data[offsets[1] + 20] ^= 0xff; // record 2's body
        std::fs::write(&first, &data).unwrap();
        let mut w = SegmentWriter::create(&wal, WalSeq(5)).unwrap();
        w.append(WalSeq(5), &rec(50).encode().unwrap()).unwrap();
        w.append(WalSeq(6), b"\xff\xff\xff\xff not a record")
            .unwrap();
        w.append(WalSeq(7), &rec(70).encode().unwrap()).unwrap();
        w.sync().unwrap();
        let second = w.path().to_path_buf();
        drop(w);

        let e = replay(&wal).unwrap_err();
        assert!(
            matches!(&e, Error::WalDamaged { path, offset, .. }
                if *path == first && *offset == offsets[1] as u64),
            "{e}"
        );
        let reports = inspect(&wal).unwrap();
        assert_eq!(reports.len(), 2);
        assert!(!reports[0].starts() && !reports[0].newest);
        assert_eq!((reports[0].records, reports[0].beyond), (1, 2));
        assert_eq!(reports[0].seqs, Some((WalSeq(1), WalSeq(4))));
        assert!(!reports[1].starts() && reports[1].newest);
        assert_eq!(reports[1].undecodable.len(), 1);
        assert_eq!(reports[1].undecodable[0].0, WalSeq(6));
        assert_eq!(
            reports[1].undecodable[0].1,
            HEADER_LEN + (8 + 8 + rec(50).encode().unwrap().len()) as u64
        );
        // Opening the damaged WAL did not change it.
        assert_eq!(std::fs::read(&first).unwrap(), data);
        assert!(second.exists());

        let to = dir.path().join("salvaged");
        let report = salvage(&wal, &to).unwrap();
        assert_eq!((report.records, report.segments), (5, 2));
        assert_eq!(report.undecodable.len(), 1);
        assert!(inspect(&to).unwrap().iter().all(SegmentReport::starts));
        assert_eq!(
            replay(&to).unwrap(),
            vec![(1, 10), (3, 30), (4, 40), (5, 50), (7, 70)]
        );
        // The target must be new or empty.
        assert!(salvage(&wal, &to).is_err());
    }
}
