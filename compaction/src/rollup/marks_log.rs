//! The durable copy of rollup dirty marks: an append-only file of checksummed records,
//! each a batch of marks, fsynced per append. Removing a mark is never needed for
//! correctness (a stale mark only makes a bucket be recomputed once more), so the file
//! is emptied when no durable mark is outstanding and rewritten when it grows large.
//!
//! Header: `b"WATTMRK\0" | format version u32 LE` (= 1). Then records:
//! `len: u32 LE | crc32(payload): u32 LE | payload`; payload: repeated
//! `table: u64 | bucket: i64 | propagate: u8 | tags: u16 | (len: u32 | utf-8)*` (LE).
//! A torn or corrupt tail (crash mid-append) is cut off at open. A file without the
//! header is format 0 (the same records, from before the header existed): read, then
//! rewritten with the header. A newer version, or a file that is neither, stops the open
//! (see `storage/FORMATS.md`).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use wattdb_storage::TableId;

const FILE: &str = "marks.log";
pub const MAGIC: &[u8; 8] = b"WATTMRK\0";
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 12;

fn header() -> Vec<u8> {
    let mut h = MAGIC.to_vec();
    h.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

fn invalid(path: &Path, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("rollup marks log {}: {reason}", path.display()),
    )
}

/// Where the records start, after checking the header: `Ok(None)` for a format-0 file.
fn records_start(path: &Path, data: &[u8]) -> io::Result<Option<usize>> {
    if data.starts_with(MAGIC) {
        let version = data
            .get(8..HEADER_LEN)
            .and_then(|v| v.try_into().ok())
            .map(u32::from_le_bytes);
        return match version {
            Some(FORMAT_VERSION) => Ok(Some(HEADER_LEN)),
            // Created, crashed before the version was written: no records yet.
            None => Ok(Some(data.len())),
            Some(v) => Err(invalid(
                path,
                format!(
                    "format version {v} is newer than this build's {FORMAT_VERSION} (written by a newer wattdb)"
                ),
            )),
        };
    }
    // A header cut short at creation.
    if data.len() < HEADER_LEN && MAGIC.starts_with(data) {
        return Ok(Some(data.len()));
    }
    Ok(None)
}
/// Rewrite the file with only the outstanding marks once it is this large.
const REWRITE_BYTES: u64 = 64 * 1024 * 1024;

/// One durable mark: (table, series tags, base bucket start, propagate).
pub type LoggedMark = (TableId, Vec<String>, i64, bool);

pub struct MarksLog {
    dir: PathBuf,
    file: File,
    bytes: u64,
}

fn encode(marks: &[(TableId, &[String], i64, bool)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (table, series, bucket, propagate) in marks {
        p.extend_from_slice(&table.0.to_le_bytes());
        p.extend_from_slice(&bucket.to_le_bytes());
        p.push(u8::from(*propagate));
        p.extend_from_slice(&(series.len() as u16).to_le_bytes());
        for s in series.iter() {
            p.extend_from_slice(&(s.len() as u32).to_le_bytes());
            p.extend_from_slice(s.as_bytes());
        }
    }
    let mut rec = Vec::with_capacity(p.len() + 8);
    rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32fast::hash(&p).to_le_bytes());
    rec.extend_from_slice(&p);
    rec
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
}

fn decode_payload(p: &[u8], out: &mut Vec<LoggedMark>) -> Option<()> {
    let mut c = Cursor(p);
    while !c.0.is_empty() {
        let table = TableId(c.u64()?);
        let bucket = c.u64()? as i64;
        let propagate = c.take(1)?[0] == 1;
        let n = c.u16()?;
        let mut series = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let len = c.u32()? as usize;
            series.push(String::from_utf8(c.take(len)?.to_vec()).ok()?);
        }
        out.push((table, series, bucket, propagate));
    }
    Some(())
}

/// Every mark in the valid prefix of `data`, and that prefix's length.
fn decode_all(data: &[u8]) -> (Vec<LoggedMark>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while data.len() - pos >= 8 {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().unwrap_or_default());
        let Some(payload) = data.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut batch = Vec::new();
        if decode_payload(payload, &mut batch).is_none() {
            break;
        }
        out.extend(batch);
        pos += 8 + len;
    }
    (out, pos)
}

