//! Steps paired into runs of one appliance.
//!
//! - An **on** step (ΔP > 0) re-opens a run that switched off less than
//!   [`MAX_CYCLE_GAP_US`] ago with a matching step (a thermostat: one run, one more
//!   cycle); else it is a **stage** of the newest significant running run when it is
//!   15–90 % of that run's power and of a similar power factor (a hair dryer's second
//!   setting, a cooker's power level); else it opens a new run.
//! - An **off** step (ΔP < 0) closes the running run whose power it matches best (within
//!   [`pair_tol`], and ΔQ when known); else it is a stage down of the newest run it fits
//!   in; else it is ignored (something that was on before the series was first seen).
//!
//! A run that switched off waits [`MAX_CYCLE_GAP_US`] for a re-on before it is final.

use super::steps::Step;

/// An appliance switching on again within this long after switching off with the same
/// step is the same run cycling (a thermostat), µs.
pub const MAX_CYCLE_GAP_US: i64 = 20 * 60 * super::SECOND;
/// A thermostat run that ended by its cycle gap comes back when its step reappears this
/// soon after its last off (one re-on was lost in an overlap), µs.
pub const REVIVE_US: i64 = 45 * 60 * super::SECOND;
/// A run is dropped after this long on without a matching off (missed edge), µs.
pub const MAX_RUN_US: i64 = 48 * 3600 * super::SECOND;
/// Runs of at least this power can have stages.
const STAGE_BASE_W: f64 = 300.0;
/// A stage up adds at most this share of the run's power (a hair dryer's low setting to
/// its high one roughly doubles it).
const MAX_STAGE_SHARE: f64 = 2.5;
/// A run reaches a new, higher level only this soon after switching on, µs.
const STAGE_WINDOW_US: i64 = 2 * 60 * super::SECOND;
/// At most this many runs on at once per series (the oldest is dropped).
const MAX_OPEN: usize = 32;

/// How far an off step may be from its on step, W.
pub fn pair_tol(dp: f64) -> f64 {
    25.0 + 0.1 * dp.abs()
}

/// How far a thermostat's re-on may be from its last on-period: the same element at
/// nearly the same voltage minutes later draws nearly the same power, W.
pub fn cycle_tol(dp: f64) -> f64 {
    25.0 + 0.03 * dp.abs()
}

fn q_compatible(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a.abs() - b.abs()).abs() <= 40.0 + 0.25 * a.abs().max(b.abs()),
        _ => true,
    }
}

/// How far apart two steps' power factors are (0 when unknown).
fn pf_distance(a: (f64, Option<f64>), b: (f64, Option<f64>)) -> f64 {
    match (super::step_pf(a.0, a.1), super::step_pf(b.0, b.1)) {
        (Some(x), Some(y)) => (x - y).abs(),
        _ => 0.0,
    }
}

/// Stages of one appliance keep its power factor within this.
const STAGE_PF_TOL: f64 = 0.02;

/// The run (index) among those `eligible` whose power factor is closest to the step's,
/// within [`STAGE_PF_TOL`]; the newest on a tie (or without reactive power).
fn best_by_pf(
    runs: &[Run],
    step: (f64, Option<f64>),
    tol: f64,
    eligible: impl Fn(&Run) -> bool,
) -> Option<usize> {
    runs.iter()
        .enumerate()
        .filter(|(_, r)| eligible(r))
        .map(|(i, r)| (i, pf_distance((r.dp, r.dq), step)))
        .filter(|(_, d)| *d <= tol)
        .min_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(i, _)| i)
}

/// The run among `runs` (all off) that `step` switches on again: a heater's (≥
/// [`STAGE_BASE_W`]; a small appliance on again is used again), off at most `within_us`
/// ago, the same power within `tol` and a compatible reactive power; the closest.
fn same_step_again(
    runs: &[Run],
    step: &Step,
    within_us: i64,
    tol: impl Fn(f64) -> f64,
) -> Option<usize> {
    closest_off_run(runs, step, within_us, |r| {
        (r.dp - step.dp).abs() <= tol(r.dp) && q_compatible(r.dq, step.dq)
    })
}

