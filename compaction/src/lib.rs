//! wattdb-compaction: background work on stored data. It will own file merge + dedup per
//! month partition, continuous 15-minute/1-day rollups (dirty buckets recomputed from
//! deduplicated raw data), retention (dropping expired month partitions) and the cold
//! archive.
//!
//! It works through `wattdb_storage` (snapshots, file registration, catalog swaps), never
//! on WAL or buffer internals, and it must never make a running query miss a file: new
//! files are swapped in first, old ones deleted after a grace period.
//!
//! Status: not implemented yet (issues 4 and 5).
