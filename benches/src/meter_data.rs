//! Deterministic, realistic-looking three-phase meter readings shared by the load
//! generators: reading `i` belongs to meter `i % meters` at minute `i / meters`, so every
//! (meter, ts) key is distinct and a run's expected row count is known in advance.

/// Fields of one reading: phase voltages, phase currents, active and reactive power,
/// power factor and the energy counter.
pub const FIELDS: [&str; 10] = ["ua", "ub", "uc", "ia", "ib", "ic", "p", "q", "pf", "kwh"];

/// First timestamp of generated data (2026-09-21T13:33:20Z), in epoch milliseconds.
pub const START_MS: i64 = 1_790_000_000_000;

pub struct Reading {
    pub ts_ms: i64,
    pub pid: String,
    pub values: [f64; 10],
}

pub fn reading(i: usize, meters: usize) -> Reading {
    reading_of(i, meters, 0)
}

/// [`reading`] for meters numbered from `first_meter` (a second fleet, e.g. a gateway's
/// backlog for the same days as the live meters).
pub fn reading_of(i: usize, meters: usize, first_meter: usize) -> Reading {
    let meter = i % meters + first_meter;
    let minute = (i / meters) as i64;
    let phase = (minute as f64 / 60.0).sin();
    let u = 220.0 + 5.0 * phase + (meter % 7) as f64 * 0.1;
    let i_a = 10.0 + 3.0 * phase + (meter % 5) as f64 * 0.01;
    let p = 3.0 * u * i_a / 1000.0;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    Reading {
        ts_ms: START_MS + minute * 60_000,
        pid: format!("meter-{meter:05}"),
        values: [
            round(u),
            round(u + 0.3),
            round(u - 0.2),
            round(i_a),
            round(i_a + 0.1),
            round(i_a - 0.1),
            round(p),
            round(p * 0.2),
            0.98,
            round(minute as f64 * p / 60.0 + meter as f64),
        ],
    }
}

/// The canonical wattdb JSON object of a reading.
pub fn json(r: &Reading, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(
        out,
        r#"{{"ts":{},"tags":{{"pid":"{}"}},"fields":{{"#,
        r.ts_ms, r.pid
    );
    for (k, (name, v)) in FIELDS.iter().zip(r.values).enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(out, r#"{sep}"{name}":{v:?}"#);
    }
    out.push_str("}}");
}

/// InfluxDB line protocol of a reading (millisecond precision).
pub fn line(table: &str, r: &Reading, out: &mut String) {
    use std::fmt::Write;
    let _ = write!(out, "{table},pid={} ", r.pid);
    for (k, (name, v)) in FIELDS.iter().zip(r.values).enumerate() {
        let sep = if k == 0 { "" } else { "," };
        let _ = write!(out, "{sep}{name}={v:?}");
    }
    let _ = writeln!(out, " {}", r.ts_ms);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_payloads_parse() {
        let mut keys = std::collections::HashSet::new();
        for i in 0..5000 {
            let r = reading(i, 100);
            assert!(keys.insert((r.pid.clone(), r.ts_ms)));
        }
        let mut s = String::new();
        json(&reading(7, 100), &mut s);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["tags"]["pid"], "meter-00007");
        assert_eq!(v["fields"].as_object().unwrap().len(), 10);
        let mut l = String::new();
        line("t", &reading(7, 100), &mut l);
        assert!(l.starts_with("t,pid=meter-00007 ua="));
        assert!(l.ends_with(&format!(" {START_MS}\n")));
    }
}