/// The run among `runs` (≥ [`STAGE_BASE_W`], off at most `within_us` before `step`)
/// that `fits` and is closest to the step in power.
fn closest_off_run(
    runs: &[Run],
    step: &Step,
    within_us: i64,
    fits: impl Fn(&Run) -> bool,
) -> Option<usize> {
    runs.iter()
        .enumerate()
        .filter(|(_, r)| {
            r.dp >= STAGE_BASE_W
                && r.off_ts.is_some_and(|off| step.ts - off <= within_us)
                && fits(r)
        })
        .min_by(|a, b| {
            (a.1.dp - step.dp)
                .abs()
                .total_cmp(&(b.1.dp - step.dp).abs())
        })
        .map(|(i, _)| i)
}

/// Extra power and reactive power a coarse sample may mix into a known thermostat's
/// re-on (a fridge or a lamp switching in the same minute), W / var.
const COARSE_MIX_W: f64 = 150.0;

/// At coarse resolution: the known thermostat (it has cycled) among `runs` that `step`
/// is a re-on of, allowing [`COARSE_MIX_W`] of another small change mixed in.
fn thermostat_again_coarse(runs: &[Run], step: &Step) -> Option<usize> {
    closest_off_run(runs, step, MAX_CYCLE_GAP_US, |r| {
        r.cycles >= 1
            && r.is_heating_element()
            && (r.dp - step.dp).abs() <= pair_tol(r.dp) + COARSE_MIX_W
            && match (r.dq, step.dq) {
                (Some(a), Some(b)) => (a - b).abs() <= 40.0 + COARSE_MIX_W,
                _ => true,
            }
    })
}

/// One appliance's run: from its first switch-on to its final switch-off.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Run {
    /// The first switch-on, µs: the run's identity.
    pub on_ts: i64,
    /// Power drawn now (the sum of its steps), W / var.
    pub dp: f64,
    pub dq: Option<f64>,
    /// The highest power it has drawn, and the reactive power then.
    pub peak_dp: f64,
    pub peak_dq: Option<f64>,
    /// Its switch-on step: what the appliance draws before any stage.
    pub first_dp: f64,
    pub first_dq: Option<f64>,
    /// Level changes while on.
    pub stages: u32,
    /// Re-ons after an off (thermostat cycles).
    pub cycles: u32,
    /// Start of the current on-period, µs.
    pub period_on_ts: i64,
    /// The longest finished on-period, µs.
    pub longest_period_us: i64,
    /// Set while off (waiting for a cycle or final), µs.
    pub off_ts: Option<i64>,
    /// Its pauses between cycles so far: count and total, µs.
    pub pauses: u32,
    pub pause_sum_us: i64,
    /// While in an on-period that began as a cycle: when the pause before it began.
    pub paused_at: Option<i64>,
    /// A small step measured coarsely while an appliance with power levels was on: it
    /// may be a remainder of that appliance's level change mixed into one sample, so
    /// it is named only as possible (never decided, never an alarm).
    #[serde(default)]
    pub doubtful: bool,
}

impl Run {
    fn new(step: &Step) -> Run {
        Run {
            on_ts: step.ts,
            dp: step.dp,
            dq: step.dq,
            peak_dp: step.dp,
            peak_dq: step.dq,
            first_dp: step.dp,
            first_dq: step.dq,
            stages: 0,
            cycles: 0,
            period_on_ts: step.ts,
            longest_period_us: 0,
            off_ts: None,
            pauses: 0,
            pause_sum_us: 0,
            paused_at: None,
            doubtful: false,
        }
    }

    /// On again with `step`: the thermostat's next cycle (its pause counted when
    /// `pause` is true).
    fn cycle_on(&mut self, step: &Step, pause: bool) {
        self.cycles += 1;
        self.paused_at = None;
        if pause && let Some(off) = self.off_ts {
            self.pauses += 1;
            self.pause_sum_us += step.ts - off;
            self.paused_at = Some(off);
        }
        self.off_ts = None;
        self.period_on_ts = step.ts;
        self.dp = step.dp;
        self.dq = step.dq;
    }

    /// Purely resistive (step power factor ≥ 0.985): a heating element, which has no
    /// power levels or settings.
    pub fn is_heating_element(&self) -> bool {
        super::step_pf(self.dp, self.dq).is_some_and(|pf| pf >= 0.985)
    }

    /// The longest on-period, counting the current one up to `now`.
    pub fn longest_on_us(&self, now: i64) -> i64 {
        match self.off_ts {
            Some(_) => self.longest_period_us,
            None => self.longest_period_us.max(now - self.period_on_ts),
        }
    }

