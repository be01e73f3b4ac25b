//! From an MQTT message to durable rows: pick the decoder by topic (`wattdb/line`,
//! `wattdb/<table>`, or the first matching route), write the good rows (tables are
//! created and grown on first write), and store everything that could not be used in the
//! `rejected` table. [`Ingestor::ingest`] returns only when all of that is durable, so
//! the caller can acknowledge the message (PUBACK): a broker never redelivers poison
//! forever, and nothing acknowledged is lost.

use std::collections::BTreeMap;

use std::sync::Arc;

use wattdb_storage::fulltext::Analyzer;
use wattdb_storage::{
    FieldDef, FieldType, FieldValue, PendingWrite, Row, Storage, WriteBatch, WriteMode,
};

use crate::metrics::IngestMetrics;

use crate::decode::line_protocol::{self, Precision};
use crate::decode::{DecodeError, Decoded, canonical_aligned, canonical_json};
use crate::route::Route;

pub const REJECTED_TABLE: &str = "rejected";
pub const CANONICAL_PREFIX: &str = "wattdb/";
pub const LINE_TOPIC: &str = "wattdb/line";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub routes: Vec<Route>,
    /// Payloads larger than this are rejected without decoding.
    pub max_payload_bytes: usize,
    /// How much of a rejected payload is kept in `rejected.payload`.
    pub rejected_payload_bytes: usize,
    pub line_precision: Precision,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            routes: vec![],
            max_payload_bytes: 1024 * 1024,
            rejected_payload_bytes: 4096,
            line_precision: Precision::Nanoseconds,
        }
    }
}

/// What happened to one message.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub rows_written: usize,
    pub rows_rejected: usize,
}

pub struct Ingestor {
    storage: Storage,
    config: IngestConfig,
    metrics: Arc<IngestMetrics>,
}

impl Ingestor {
    /// Creates the `rejected` table if it does not exist, its `payload` searchable with
    /// `matches()` (an existing table is left as it is).
    pub async fn new(
        storage: Storage,
        config: IngestConfig,
    ) -> Result<Self, wattdb_storage::Error> {
        let text = |n: &str| FieldDef {
            name: n.into(),
            field_type: FieldType::Text,
        };
        storage
            .create_table_with_fulltext(
                REJECTED_TABLE,
                vec!["id".into()],
                vec![text("topic"), text("payload"), text("error")],
                [("payload".to_string(), Analyzer::default())].into(),
                true,
            )
            .await?;
        Ok(Ingestor {
            storage,
            config,
            metrics: Arc::default(),
        })
    }

    fn decode(&self, topic: &str, payload: &[u8], now_micros: i64) -> Decoded {
        if topic == LINE_TOPIC {
            return line_protocol::decode(payload, self.config.line_precision, now_micros);
        }
        if let Some(table) = topic.strip_prefix(CANONICAL_PREFIX) {
            if canonical_table(topic).is_none() {
                return Decoded {
                    rows: vec![],
                    errors: vec![DecodeError::whole(format!(
                        "\"{table}\" is not a table you can publish to"
                    ))],
                };
            }
            return canonical_json::decode(table, payload);
        }
        match self.config.routes.iter().find(|r| r.matches(topic)) {
            Some(route) => route.decode(topic, payload, now_micros),
            None => Decoded {
                rows: vec![],
                errors: vec![DecodeError::whole(format!("no route for topic {topic}"))],
            },
        }
    }

    pub fn metrics(&self) -> &Arc<IngestMetrics> {
        &self.metrics
    }

