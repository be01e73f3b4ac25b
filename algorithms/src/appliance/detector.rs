//! The per-series detector: samples in, appliance events and prohibited-appliance alarm
//! transitions out.
//!
//! Every run worth reporting (it matches a signature, or is significant) is one
//! [`ApplianceEvent`], identified by its switch-on time; the event is emitted again
//! whenever what it says changes (its class, its confidence by more than 0.1, its
//! switch-off). A run classified — decided — as a prohibited appliance that has been on
//! for `delay` of the series' time fires an alarm; its final switch-off (or a new class
//! that is not prohibited) resolves it; a new prohibited class while firing changes no
//! state. A run resolved at a switch-off that comes on again fires again only once it
//! has cycled twice (a thermostat): once may be another appliance of the same power. A run that switches off without having cycled is
//! final at once for the alarm (a thermostat's first re-on fires it again); one that has
//! cycled is only final once it stays off for a cycle gap.

use std::collections::BTreeMap;

use super::runs::{Change, Run, RunTracker};
use super::signatures::{Class, Features, Signature, builtin_signatures, classify, pf_range, secs};
use super::steps::StepDetector;
use super::{Sample, step_pf};

/// Samples this far apart (µs) are measured coarsely (see `RunTracker::coarse`).
const COARSE_INTERVAL_US: i64 = 30 * super::SECOND;

/// Settings of detection for a table.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorConfig {
    pub signatures: Vec<Signature>,
    /// Names of the appliances that raise an alarm.
    pub prohibited: Vec<String>,
    /// How long a prohibited appliance must have been on before the alarm, µs.
    pub delay_us: i64,
    /// Smallest step considered, W.
    pub min_step_w: f64,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            signatures: builtin_signatures(),
            prohibited: vec![
                "immersion_heater".into(),
                "electric_heater".into(),
                "soldering_iron".into(),
            ],
            delay_us: 3 * 60 * super::SECOND,
            min_step_w: 15.0,
        }
    }
}

/// One appliance run as reported (a row of `appliance_events`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApplianceEvent {
    /// Switch-on, µs (the row's key with the series' tags).
    pub on_ts: i64,
    /// Final switch-off, µs; `None` while running.
    pub off_ts: Option<i64>,
    pub appliance: String,
    pub delta_p: f64,
    pub delta_q: Option<f64>,
    pub pf: Option<f64>,
    pub confidence: f64,
    pub prohibited: bool,
    pub cycles: u32,
    pub stages: u32,
}