    fn raise(&mut self, dp: f64, dq: Option<f64>) {
        self.dp += dp;
        self.dq = match (self.dq, dq) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        if self.dp > self.peak_dp {
            self.peak_dp = self.dp;
            self.peak_dq = self.dq;
        }
    }
}

/// What happened to a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Switched on, changed level, or cycled on again.
    On(i64),
    /// Switched off (it may still cycle on again).
    Off(i64),
    /// Final: off for longer than a cycle gap, or dropped.
    Final(Run),
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunTracker {
    /// Runs on now, oldest first.
    pub running: Vec<Run>,
    /// Runs off, waiting out a cycle gap.
    pub off: Vec<Run>,
    /// Thermostat runs made final by their cycle gap, kept [`REVIVE_US`] in case a
    /// missed re-on is what ended them.
    pub ended: Vec<Run>,
    /// Samples are interval averages or far apart (≥ 30 s): steps are measured less
    /// precisely (a switch shares a sample with other changes more often), so a
    /// thermostat's re-on is matched within [`pair_tol`] instead of [`cycle_tol`].
    #[serde(default)]
    pub coarse: bool,
}

impl RunTracker {
    pub fn new() -> RunTracker {
        RunTracker::default()
    }

    fn cycle_tol(&self, dp: f64) -> f64 {
        if self.coarse {
            pair_tol(dp)
        } else {
            cycle_tol(dp)
        }
    }

    /// A run by its identity, on or off.
    pub fn get(&self, on_ts: i64) -> Option<&Run> {
        self.running
            .iter()
            .chain(self.off.iter())
            .find(|r| r.on_ts == on_ts)
    }

    pub fn apply(&mut self, step: &Step, changes: &mut Vec<Change>) {
        if step.dp > 0.0 {
            self.on_step(step, changes);
        } else {
            self.off_step(step, changes);
        }
        self.fit_level(step, changes);
    }

    /// What runs draw together cannot exceed the meter's level: runs that must have
    /// switched off unseen (an off step lost in an overlap) are dropped, oldest first.
    /// The run that must be gone is the one drawing about the excess (the background
    /// is unknown, so "about" is generous); failing that, a level change of a run that
    /// has levels was missed; failing that, the oldest run switched off.
    fn fit_level(&mut self, step: &Step, changes: &mut Vec<Change>) {
        loop {
            let drawn: f64 = self.running.iter().map(|r| r.dp).sum();
            if drawn <= step.level + 50.0 + 0.1 * step.level || self.running.is_empty() {
                return;
            }
            let excess = drawn - step.level;
            let gone = self
                .running
                .iter()
                .enumerate()
                .filter(|(_, r)| (r.dp - excess).abs() <= pair_tol(r.dp) + 150.0)
                .min_by(|a, b| (a.1.dp - excess).abs().total_cmp(&(b.1.dp - excess).abs()))
                .map(|(i, _)| i);
            if gone.is_none()
                && let Some(r) = self.running.iter_mut().rev().find(|r| {
                    r.stages > 0
                        && r.dp >= STAGE_BASE_W
                        && r.dp > excess + pair_tol(r.dp)
                        && !r.is_heating_element()
                })
            {
                let share = excess / r.dp;
                r.raise(-excess, r.dq.map(|q| -q * share));
                r.stages += 1;
                changes.push(Change::On(r.on_ts));
                continue;
            }
            // It switched off here, unseen (its off step was measured together with
            // another change): off like any other, so a thermostat's re-on still finds it.
            self.switch_off(gone.unwrap_or(0), step.ts, changes);
        }
    }

