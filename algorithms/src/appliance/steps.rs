//! Steady-state segmentation of a power stream into steps.
//!
//! The detector follows the current steady level (an exponential average, so a slow
//! drift of the background load moves the level instead of making steps). A sample
//! outside the level's tolerance opens a transition; the transition ends when two
//! consecutive samples agree with each other (the new steady level, their mean), or after
//! [`MAX_PENDING`] samples for a load that never settles. A transition that returns to
//! the old level (a spike) is no step. The step's time is its first sample outside the
//! old level; its size is new level − old level.
//!
//! Interval averages (1-minute meters, samples stamped at the end of their interval)
//! are read differently: a sample in a transition that lies outside the range of both
//! its neighbours is a level held between two switches (a kettle on for two minutes is
//! a run, not a spike; an off and another appliance's on a minute apart are two steps,
//! not their sum); the samples between two levels mix them, and the new level's share of
//! the first mixed sample dates the switch within that sample's interval. Small steps
//! found that way are marked doubtful: two small loads switching both ways within one
//! minute make the same shape.

use super::Sample;

/// Samples a transition may take before its last two samples are taken as the new level.
pub const MAX_PENDING: usize = 6;
/// Steps smaller than this found between two levels of one averaged transition are
/// marked [`Step::doubtful`], W.
const DOUBTFUL_BELOW_W: f64 = 100.0;
/// Weight of a new sample in the steady level.
const FOLLOW: f64 = 0.1;

/// Tolerance of active power around a level of `p` W: noise of a few watts plus 0.5 %
/// (so a 30 W soldering iron still steps out of a 2 kW level).
pub fn tol_p(p: f64) -> f64 {
    12.0 + 0.005 * p.abs()
}

/// Tolerance of reactive power around a level of `q` var.
pub fn tol_q(q: f64) -> f64 {
    15.0 + 0.03 * q.abs()
}

/// One switching event: the difference between two steady levels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// The first sample outside the old level, µs.
    pub ts: i64,
    pub dp: f64,
    pub dq: Option<f64>,
    /// The level after the step, W.
    pub level: f64,
    /// Small and found inside a transition of several steps (see
    /// `StepDetector::push`): it may be two other changes mixed into one sample.
    pub doubtful: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
struct Level {
    p: f64,
    q: Option<f64>,
}

impl Level {
    fn of(s: &Sample) -> Level {
        Level { p: s.p, q: s.q }
    }

    fn holds(&self, s: &Sample) -> bool {
        (s.p - self.p).abs() <= tol_p(self.p)
            && match (self.q, s.q) {
                (Some(a), Some(b)) => (a - b).abs() <= tol_q(a),
                _ => true,
            }
    }

    fn follow(&self, s: &Sample) -> Level {
        Level {
            p: self.p + FOLLOW * (s.p - self.p),
            q: match (self.q, s.q) {
                (Some(a), Some(b)) => Some(a + FOLLOW * (b - a)),
                (_, b) => b,
            },
        }
    }
}

