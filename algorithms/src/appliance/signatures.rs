//! Appliance signatures and the classification of a run against them.
//!
//! The physical facts they encode: resistive heating has a step power factor ≥ 0.97 (ΔQ
//! near zero); a kettle switches itself off within a few minutes while an immersion
//! heater stays on until unplugged, so an immersion heater is only called one after
//! 6 minutes on; a space heater cycles with its thermostat; a microwave's power factor
//! is ~0.85–0.92; a hair dryer's motor lowers its power factor a little; an induction
//! cooker changes its power level while cooking; a soldering iron is a 15–100 W resistive
//! step. Without reactive power the power-factor bounds cannot be checked, and the
//! confidence is lower.

use super::SECOND;

const MINUTE: f64 = 60.0;

/// What a kind of appliance looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    /// Step size, W.
    pub watts: (f64, f64),
    /// Step power factor ΔP/√(ΔP²+ΔQ²).
    pub pf: (f64, f64),
    /// It is only this appliance once on for at least this long (an on-period), s.
    pub min_duration_s: f64,
    /// No on-period of it lasts longer, s.
    pub max_duration_s: f64,
    /// `Some(true)`: cycles (≥ 2 re-ons); `Some(false)`: at most one re-on.
    pub cycling: Option<bool>,
    /// `Some(true)`: changes its power level while on (≥ 2 stages); `Some(false)`: ≤ 1.
    pub varying: Option<bool>,
}

impl Signature {
    #[allow(clippy::too_many_arguments)]
    fn builtin(
        name: &str,
        watts: (f64, f64),
        pf: (f64, f64),
        min_duration_s: f64,
        max_duration_s: f64,
        cycling: Option<bool>,
        varying: Option<bool>,
    ) -> Signature {
        Signature {
            name: name.into(),
            watts,
            pf,
            min_duration_s,
            max_duration_s,
            cycling,
            varying,
        }
    }
}

/// The built-in signatures (names as users write them).
pub fn builtin_signatures() -> Vec<Signature> {
    let inf = f64::INFINITY;
    vec![
        Signature::builtin(
            "immersion_heater",
            (300.0, 3000.0),
            (0.985, 1.0),
            6.0 * MINUTE,
            inf,
            Some(false),
            Some(false),
        ),
        Signature::builtin(
            "electric_heater",
            (400.0, 3000.0),
            (0.98, 1.0),
            0.0,
            inf,
            Some(true),
            Some(false),
        ),
        Signature::builtin(
            "soldering_iron",
            (15.0, 100.0),
            (0.97, 1.0),
            2.0 * MINUTE,
            inf,
            None,
            Some(false),
        ),
        Signature::builtin(
            "kettle",
            (1200.0, 3000.0),
            (0.98, 1.0),
            0.5 * MINUTE,
            6.0 * MINUTE,
            Some(false),
            Some(false),
        ),
        Signature::builtin(
            "hair_dryer",
            (300.0, 2400.0),
            (0.90, 0.97),
            0.0,
            20.0 * MINUTE,
            Some(false),
            Some(false),
        ),
        Signature::builtin(
            "microwave",
            (600.0, 1800.0),
            (0.80, 0.93),
            0.0,
            30.0 * MINUTE,
            Some(false),
            Some(false),
        ),
        Signature::builtin(
            "induction_cooker",
            (600.0, 3000.0),
            (0.85, 0.985),
            0.0,
            inf,
            None,
            Some(true),
        ),
    ]
}

/// What is known of a run at a moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Features {
    /// Its highest power, W.
    pub dp: f64,
    /// The step power factor, when reactive power is known.
    pub pf: Option<f64>,
    /// What the step power factor may be given the reactive power's measurement error
    /// (wide for small steps: ±10 var on a 30 W step is 0.96–1.0).
    pub pf_range: Option<(f64, f64)>,
    /// The longest on-period so far (the current one counted), s.
    pub longest_on_s: f64,
    /// Still on (or may still cycle on again).
    pub running: bool,
    pub cycles: u32,
    pub stages: u32,
    /// The run's steps may not be what they seem (see `Run::doubtful`): never decided.
    pub doubtful: bool,
}

/// A run's class.
#[derive(Debug, Clone, PartialEq)]
pub struct Class {
    pub name: String,
    /// 0–1.
    pub confidence: f64,
    /// True once nothing more the run can do would change the match (a kettle is only
    /// decided when it has switched off in time; an immersion heater after 6 minutes).
    pub decided: bool,
}

/// Steps up to this size could be lighting, W.
const LAMP_W: f64 = 100.0;

/// Measurement error allowed on a step's reactive power, var.
pub const DQ_ERROR: f64 = 10.0;

/// The step power factor's possible range for a step of `dp` W and `dq` var measured
/// within [`DQ_ERROR`].
pub fn pf_range(dp: f64, dq: Option<f64>) -> Option<(f64, f64)> {
    let dq = dq?.abs();
    let pf = |q: f64| {
        let s = (dp * dp + q * q).sqrt();
        if s > 0.0 { dp.abs() / s } else { 1.0 }
    };
    Some((pf(dq + DQ_ERROR), pf((dq - DQ_ERROR).max(0.0))))
}

/// Runs at least this large are reported even when no signature matches.
pub const SIGNIFICANT_W: f64 = 200.0;
pub const UNKNOWN_RESISTIVE: &str = "unknown_resistive";
pub const UNKNOWN: &str = "unknown";

fn closeness(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if !hi.is_finite() || hi <= lo {
        return 1.0;
    }
    let centre = (lo + hi) / 2.0;
    1.0 - ((v - centre).abs() / ((hi - lo) / 2.0)).min(1.0)
}

