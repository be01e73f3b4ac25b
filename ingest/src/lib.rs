//! wattdb-ingest: getting device data in. It owns the payload decoders (canonical JSON,
//! InfluxDB line protocol; route decoders next), and will own the embedded MQTT endpoint
//! (PUBACK only after the WAL is durable), the external-broker client (rumqttc,
//! persistent session, manual acks), topic routes, the `rejected` quarantine and ingest
//! backpressure.
//!
//! It must not touch WAL, buffer or catalog internals: it hands decoded rows to
//! `wattdb_storage::Storage::write` and acknowledges after that returns. Nothing here
//! knows about SQL.
//!
//! Status (issue 3, in progress): decoders, routes with presets, the pipeline with the
//! `rejected` table, and the embedded MQTT 3.1.1 endpoint are here; MQTT 5, the
//! external-broker client and the load generator are not yet.

pub mod broker_client;
pub mod decode;
pub mod metrics;
pub mod mqtt_endpoint;
pub mod pipeline;
pub mod route;
pub mod topic;
