//! wattdb-ingest: getting device data in. It will own the embedded MQTT endpoint (PUBACK
//! only after the WAL is durable), the external-broker client (rumqttc, persistent
//! session, manual acks), topic routes, payload decoders (JSON, InfluxDB line protocol,
//! single values), the `rejected` quarantine and ingest backpressure.
//!
//! It must not touch WAL, buffer or catalog internals: it hands decoded rows to
//! `wattdb_storage::Storage::write` and acknowledges after that returns. Nothing here
//! knows about SQL.
//!
//! Status: not implemented yet (issue 3). The crate exists so the workspace layout and
//! dependency direction are fixed from the start.
