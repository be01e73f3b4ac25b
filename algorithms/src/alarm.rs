//! The threshold alarm state machine of one (rule, series).
//!
//! Each row of the series is one [`Observation`]: its timestamp, whether the rule's
//! condition holds (`None` when it cannot be told, e.g. the field is missing) and whether
//! its clear condition holds. States: `Ok` → `Pending` (condition true, waiting for `for`)
//! → `Firing` (the condition held over at least `for` of the series' own time) → back to
//! `Ok` when the clear condition has held for `keep_firing_for` (0: at once; a row where
//! it does not hold starts that over) (a [`Transition::Resolved`]). A pending alarm whose
//! condition turns false goes back to `Ok` without a transition. Rows are taken in the
//! series' time order: a row not newer than the newest row already observed (late data,
//! a redelivered message) changes nothing, so replaying rows never invents transitions.

/// The state of one series under one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AlarmState {
    #[default]
    Ok,
    /// The condition has held since `since` (series time, microseconds).
    Pending { since: i64 },
    /// Fired at `since`.
    Firing { since: i64 },
}

/// One row of the series as the rule sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub ts: i64,
    pub condition: Option<bool>,
    pub clear: Option<bool>,
}

/// A change the alarm reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Firing { ts: i64 },
    Resolved { ts: i64 },
}

/// The state machine of one (rule, series).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeriesAlarm {
    pub state: AlarmState,
    /// The newest row observed (microseconds), if any.
    pub newest: Option<i64>,
    /// While firing: since when the clear condition has held.
    pub clearing_since: Option<i64>,
}

/// How long conditions must hold, in microseconds of the series' time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Durations {
    /// The condition, before firing.
    pub for_micros: i64,
    /// The clear condition, before resolving.
    pub keep_firing_for: i64,
}

impl SeriesAlarm {
    /// Take one row.
    pub fn observe(&mut self, d: Durations, o: Observation) -> Option<Transition> {
        let for_micros = d.for_micros;
        if self.newest.is_some_and(|n| o.ts <= n) {
            return None;
        }
        self.newest = Some(o.ts);
        match self.state {
            AlarmState::Ok => {
                if o.condition == Some(true) {
                    self.state = AlarmState::Pending { since: o.ts };
                    return self.fire_if_due(for_micros, o.ts);
                }
                None
            }
            AlarmState::Pending { .. } => match o.condition {
                Some(true) => self.fire_if_due(for_micros, o.ts),
                Some(false) => {
                    self.state = AlarmState::Ok;
                    None
                }
                None => None,
            },
            AlarmState::Firing { .. } => match o.clear {
                Some(true) => {
                    let since = *self.clearing_since.get_or_insert(o.ts);
                    if o.ts.saturating_sub(since) >= d.keep_firing_for {
                        self.state = AlarmState::Ok;
                        self.clearing_since = None;
                        return Some(Transition::Resolved { ts: o.ts });
                    }
                    None
                }
                Some(false) => {
                    self.clearing_since = None;
                    None
                }
                None => None,
            },
        }
    }