    /// Decode and store one message; returns once rows and rejections are durable.
    pub async fn ingest(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<IngestOutcome, wattdb_storage::Error> {
        self.submit(topic, payload).await?.durable().await
    }

    /// Decode one message and queue its rows and rejections for the WAL without waiting
    /// for the fsync. Messages submitted one after another are logged in that order; the
    /// message may be acknowledged once [`PendingIngest::durable`] returns `Ok`.
    pub async fn submit(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<PendingIngest, wattdb_storage::Error> {
        let oversize = payload.len() > self.config.max_payload_bytes;
        if !oversize && let Some(pending) = self.submit_aligned(topic, payload).await? {
            return Ok(pending);
        }
        let now = chrono::Utc::now().timestamp_micros();
        let decoded = if oversize {
            Decoded {
                rows: vec![],
                errors: vec![DecodeError::whole(format!(
                    "payload of {} bytes is over the {} byte limit",
                    payload.len(),
                    self.config.max_payload_bytes
                ))],
            }
        } else {
            self.decode(topic, payload, now)
        };
        let mut reasons: Vec<String> = decoded.errors.iter().map(|e| e.to_string()).collect();
        let mut by_table: BTreeMap<String, Vec<Row>> = BTreeMap::new();
        for r in decoded.rows {
            by_table.entry(r.table).or_default().push(r.row);
        }
        let mut writes = Vec::with_capacity(by_table.len() + 1);
        for (table, rows) in by_table {
            if table == REJECTED_TABLE {
                reasons.push("rows for table \"rejected\" are not accepted".into());
                continue;
            }
            let batch = WriteBatch { table, rows };
            match self
                .storage
                .submit(batch, WriteMode::BestEffort, true)
                .await
            {
                Ok(w) => {
                    reasons.extend(w.rejected().iter().map(|(i, e)| format!("row {i}: {e}")));
                    writes.push(w);
                }
                // The table could not be created or grown (bad name, ...): this input is
                // unusable, not the server broken.
                Err(e) if e.is_user_error() => reasons.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        let rows_rejected = reasons.len();
        let rejection = if reasons.is_empty() {
            None
        } else {
            Some(self.reject(topic, payload, now, reasons).await?)
        };
        Ok(PendingIngest {
            writes,
            rejection,
            rows_rejected,
            payload_bytes: payload.len(),
            metrics: self.metrics.clone(),
        })
    }

    /// The common case, cheaply: canonical JSON for a table that already has every
    /// column the payload names, read straight into the table's columns (see
    /// [`canonical_aligned`]). None: take the general path.
    async fn submit_aligned(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<Option<PendingIngest>, wattdb_storage::Error> {
        let Some(table) = canonical_table(topic) else {
            return Ok(None);
        };
        let Some(def) = self.storage.shared_table(table) else {
            return Ok(None);
        };
        let Some(rows) = canonical_aligned::decode(&def, payload) else {
            return Ok(None);
        };
        let write = self.storage.submit_valid(&def, rows).await?;
        Ok(Some(PendingIngest {
            writes: vec![write],
            rejection: None,
            rows_rejected: 0,
            payload_bytes: payload.len(),
            metrics: self.metrics.clone(),
        }))
    }

    async fn reject(
        &self,
        topic: &str,
        payload: &[u8],
        now: i64,
        reasons: Vec<String>,
    ) -> Result<PendingWrite, wattdb_storage::Error> {
        let mut kept = String::from_utf8_lossy(payload).into_owned();
        if kept.len() > self.config.rejected_payload_bytes {
            let mut cut = self.config.rejected_payload_bytes;
            while !kept.is_char_boundary(cut) {
                cut -= 1;
            }
            kept.truncate(cut);
            kept.push_str("…[truncated]");
        }
        let rows = reasons
            .into_iter()
            .map(|reason| Row {
                ts: now,
                tags: vec![("id".into(), uuid_like())],
                fields: vec![
                    ("topic".into(), FieldValue::Text(topic.to_string())),
                    ("payload".into(), FieldValue::Text(kept.clone())),
                    ("error".into(), FieldValue::Text(reason)),
                ],
            })
            .collect();
        self.storage
            .submit(
                WriteBatch {
                    table: REJECTED_TABLE.into(),
                    rows,
                },
                WriteMode::AllOrNothing,
                false,
            )
            .await
    }
}

/// The table of a canonical topic `wattdb/<table>` that devices may publish to (not
/// `wattdb/line`, not the `rejected` table, no further levels); None for any other topic.
fn canonical_table(topic: &str) -> Option<&str> {
    let table = topic.strip_prefix(CANONICAL_PREFIX)?;
    (topic != LINE_TOPIC && !table.contains('/') && table != REJECTED_TABLE).then_some(table)
}

/// [`PendingIngest::durable`] as a boxed future, for queues of messages awaiting their
/// acknowledgement (the embedded endpoint's writer, the broker client's acknowledger).
pub type DurableMessage =
    std::pin::Pin<Box<dyn Future<Output = Result<IngestOutcome, wattdb_storage::Error>> + Send>>;

/// A decoded message whose writes are queued in the WAL (see [`Ingestor::submit`]).
#[must_use = "a submitted message is not durable until `durable()` resolves"]
pub struct PendingIngest {
    writes: Vec<PendingWrite>,
    rejection: Option<PendingWrite>,
    rows_rejected: usize,
    payload_bytes: usize,
    metrics: Arc<IngestMetrics>,
}

impl PendingIngest {
    /// Wait until every row and rejection of the message is durable.
    pub async fn durable(self) -> Result<IngestOutcome, wattdb_storage::Error> {
        let mut outcome = IngestOutcome {
            rows_written: 0,
            rows_rejected: self.rows_rejected,
        };
        for w in self.writes {
            outcome.rows_written += w.durable().await?.written;
        }
        if let Some(r) = self.rejection {
            r.durable().await?;
            IngestMetrics::add(&self.metrics.rejected_messages, 1);
            IngestMetrics::add(&self.metrics.rejected_entries, self.rows_rejected as u64);
        }
        IngestMetrics::add(&self.metrics.messages, 1);
        IngestMetrics::add(&self.metrics.payload_bytes, self.payload_bytes as u64);
        IngestMetrics::add(&self.metrics.rows, outcome.rows_written as u64);
        Ok(outcome)
    }
}

/// A unique id per rejected item (time-ordered): rejections in the same microsecond must
/// not overwrite each other under last-write-wins.
fn uuid_like() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