enum Fit {
    No,
    /// Could still become this (waiting for a duration or a cycle).
    Possible(f64),
    Yes(f64),
}

fn fit(s: &Signature, f: &Features) -> Fit {
    if f.dp < s.watts.0 || f.dp > s.watts.1 {
        return Fit::No;
    }
    if let Some((lo, hi)) = f.pf_range.or(f.pf.map(|pf| (pf, pf)))
        && (hi < s.pf.0 - 1e-9 || lo > s.pf.1 + 1e-9)
    {
        return Fit::No;
    }
    let varying = f.stages >= 2;
    match s.varying {
        Some(false) if varying => return Fit::No,
        _ => {}
    }
    if s.max_duration_s.is_finite() && f.longest_on_s > s.max_duration_s {
        return Fit::No;
    }
    if s.cycling == Some(false) && f.cycles > 1 {
        return Fit::No;
    }
    let mut waiting = false;
    // Without reactive power a small resistive step cannot be told from a lamp: never
    // decided (so never an alarm), only named as possible.
    if (f.pf.is_none() && s.watts.1 <= LAMP_W) || f.doubtful {
        waiting = true;
    }
    if s.varying == Some(true) && !varying {
        if !f.running {
            return Fit::No;
        }
        waiting = true;
    }
    if s.cycling == Some(true) && f.cycles < 2 {
        if !f.running {
            return Fit::No;
        }
        waiting = true;
    }
    if f.longest_on_s < s.min_duration_s {
        if !f.running {
            return Fit::No;
        }
        waiting = true;
    }
    // A bounded on-period is only known to have stayed within bounds once it is over.
    if s.max_duration_s.is_finite() && f.running {
        waiting = true;
    }
    let mut score = 0.5 + 0.5 * closeness(f.dp, s.watts);
    match f.pf {
        Some(pf) => score = (score + 0.5 + 0.5 * closeness(pf, s.pf)) / 2.0,
        None => score *= 0.8,
    }
    if waiting {
        Fit::Possible(score)
    } else {
        Fit::Yes(score)
    }
}

/// The best match among `signatures`: a decided one if any, else the best possible one
/// (undecided), else `unknown_resistive`/`unknown` for a significant run, else none.
pub fn classify(signatures: &[Signature], f: &Features) -> Option<Class> {
    let mut best_yes: Option<(f64, &Signature)> = None;
    let mut best_possible: Option<(f64, &Signature)> = None;
    for s in signatures {
        match fit(s, f) {
            Fit::Yes(score) if best_yes.is_none_or(|(b, _)| score > b) => {
                best_yes = Some((score, s));
            }
            Fit::Possible(score) if best_possible.is_none_or(|(b, _)| score > b) => {
                best_possible = Some((score, s));
            }
            _ => {}
        }
    }
    if let Some((score, s)) = best_yes {
        return Some(Class {
            name: s.name.clone(),
            confidence: score,
            decided: true,
        });
    }
    if let Some((score, s)) = best_possible {
        return Some(Class {
            name: s.name.clone(),
            confidence: score * 0.5,
            decided: false,
        });
    }
    (f.dp >= SIGNIFICANT_W).then(|| Class {
        name: if f.pf.is_none_or(|pf| pf >= 0.97) {
            UNKNOWN_RESISTIVE.into()
        } else {
            UNKNOWN.into()
        },
        confidence: 0.3,
        decided: !f.running,
    })
}

/// Seconds from µs.
pub fn secs(us: i64) -> f64 {
    us as f64 / SECOND as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(dp: f64, pf: f64, on_min: f64, running: bool, cycles: u32, stages: u32) -> Features {
        Features {
            dp,
            pf: Some(pf),
            pf_range: None,
            longest_on_s: on_min * MINUTE,
            running,
            cycles,
            stages,
            doubtful: false,
        }
    }

    fn name(f: Features) -> (String, bool) {
        let c = classify(&builtin_signatures(), &f).expect("a class");
        (c.name, c.decided)
    }

    #[test]
    fn a_kettle_is_told_from_an_immersion_heater_by_time() {
        assert_eq!(
            name(f(2000.0, 1.0, 3.0, false, 0, 0)),
            ("kettle".into(), true)
        );
        assert!(
            !name(f(2000.0, 1.0, 3.0, true, 0, 0)).1,
            "undecided while on"
        );
        assert_eq!(
            name(f(2000.0, 1.0, 7.0, true, 0, 0)),
            ("immersion_heater".into(), true)
        );
    }

    #[test]
    fn power_factor_cycles_and_stages_separate_the_others() {
        assert_eq!(name(f(1200.0, 0.88, 3.0, false, 0, 0)).0, "microwave");
        assert_eq!(name(f(1500.0, 0.99, 12.0, true, 3, 0)).0, "electric_heater");
        assert_eq!(
            name(f(1800.0, 0.96, 12.0, true, 0, 5)).0,
            "induction_cooker"
        );
        assert_eq!(name(f(1500.0, 0.95, 4.0, false, 0, 1)).0, "hair_dryer");
        assert_eq!(name(f(45.0, 0.99, 30.0, true, 0, 0)).0, "soldering_iron");
        assert_eq!(
            classify(&builtin_signatures(), &f(120.0, 0.75, 20.0, false, 2, 0)),
            None
        );
        assert_eq!(name(f(4000.0, 0.99, 5.0, false, 0, 0)).0, UNKNOWN_RESISTIVE);
    }
}
