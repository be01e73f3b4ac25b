//! WAL segment files.
//!
//! ```text
//! header : b"WATTWAL\0" (8 bytes) | format version u32 LE (= 2; 1 is still read: its
//!          records have no delete list)
//! record : body length u32 LE | CRC-32 of body u32 LE | body
//! body   : sequence number u64 LE | postcard-encoded WalRecord
//! ```
//!
//! Reading fails closed. Only a torn tail of the newest segment — damaged bytes with no
//! intact record after them, what a crash in the middle of a write leaves — is cut off
//! (with a warning). Anything else — a header that is not a wattdb segment's, a format
//! version this build does not read, damage followed by intact records, a torn tail in
//! an older segment (it was complete when the next one was started) — is an error that
//! names the file and the offset; the file is left as it is for `wattdb wal inspect` and
//! `wattdb wal salvage` ([`super::salvage`]).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::record::WalSeq;

pub const MAGIC: &[u8; 8] = b"WATTWAL\0";
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub const HEADER_LEN: u64 = 12;
/// Upper bound for one record body; larger lengths mean a corrupt length field.
pub const MAX_RECORD_LEN: u32 = 256 * 1024 * 1024;

pub fn segment_path(dir: &Path, first_seq: WalSeq) -> PathBuf {
    dir.join(format!("{:020}.wal", first_seq.0))
}

/// Segment files in `dir`, sorted by first sequence number.
pub fn list_segments(dir: &Path) -> Result<Vec<(WalSeq, PathBuf)>> {
    let io_err = |source| Error::WalIo {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".wal")) else {
            continue;
        };
        if let Ok(seq) = stem.parse::<u64>() {
            out.push((WalSeq(seq), entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// What reading a segment found.
#[derive(Debug)]
pub struct SegmentContents {
    pub records: Vec<SegmentRecord>,
    /// The segment's format version (decode its records with it).
    pub version: u32,
    /// Set when the newest segment had a torn tail that was cut off.
    pub truncated_at: Option<(u64, String)>,
}

/// A segment file's bytes.
pub(super) fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::WalIo {
        path: path.to_path_buf(),
        source,
    })
}

/// Read every record of the segment `path` (named by `first_seq`). Only the `newest`
/// segment may end torn; it is then cut back to its intact prefix. Any other damage is
/// [`Error::WalDamaged`] and the file is not touched.
pub fn read_segment(path: &Path, first_seq: WalSeq, newest: bool) -> Result<SegmentContents> {
    let io_err = |source| Error::WalIo {
        path: path.to_path_buf(),
        source,
    };
    let data = read_bytes(path)?;
    let parsed = parse_segment(&data, first_seq);
    let damaged = |offset, reason| Error::WalDamaged {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let truncated_at = match parsed.end {
        SegmentEnd::Clean => None,
        SegmentEnd::Torn { offset, reason } if newest => {
            tracing::warn!(
                segment = %path.display(),
                offset,
                %reason,
                "WAL segment has a torn tail (a crash in the middle of a write); cutting it there"
            );
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| {
                    f.set_len(parsed.good_len)?;
                    f.sync_all()
                })
                .map_err(io_err)?;
            Some((offset, reason))
        }
        SegmentEnd::Torn { offset, reason } => {
            return Err(damaged(
                offset,
                format!(
                    "{reason} in a segment that is not the newest (it was complete when the \
                     next one was started)"
                ),
            ));
        }
        SegmentEnd::Damaged { offset, reason } => return Err(damaged(offset, reason)),
    };
    Ok(SegmentContents {
        records: parsed.records,
        version: parsed.version.unwrap_or(FORMAT_VERSION),
        truncated_at,
    })
}

/// One intact record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRecord {
    pub seq: WalSeq,
    /// Where its frame starts in the file.
    pub offset: u64,
    pub body: Vec<u8>,
}

/// How a segment's bytes end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentEnd {
    /// Every byte belongs to an intact record.
    Clean,
    /// Damaged bytes with nothing intact after them: what a crash in the middle of a
    /// write leaves behind. Cut off in the newest segment; damage in any other.
    Torn { offset: u64, reason: String },
    /// Damage a crash cannot explain: a header that is not a wattdb segment's, a format
    /// this build does not read, or intact records after damaged bytes.
    Damaged { offset: u64, reason: String },
}

/// What parsing a segment's bytes found.
#[derive(Debug)]
pub struct ParsedSegment {
    /// Intact records before the first damage.
    pub records: Vec<SegmentRecord>,
    /// The format version of the header (`None` if the header is not readable).
    pub version: Option<u32>,
    /// The length of the intact prefix.
    pub good_len: u64,
    pub end: SegmentEnd,
    /// Intact records found after the damage (what `wattdb wal salvage` copies).
    pub beyond: Vec<SegmentRecord>,
}

