//! WAL segment files.
//!
//! ```text
//! header : b"WATTWAL\0" (8 bytes) | format version u32 LE (= 2; 1 is still read: its
//!          records have no delete list)
//! record : body length u32 LE | CRC-32 of body u32 LE | body
//! body   : sequence number u64 LE | postcard-encoded WalRecord
//! ```
//!
//! Reading stops at the first record that is incomplete (a torn write at crash time) or
//! whose CRC does not match; the segment is truncated there with a warning, so a damaged
//! tail never prevents the server from starting.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
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
    pub records: Vec<(WalSeq, Vec<u8>)>,
    /// The segment's format version (decode its records with it).
    pub version: u32,
    /// Set when the segment had a torn or corrupt tail that was cut off.
    pub truncated_at: Option<(u64, String)>,
}

/// Read every intact record of a segment; truncate the file after the last intact one.
pub fn read_segment(path: &Path) -> Result<SegmentContents> {
    let io_err = |source| Error::WalIo {
        path: path.to_path_buf(),
        source,
    };
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err)?;
    let (records, good_len, problem) = parse_segment(&data);
    let version = data
        .get(8..12)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        .unwrap_or(FORMAT_VERSION);
    let truncated_at = match problem {
        Some(reason) => {
            tracing::warn!(
                segment = %path.display(),
                offset = good_len,
                %reason,
                "WAL segment has a torn or corrupt tail; truncating it there"
            );
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| {
                    f.set_len(good_len)?;
                    f.sync_all()
                })
                .map_err(io_err)?;
            Some((good_len, reason))
        }
        None => None,
    };
    Ok(SegmentContents {
        records,
        version,
        truncated_at,
    })
}

/// Intact records of a segment, the length of the intact prefix, and why parsing stopped
/// early (if it did).
pub type ParsedSegment = (Vec<(WalSeq, Vec<u8>)>, u64, Option<String>);

/// Parse segment bytes.
pub fn parse_segment(data: &[u8]) -> ParsedSegment {
    let mut records = Vec::new();
    if data.len() < HEADER_LEN as usize {
        // A crash while creating the file: nothing in it was ever acknowledged.
        let problem = (!data.is_empty()).then(|| "incomplete segment header".to_string());
        return (records, 0, problem);
    }
    if &data[..8] != MAGIC {
        return (records, 0, Some("bad segment magic".into()));
    }
    let version = u32::from_le_bytes([data[8], data[9], data[10], data[11]]);
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return (
            records,
            0,
            Some(format!("unsupported WAL format version {version}")),
        );
    }
    let mut pos = HEADER_LEN as usize;
    loop {
        if pos == data.len() {
            return (records, pos as u64, None);
        }
        if data.len() - pos < 8 {
            return (records, pos as u64, Some("torn record header".into()));
        }
        let len = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        if !(8..=MAX_RECORD_LEN).contains(&len) {
            return (
                records,
                pos as u64,
                Some(format!("bad record length {len}")),
            );
        }
        let body_start = pos + 8;
        let body_end = body_start + len as usize;
        if body_end > data.len() {
            return (records, pos as u64, Some("torn record body".into()));
        }
        let body = &data[body_start..body_end];
        if crc32fast::hash(body) != crc {
            return (records, pos as u64, Some("record CRC mismatch".into()));
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&body[..8]);
        records.push((WalSeq(u64::from_le_bytes(seq_bytes)), body[8..].to_vec()));
        pos = body_end;
    }
}

/// Appends records to one segment file. `sync` makes everything written so far durable.
pub struct SegmentWriter {
    path: PathBuf,
    file: BufWriter<File>,
    bytes: u64,
    pub first_seq: WalSeq,
    pub records: u64,
}

impl SegmentWriter {
    pub fn create(dir: &Path, first_seq: WalSeq) -> Result<Self> {
        let path = segment_path(dir, first_seq);
        let io_err = |source| Error::WalIo {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .map_err(io_err)?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(MAGIC).map_err(io_err)?;
        file.write_all(&FORMAT_VERSION.to_le_bytes())
            .map_err(io_err)?;
        file.flush().map_err(io_err)?;
        file.get_ref().sync_all().map_err(io_err)?;
        // Make the new directory entry durable too.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(SegmentWriter {
            path,
            file,
            bytes: HEADER_LEN,
            first_seq,
            records: 0,
        })
    }

    pub fn append(&mut self, seq: WalSeq, payload: &[u8]) -> Result<()> {
        let len = (payload.len() + 8) as u32;
        let mut hasher = crc32fast::Hasher::new();
        let seq_bytes = seq.0.to_le_bytes();
        hasher.update(&seq_bytes);
        hasher.update(payload);
        let crc = hasher.finalize();
        let path = &self.path;
        let io_err = |source| Error::WalIo {
            path: path.clone(),
            source,
        };
        self.file.write_all(&len.to_le_bytes()).map_err(io_err)?;
        self.file.write_all(&crc.to_le_bytes()).map_err(io_err)?;
        self.file.write_all(&seq_bytes).map_err(io_err)?;
        self.file.write_all(payload).map_err(io_err)?;
        self.bytes += 8 + len as u64;
        self.records += 1;
        Ok(())
    }

    pub fn sync(&mut self) -> Result<()> {
        let path = &self.path;
        let io_err = |source| Error::WalIo {
            path: path.clone(),
            source,
        };
        self.file.flush().map_err(io_err)?;
        self.file.get_ref().sync_data().map_err(io_err)
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

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let c = read_segment(&path).unwrap();
        assert!(c.truncated_at.is_none());
        let got: Vec<_> = c
            .records
            .iter()
            .map(|(s, b)| (s.0, String::from_utf8(b.clone()).unwrap()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "record-1".to_string()),
                (2, "record-2".to_string()),
                (3, "record-3".to_string())
            ]
        );
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let full = std::fs::metadata(&path).unwrap().len();
        // Cut the last record in half, as a crash mid-write would.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 5).unwrap();
        drop(f);
        let c = read_segment(&path).unwrap();
        assert_eq!(c.records.len(), 2);
        assert!(c.truncated_at.is_some());
        // The file was cut back to the intact prefix: a second read is clean.
        let again = read_segment(&path).unwrap();
        assert_eq!(again.records.len(), 2);
        assert!(again.truncated_at.is_none());
    }

    #[test]
    fn bad_crc_stops_replay_at_the_corrupt_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_segment(dir.path(), 3);
        let mut data = std::fs::read(&path).unwrap();
        // Flip a byte inside the second record's body.
        let first_record_len = 8 + 8 + "record-1".len();
        let second_body = HEADER_LEN as usize + first_record_len + 8 + 9;
        data[second_body] ^= 0xff;
        std::fs::write(&path, &data).unwrap();
        let c = read_segment(&path).unwrap();
        assert_eq!(c.records.len(), 1);
        let (_, reason) = c.truncated_at.unwrap();
        assert!(reason.contains("CRC"), "{reason}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut data = MAGIC.to_vec();
        data.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        for seed in 0..200u32 {
            let mut d = data.clone();
            let mut x = seed.wrapping_mul(2_654_435_761);
            for _ in 0..(seed % 64) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                d.push(x as u8);
            }
            let _ = parse_segment(&d);
        }
        assert_eq!(
            parse_segment(b"junk").2.unwrap(),
            "incomplete segment header"
        );
    }
}
