//! Labelled synthetic power streams of a dormitory room, for tests and the quality
//! benchmark: a drifting background, a cycling fridge with an inrush spike, LED lighting
//! and a TV in the evenings, and appliance runs at random times (overlaps allowed) whose
//! switch-on and switch-off times are the ground truth.
//!
//! Streams sampled every 30 s or more carry each interval's average power, as
//! 1-minute meters do (UCI household power); faster ones instantaneous readings.
//!
//! Appliances as generated (P, step power factor, time on):
//! kettle 1800–2200 W, pf ≥ 0.995, 2–5 min; immersion heater 800–2000 W, pf ≥ 0.99,
//! 10–60 min; electric heater 1000–2000 W, pf ≥ 0.99, a first 10–25 min, then thermostat
//! cycles of 3–8 min on / 4–10 min off for 1–3 h; soldering iron 30–60 W, pf ≥ 0.99,
//! 20–90 min; hair dryer 600–1000 W (pf 0.94–0.96), half of them switched to a second
//! setting of 1400–2000 W after 30–90 s, 2–8 min; microwave 1000–1500 W, pf 0.85–0.90,
//! 1–6 min; induction cooker 1600–2200 W nominal, pf 0.95–0.98, its level changing every
//! 40–150 s between 50, 75 and 100 %, 5–30 min.

use super::{SECOND, Sample};

/// A labelled appliance run.
#[derive(Debug, Clone, PartialEq)]
pub struct Truth {
    pub appliance: &'static str,
    pub on_ts: i64,
    /// Final switch-off (for a heater: the end of its last cycle).
    pub off_ts: i64,
}

/// How to generate a site's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteSettings {
    pub seed: u64,
    /// First sample, µs.
    pub start_ts: i64,
    pub hours: i64,
    /// Sampling interval, s.
    pub step_s: i64,
    /// Standard deviation of measurement noise on P and Q.
    pub noise_w: f64,
    /// Whether the stream carries reactive power.
    pub with_q: bool,
    /// Runs of each appliance per 24 h (rounded per site).
    pub runs_per_day: f64,
}

impl Default for SiteSettings {
    fn default() -> Self {
        SiteSettings {
            seed: 1,
            start_ts: 1_795_968_000 * SECOND,
            hours: 48,
            step_s: 5,
            noise_w: 3.0,
            with_q: true,
            runs_per_day: 3.0,
        }
    }
}

