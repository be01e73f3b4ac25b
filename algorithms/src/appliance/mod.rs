//! Appliance recognition over one series' power stream: which appliance was switched on,
//! when, and whether it is still running — from active power `p` (W) and, when the meter
//! gives it, reactive power `q` (var) or the power factor.
//!
//! The pipeline, one per series, fed samples in timestamp order:
//!
//! 1. [`steps`]: steady-state segmentation. A step is the difference between two steady
//!    levels, so measurement noise, the slow drift of the background load and a motor's
//!    inrush spike are not steps; a change spread over two samples (1-minute meters) is
//!    one step, dated within its minute from the mixed sample.
//! 2. [`runs`]: steps paired into runs of one appliance — an off step matches an earlier
//!    on step of similar ΔP/ΔQ; level changes of a running appliance are its stages;
//!    the same appliance switching on again shortly after (a thermostat) is a cycle of
//!    the same run, not a new one.
//! 3. [`signatures`]: each run's features (ΔP, the step's power factor
//!    ΔP/√(ΔP²+ΔQ²), how long it has been on, cycles, stages) against signatures: the
//!    built-in ones and users' own.
//! 4. [`detector`]: the per-series driver that turns runs into appliance events (one per
//!    run, updated as it is classified and when it switches off) and prohibited-appliance
//!    alarm transitions once such a run has been on for the configured delay.
//!
//! Time is always the series' own timestamps (µs), so a backfilled day gives the same
//! events as the same day arriving live. [`synthetic`] generates labelled streams for
//! tests and the quality benchmark.

pub mod detector;
pub mod quality;
pub mod runs;
pub mod signatures;
pub mod steps;
pub mod synthetic;

pub use detector::{AlarmTransition, ApplianceEvent, DetectorConfig, Output, SeriesDetector};
pub use signatures::{Signature, builtin_signatures};

/// Microseconds per second.
pub const SECOND: i64 = 1_000_000;

/// One reading of a series.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Microseconds since the epoch.
    pub ts: i64,
    /// Active power, W.
    pub p: f64,
    /// Reactive power, var, when known.
    pub q: Option<f64>,
}

impl Sample {
    pub fn new(ts: i64, p: f64, q: Option<f64>) -> Sample {
        Sample { ts, p, q }
    }

    /// From active power and a power factor (the reactive power taken as inductive).
    pub fn from_pf(ts: i64, p: f64, pf: f64) -> Sample {
        let pf = pf.abs().clamp(1e-3, 1.0);
        let q = p.abs() * (1.0 / (pf * pf) - 1.0).sqrt();
        Sample { ts, p, q: Some(q) }
    }
}

/// The power factor of a step of `dp` W and `dq` var.
pub fn step_pf(dp: f64, dq: Option<f64>) -> Option<f64> {
    let dq = dq?;
    let s = (dp * dp + dq * dq).sqrt();
    (s > 0.0).then(|| dp.abs() / s)
}
