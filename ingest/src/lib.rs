//! wattdb-ingest: getting device data in. It owns the payload decoders (canonical JSON,
//! InfluxDB line protocol, route decoders), topic routes with presets, the ingest
//! pipeline with the `rejected` quarantine, the embedded MQTT endpoint (MQTT 3.1.1 and 5,
//! PUBACK only after the WAL is durable, many publishes in flight per connection), the
//! external-broker client (rumqttc, persistent session, manual acks after durability,
//! shared subscriptions) and the ingest metrics. Backpressure is the storage's: `submit`
//! waits while the write buffer is over budget, and the endpoints stop reading meanwhile.
//!
//! It must not touch WAL, buffer or catalog internals: it hands decoded rows to
//! `wattdb_storage::Storage::submit` and acknowledges once the returned write is durable.
//! Nothing here serves SQL; the rules runtime (`rules`: alarms evaluated on every durable
//! write) compiles its conditions with DataFusion's expression parser.

pub mod broker_client;
pub mod decode;
pub mod metrics;
pub mod mqtt_endpoint;
pub mod pipeline;
pub mod route;
pub mod rules;
pub mod topic;
