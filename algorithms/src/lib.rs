//! wattdb-algorithms: pure computation with no I/O — alarm rule state machines, absence
//! (data-gap) detection, appliance recognition over per-series power streams, and
//! electrical math (counter deltas with reset handling, demand, power factor, tariffs).
//!
//! It depends only on Arrow and must stay free of storage, networking and clocks (time
//! is always passed in), so every algorithm is testable with plain data.
//!
//! Status: counter increments (used by rollup `_delta` columns), the threshold alarm
//! state machine (used by the rules runtime) and appliance recognition (`appliance`).

pub mod alarm;
pub mod appliance;
pub mod counter;
