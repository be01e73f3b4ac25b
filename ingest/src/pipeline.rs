//! From an MQTT message to durable rows: pick the decoder by topic (`wattdb/line`,
//! `wattdb/<table>`, or the first matching route), write the good rows (tables are
//! created and grown on first write), and store everything that could not be used in the
//! `rejected` table. [`Ingestor::ingest`] returns only when all of that is durable, so
//! the caller can acknowledge the message (PUBACK): a broker never redelivers poison
//! forever, and nothing acknowledged is lost.

use std::collections::BTreeMap;

use wattdb_storage::{FieldDef, FieldType, FieldValue, Row, Storage, WriteBatch, WriteMode};

use crate::decode::line_protocol::{self, Precision};
use crate::decode::{DecodeError, Decoded, canonical_json};
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
}

impl Ingestor {
    /// Creates the `rejected` table if it does not exist.
    pub async fn new(
        storage: Storage,
        config: IngestConfig,
    ) -> Result<Self, wattdb_storage::Error> {
        let text = |n: &str| FieldDef {
            name: n.into(),
            field_type: FieldType::Text,
        };
        storage
            .create_table(
                REJECTED_TABLE,
                vec!["id".into()],
                vec![text("topic"), text("payload"), text("error")],
                true,
            )
            .await?;
        Ok(Ingestor { storage, config })
    }

    fn decode(&self, topic: &str, payload: &[u8], now_micros: i64) -> Decoded {
        if topic == LINE_TOPIC {
            return line_protocol::decode(payload, self.config.line_precision, now_micros);
        }
        if let Some(table) = topic.strip_prefix(CANONICAL_PREFIX) {
            if table.contains('/') || table == REJECTED_TABLE {
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

    /// Decode and store one message; returns once rows and rejections are durable.
    pub async fn ingest(
        &self,
        topic: &str,
        payload: &[u8],
    ) -> Result<IngestOutcome, wattdb_storage::Error> {
        let now = chrono::Utc::now().timestamp_micros();
        let decoded = if payload.len() > self.config.max_payload_bytes {
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
        let mut outcome = IngestOutcome::default();
        for (table, rows) in by_table {
            if table == REJECTED_TABLE {
                reasons.push("rows for table \"rejected\" are not accepted".into());
                continue;
            }
            match self
                .storage
                .write(
                    WriteBatch {
                        table: table.clone(),
                        rows,
                    },
                    WriteMode::BestEffort,
                    true,
                )
                .await
            {
                Ok(w) => {
                    outcome.rows_written += w.written;
                    reasons.extend(w.rejected.iter().map(|(i, e)| format!("row {i}: {e}")));
                }
                // The table could not be created or grown (bad name, ...): this input is
                // unusable, not the server broken.
                Err(e) if e.is_user_error() => reasons.push(e.to_string()),
                Err(e) => return Err(e),
            }
        }
        outcome.rows_rejected = reasons.len();
        if !reasons.is_empty() {
            self.reject(topic, payload, now, reasons).await?;
        }
        Ok(outcome)
    }

    async fn reject(
        &self,
        topic: &str,
        payload: &[u8],
        now: i64,
        reasons: Vec<String>,
    ) -> Result<(), wattdb_storage::Error> {
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
            .write(
                WriteBatch {
                    table: REJECTED_TABLE.into(),
                    rows,
                },
                WriteMode::AllOrNothing,
                false,
            )
            .await?;
        Ok(())
    }
}

/// A unique id per rejected item (time-ordered): rejections in the same microsecond must
/// not overwrite each other under last-write-wins.
fn uuid_like() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}