/// splitmix64: small, seedable, good enough for test data.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.range(1e-12, 1.0);
        let u2 = self.range(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Power drawn by one load over time: (from, to, P, Q) pieces, µs.
#[derive(Debug, Clone, Default)]
struct Load {
    pieces: Vec<(i64, i64, f64, f64)>,
}

impl Load {
    fn on(&mut self, from: i64, to: i64, p: f64, pf: f64) {
        let q = p * (1.0 / (pf * pf) - 1.0).max(0.0).sqrt();
        self.pieces.push((from, to, p, q));
    }
}

fn q_of(p: f64, pf: f64) -> f64 {
    p * (1.0 / (pf * pf) - 1.0).max(0.0).sqrt()
}

const MIN: i64 = 60 * SECOND;

/// A steady run: on for `minutes` (a range) at `watts` with power factor `pf` (ranges),
/// placed by `at`; returns (on, off).
fn steady(
    rng: &mut Rng,
    load: &mut Load,
    at: &dyn Fn(&mut Rng, i64) -> i64,
    minutes: (f64, f64),
    watts: (f64, f64),
    pf: (f64, f64),
) -> (i64, i64) {
    let len = (rng.range(minutes.0, minutes.1) * MIN as f64) as i64;
    let on = at(rng, len);
    let p = rng.range(watts.0, watts.1);
    load.on(on, on + len, p, rng.range(pf.0, pf.1));
    (on, on + len)
}

/// The labelled appliance runs of one site (before rendering).
fn appliance_runs(rng: &mut Rng, s: &SiteSettings, end: i64) -> (Vec<Load>, Vec<Truth>) {
    let mut loads = Vec::new();
    let mut truth = Vec::new();
    let span = end - s.start_ts;
    let count = |rng: &mut Rng| {
        let mean = s.runs_per_day * s.hours as f64 / 24.0;
        (mean * rng.range(0.7, 1.3)).round().max(1.0) as usize
    };
    let at = |rng: &mut Rng, len: i64| {
        let latest = (span - len - 10 * MIN).max(MIN);
        s.start_ts + 5 * MIN + rng.range(0.0, latest as f64) as i64
    };
    for kind in [
        "kettle",
        "immersion_heater",
        "electric_heater",
        "soldering_iron",
        "hair_dryer",
        "microwave",
        "induction_cooker",
    ] {
        for _ in 0..count(rng) {
            let mut load = Load::default();
            let (on, off) = match kind {
                "kettle" => steady(
                    rng,
                    &mut load,
                    &at,
                    (2.0, 5.0),
                    (1800.0, 2200.0),
                    (0.995, 1.0),
                ),
                "immersion_heater" => steady(
                    rng,
                    &mut load,
                    &at,
                    (10.0, 60.0),
                    (800.0, 2000.0),
                    (0.99, 1.0),
                ),
                "electric_heater" => {
                    let p = rng.range(1000.0, 2000.0);
                    let pf = rng.range(0.99, 1.0);
                    let total = (rng.range(60.0, 180.0) * MIN as f64) as i64;
                    let on = at(rng, total + 30 * MIN);
                    let mut t = on;
                    let first = (rng.range(10.0, 25.0) * MIN as f64) as i64;
                    load.on(t, t + first, p, pf);
                    t += first;
                    let mut last_off = t;
                    while t < on + total {
                        t += (rng.range(4.0, 10.0) * MIN as f64) as i64;
                        let len = (rng.range(3.0, 8.0) * MIN as f64) as i64;
                        load.on(t, t + len, p, pf);
                        t += len;
                        last_off = t;
                    }
                    (on, last_off)
                }
                "soldering_iron" => {
                    steady(rng, &mut load, &at, (20.0, 90.0), (30.0, 60.0), (0.99, 1.0))
                }
                "hair_dryer" => {
                    let len = (rng.range(2.0, 8.0) * MIN as f64) as i64;
                    let on = at(rng, len);
                    let pf = rng.range(0.94, 0.96);
                    let low = rng.range(600.0, 1000.0);
                    if rng.range(0.0, 1.0) < 0.5 {
                        let switch = on + (rng.range(30.0, 90.0) * SECOND as f64) as i64;
                        load.on(on, switch, low, pf);
                        load.on(switch, on + len, rng.range(1400.0, 2000.0), pf);
                    } else {
                        load.on(on, on + len, low, pf);
                    }
                    (on, on + len)
                }
                "microwave" => steady(
                    rng,
                    &mut load,
                    &at,
                    (1.0, 6.0),
                    (1000.0, 1500.0),
                    (0.85, 0.90),
                ),
                _ => {
                    let len = (rng.range(5.0, 30.0) * MIN as f64) as i64;
                    let on = at(rng, len);
                    let nominal = rng.range(1600.0, 2200.0);
                    let pf = rng.range(0.95, 0.98);
                    let mut t = on;
                    let mut level = 1.0;
                    while t < on + len {
                        let next =
                            (t + (rng.range(40.0, 150.0) * SECOND as f64) as i64).min(on + len);
                        load.on(t, next, nominal * level, pf);
                        let choices = [0.5, 0.75, 1.0];
                        let mut l = level;
                        while l == level {
                            l = choices[(rng.next_u64() % 3) as usize];
                        }
                        level = l;
                        t = next;
                    }
                    (on, on + len)
                }
            };
            loads.push(load);
            truth.push(Truth {
                appliance: kind,
                on_ts: on,
                off_ts: off,
            });
        }
    }
    truth.sort_by_key(|t| t.on_ts);
    (loads, truth)
}

/// The background: a fridge cycling all day, lighting and a TV in the evenings.
fn background(rng: &mut Rng, s: &SiteSettings, end: i64) -> Vec<Load> {
    let mut fridge = Load::default();
    let fridge_p = rng.range(90.0, 150.0);
    let mut t = s.start_ts + (rng.range(0.0, 30.0) * MIN as f64) as i64;
    while t < end {
        let on = (rng.range(10.0, 25.0) * MIN as f64) as i64;
        // Inrush: three times the running power for one second.
        fridge.on(t, t + SECOND, fridge_p * 3.0, 0.6);
        fridge.on(t + SECOND, t + on, fridge_p, rng.range(0.72, 0.8));
        t += on + (rng.range(20.0, 40.0) * MIN as f64) as i64;
    }
    let mut lights = Load::default();
    let mut tv = Load::default();
    let day = 24 * 60 * MIN;
    let mut d = s.start_ts;
    while d < end {
        // Evenings: 18:00–23:30 local (the start is a local midnight).
        let on = d + 18 * 60 * MIN + (rng.range(0.0, 60.0) * MIN as f64) as i64;
        let off = d + 23 * 60 * MIN + (rng.range(0.0, 30.0) * MIN as f64) as i64;
        lights.on(on, off, rng.range(15.0, 40.0), rng.range(0.55, 0.7));
        let tv_on = on + (rng.range(0.0, 60.0) * MIN as f64) as i64;
        tv.on(
            tv_on,
            tv_on + (rng.range(60.0, 180.0) * MIN as f64) as i64,
            rng.range(90.0, 140.0),
            rng.range(0.9, 0.94),
        );
        d += day;
    }
    vec![fridge, lights, tv]
}

/// One site's samples and its labelled runs.
pub fn site(s: &SiteSettings) -> (Vec<Sample>, Vec<Truth>) {
    let mut rng = Rng::new(s.seed);
    let end = s.start_ts + s.hours * 60 * MIN;
    let (mut loads, truth) = appliance_runs(&mut rng, s, end);
    loads.extend(background(&mut rng, s, end));
    // Each piece as (from, to, p, q), looked up by sweeping time forward.
    let mut pieces: Vec<(i64, i64, f64, f64)> = loads.into_iter().flat_map(|l| l.pieces).collect();
    pieces.sort_by_key(|p| p.0);
    let base = rng.range(40.0, 80.0);
    let phase = rng.range(0.0, std::f64::consts::TAU);
    let mut active: Vec<(i64, i64, f64, f64)> = Vec::new();
    let mut next = 0;
    let mut out = Vec::new();
    let step = s.step_s * SECOND;
    // Meters reporting every 30 s or more report the interval's average (a switch in
    // the middle of a minute shows as an intermediate value, as in UCI's data); faster
    // ones an instantaneous reading.
    let sub = if s.step_s >= AVERAGED_FROM_S {
        SECOND
    } else {
        step
    };
    let mut t = s.start_ts;
    while t < end {
        let (mut p, mut q, mut n) = (0.0, 0.0, 0.0);
        let mut u = t;
        while u < t + step {
            while next < pieces.len() && pieces[next].0 <= u {
                active.push(pieces[next]);
                next += 1;
            }
            active.retain(|p| p.1 > u);
            // Drift: ±25 W over a day.
            let hours = (u - s.start_ts) as f64 / (60 * MIN) as f64;
            let drift = 25.0 * (std::f64::consts::TAU * hours / 24.0 + phase).sin();
            p += base + drift + active.iter().map(|a| a.2).sum::<f64>();
            q += q_of(base + drift, 0.9) + active.iter().map(|a| a.3).sum::<f64>();
            n += 1.0;
            u += sub;
        }
        let p = p / n + s.noise_w * rng.normal();
        let q = q / n + s.noise_w * rng.normal();
        // Stamped at the end of its interval when averaged.
        let ts = if sub == step { t } else { t + step };
        out.push(Sample::new(ts, p.max(0.0), s.with_q.then_some(q)));
        t += step;
    }
    (out, truth)
}

/// Sampling intervals from this long (s) are generated as interval averages.
pub const AVERAGED_FROM_S: i64 = 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_is_reproducible_and_labelled() {
        let s = SiteSettings::default();
        let (a, ta) = site(&s);
        let (b, tb) = site(&s);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_eq!(a.len() as i64, 48 * 3600 / 5);
        assert!(ta.len() >= 7, "{ta:?}");
        assert!(ta.windows(2).all(|w| w[0].on_ts <= w[1].on_ts));
    }
}