/// A prohibited appliance's alarm changing state.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmTransition {
    /// The run's switch-on, µs.
    pub on_ts: i64,
    pub appliance: String,
    pub firing: bool,
    /// The sample time that caused it, µs.
    pub ts: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Output {
    pub events: Vec<ApplianceEvent>,
    pub alarms: Vec<AlarmTransition>,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SeriesDetector {
    steps: StepDetector,
    runs: RunTracker,
    last_ts: Option<i64>,
    /// What was last reported per run (by switch-on).
    reported: BTreeMap<i64, ApplianceEvent>,
    /// Runs whose alarm is firing, with the appliance named.
    firing: BTreeMap<i64, String>,
    /// Runs whose alarm fired and was resolved at a switch-off: on again, they fire again
    /// only once known to be a thermostat (two re-ons) — one re-on may be another
    /// appliance of the same power (a kettle after the immersion heater was unplugged).
    #[serde(default)]
    resolved: std::collections::BTreeSet<i64>,
}

impl SeriesDetector {
    pub fn new() -> SeriesDetector {
        SeriesDetector::default()
    }

    /// The newest sample time seen, µs.
    pub fn last_ts(&self) -> Option<i64> {
        self.last_ts
    }

    /// Feed the next sample. Samples not newer than the last one are ignored (the
    /// detector reads each series once, in time order).
    pub fn push(&mut self, s: Sample, cfg: &DetectorConfig, out: &mut Output) {
        if !s.p.is_finite() || self.last_ts.is_some_and(|t| s.ts <= t) {
            return;
        }
        if let Some(prev) = self.last_ts {
            self.runs.coarse = s.ts - prev >= COARSE_INTERVAL_US;
        }
        self.last_ts = Some(s.ts);
        let mut changes = Vec::new();
        let mut steps = Vec::new();
        self.steps
            .push(s, cfg.min_step_w, self.runs.coarse, &mut steps);
        for step in &steps {
            self.runs.apply(step, &mut changes);
        }
        self.runs.expire(s.ts, &mut changes);
        for c in changes {
            match c {
                Change::Final(run) => self.finish(&run, s.ts, cfg, out),
                Change::Off(on_ts) => {
                    let run = self.runs.get(on_ts).cloned();
                    if let Some(run) = run
                        && run.cycles == 0
                    {
                        // Final for the row and the alarm, unless it cycles on again.
                        self.report(&run, s.ts, cfg, out, run.off_ts);
                    }
                }
                Change::On(_) => {}
            }
        }
        // Classes depend on how long runs have been on: look at every live run — but not
        // while a switch is being measured (the run may be switching off right now: a
        // kettle's off must not be taken for an immersion heater still running).
        if self.steps.in_transition() {
            return;
        }
        let live: Vec<Run> = self
            .runs
            .running
            .iter()
            .chain(self.runs.off.iter().filter(|r| r.cycles > 0))
            .cloned()
            .collect();
        for run in live {
            self.report(&run, s.ts, cfg, out, None);
        }
    }

    fn class_of(run: &Run, now: i64, running: bool, cfg: &DetectorConfig) -> Option<Class> {
        let f = Features {
            dp: run.first_dp,
            pf: step_pf(run.first_dp, run.first_dq),
            pf_range: pf_range(run.first_dp, run.first_dq),
            longest_on_s: secs(run.longest_on_us(now)),
            running,
            cycles: run.cycles,
            stages: run.stages,
            doubtful: run.doubtful,
        };
        classify(&cfg.signatures, &f)
    }

    /// Report `run` as of `now` (`off_ts`: its final switch-off), and move its alarm.
    fn report(
        &mut self,
        run: &Run,
        now: i64,
        cfg: &DetectorConfig,
        out: &mut Output,
        off_ts: Option<i64>,
    ) {
        let running = off_ts.is_none();
        let Some(class) = Self::class_of(run, now, running, cfg) else {
            // No longer worth reporting (or never was): a firing alarm resolves.
            self.resolve(run.on_ts, now, out);
            return;
        };
        let prohibited = cfg.prohibited.contains(&class.name);
        let event = ApplianceEvent {
            on_ts: run.on_ts,
            off_ts,
            appliance: class.name.clone(),
            delta_p: run.peak_dp,
            delta_q: run.peak_dq,
            pf: step_pf(run.peak_dp, run.peak_dq),
            confidence: class.confidence,
            prohibited,
            cycles: run.cycles,
            stages: run.stages,
        };
        let changed = match self.reported.get(&run.on_ts) {
            None => true,
            Some(prev) => {
                prev.appliance != event.appliance
                    || prev.off_ts != event.off_ts
                    || prev.prohibited != event.prohibited
                    || (prev.confidence - event.confidence).abs() > 0.1
                    || prev.cycles != event.cycles
                    || prev.stages != event.stages
            }
        };
        if changed {
            self.reported.insert(run.on_ts, event.clone());
            out.events.push(event);
        }
        let should_fire = running
            && prohibited
            && class.decided
            && now - run.on_ts >= cfg.delay_us
            && (run.cycles >= 2 || !self.resolved.contains(&run.on_ts));
        match self.firing.get_mut(&run.on_ts) {
            // Still firing; now known as another prohibited appliance (an immersion
            // heater found to cycle is an electric heater): no new transition, the
            // event row carries the new name.
            Some(name) if should_fire => *name = class.name.clone(),
            Some(_) => self.resolve(run.on_ts, now, out),
            None if should_fire => self.fire(run.on_ts, &class.name, now, out),
            None => {}
        }
        if !running {
            self.reported.remove(&run.on_ts);
        }
    }

    fn finish(&mut self, run: &Run, now: i64, cfg: &DetectorConfig, out: &mut Output) {
        if run.cycles > 0 || self.reported.contains_key(&run.on_ts) {
            let off = run.off_ts.unwrap_or(now);
            self.report(run, now, cfg, out, Some(off));
        }
        self.resolve(run.on_ts, now, out);
        self.reported.remove(&run.on_ts);
        self.resolved.remove(&run.on_ts);
    }

    fn fire(&mut self, on_ts: i64, appliance: &str, ts: i64, out: &mut Output) {
        self.firing.insert(on_ts, appliance.to_string());
        out.alarms.push(AlarmTransition {
            on_ts,
            appliance: appliance.to_string(),
            firing: true,
            ts,
        });
    }

    fn resolve(&mut self, on_ts: i64, ts: i64, out: &mut Output) {
        if let Some(appliance) = self.firing.remove(&on_ts) {
            self.resolved.insert(on_ts);
            out.alarms.push(AlarmTransition {
                on_ts,
                appliance,
                firing: false,
                ts,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::quality::detect as run;
    use crate::appliance::synthetic::{SiteSettings, site};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Over random sites: per run, alarm transitions alternate firing/resolved
        /// starting with firing and only for prohibited names; events name a run by its
        /// switch-on and never end before it; and duplicated or late samples (a
        /// redelivery, a backfill overlapping what was read) change nothing.
        #[test]
        fn alarms_alternate_and_redelivered_samples_change_nothing(
            seed in 1u64..10_000,
            step_s in prop::sample::select(vec![1i64, 5, 10, 60]),
            with_q in any::<bool>(),
            dup_every in 3usize..50,
        ) {
            let settings = SiteSettings { seed, hours: 12, step_s, with_q, ..SiteSettings::default() };
            let (samples, _) = site(&settings);
            let cfg = DetectorConfig::default();
            let out = run(&samples, &cfg);
            let mut state: BTreeMap<i64, bool> = BTreeMap::new();
            for a in &out.alarms {
                prop_assert!(cfg.prohibited.contains(&a.appliance), "{a:?}");
                let was = state.insert(a.on_ts, a.firing).unwrap_or(false);
                prop_assert_ne!(was, a.firing, "{:?}", a);
                prop_assert!(a.ts >= a.on_ts + cfg.delay_us || !a.firing);
            }
            for e in &out.events {
                prop_assert!(e.off_ts.is_none_or(|off| off >= e.on_ts), "{e:?}");
            }
            let mut noisy = Vec::with_capacity(samples.len() * 2);
            for (i, s) in samples.iter().enumerate() {
                noisy.push(*s);
                if i % dup_every == 0 {
                    noisy.push(*s);
                    if i >= 3 {
                        noisy.push(samples[i - 3]);
                    }
                }
            }
            prop_assert_eq!(run(&noisy, &cfg), out);
        }
    }

    /// A detector saved mid-stream (as a restart will: serialized, then read back)
    /// goes on exactly as one that never stopped.
    #[test]
    fn a_detector_saved_and_restored_mid_stream_goes_on_the_same() {
        let (samples, _) = site(&SiteSettings {
            seed: 7,
            hours: 24,
            ..SiteSettings::default()
        });
        let cfg = DetectorConfig::default();
        let whole = run(&samples, &cfg);
        for cut in [
            1,
            samples.len() / 3,
            samples.len() / 2 + 17,
            samples.len() - 1,
        ] {
            let mut d = SeriesDetector::new();
            let mut out = Output::default();
            for s in &samples[..cut] {
                d.push(*s, &cfg, &mut out);
            }
            let saved = serde_json::to_vec(&d).expect("serialize");
            let mut d: SeriesDetector = serde_json::from_slice(&saved).expect("deserialize");
            for s in &samples[cut..] {
                d.push(*s, &cfg, &mut out);
            }
            assert_eq!(out, whole, "cut at {cut}");
        }
    }

    /// An immersion heater (steady, resistive, on for 40 minutes) in a quiet room: one
    /// event, decided once it has been on 6 minutes, its alarm firing after the delay
    /// and resolved at its switch-off, which the event then carries; a kettle (3
    /// minutes) raises no alarm.
    #[test]
    fn an_immersion_heater_alarms_and_a_kettle_does_not() {
        let min = 60 * crate::appliance::SECOND;
        let mut samples = Vec::new();
        let level = |t: i64| {
            let m = t / min;
            let heater = if (10..50).contains(&m) { 1500.0 } else { 0.0 };
            let kettle = if (70..73).contains(&m) { 2000.0 } else { 0.0 };
            80.0 + heater + kettle
        };
        for i in 0..(90 * 12) {
            let t = i * 5 * crate::appliance::SECOND;
            samples.push(Sample::new(t, level(t), Some(30.0)));
        }
        let cfg = DetectorConfig::default();
        let out = run(&samples, &cfg);
        let alarms: Vec<(String, bool, i64)> = out
            .alarms
            .iter()
            .map(|a| (a.appliance.clone(), a.firing, a.ts / min))
            .collect();
        // Fires once decided (6 min on, past the 3 min delay), resolves at the off.
        assert_eq!(
            alarms,
            vec![
                ("immersion_heater".into(), true, 16),
                ("immersion_heater".into(), false, 50)
            ]
        );
        let last: BTreeMap<i64, &ApplianceEvent> =
            out.events.iter().map(|e| (e.on_ts, e)).collect();
        let names: Vec<(&str, i64, Option<i64>)> = last
            .values()
            .map(|e| {
                (
                    e.appliance.as_str(),
                    e.on_ts / min,
                    e.off_ts.map(|o| o / min),
                )
            })
            .collect();
        assert_eq!(
            names,
            vec![("immersion_heater", 10, Some(50)), ("kettle", 70, Some(73))]
        );
    }
}
