//! The WAL's handle: replay at open, then queueing records for the writer thread
//! ([`super::group_commit`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::metrics::StorageMetrics;

use super::group_commit::{Command, Queued, WriterThread};
use super::record::{WalRecord, WalSeq};
use super::segment::{SegmentWriter, list_segments, read_segment};

/// Receives each record once it is durable, in sequence order, on the WAL thread. Must be
/// quick: the acknowledgement of every writer in the group waits for it.
pub trait DurableObserver: Send + Sync + 'static {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord);

    /// Every record of one group commit, in sequence order (replay hands over one
    /// record at a time). Observers that gain from batching override this.
    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        for (seq, record) in records {
            self.on_durable(*seq, record);
        }
    }
}

#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
    /// Start a new segment once the current one is larger than this.
    pub segment_bytes: u64,
    /// Upper bound of bytes written per group commit.
    pub max_group_bytes: usize,
}

impl WalConfig {
    pub fn new(dir: PathBuf) -> Self {
        WalConfig {
            dir,
            segment_bytes: 64 * 1024 * 1024,
            max_group_bytes: 16 * 1024 * 1024,
        }
    }
}

/// A record with its encoded bytes, ready to be queued: encoding is the costly part of
/// queueing a large record, and this lets it run off the caller's path.
pub struct EncodedRecord {
    payload: Vec<u8>,
    record: WalRecord,
}

impl EncodedRecord {
    pub fn new(record: WalRecord) -> Result<EncodedRecord> {
        Ok(EncodedRecord {
            payload: record.encode()?,
            record,
        })
    }

    pub fn record(&self) -> &WalRecord {
        &self.record
    }

    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// Handle to the WAL writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Wal {
    tx: mpsc::Sender<Command>,
}

/// Result of opening the WAL: records found on disk, replayed through the observer.
pub struct ReplayReport {
    pub records: usize,
    pub segments: usize,
    pub truncated_segments: usize,
    pub last_seq: Option<WalSeq>,
}

impl Wal {
    /// Replay every segment in `config.dir` into `observer`, then start the writer thread
    /// with a fresh segment whose sequence numbers start above both the replayed records
    /// and `min_next_seq` (so numbering never goes backwards once old segments are gone).
    pub fn open(
        config: WalConfig,
        observer: Arc<dyn DurableObserver>,
        min_next_seq: WalSeq,
        metrics: Arc<StorageMetrics>,
    ) -> Result<(Wal, ReplayReport)> {
        std::fs::create_dir_all(&config.dir).map_err(|source| Error::WalIo {
            path: config.dir.clone(),
            source,
        })?;
        let segments = list_segments(&config.dir)?;
        let mut report = ReplayReport {
            records: 0,
            segments: segments.len(),
            truncated_segments: 0,
            last_seq: None,
        };
        let mut closed = Vec::new();
        let count = segments.len();
        for (i, (first_seq, path)) in segments.into_iter().enumerate() {
            let contents = read_segment(&path, first_seq, i + 1 == count)?;
            if contents.truncated_at.is_some() {
                report.truncated_segments += 1;
            }
            for r in contents.records {
                // Numbers only go up: a record at or below one already replayed is not
                // from this WAL's history (e.g. left behind a failed write).
                if report.last_seq.is_some_and(|last| r.seq <= last) {
                    return Err(Error::WalDamaged {
                        path: path.clone(),
                        offset: r.offset,
                        reason: format!(
                            "record seq {} is not above seq {} of the segment before",
                            r.seq.0,
                            report.last_seq.map_or(0, |s| s.0)
                        ),
                    });
                }
                // Intact but not readable: acknowledged all the same, so never skipped.
                let record = WalRecord::decode_version(&r.body, contents.version).map_err(|e| {
                    Error::WalDamaged {
                        path: path.clone(),
                        offset: r.offset,
                        reason: format!("record seq {} does not decode ({e})", r.seq.0),
                    }
                })?;
                observer.on_durable(r.seq, &record);
                report.records += 1;
                report.last_seq = Some(r.seq);
            }
            closed.push((first_seq, path));
        }
        let next = report
            .last_seq
            .map(|s| s.0 + 1)
            .unwrap_or(1)
            .max(min_next_seq.0);
        let active = SegmentWriter::create(&config.dir, WalSeq(next))?;
        let (tx, rx) = mpsc::channel();
        let mut thread = WriterThread {
            config,
            observer,
            metrics,
            active: Some(active),
            closed,
            next_seq: next,
            halted: None,
        };
        std::thread::Builder::new()
            .name("wattdb-wal".into())
            .spawn(move || thread.run(rx))
            .map_err(|source| Error::WalIo {
                path: PathBuf::from("<wal thread>"),
                source,
            })?;
        Ok((Wal { tx }, report))
    }