fn agree(a: &Sample, b: &Sample) -> bool {
    Level::of(a).holds(b)
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StepDetector {
    level: Option<Level>,
    pending: Vec<Sample>,
    /// The last sample that held the level, µs.
    #[serde(default)]
    level_ts: Option<i64>,
}

impl StepDetector {
    pub fn new() -> StepDetector {
        StepDetector::default()
    }

    /// Samples have left the level and no new one is settled yet (a switch may be
    /// happening right now).
    pub fn in_transition(&self) -> bool {
        !self.pending.is_empty()
    }

    /// The current steady level of active power, W.
    pub fn level(&self) -> Option<f64> {
        self.level.map(|l| l.p)
    }

    /// Feed the next sample (timestamps increasing); the steps of at least `min_step` W
    /// that end here are appended to `out`. `averaged`: samples are interval averages
    /// (1-minute meters), see [`StepDetector`]'s module notes.
    pub fn push(&mut self, s: Sample, min_step: f64, averaged: bool, out: &mut Vec<Step>) {
        let Some(level) = self.level else {
            self.level = Some(Level::of(&s));
            self.level_ts = Some(s.ts);
            return;
        };
        if self.pending.is_empty() {
            if level.holds(&s) {
                self.level = Some(level.follow(&s));
                self.level_ts = Some(s.ts);
            } else {
                self.pending.push(s);
            }
            return;
        }
        if level.holds(&s) {
            // Back at the old level: a spike or a noise burst, not a step — unless, for
            // interval averages, the excursion held a level of its own for a sample
            // (an appliance on for a minute or two).
            if averaged {
                let pending = std::mem::take(&mut self.pending);
                self.emit(level, &pending, &s, Level::of(&s), min_step, out);
            }
            self.pending.clear();
            self.level = Some(level.follow(&s));
            self.level_ts = Some(s.ts);
            return;
        }
        self.pending.push(s);
        let n = self.pending.len();
        let (a, b) = (self.pending[n - 2], self.pending[n - 1]);
        if !agree(&a, &b) && n < MAX_PENDING {
            return;
        }
        let after = Level {
            p: (a.p + b.p) / 2.0,
            q: match (a.q, b.q) {
                (Some(x), Some(y)) => Some((x + y) / 2.0),
                _ => None,
            },
        };
        let pending = std::mem::take(&mut self.pending);
        if averaged {
            // The two samples at the new level are not part of the transition.
            self.emit(
                level,
                &pending[..n - 2],
                &pending[n - 2],
                after,
                min_step,
                out,
            );
        } else {
            let step = step_between(level, after, pending[0].ts);
            if step.dp.abs() >= min_step {
                out.push(step);
            }
        }
        self.level = Some(after);
        self.level_ts = Some(b.ts);
    }

    /// Steps from `from` through the `transition` samples to `to` (first seen in
    /// `first_after`), for interval averages: a sample outside the range of both its
    /// neighbours is a level held between two switches; samples between two levels
    /// mix them, and the share of the new one dates the switch within its interval.
    fn emit(
        &self,
        from: Level,
        transition: &[Sample],
        first_after: &Sample,
        to: Level,
        min_step: f64,
        out: &mut Vec<Step>,
    ) {
        let mut points: Vec<(Level, Option<usize>)> = vec![(from, None)];
        for (i, x) in transition.iter().enumerate() {
            let prev = if i == 0 { from.p } else { transition[i - 1].p };
            let next = transition.get(i + 1).map_or(to.p, |n| n.p);
            let t = tol_p(x.p);
            let peak = x.p > prev.max(next) + t || x.p < prev.min(next) - t;
            if peak {
                points.push((Level::of(x), Some(i)));
            }
        }
        points.push((to, Some(transition.len())));
        // Two small loads switching both ways within a minute (a fridge off, a lamp on)
        // make a peak that looks like a level; a small step next to one may be no step.
        let split = points.len() > 2;
        let sample = |i: usize| transition.get(i).copied().unwrap_or(*first_after);
        for w in points.windows(2) {
            let ((a, a_at), (b, b_at)) = (w[0], w[1]);
            // The first sample after level `a`: the switch happened within its interval.
            let first = a_at.map_or(0, |i| i + 1);
            let Some(b_at) = b_at else { continue };
            let x = sample(first.min(b_at));
            let before = match first {
                0 => self.level_ts,
                i => Some(sample(i - 1).ts),
            };
            let share = if (b.p - a.p).abs() > f64::EPSILON {
                ((x.p - a.p) / (b.p - a.p)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let ts = match before {
                Some(t0) if t0 < x.ts => x.ts - (share * (x.ts - t0) as f64).round() as i64,
                _ => x.ts,
            };
            let mut step = step_between(a, b, ts);
            step.doubtful = split && step.dp.abs() < DOUBTFUL_BELOW_W;
            if step.dp.abs() >= min_step {
                out.push(step);
            }
        }
    }
}

fn step_between(from: Level, to: Level, ts: i64) -> Step {
    Step {
        ts,
        dp: to.p - from.p,
        dq: match (to.q, from.q) {
            (Some(x), Some(y)) => Some(x - y),
            _ => None,
        },
        level: to.p,
        doubtful: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ps: &[f64]) -> Vec<(i64, i64)> {
        let mut d = StepDetector::new();
        ps.iter()
            .enumerate()
            .flat_map(|(i, p)| {
                let mut out = Vec::new();
                d.push(Sample::new(i as i64, *p, None), 20.0, false, &mut out);
                out
            })
            .map(|s| (s.ts, s.dp.round() as i64))
            .collect()
    }

    #[test]
    fn steps_between_steady_levels() {
        let mut ps = vec![100.0; 10];
        ps.extend([2100.0; 10]);
        ps.extend([100.0; 10]);
        assert_eq!(run(&ps), vec![(10, 2000), (20, -2000)]);
    }

    #[test]
    fn a_spike_that_returns_is_no_step_and_an_inrush_is_one_step() {
        let mut ps = vec![100.0; 10];
        ps.push(600.0);
        ps.extend([100.0; 10]); // spike
        ps.push(500.0); // inrush, then the motor's level
        ps.extend([250.0; 10]);
        assert_eq!(run(&ps), vec![(21, 150)]);
    }

    #[test]
    fn slow_drift_is_followed_not_stepped() {
        let ps: Vec<f64> = (0..2000).map(|i| 100.0 + i as f64 * 0.5).collect();
        assert_eq!(run(&ps), vec![]);
    }

    #[test]
    fn a_step_spread_over_two_samples_is_one_step() {
        let mut ps = vec![100.0; 5];
        ps.push(1100.0); // half way through the sampling interval
        ps.extend([2100.0; 5]);
        assert_eq!(run(&ps), vec![(5, 2000)]);
    }

    /// One-minute averages stamped at the end of their minute: a background of 100 W.
    fn averaged(ps: &[f64]) -> Vec<Step> {
        let mut d = StepDetector::new();
        let mut out = Vec::new();
        for (i, p) in ps.iter().enumerate() {
            d.push(Sample::new(i as i64 * 60, *p, None), 20.0, true, &mut out);
        }
        out
    }

    #[test]
    fn an_averaged_step_is_dated_by_its_share_of_the_mixed_minute() {
        // 2000 W on for the last 30 % of the minute ending at 300 s: on at 282 s.
        let mut ps = vec![100.0; 5];
        ps.push(100.0 + 0.3 * 2000.0);
        ps.extend([2100.0; 5]);
        let steps = averaged(&ps);
        assert_eq!(steps.len(), 1, "{steps:?}");
        assert_eq!((steps[0].ts, steps[0].dp.round()), (282, 2000.0));
        // Switched on exactly at a minute's end: no mixed sample, dated at that end.
        let mut ps = vec![100.0; 5];
        ps.extend([2100.0; 5]);
        assert_eq!(averaged(&ps)[0].ts, 240);
    }

    #[test]
    fn a_level_held_for_one_averaged_minute_is_a_level() {
        // A kettle on for 2.5 minutes: a mixed minute, a full one, a mixed one, then
        // back at the background — not a spike.
        let mut ps = vec![100.0; 5];
        ps.extend([100.0 + 0.75 * 2000.0, 2100.0, 100.0 + 0.75 * 2000.0]);
        ps.extend([100.0; 5]);
        let steps: Vec<(i64, i64)> = averaged(&ps)
            .iter()
            .map(|s| (s.ts, s.dp.round() as i64))
            .collect();
        assert_eq!(steps, vec![(255, 2000), (405, -2000)]);
        // Off, then something else on, each within a minute: two steps, not their sum.
        let mut ps = vec![1600.0; 5];
        ps.extend([900.0, 100.0, 1000.0, 2000.0, 2000.0]);
        let steps: Vec<i64> = averaged(&ps).iter().map(|s| s.dp.round() as i64).collect();
        assert_eq!(steps, vec![-1500, 1900]);
        // Instantaneous readings keep the old behaviour: a one-sample excursion is a spike.
        let mut d = StepDetector::new();
        let mut out = Vec::new();
        for (i, p) in [100.0, 100.0, 100.0, 2100.0, 100.0, 100.0]
            .iter()
            .enumerate()
        {
            d.push(Sample::new(i as i64, *p, None), 20.0, false, &mut out);
        }
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn small_steps_inside_a_split_transition_are_doubtful() {
        // A lamp on and a fridge off in the same minute: the mixed minute peaks 30 W
        // above the old level before the level settles 80 W below it.
        let mut ps = vec![200.0; 5];
        ps.extend([230.0, 120.0, 120.0]);
        let steps: Vec<(i64, bool)> = averaged(&ps)
            .iter()
            .map(|s| (s.dp.round() as i64, s.doubtful))
            .collect();
        assert_eq!(steps, vec![(30, true), (-110, false)]);
        let mut ps = vec![100.0; 5];
        ps.extend([2100.0, 2100.0]);
        assert!(!averaged(&ps)[0].doubtful);
    }
}
