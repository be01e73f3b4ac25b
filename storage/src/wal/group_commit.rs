//! The WAL writer thread: group commit, rotation and release, and what happens when the
//! disk fails.
//!
//! A group is acknowledged only after its records are written and fsynced. When a write
//! or an fsync fails, no record of the group is acknowledged (each writer gets the error:
//! [`Error::DiskFull`] when the disk is full) and the segment is given up: cut back to its
//! last durable record and never written again (a later frame behind a partial one would
//! be lost to replay, and after a failed fsync the kernel may have dropped the pages of
//! that file). The next group starts a new segment, so writing resumes by itself once the
//! disk has room again. Only if the cut itself fails does the WAL stop taking writes until
//! a restart ([`Error::WalHalted`]; replay then cuts the torn tail, as after a crash).
//! PostgreSQL's answer to a failed fsync is to stop the server; here every byte written
//! since the last good fsync belongs to the failed group, so cutting it off is enough.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::metrics::StorageMetrics;

use super::record::{WalRecord, WalSeq};
use super::segment::{HEADER_LEN, SegmentWriter};
use super::writer::{DurableObserver, WalConfig};

pub(super) enum Command {
    Append(Queued),
    /// Delete segments holding only records below `keep_from` (None: nothing is needed).
    Release {
        keep_from: Option<WalSeq>,
        reply: oneshot::Sender<Result<usize>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A record waiting for the next group commit.
pub(super) struct Queued {
    pub payload: Vec<u8>,
    pub record: WalRecord,
    pub reply: oneshot::Sender<Result<WalSeq>>,
    /// Whatever accounts for the memory the record holds (the buffer's budget): dropped
    /// with the record, after the observer has it or it was refused.
    pub _charge: Option<Box<dyn Send>>,
}

/// The observer of a closed WAL.
struct Detached;

impl DurableObserver for Detached {
    fn on_durable(&self, _: WalSeq, _: &WalRecord) {}
}

pub(super) struct WriterThread {
    pub config: WalConfig,
    pub observer: Arc<dyn DurableObserver>,
    pub metrics: Arc<StorageMetrics>,
    /// The segment being appended to; `None` after a failure or a failed rotation, until
    /// the next group creates one.
    pub active: Option<SegmentWriter>,
    pub closed: Vec<(WalSeq, PathBuf)>,
    pub next_seq: u64,
    /// Set when a failed segment could not be cut back: no more writes until a restart.
    pub halted: Option<Error>,
}

impl WriterThread {
    pub fn run(&mut self, rx: mpsc::Receiver<Command>) {
        let mut shutdown_reply = None;
        while shutdown_reply.is_none() {
            let Ok(first) = rx.recv() else { break };
            let mut group = Vec::new();
            let mut group_bytes = 0usize;
            let mut others = Vec::new();
            let mut cmd = Some(first);
            while let Some(c) = cmd.take() {
                match c {
                    Command::Append(queued) => {
                        group_bytes += queued.payload.len();
                        group.push(queued);
                    }
                    Command::Shutdown { reply } => {
                        shutdown_reply = Some(reply);
                        break;
                    }
                    other => others.push(other),
                }
                if group_bytes >= self.config.max_group_bytes {
                    break;
                }
                cmd = rx.try_recv().ok();
            }
            if !group.is_empty() {
                self.commit_group(group);
            }
            for c in others {
                if let Command::Release { keep_from, reply } = c {
                    let _ = reply.send(self.release(keep_from));
                }
            }
        }
        if let Some(active) = &mut self.active {
            let _ = active.sync();
        }
        // Let go of the observers (and whatever they hold open) before the owner hears
        // that the WAL is closed.
        self.observer = Arc::new(Detached);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn commit_group(&mut self, group: Vec<Queued>) {
        let started = std::time::Instant::now();
        let first_seq = self.next_seq;
        let seq_of = |i: usize| WalSeq(first_seq + i as u64);
        let active = match self.writable() {
            Ok(active) => active,
            Err(e) => return refuse(group, &e),
        };
        let durable_len = active.bytes();
        let written = group
            .iter()
            .enumerate()
            .try_for_each(|(i, q)| active.append(seq_of(i), &q.payload))
            .and_then(|()| active.sync());
        let bytes = active.bytes().saturating_sub(durable_len);
        let full = active.bytes() >= self.config.segment_bytes;
        if let Err(e) = written {
            tracing::error!(error = %e, records = group.len(), "WAL write failed; the group is refused and the segment given up");
            self.give_up_segment(durable_len, &e);
            return refuse(group, &e);
        }
        self.next_seq += group.len() as u64;
        StorageMetrics::add_duration(&self.metrics.wal_fsync_micros, started.elapsed());
        StorageMetrics::add(&self.metrics.wal_fsyncs, 1);
        StorageMetrics::add(&self.metrics.wal_records, group.len() as u64);
        StorageMetrics::add(&self.metrics.wal_bytes, bytes);
        let durable: Vec<(WalSeq, &WalRecord)> = group
            .iter()
            .enumerate()
            .map(|(i, q)| (seq_of(i), &q.record))
            .collect();
        self.observer.on_durable_group(&durable);
        for (i, q) in group.into_iter().enumerate() {
            let _ = q.reply.send(Ok(seq_of(i)));
        }
        if full && let Err(e) = self.rotate() {
            tracing::error!(error = %e, "WAL segment rotation failed; the next group tries again");
        }
    }

    /// The segment to append to, creating one if the last was given up or rotation failed.
    fn writable(&mut self) -> Result<&mut SegmentWriter> {
        if let Some(halted) = &self.halted {
            return Err(halted.for_each_writer());
        }
        if self.active.is_none() {
            let segment = SegmentWriter::create(&self.config.dir, WalSeq(self.next_seq))?;
            tracing::info!(segment = %segment.path().display(), "WAL writing to a new segment");
            self.active = Some(segment);
        }
        self.active.as_mut().ok_or(Error::WalClosed)
    }

    /// After a failed write or fsync: cut the segment back to `durable_len` and close it.
    fn give_up_segment(&mut self, durable_len: u64, cause: &Error) {
        let Some(segment) = self.active.take() else {
            return;
        };
        let first_seq = segment.first_seq;
        let path = segment.path().to_path_buf();
        match segment.abandon(durable_len) {
            // A segment with no record needs no place among the closed ones: the next
            // segment starts at the same sequence number and replaces the file.
            Ok(_) if durable_len <= HEADER_LEN => {}
            Ok(path) => self.closed.push((first_seq, path)),
            Err(e) => {
                tracing::error!(segment = %path.display(), error = %e, cause = %cause, "the failed WAL segment could not be cut back; writes are refused until wattdb is restarted");
                self.halted = Some(Error::WalHalted {
                    path,
                    reason: e.to_string(),
                });
            }
        }
    }

    fn rotate(&mut self) -> Result<()> {
        if let Some(old) = self.active.take() {
            self.closed.push((old.first_seq, old.path().to_path_buf()));
        }
        self.active = Some(SegmentWriter::create(
            &self.config.dir,
            WalSeq(self.next_seq),
        )?);
        Ok(())
    }

    fn release(&mut self, keep_from: Option<WalSeq>) -> Result<usize> {
        // The active segment goes too when every record in it is below keep_from.
        let all_below = keep_from.is_none_or(|k| self.next_seq <= k.0);
        if all_below && self.active.as_ref().is_some_and(|a| a.records > 0) {
            self.rotate()?;
        }
        // A closed segment can go when the segment after it starts at or below keep_from.
        let mut starts: Vec<WalSeq> = self.closed.iter().map(|(s, _)| *s).collect();
        starts.push(
            self.active
                .as_ref()
                .map_or(WalSeq(self.next_seq), |a| a.first_seq),
        );
        let mut deleted = 0;
        let mut failed = None;
        let mut keep = Vec::new();
        for (i, (first, path)) in std::mem::take(&mut self.closed).into_iter().enumerate() {
            let next_start = starts[i + 1];
            if keep_from.is_some_and(|k| next_start > k) {
                keep.push((first, path));
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => deleted += 1,
                // Kept on the list: the next release tries again.
                Err(source) => {
                    failed.get_or_insert(Error::WalIo {
                        path: path.clone(),
                        source,
                    });
                    keep.push((first, path));
                }
            }
        }
        self.closed = keep;
        failed.map_or(Ok(deleted), Err)
    }
}

/// Answer every writer of a group that was not written with `e`.
fn refuse(group: Vec<Queued>, e: &Error) {
    for q in group {
        let _ = q.reply.send(Err(e.for_each_writer()));
    }
}
