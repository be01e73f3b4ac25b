//! wattdb-benches: benchmarks and load generators that drive a running wattdb through its
//! real interfaces. See `BENCHMARKS.md` for the commands and recorded figures.

pub mod meter_data;