    fn on_step(&mut self, step: &Step, changes: &mut Vec<Change>) {
        // A thermostat: the same step again soon after an off.
        let tol = |dp| self.cycle_tol(dp);
        if let Some(i) = same_step_again(&self.off, step, MAX_CYCLE_GAP_US, tol) {
            let mut r = self.off.remove(i);
            r.cycle_on(step, true);
            changes.push(Change::On(r.on_ts));
            self.running.push(r);
            return;
        }
        // A stage of a significant run of the same power factor: a new, higher setting
        // shortly after it switched on, or back up to a level it has had.
        let stage = best_by_pf(&self.running, (step.dp, step.dq), STAGE_PF_TOL, |r| {
            let share = step.dp / r.dp;
            let young = r.cycles == 0 && step.ts - r.on_ts <= STAGE_WINDOW_US;
            // A purely resistive appliance (a heating element) has no power levels to
            // come back to: a step up later on is another appliance.
            // Nor does it have settings: another resistive step up is another appliance.
            let resistive = r.is_heating_element();
            let back_up = r.dp + step.dp <= r.peak_dp + pair_tol(r.peak_dp);
            !resistive
                && r.dp >= STAGE_BASE_W
                && (0.15..=MAX_STAGE_SHARE).contains(&share)
                && (young || back_up)
        });
        if let Some(i) = stage {
            let r = &mut self.running[i];
            r.raise(step.dp, step.dq);
            r.stages += 1;
            changes.push(Change::On(r.on_ts));
            return;
        }
        if self.swap_cycle(step, changes)
            || self.revive(step, changes)
            || self.cycle_with_small_off(step, changes)
        {
            return;
        }
        if self.coarse
            && let Some(i) = thermostat_again_coarse(&self.off, step)
        {
            let mut r = self.off.remove(i);
            let (dp, dq) = (r.dp, r.dq);
            r.cycle_on(step, true);
            // The step had something else mixed in: the element draws what it drew.
            r.dp = dp;
            r.dq = dq;
            changes.push(Change::On(r.on_ts));
            self.running.push(r);
            return;
        }
        if self.running.len() >= MAX_OPEN {
            let dropped = self.running.remove(0);
            changes.push(Change::Final(dropped));
        }
        let mut r = Run::new(step);
        r.doubtful = step.doubtful
            || self.coarse
                && step.dp < STAGE_BASE_W
                && self
                    .running
                    .iter()
                    .any(|o| o.stages > 0 && o.dp >= STAGE_BASE_W && !o.is_heating_element());
        changes.push(Change::On(r.on_ts));
        self.running.push(r);
    }

    /// Two appliances of the same power: a run `A` cycled on again at `t`, and now the
    /// same step comes again while `A` is on. Either `A` cycled at `t` and this is a new
    /// appliance, or a new appliance came on at `t` and this is `A` cycling. When `A`
    /// has paused before, the pause that fits its earlier ones better decides: if it is
    /// this one, the on-period since `t` becomes a run of its own and `A` cycles now.
    fn swap_cycle(&mut self, step: &Step, changes: &mut Vec<Change>) -> bool {
        let Some(i) = self.running.iter().position(|r| {
            r.paused_at.is_some()
                && r.pauses >= 2
                && (r.dp - step.dp).abs() <= pair_tol(r.dp)
                && q_compatible(r.dq, step.dq)
        }) else {
            return false;
        };
        let a = &self.running[i];
        let Some(paused_at) = a.paused_at else {
            return false;
        };
        let pause_then = a.period_on_ts - paused_at;
        let pause_now = step.ts - paused_at;
        let earlier = (a.pause_sum_us - pause_then) as f64 / f64::from(a.pauses - 1);
        if (pause_now as f64 - earlier).abs() >= (pause_then as f64 - earlier).abs() {
            return false;
        }
        let other = Run::new(&Step {
            ts: a.period_on_ts,
            dp: a.dp,
            dq: a.dq,
            level: step.level,
            doubtful: false,
        });
        let a = &mut self.running[i];
        a.pause_sum_us += pause_now - pause_then;
        a.period_on_ts = step.ts;
        a.dp = step.dp;
        a.dq = step.dq;
        changes.push(Change::On(a.on_ts));
        changes.push(Change::On(other.on_ts));
        self.running.push(other);
        true
    }