/// Sequence numbers a record found after damage may have: above the last intact one and
/// at most this far from it (a random match of length, sequence and CRC is then out of
/// the question).
const RESYNC_SEQ_WINDOW: u64 = 1 << 40;

/// Parse a segment's bytes; `first_seq` is the sequence number in its file name.
pub fn parse_segment(data: &[u8], first_seq: WalSeq) -> ParsedSegment {
    let mut out = ParsedSegment {
        records: Vec::new(),
        version: None,
        good_len: 0,
        end: SegmentEnd::Clean,
        beyond: Vec::new(),
    };
    let header = HEADER_LEN as usize;
    let before_first = first_seq.0.saturating_sub(1);
    if data.len() < header {
        let n = data.len().min(MAGIC.len());
        if data[..n] != MAGIC[..n] {
            out.end = damaged(0, "not a wattdb WAL segment (bad magic)");
        } else if !data.is_empty() {
            // A crash while the file was created: nothing in it was ever acknowledged.
            out.end = SegmentEnd::Torn {
                offset: 0,
                reason: "incomplete segment header".into(),
            };
        }
        return out;
    }
    if &data[..8] != MAGIC {
        out.end = damaged(0, "not a wattdb WAL segment (bad magic)");
        out.beyond = resync(data, header, before_first);
        return out;
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    out.version = Some(version);
    if version > FORMAT_VERSION {
        out.end = damaged(
            0,
            &format!(
                "WAL format version {version} is newer than this build reads \
                 ({OLDEST_FORMAT_VERSION}..={FORMAT_VERSION}): run the wattdb that wrote it"
            ),
        );
        return out;
    }
    if version < OLDEST_FORMAT_VERSION {
        out.end = damaged(0, &format!("unknown WAL format version {version}"));
        out.beyond = resync(data, header, before_first);
        return out;
    }
    let (records, end, problem) = read_frames(data, header);
    out.records = records;
    out.good_len = end as u64;
    let Some(reason) = problem else {
        return out;
    };
    let last = out.records.last().map_or(before_first, |r| r.seq.0);
    out.beyond = resync(data, end + 1, last);
    out.end = match (out.beyond.first(), out.beyond.last()) {
        (Some(first), Some(last)) => SegmentEnd::Damaged {
            offset: end as u64,
            reason: format!(
                "{reason}, with {} intact records after it (seq {}..={})",
                out.beyond.len(),
                first.seq.0,
                last.seq.0
            ),
        },
        _ => SegmentEnd::Torn {
            offset: end as u64,
            reason,
        },
    };
    out
}

fn damaged(offset: u64, reason: &str) -> SegmentEnd {
    SegmentEnd::Damaged {
        offset,
        reason: reason.to_string(),
    }
}

/// Consecutive intact frames from `from`: the records, where they end, and why reading
/// stopped before the end of the data (if it did).
fn read_frames(data: &[u8], from: usize) -> (Vec<SegmentRecord>, usize, Option<String>) {
    let mut records = Vec::new();
    let mut pos = from;
    loop {
        if pos == data.len() {
            return (records, pos, None);
        }
        match frame_at(data, pos) {
            Ok((seq, body)) => {
                records.push(SegmentRecord {
                    seq,
                    offset: pos as u64,
                    body: body.to_vec(),
                });
                pos += 8 + 8 + body.len();
            }
            Err(reason) => return (records, pos, Some(reason)),
        }
    }
}

/// The intact frame at `pos`: its sequence number and record bytes.
fn frame_at(data: &[u8], pos: usize) -> std::result::Result<(WalSeq, &[u8]), String> {
    let Some(head) = data.get(pos..pos + 8) else {
        return Err("torn record header".into());
    };
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if !(8..=MAX_RECORD_LEN).contains(&len) {
        return Err(format!("bad record length {len}"));
    }
    let Some(body) = data.get(pos + 8..pos + 8 + len as usize) else {
        return Err("torn record body".into());
    };
    if crc32fast::hash(body) != crc {
        return Err("record CRC mismatch".into());
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&body[..8]);
    Ok((WalSeq(u64::from_le_bytes(seq)), &body[8..]))
}

/// Every intact record after damaged bytes: look for the next frame whose length fits,
/// whose sequence number follows `last` and whose CRC matches, read on from there, and
/// again after any further damage.
fn resync(data: &[u8], from: usize, mut last: u64) -> Vec<SegmentRecord> {
    let mut found = Vec::new();
    let mut at = from;
    while let Some(start) = next_frame(data, at, last) {
        let (records, end, problem) = read_frames(data, start);
        if let Some(r) = records.last() {
            last = r.seq.0;
        }
        found.extend(records);
        if problem.is_none() {
            break;
        }
        at = end + 1;
    }
    found
}

fn next_frame(data: &[u8], from: usize, last: u64) -> Option<usize> {
    let limit = data.len().checked_sub(16)?;
    (from..=limit).find(|&p| {
        let len = u32::from_le_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
        if !(8..=MAX_RECORD_LEN).contains(&len) || p + 8 + len as usize > data.len() {
            return false;
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&data[p + 8..p + 16]);
        let seq = u64::from_le_bytes(seq);
        seq > last && seq - last <= RESYNC_SEQ_WINDOW && frame_at(data, p).is_ok()
    })
}

/// Appends records to one segment file. `sync` makes everything written so far durable.
pub struct SegmentWriter {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
    pub first_seq: WalSeq,
    pub records: u64,
}

/// The error a WAL failpoint returns (see [`crate::failpoints`]).
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn injected(path: &Path, arg: Option<String>) -> Error {
    Error::wal_io(path, crate::failpoints::io_error(arg))
}

impl SegmentWriter {
    /// Create and fsync a new segment holding only the header. A file that could not be
    /// completed (e.g. the disk is full) is removed again: a half-written header left
    /// behind a later segment would read as damage.
    pub fn create(dir: &Path, first_seq: WalSeq) -> Result<Self> {
        let path = segment_path(dir, first_seq);
        fail::fail_point!("wal-create", |arg| Err(injected(&path, arg)));
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(|source| Error::wal_io(&path, source))?;
        let header = || -> std::io::Result<File> {
            let mut file = file;
            file.write_all(MAGIC)?;
            file.write_all(&FORMAT_VERSION.to_le_bytes())?;
            file.sync_all()?;
            Ok(file)
        };
        let file = match header() {
            Ok(file) => file,
            Err(source) => {
                let _ = std::fs::remove_file(&path);
                return Err(Error::wal_io(&path, source));
            }
        };
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(SegmentWriter {
            path,
            file: BufWriter::with_capacity(1 << 20, file),
            bytes: HEADER_LEN,
            first_seq,
            records: 0,
        })
    }

    /// Buffer one record; it is written and made durable by [`SegmentWriter::sync`].
    pub fn append(&mut self, seq: WalSeq, payload: &[u8]) -> Result<()> {
        fail::fail_point!("wal-append", |arg| Err(injected(&self.path, arg)));
        let len = (payload.len() + 8) as u32;
        let mut hasher = crc32fast::Hasher::new();
        let seq_bytes = seq.0.to_le_bytes();
        hasher.update(&seq_bytes);
        hasher.update(payload);
        let crc = hasher.finalize();
        let mut write = || -> std::io::Result<()> {
            self.file.write_all(&len.to_le_bytes())?;
            self.file.write_all(&crc.to_le_bytes())?;
            self.file.write_all(&seq_bytes)?;
            self.file.write_all(payload)
        };
        write().map_err(|source| Error::wal_io(&self.path, source))?;
        self.bytes += 8 + len as u64;
        self.records += 1;
        Ok(())
    }

    /// Write out what is buffered and fsync it.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .flush()
            .map_err(|source| Error::wal_io(&self.path, source))?;
        // After the write, before the fsync: the bytes are in the file when it fails.
        fail::fail_point!("wal-fsync", |arg| Err(injected(&self.path, arg)));
        self.file
            .get_ref()
            .sync_data()
            .map_err(|source| Error::wal_io(&self.path, source))
    }

    /// Give the segment up after a failed write or fsync: whatever was buffered is
    /// dropped unwritten and the file is cut back to `keep_len` (the end of the last
    /// record known to be durable) and fsynced, so nothing of the failed group — a
    /// partial frame, or frames the kernel may not have kept — stays behind for replay.
    /// No byte is ever written to the file again.
    pub fn abandon(self, keep_len: u64) -> Result<PathBuf> {
        let SegmentWriter { path, file, .. } = self;
        // `into_parts` hands the buffer back instead of flushing it on drop.
        let (file, _unwritten) = file.into_parts();
        fail::fail_point!("wal-abandon", |arg| Err(injected(&path, arg)));
        file.set_len(keep_len)
            .and_then(|()| file.sync_all())
            .map_err(|source| Error::wal_io(&path, source))?;
        Ok(path)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_segment(dir: &Path, n: u64) -> PathBuf {
        let mut w = SegmentWriter::create(dir, WalSeq(1)).unwrap();
        for i in 1..=n {
            w.append(WalSeq(i), format!("record-{i}").as_bytes())
                .unwrap();
        }
        w.sync().unwrap();
        w.path().to_path_buf()
    }

    fn texts(records: &[SegmentRecord]) -> Vec<(u64, String)> {
        records
            .iter()
            .map(|r| (r.seq.0, String::from_utf8(r.body.clone()).unwrap()))
            .collect()
    }

    /// Where record `n` (from 1) of a [`write_segment`] file starts.
    fn frame_offset(n: usize) -> usize {
        HEADER_LEN as usize + (n - 1) * (8 + 8 + "record-1".len())
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let c = read_segment(&path, WalSeq(1), true).unwrap();
        assert!(c.truncated_at.is_none());
        assert_eq!(
            texts(&c.records),
            vec![
                (1, "record-1".to_string()),
                (2, "record-2".to_string()),
                (3, "record-3".to_string())
            ]
        );
        assert_eq!(c.records[1].offset, frame_offset(2) as u64);
    }

    #[test]
    fn a_torn_tail_of_the_newest_segment_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let full = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in half, as a crash mid-write would.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 5).unwrap();
        drop(f);
        let c = read_segment(&path, WalSeq(1), true).unwrap();
        assert_eq!(c.records.len(), 2);
        assert_eq!(c.truncated_at.unwrap().0, frame_offset(3) as u64);
        // The file was cut back to the intact prefix: a second read is clean.
        let again = read_segment(&path, WalSeq(1), true).unwrap();
        assert_eq!(again.records.len(), 2);
        assert!(again.truncated_at.is_none());
    }

    #[test]
    fn a_torn_tail_of_an_older_segment_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let full = std::fs::metadata(&path).unwrap();
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full.len() - 5).unwrap();
        drop(f);
        let before = std::fs::read(&path).unwrap();
        let e = read_segment(&path, WalSeq(1), false).unwrap_err();
        assert!(
            matches!(&e, Error::WalDamaged { offset, .. } if *offset == frame_offset(3) as u64),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "left as it was");
    }

    #[test]
    fn damage_followed_by_intact_records_stops_and_keeps_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 5);
        let mut data = std::fs::read(&path).unwrap();
        // Flip a byte inside the second record's body.
        data[frame_offset(2) + 8 + 9] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let parsed = parse_segment(&data, WalSeq(1));
        assert_eq!(texts(&parsed.records), vec![(1, "record-1".to_string())]);
        assert_eq!(
            texts(&parsed.beyond),
            (3..=5)
                .map(|i| (i, format!("record-{i}")))
                .collect::<Vec<_>>()
        );
        let e = read_segment(&path, WalSeq(1), true).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&path.display().to_string())
                && text.contains(&format!("byte {}", frame_offset(2)))
                && text.contains("CRC")
                && text.contains("3 intact records after it")
                && text.contains("wattdb wal salvage"),
            "{text}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), data, "nothing truncated");
        // A damaged length field: the records after it are found all the same.
        let mut data = std::fs::read(&path).unwrap();
        data[frame_offset(2) + 8 + 9] ^= 0xff;
        data[frame_offset(3)..frame_offset(3) + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let parsed = parse_segment(&data, WalSeq(1));
        assert_eq!(parsed.records.len(), 2);
        assert_eq!(
            parsed.beyond.iter().map(|r| r.seq.0).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert!(matches!(parsed.end, SegmentEnd::Damaged { .. }));
    }

    #[test]
    fn a_bad_header_or_a_newer_format_is_never_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let good = std::fs::read(&path).unwrap();
        let mut bad_magic = good.clone();
        bad_magic[..8].copy_from_slice(b"garbage!");
        let mut newer = good.clone();
        newer[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        for (data, says, beyond) in [
            (bad_magic, "bad magic", 3),
            (newer, "newer than this build reads", 0),
        ] {
            std::fs::write(&path, &data).unwrap();
            let e = read_segment(&path, WalSeq(1), true).unwrap_err();
            assert!(e.to_string().contains(says), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "left as it was");
            assert_eq!(parse_segment(&data, WalSeq(1)).beyond.len(), beyond);
        }
    }

    #[test]
    fn a_header_cut_short_is_a_torn_creation_but_a_foreign_file_is_not() {
        assert!(matches!(
            parse_segment(&MAGIC[..5], WalSeq(1)).end,
            SegmentEnd::Torn { .. }
        ));
        assert_eq!(parse_segment(b"", WalSeq(1)).end, SegmentEnd::Clean);
        assert!(matches!(
            parse_segment(b"junk", WalSeq(1)).end,
            SegmentEnd::Damaged { .. }
        ));
    }

    #[test]
    fn garbage_never_panics() {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for seed in 0..2000u32 {
            let mut d = data.clone();
            let mut x = seed.wrapping_mul(2_654_435_761);
            for _ in 0..(seed % 96) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                d.push(x as u8);
            }
            let _ = parse_segment(&d, WalSeq(x as u64));
            let _ = parse_segment(&d[4..], WalSeq(1));
        }
    }
}