impl MarksLog {
    /// Open (or create) the log under `dir` and read the marks it holds.
    pub fn open(dir: &Path) -> io::Result<(Self, Vec<LoggedMark>)> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let start = records_start(&path, &data)?;
        let from = start.unwrap_or(0);
        let (marks, valid) = decode_all(&data[from.min(data.len())..]);
        let valid = from.min(data.len()) + valid;
        if start.is_none() && valid == 0 && !data.is_empty() {
            return Err(invalid(
                &path,
                "neither a marks log header nor marks (a foreign file?); move it away".into(),
            ));
        }
        let mut log = MarksLog {
            dir: dir.to_path_buf(),
            file,
            bytes: (valid - from.min(valid)) as u64,
        };
        match start {
            // Format 0, or no complete header: write it in the current format.
            None => log.rewrite_owned(&marks)?,
            Some(from) if from < HEADER_LEN => log.rewrite_owned(&marks)?,
            Some(_) if valid < data.len() => {
                tracing::warn!(
                    file = %path.display(),
                    cut = data.len() - valid,
                    "rollup marks log had a torn or corrupt tail; truncated"
                );
                log.file.set_len(valid as u64)?;
                log.file.sync_all()?;
            }
            Some(_) => {}
        }
        log.file.seek(SeekFrom::End(0))?;
        Ok((log, marks))
    }

    fn rewrite_owned(&mut self, marks: &[LoggedMark]) -> io::Result<()> {
        let refs: Vec<(TableId, &[String], i64, bool)> = marks
            .iter()
            .map(|(t, s, b, p)| (*t, s.as_slice(), *b, *p))
            .collect();
        self.rewrite(&refs)
    }

    /// Append marks durably.
    pub fn append(&mut self, marks: &[(TableId, &[String], i64, bool)]) -> io::Result<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let rec = encode(marks);
        fail::fail_point!("marks-log-write", |_| Err(io::Error::from_raw_os_error(5)));
        self.file.write_all(&rec)?;
        self.file.sync_data()?;
        self.bytes += rec.len() as u64;
        Ok(())
    }

    pub fn needs_rewrite(&self) -> bool {
        self.bytes > REWRITE_BYTES
    }

    /// Replace the whole log by `marks` (write aside, fsync, rename).
    pub fn rewrite(&mut self, marks: &[(TableId, &[String], i64, bool)]) -> io::Result<()> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let rec = if marks.is_empty() {
            Vec::new()
        } else {
            encode(marks)
        };
        fail::fail_point!("marks-log-write", |_| Err(io::Error::from_raw_os_error(5)));
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&header())?;
            f.write_all(&rec)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, self.dir.join(FILE))?;
        File::open(&self.dir)?.sync_all()?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(FILE))?;
        self.bytes = rec.len() as u64;
        Ok(())
    }

    /// Forget every mark (none is outstanding).
    pub fn clear(&mut self) -> io::Result<()> {
        if self.bytes == 0 {
            return Ok(());
        }
        self.file.set_len(HEADER_LEN as u64)?;
        self.file.sync_all()?;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of a log holding one mark: pinned, so a change of the encoding needs a
    /// new format version (storage/FORMATS.md).
    #[test]
    fn encoding_is_pinned() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MarksLog::open(dir.path()).unwrap();
        let series = vec!["m1".to_string()];
        log.append(&[(TableId(3), &series, 900, true)]).unwrap();
        let data = std::fs::read(dir.path().join(FILE)).unwrap();
        let mut want = b"WATTMRK\0".to_vec();
        want.extend([1, 0, 0, 0]); // version 1
        want.extend([25, 0, 0, 0]); // payload length
        let payload: Vec<u8> = [
            &3u64.to_le_bytes()[..],   // table
            &900i64.to_le_bytes()[..], // bucket
            &[1],                      // propagate
            &1u16.to_le_bytes()[..],   // one tag
            &2u32.to_le_bytes()[..],
            b"m1",
        ]
        .concat();
        want.extend(crc32fast::hash(&payload).to_le_bytes());
        want.extend(payload);
        assert_eq!(data, want);
    }

    #[test]
    fn a_log_without_header_is_read_and_rewritten_a_newer_or_foreign_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let series = vec!["m1".to_string()];
        // Format 0: records only.
        std::fs::write(&path, encode(&[(TableId(3), &series, 900, true)])).unwrap();
        let (_, marks) = MarksLog::open(dir.path()).unwrap();
        assert_eq!(marks, vec![(TableId(3), series.clone(), 900, true)]);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        assert_eq!(MarksLog::open(dir.path()).unwrap().1.len(), 1);

        let mut newer = MAGIC.to_vec();
        newer.extend(2u32.to_le_bytes());
        std::fs::write(&path, &newer).unwrap();
        let err = MarksLog::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("format version 2"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), newer, "left as it was");

        std::fs::write(&path, b"something else entirely").unwrap();
        let err = MarksLog::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("foreign"), "{err}");
    }

    #[test]
    fn round_trip_torn_tail_rewrite_and_clear() {
        let dir = tempfile::tempdir().unwrap();
        let s1 = vec!["p1".to_string(), "".to_string()];
        let s2 = vec!["b/c".to_string()];
        {
            let (mut log, marks) = MarksLog::open(dir.path()).unwrap();
            assert!(marks.is_empty());
            log.append(&[(TableId(1), &s1, -900, true)]).unwrap();
            log.append(&[(TableId(2), &s2, 5, false), (TableId(1), &[], 7, false)])
                .unwrap();
        }
        // A crash mid-append leaves half a record.
        let path = dir.path().join(FILE);
        let mut data = std::fs::read(&path).unwrap();
        data.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
        std::fs::write(&path, &data).unwrap();
        let (mut log, marks) = MarksLog::open(dir.path()).unwrap();
        assert_eq!(
            marks,
            vec![
                (TableId(1), s1.clone(), -900, true),
                (TableId(2), s2.clone(), 5, false),
                (TableId(1), vec![], 7, false),
            ]
        );
        log.rewrite(&[(TableId(2), &s2, 5, false)]).unwrap();
        log.append(&[(TableId(3), &s1, 1, true)]).unwrap();
        drop(log);
        let (mut log, marks) = MarksLog::open(dir.path()).unwrap();
        assert_eq!(
            marks,
            vec![(TableId(2), s2, 5, false), (TableId(3), s1, 1, true)]
        );
        log.clear().unwrap();
        drop(log);
        assert!(MarksLog::open(dir.path()).unwrap().1.is_empty());
    }
}
