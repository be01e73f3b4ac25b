//! The durable copy of rollup dirty marks: an append-only file of checksummed records,
//! each a batch of marks, fsynced per append. Removing a mark is never needed for
//! correctness (a stale mark only makes a bucket be recomputed once more), so the file
//! is emptied when no durable mark is outstanding and rewritten when it grows large.
//!
//! Record: `len: u32 LE | crc32(payload): u32 LE | payload`; payload: repeated
//! `table: u64 | bucket: i64 | propagate: u8 | tags: u16 | (len: u32 | utf-8)*` (LE).
//! A torn or corrupt tail (crash mid-append) is cut off at open.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use wattdb_storage::TableId;

const FILE: &str = "marks.log";
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
        let (marks, valid) = decode_all(&data);
        if valid < data.len() {
            tracing::warn!(
                file = %path.display(),
                cut = data.len() - valid,
                "rollup marks log had a torn or corrupt tail; truncated"
            );
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        file.seek(SeekFrom::End(0))?;
        Ok((
            MarksLog {
                dir: dir.to_path_buf(),
                file,
                bytes: valid as u64,
            },
            marks,
        ))
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
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
