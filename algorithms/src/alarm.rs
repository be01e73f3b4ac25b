//! The threshold alarm state machine of one (rule, series).
//!
//! Each row of the series is one [`Observation`]: its timestamp, whether the rule's
//! condition holds (`None` when it cannot be told, e.g. the field is missing) and whether
//! its clear condition holds. States: `Ok` → `Pending` (condition true, waiting for `for`)
//! → `Firing` (the condition held over at least `for` of the series' own time) → back to
//! `Ok` when the clear condition holds (a [`Transition::Resolved`]). A pending alarm whose
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
}

impl SeriesAlarm {
    /// Take one row; `for_micros` is how long the condition must hold before firing.
    pub fn observe(&mut self, for_micros: i64, o: Observation) -> Option<Transition> {
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
            AlarmState::Firing { .. } => {
                if o.clear == Some(true) {
                    self.state = AlarmState::Ok;
                    return Some(Transition::Resolved { ts: o.ts });
                }
                None
            }
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

    #[test]
    fn fires_after_for_and_resolves_on_clear() {
        let mut a = SeriesAlarm::default();
        assert_eq!(a.observe(30, obs(0, Some(true), Some(false))), None);
        assert_eq!(a.state, AlarmState::Pending { since: 0 });
        assert_eq!(a.observe(30, obs(20, Some(true), Some(false))), None);
        assert_eq!(
            a.observe(30, obs(30, Some(true), Some(false))),
            Some(Transition::Firing { ts: 30 })
        );
        // Hysteresis: the condition is false but the clear condition does not hold yet.
        assert_eq!(a.observe(30, obs(40, Some(false), Some(false))), None);
        assert_eq!(
            a.observe(30, obs(35, Some(false), Some(true))),
            None,
            "late"
        );
        assert_eq!(
            a.observe(30, obs(50, Some(false), Some(true))),
            Some(Transition::Resolved { ts: 50 })
        );
        // A pending alarm whose condition turns false starts over.
        a.observe(30, obs(60, Some(true), Some(false)));
        a.observe(30, obs(70, Some(false), Some(true)));
        assert_eq!(a.observe(30, obs(95, Some(true), Some(false))), None);
        assert_eq!(a.state, AlarmState::Pending { since: 95 });
        // Unknown rows keep the state.
        assert_eq!(a.observe(30, obs(110, None, None)), None);
        assert_eq!(
            a.observe(30, obs(125, Some(true), None)),
            Some(Transition::Firing { ts: 125 })
        );
    }

    /// Brute force: the transitions of rows sorted by time, computed from the whole
    /// history at every row instead of a carried state.
    fn brute_force(for_micros: i64, rows: &[Observation]) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut firing = false;
        // Index after which a pending run may start (last false or last resolution).
        let mut reset: Option<usize> = None;
        for i in 0..rows.len() {
            if firing {
                if rows[i].clear == Some(true) {
                    firing = false;
                    reset = Some(i);
                    out.push(Transition::Resolved { ts: rows[i].ts });
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
                firing = true;
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
            rows in prop::collection::vec((0i64..200, tri(), tri()), 0..80),
        ) {
            let rows: Vec<Observation> =
                rows.into_iter().map(|(ts, c, k)| obs(ts, c, k)).collect();
            let mut a = SeriesAlarm::default();
            let got: Vec<Transition> =
                rows.iter().filter_map(|o| a.observe(for_micros, *o)).collect();
            // What the series' time order keeps: each row newer than all before it.
            let mut kept = Vec::new();
            let mut newest = None;
            for o in &rows {
                if newest.is_none_or(|n| o.ts > n) {
                    newest = Some(o.ts);
                    kept.push(*o);
                }
            }
            prop_assert_eq!(got, brute_force(for_micros, &kept));
            // Feeding the same rows again (a replay) changes nothing.
            let again: Vec<Transition> =
                rows.iter().filter_map(|o| a.observe(for_micros, *o)).collect();
            prop_assert!(again.is_empty());
        }
    }
}