    fn off_step(&mut self, step: &Step, changes: &mut Vec<Change>) {
        let size = -step.dp;
        let dq = step.dq.map(|q| -q);
        let matched = self
            .running
            .iter()
            .enumerate()
            .filter(|(_, r)| (r.dp - size).abs() <= pair_tol(r.dp) && q_compatible(r.dq, dq))
            // The closest in power; of runs about as close, a thermostat's (it has
            // cycled: it switches itself off), others are switched off once.
            .min_by(|a, b| {
                let score = |r: &Run| {
                    let q_off = match (r.dq, dq) {
                        (Some(a), Some(b)) => (a - b).abs(),
                        _ => 0.0,
                    };
                    (r.dp - size).abs() + q_off - if r.cycles > 0 { 0.02 * size } else { 0.0 }
                };
                score(a.1).total_cmp(&score(b.1))
            })
            .map(|(i, _)| i);
        if let Some(i) = matched {
            self.switch_off(i, step.ts, changes);
            return;
        }
        if self.two_at_once(size, dq, step.ts, changes) {
            return;
        }
        // A stage down of a run of the same power factor that it fits in — or, since a
        // step down that matches nothing must have come from something that is on, of
        // a power factor only roughly the same (a level change measured together with
        // another change).
        let fits = |r: &Run| {
            !r.is_heating_element()
                && r.dp - size > pair_tol(r.dp)
                && size >= 0.15 * r.dp
                && r.dp >= STAGE_BASE_W
        };
        let stage = best_by_pf(&self.running, (size, dq), STAGE_PF_TOL, fits)
            .or_else(|| best_by_pf(&self.running, (size, dq), 3.0 * STAGE_PF_TOL, fits));
        if let Some(i) = stage {
            let r = &mut self.running[i];
            r.raise(-size, dq.map(|q| -q));
            r.stages += 1;
            changes.push(Change::On(r.on_ts));
        }
    }