    /// Append a record; returns once it is fsynced and the observer has seen it.
    pub async fn append(&self, record: WalRecord) -> Result<WalSeq> {
        self.enqueue(record)?.await
    }

    /// Queue a record for the next group commit and return at once. Records are written
    /// in the order they were enqueued; the returned future resolves once this one is
    /// fsynced and the observer has seen it.
    pub fn enqueue(&self, record: WalRecord) -> Result<Durable> {
        self.enqueue_encoded(EncodedRecord::new(record)?)
    }

    /// [`Wal::enqueue`] for a record encoded beforehand (e.g. on another thread).
    pub fn enqueue_encoded(&self, encoded: EncodedRecord) -> Result<Durable> {
        self.enqueue_charged(encoded, None)
    }

    /// [`Wal::enqueue_encoded`] with a charge for the memory the record holds (e.g. a
    /// [`crate::buffer::QueueCharge`]), dropped once the WAL thread is done with it.
    pub fn enqueue_charged(
        &self,
        encoded: EncodedRecord,
        charge: Option<Box<dyn Send>>,
    ) -> Result<Durable> {
        let EncodedRecord { payload, record } = encoded;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Append(Queued {
                payload,
                record,
                reply,
                _charge: charge,
            }))
            .map_err(|_| Error::WalClosed)?;
        Ok(Durable(rx))
    }

    /// Delete segments whose records are all below `keep_from` — the active one too when
    /// every record in it is (the next write starts a new segment). `None` deletes every
    /// segment: only for a caller that knows no write is in flight. Returns the number of
    /// segments deleted.
    pub async fn release(&self, keep_from: Option<WalSeq>) -> Result<usize> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Release { keep_from, reply })
            .map_err(|_| Error::WalClosed)?;
        rx.await.map_err(|_| Error::WalClosed)?
    }

    /// Stop the writer thread after everything queued so far is durable.
    pub async fn shutdown(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Command::Shutdown { reply }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Resolves once an enqueued record is durable (see [`Wal::enqueue`]).
pub struct Durable(oneshot::Receiver<Result<WalSeq>>);

impl std::future::Future for Durable {
    type Output = Result<WalSeq>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| Error::WalClosed).and_then(|r| r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::test_records::{Collect, rec};

    #[tokio::test]
    async fn append_replay_release() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = WalConfig::new(dir.path().to_path_buf());
        cfg.segment_bytes = 100; // rotate after nearly every group
        let obs = Arc::new(Collect::default());
        let (wal, rep) =
            Wal::open(cfg.clone(), obs.clone(), WalSeq(1), Default::default()).unwrap();
        assert_eq!(rep.records, 0);
        for ts in 0..10 {
            wal.append(rec(ts)).await.unwrap();
        }
        wal.shutdown().await;
        assert_eq!(obs.0.lock().unwrap().len(), 10);

        let obs2 = Arc::new(Collect::default());
        let (wal2, rep) =
            Wal::open(cfg.clone(), obs2.clone(), WalSeq(1), Default::default()).unwrap();
        assert_eq!(rep.records, 10);
        let got = obs2.0.lock().unwrap().clone();
        assert_eq!(got, (1..=10).map(|s| (s, s as i64 - 1)).collect::<Vec<_>>());
        // New records continue the numbering.
        assert_eq!(wal2.append(rec(99)).await.unwrap(), WalSeq(11));
        // Release everything below 11: only record 11 must remain replayable.
        wal2.release(Some(WalSeq(11))).await.unwrap();
        wal2.shutdown().await;
        let obs3 = Arc::new(Collect::default());
        let (wal3, _) = Wal::open(cfg, obs3.clone(), WalSeq(1), Default::default()).unwrap();
        let got = obs3.0.lock().unwrap().clone();
        assert_eq!(got, vec![(11, 99)]);
        wal3.shutdown().await;
    }
}
