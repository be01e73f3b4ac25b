//! Ingest counters for `/metrics`: messages in, rows landed, rejections, and what the
//! connections are doing. Plain atomics, shared by the embedded endpoint and the broker
//! client.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct IngestMetrics {
    /// Messages decoded and stored (their rows and/or their `rejected` entries).
    pub messages: AtomicU64,
    /// Payload bytes of those messages.
    pub payload_bytes: AtomicU64,
    /// Rows that landed in user tables.
    pub rows: AtomicU64,
    /// Messages with at least one entry in `rejected`, and the entries themselves.
    pub rejected_messages: AtomicU64,
    pub rejected_entries: AtomicU64,
    /// Open connections to the embedded endpoint, and connections ever accepted.
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections to external brokers that are currently up, and reconnect attempts.
    pub broker_sessions_up: AtomicU64,
    pub broker_reconnects: AtomicU64,
}

impl IngestMetrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// (name, help, kind, value) for Prometheus exposition.
    pub fn snapshot(&self) -> Vec<(&'static str, &'static str, &'static str, f64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64;
        vec![
            (
                "wattdb_mqtt_messages_total",
                "MQTT messages stored (rows and/or rejected entries durable).",
                "counter",
                get(&self.messages),
            ),
            (
                "wattdb_mqtt_payload_bytes_total",
                "Payload bytes of stored MQTT messages.",
                "counter",
                get(&self.payload_bytes),
            ),
            (
                "wattdb_mqtt_rows_total",
                "Rows from MQTT messages that landed in tables.",
                "counter",
                get(&self.rows),
            ),
            (
                "wattdb_mqtt_rejected_messages_total",
                "MQTT messages with at least one entry in the rejected table.",
                "counter",
                get(&self.rejected_messages),
            ),
            (
                "wattdb_mqtt_rejected_entries_total",
                "Entries written to the rejected table.",
                "counter",
                get(&self.rejected_entries),
            ),
            (
                "wattdb_mqtt_connections",
                "Open connections to the embedded MQTT endpoint.",
                "gauge",
                get(&self.connections_open),
            ),
            (
                "wattdb_mqtt_connections_total",
                "Connections accepted by the embedded MQTT endpoint.",
                "counter",
                get(&self.connections_total),
            ),
            (
                "wattdb_mqtt_broker_sessions",
                "External broker sessions currently connected.",
                "gauge",
                get(&self.broker_sessions_up),
            ),
            (
                "wattdb_mqtt_broker_reconnects_total",
                "Reconnect attempts to external brokers.",
                "counter",
                get(&self.broker_reconnects),
            ),
        ]
    }
}