    fn fire_if_due(&mut self, for_micros: i64, ts: i64) -> Option<Transition> {
        let AlarmState::Pending { since } = self.state else {
            return None;
        };
        if ts.saturating_sub(since) >= for_micros {
            self.state = AlarmState::Firing { since: ts };
            return Some(Transition::Firing { ts });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn obs(ts: i64, condition: Option<bool>, clear: Option<bool>) -> Observation {
        Observation {
            ts,
            condition,
            clear,
        }
    }

    fn d(for_micros: i64) -> Durations {
        Durations {
            for_micros,
            keep_firing_for: 0,
        }
    }

    #[test]
    fn fires_after_for_and_resolves_on_clear() {
        let mut a = SeriesAlarm::default();
        assert_eq!(a.observe(d(30), obs(0, Some(true), Some(false))), None);
        assert_eq!(a.state, AlarmState::Pending { since: 0 });
        assert_eq!(a.observe(d(30), obs(20, Some(true), Some(false))), None);
        assert_eq!(
            a.observe(d(30), obs(30, Some(true), Some(false))),
            Some(Transition::Firing { ts: 30 })
        );
        // Hysteresis: the condition is false but the clear condition does not hold yet.
        assert_eq!(a.observe(d(30), obs(40, Some(false), Some(false))), None);
        assert_eq!(
            a.observe(d(30), obs(35, Some(false), Some(true))),
            None,
            "late"
        );
        assert_eq!(
            a.observe(d(30), obs(50, Some(false), Some(true))),
            Some(Transition::Resolved { ts: 50 })
        );
        // A pending alarm whose condition turns false starts over.
        a.observe(d(30), obs(60, Some(true), Some(false)));
        a.observe(d(30), obs(70, Some(false), Some(true)));
        assert_eq!(a.observe(d(30), obs(95, Some(true), Some(false))), None);
        assert_eq!(a.state, AlarmState::Pending { since: 95 });
        // Unknown rows keep the state.
        assert_eq!(a.observe(d(30), obs(110, None, None)), None);
        assert_eq!(
            a.observe(d(30), obs(125, Some(true), None)),
            Some(Transition::Firing { ts: 125 })
        );
    }

    #[test]
    fn keep_firing_for_waits_for_the_clear_condition_to_hold() {
        let d = Durations {
            for_micros: 0,
            keep_firing_for: 30,
        };
        let mut a = SeriesAlarm::default();
        assert_eq!(
            a.observe(d, obs(0, Some(true), Some(false))),
            Some(Transition::Firing { ts: 0 })
        );
        assert_eq!(a.observe(d, obs(10, Some(false), Some(true))), None);
        // Not clear again: the wait starts over.
        assert_eq!(a.observe(d, obs(20, Some(true), Some(false))), None);
        assert_eq!(a.observe(d, obs(30, Some(false), Some(true))), None);
        assert_eq!(a.observe(d, obs(50, None, None)), None);
        assert_eq!(
            a.observe(d, obs(60, Some(false), Some(true))),
            Some(Transition::Resolved { ts: 60 })
        );
    }

    /// Brute force: the transitions of rows sorted by time, computed from the whole
    /// history at every row instead of a carried state.
    fn brute_force(d: Durations, rows: &[Observation]) -> Vec<Transition> {
        let for_micros = d.for_micros;
        let mut out = Vec::new();
        let mut firing: Option<usize> = None;
        // Index after which a pending run may start (last false or last resolution).
        let mut reset: Option<usize> = None;
        for i in 0..rows.len() {
            if let Some(fired) = firing {
                if rows[i].clear == Some(true) {
                    // The run of clear rows (unknowns do not break it) since firing.
                    let start = (fired + 1..=i)
                        .rev()
                        .take_while(|&j| rows[j].clear != Some(false))
                        .filter(|&j| rows[j].clear == Some(true))
                        .last()
                        .unwrap_or(i);
                    if rows[i].ts - rows[start].ts >= d.keep_firing_for {
                        firing = None;
                        reset = Some(i);
                        out.push(Transition::Resolved { ts: rows[i].ts });
                    }
                }
                continue;
            }
            if rows[i].condition == Some(false) {
                reset = Some(i);
                continue;
            }
            if rows[i].condition != Some(true) {
                continue;
            }
            let from = reset.map_or(0, |r| r + 1);
            let start = (from..=i)
                .find(|&j| rows[j].condition == Some(true))
                .unwrap_or(i);
            if rows[i].ts - rows[start].ts >= for_micros {
                firing = Some(i);
                out.push(Transition::Firing { ts: rows[i].ts });
            }
        }
        out
    }

    fn tri() -> impl Strategy<Value = Option<bool>> {
        prop_oneof![Just(None), Just(Some(false)), Just(Some(true))]
    }

    proptest! {
        #[test]
        fn matches_brute_force_with_late_and_duplicate_rows(
            for_micros in 0i64..40,
            keep_firing_for in prop_oneof![Just(0i64), 0i64..40],
            rows in prop::collection::vec((0i64..200, tri(), tri()), 0..80),
        ) {
            let d = Durations { for_micros, keep_firing_for };
            let rows: Vec<Observation> =
                rows.into_iter().map(|(ts, c, k)| obs(ts, c, k)).collect();
            let mut a = SeriesAlarm::default();
            let got: Vec<Transition> =
                rows.iter().filter_map(|o| a.observe(d, *o)).collect();
            // What the series' time order keeps: each row newer than all before it.
            let mut kept = Vec::new();
            let mut newest = None;
            for o in &rows {
                if newest.is_none_or(|n| o.ts > n) {
                    newest = Some(o.ts);
                    kept.push(*o);
                }
            }
            prop_assert_eq!(got, brute_force(d, &kept));
            // Feeding the same rows again (a replay) changes nothing.
            let again: Vec<Transition> =
                rows.iter().filter_map(|o| a.observe(d, *o)).collect();
            prop_assert!(again.is_empty());
        }
    }
}