    /// A thermostat's re-on measured together with a small running load switching off
    /// (a fridge's compressor stopping in the same sample or two): the step is the
    /// re-on less the small load. Both are taken as happening here.
    fn cycle_with_small_off(&mut self, step: &Step, changes: &mut Vec<Change>) -> bool {
        let tol = |dp| self.cycle_tol(dp);
        let mut best: Option<(usize, usize, f64)> = None;
        for (y, ry) in self.running.iter().enumerate() {
            if ry.dp >= STAGE_BASE_W || ry.dp <= 0.0 {
                continue;
            }
            let whole = Step {
                dp: step.dp + ry.dp,
                dq: match (step.dq, ry.dq) {
                    (Some(a), Some(b)) => Some(a + b),
                    _ => None,
                },
                ..*step
            };
            if let Some(x) = same_step_again(&self.off, &whole, MAX_CYCLE_GAP_US, tol) {
                let residual = (self.off[x].dp - whole.dp).abs();
                if best.is_none_or(|b| residual < b.2) {
                    best = Some((x, y, residual));
                }
            }
        }
        let Some((x, y, _)) = best else {
            return false;
        };
        self.switch_off(y, step.ts, changes);
        let mut r = self.off.remove(x);
        r.cycle_on(step, true);
        let small = self.off.last().map(|o| (o.dp, o.dq));
        if let Some((dp, dq)) = small {
            // The run draws the whole re-on, not the step net of the small load.
            r.dp = step.dp + dp;
            r.dq = match (step.dq, dq) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        changes.push(Change::On(r.on_ts));
        self.running.push(r);
        true
    }

    /// A heater that cycled and then "ended" because one of its re-ons was lost comes
    /// back as the same run when its step appears again.
    fn revive(&mut self, step: &Step, changes: &mut Vec<Change>) -> bool {
        let tol = |dp| self.cycle_tol(dp);
        let Some(i) = same_step_again(&self.ended, step, REVIVE_US, tol) else {
            return false;
        };
        let mut r = self.ended.remove(i);
        // Its long "pause" was a lost re-on, not a pause.
        r.cycle_on(step, false);
        changes.push(Change::On(r.on_ts));
        self.running.push(r);
        true
    }

    fn switch_off(&mut self, i: usize, ts: i64, changes: &mut Vec<Change>) {
        let mut r = self.running.remove(i);
        r.longest_period_us = r.longest_period_us.max(ts - r.period_on_ts);
        r.off_ts = Some(ts);
        r.paused_at = None;
        changes.push(Change::Off(r.on_ts));
        self.off.push(r);
    }

    /// A step down that is two changes measured as one (both within a sampling
    /// interval or two): one run switched off, and another switched off too or went to a
    /// lower level. The pair that explains the step best, if any does.
    fn two_at_once(
        &mut self,
        size: f64,
        dq: Option<f64>,
        ts: i64,
        changes: &mut Vec<Change>,
    ) -> bool {
        // (run switched off, other run, other switched off too?, residual)
        let mut best: Option<(usize, usize, bool, f64)> = None;
        for (x, rx) in self.running.iter().enumerate() {
            let rest = size - rx.dp;
            if rest < 15.0 {
                continue;
            }
            let rest_q = match (dq, rx.dq) {
                (Some(a), Some(b)) => Some(a - b),
                _ => None,
            };
            for (y, ry) in self.running.iter().enumerate() {
                if x == y {
                    continue;
                }
                let (both_off, residual) =
                    if (ry.dp - rest).abs() <= pair_tol(ry.dp) && q_compatible(ry.dq, rest_q) {
                        (true, (ry.dp - rest).abs())
                    } else if ry.stages > 0
                        && ry.dp - rest > pair_tol(ry.dp)
                        && rest >= 0.15 * ry.dp
                        && pf_distance((ry.dp, ry.dq), (rest, rest_q)) <= 3.0 * STAGE_PF_TOL
                    {
                        (false, pf_distance((ry.dp, ry.dq), (rest, rest_q)) * 1000.0)
                    } else {
                        continue;
                    };
                if best.is_none_or(|b| residual < b.3) {
                    best = Some((x, y, both_off, residual));
                }
            }
        }
        let Some((x, y, both_off, _)) = best else {
            return false;
        };
        let rest = size - self.running[x].dp;
        if both_off {
            // Remove the later index first so the other stays valid.
            let (first, second) = if x > y { (x, y) } else { (y, x) };
            self.switch_off(first, ts, changes);
            self.switch_off(second, ts, changes);
        } else {
            let ry = &mut self.running[y];
            let share = rest / ry.dp;
            ry.raise(-rest, ry.dq.map(|q| -q * share));
            ry.stages += 1;
            changes.push(Change::On(ry.on_ts));
            self.switch_off(x, ts, changes);
        }
        true
    }

    /// Runs whose cycle gap (or longest life) has passed by `now` become final.
    pub fn expire(&mut self, now: i64, changes: &mut Vec<Change>) {
        let mut i = 0;
        while i < self.off.len() {
            if self.off[i]
                .off_ts
                .is_some_and(|off| now - off > MAX_CYCLE_GAP_US)
            {
                let r = self.off.remove(i);
                if r.cycles > 0 && r.dp >= STAGE_BASE_W {
                    self.ended.push(r.clone());
                }
                changes.push(Change::Final(r));
            } else {
                i += 1;
            }
        }
        self.ended
            .retain(|r| r.off_ts.is_some_and(|off| now - off <= REVIVE_US));
        let mut i = 0;
        while i < self.running.len() {
            if now - self.running[i].period_on_ts > MAX_RUN_US {
                changes.push(Change::Final(self.running.remove(i)));
            } else {
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step of an appliance with a motor (power factor ~0.96): it can have stages.
    fn step(ts: i64, dp: f64) -> Step {
        Step {
            ts,
            dp,
            dq: Some(0.3 * dp),
            level: 0.0,
            doubtful: false,
        }
    }

    fn feed(steps: &[(i64, f64)]) -> RunTracker {
        let mut t = RunTracker::new();
        let mut changes = Vec::new();
        let mut level = 100.0;
        for (ts, dp) in steps {
            level += dp;
            t.apply(
                &Step {
                    level,
                    ..step(*ts, *dp)
                },
                &mut changes,
            );
        }
        t
    }

    #[test]
    fn runs_drawing_more_than_the_meter_shows_are_switched_off() {
        // The heater's off was lost: the level is back near the background.
        let mut t = RunTracker::new();
        let mut changes = Vec::new();
        t.apply(
            &Step {
                level: 2100.0,
                ..step(0, 2000.0)
            },
            &mut changes,
        );
        t.apply(
            &Step {
                level: 100.0,
                ..step(5, -1000.0)
            },
            &mut changes,
        );
        assert!(t.running.is_empty());
        assert_eq!(changes.last(), Some(&Change::Off(0)));
        assert_eq!(t.off[0].off_ts, Some(5));
    }

    #[test]
    fn off_steps_close_the_run_they_match() {
        let t = feed(&[(0, 2000.0), (10, 120.0), (20, -1990.0)]);
        assert_eq!(t.running.len(), 1);
        assert_eq!(t.running[0].on_ts, 10);
        assert_eq!(t.off[0].on_ts, 0);
        assert_eq!(t.off[0].off_ts, Some(20));
    }

    #[test]
    fn a_thermostat_is_one_run_with_cycles() {
        let min = 60 * crate::appliance::SECOND;
        let t = feed(&[
            (0, 1500.0),
            (10 * min, -1500.0),
            (15 * min, 1510.0),
            (20 * min, -1500.0),
            (26 * min, 1495.0),
        ]);
        assert_eq!(t.running.len(), 1);
        assert_eq!(t.running[0].on_ts, 0);
        assert_eq!(t.running[0].cycles, 2);
        assert_eq!(t.running[0].longest_period_us, 10 * min);
    }

    #[test]
    fn stages_move_the_run_level_and_the_off_matches_the_last_level() {
        let t = feed(&[
            (0, 1000.0),
            (5, 700.0),
            (9, -400.0),
            (10, 300.0),
            (12, -1700.0),
        ]);
        assert!(t.running.is_empty());
        assert_eq!(t.off[0].stages, 3);
        assert_eq!(t.off[0].peak_dp, 1700.0);
    }

    #[test]
    fn a_heating_element_has_no_stages_a_second_one_is_its_own_run() {
        let mut t = RunTracker::new();
        let mut changes = Vec::new();
        let resistive = |ts, dp, level| Step {
            ts,
            dp,
            dq: Some(0.0),
            level,
            doubtful: false,
        };
        t.apply(&resistive(0, 1500.0, 1600.0), &mut changes);
        t.apply(&resistive(30, 1000.0, 2600.0), &mut changes);
        assert_eq!(t.running.len(), 2);
        assert_eq!((t.running[0].stages, t.running[1].stages), (0, 0));
    }

    #[test]
    fn a_small_load_on_top_is_its_own_run() {
        let t = feed(&[(0, 2000.0), (5, 40.0)]);
        assert_eq!(t.running.len(), 2);
    }

    fn resistive(ts: i64, dp: f64, level: f64) -> Step {
        Step {
            ts,
            dp,
            dq: Some(0.0),
            level,
            doubtful: false,
        }
    }

    #[test]
    fn a_re_on_measured_with_a_fridge_stopping_is_the_thermostat_cycling() {
        let min = 60 * crate::appliance::SECOND;
        let mut t = RunTracker::new();
        let mut changes = Vec::new();
        t.apply(&resistive(0, 1500.0, 1600.0), &mut changes);
        let fridge = Step {
            ts: min,
            dp: 120.0,
            dq: Some(90.0),
            level: 1720.0,
            doubtful: false,
        };
        t.apply(&fridge, &mut changes);
        t.apply(&resistive(10 * min, -1500.0, 220.0), &mut changes);
        // The heater back on while the fridge stops: +1500 W, −90 var of the fridge.
        let both = Step {
            ts: 15 * min,
            dp: 1380.0,
            dq: Some(-90.0),
            level: 1600.0,
            doubtful: false,
        };
        t.apply(&both, &mut changes);
        assert_eq!(t.running.len(), 1, "{:?}", t.running);
        assert_eq!((t.running[0].on_ts, t.running[0].cycles), (0, 1));
        assert_eq!(t.running[0].dp, 1500.0);
        assert_eq!(t.off[0].on_ts, min, "the fridge is off");
    }

    #[test]
    fn coarse_samples_let_a_known_thermostat_re_on_with_another_change_mixed_in() {
        let min = 60 * crate::appliance::SECOND;
        for coarse in [false, true] {
            let mut t = RunTracker {
                coarse,
                ..RunTracker::default()
            };
            let mut changes = Vec::new();
            t.apply(&resistive(0, 1500.0, 1600.0), &mut changes);
            t.apply(&resistive(10 * min, -1500.0, 100.0), &mut changes);
            t.apply(&resistive(15 * min, 1500.0, 1600.0), &mut changes);
            t.apply(&resistive(20 * min, -1500.0, 100.0), &mut changes);
            // A lamp's 140 W in the same minute as the re-on.
            t.apply(&resistive(26 * min, 1640.0, 1740.0), &mut changes);
            let cycled = t.running.iter().any(|r| r.on_ts == 0 && r.cycles == 2);
            assert_eq!(cycled, coarse, "coarse {coarse}: {:?}", t.running);
        }
    }
}
