//! Steady-state segmentation of a power stream into steps.
//!
//! The detector follows the current steady level (an exponential average, so a slow
//! drift of the background load moves the level instead of making steps). A sample
//! outside the level's tolerance opens a transition; the transition ends when two
//! consecutive samples agree with each other (the new steady level, their mean), or after
//! [`MAX_PENDING`] samples for a load that never settles. A transition that returns to
//! the old level (a spike) is no step. The step's time is its first sample outside the
//! old level; its size is new level − old level.

use super::Sample;

/// Samples a transition may take before its last two samples are taken as the new level.
pub const MAX_PENDING: usize = 6;
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

    /// Feed the next sample (timestamps increasing); a step of at least `min_step` W when
    /// one ends here.
    pub fn push(&mut self, s: Sample, min_step: f64) -> Option<Step> {
        let Some(level) = self.level else {
            self.level = Some(Level::of(&s));
            return None;
        };
        if self.pending.is_empty() {
            if level.holds(&s) {
                self.level = Some(level.follow(&s));
            } else {
                self.pending.push(s);
            }
            return None;
        }
        if level.holds(&s) {
            // Back at the old level: a spike or a noise burst, not a step.
            self.pending.clear();
            self.level = Some(level.follow(&s));
            return None;
        }
        self.pending.push(s);
        let n = self.pending.len();
        let (a, b) = (self.pending[n - 2], self.pending[n - 1]);
        if !agree(&a, &b) && n < MAX_PENDING {
            return None;
        }
        let after = Level {
            p: (a.p + b.p) / 2.0,
            q: match (a.q, b.q) {
                (Some(x), Some(y)) => Some((x + y) / 2.0),
                _ => None,
            },
        };
        let step = Step {
            ts: self.pending[0].ts,
            dp: after.p - level.p,
            dq: match (after.q, level.q) {
                (Some(x), Some(y)) => Some(x - y),
                _ => None,
            },
            level: after.p,
        };
        self.level = Some(after);
        self.pending.clear();
        (step.dp.abs() >= min_step).then_some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(ps: &[f64]) -> Vec<(i64, i64)> {
        let mut d = StepDetector::new();
        ps.iter()
            .enumerate()
            .filter_map(|(i, p)| d.push(Sample::new(i as i64, *p, None), 20.0))
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
}
