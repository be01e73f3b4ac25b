//! Appliance recognition quality on labelled synthetic sites (wattdb_algorithms::appliance
//! ::synthetic): precision and recall per appliance and for the prohibited ones together,
//! alarms raised while no prohibited appliance was on, and detection speed.
//!
//!   appliance_quality --sites 40 --step-s 5
//!   appliance_quality --sites 40 --step-s 60 --no-q

use std::time::Instant;

use clap::Parser;
use wattdb_algorithms::appliance::DetectorConfig;
use wattdb_algorithms::appliance::quality::evaluate;
use wattdb_algorithms::appliance::synthetic::SiteSettings;

#[derive(Parser)]
struct Args {
    /// Sites (48 h each unless --hours), seeds 1..=sites.
    #[arg(long, default_value_t = 40)]
    sites: u64,
    #[arg(long, default_value_t = 48)]
    hours: i64,
    /// Sampling interval, s.
    #[arg(long, default_value_t = 5)]
    step_s: i64,
    /// Measurement noise (standard deviation), W and var.
    #[arg(long, default_value_t = 3.0)]
    noise_w: f64,
    /// Runs of each appliance per day.
    #[arg(long, default_value_t = 3.0)]
    runs_per_day: f64,
    /// Streams without reactive power (active power only).
    #[arg(long)]
    no_q: bool,
    /// Print one site's labelled runs beside what was detected, instead of scoring.
    #[arg(long)]
    dump: Option<u64>,
}

/// One site's labelled runs and the detector's final word on each run, in time order.
fn dump(settings: &SiteSettings, cfg: &DetectorConfig) {
    use wattdb_algorithms::appliance::quality::detect;
    use wattdb_algorithms::appliance::synthetic::site;
    let (samples, truth) = site(settings);
    let out = detect(&samples, cfg);
    let mut last = std::collections::BTreeMap::new();
    for e in &out.events {
        last.insert(e.on_ts, e.clone());
    }
    let minute = |t: i64| (t - settings.start_ts) as f64 / 60e6;
    let mut lines: Vec<(f64, String)> = truth
        .iter()
        .map(|t| {
            let line = format!(
                "truth    {:18} {:8.2}-{:8.2}",
                t.appliance,
                minute(t.on_ts),
                minute(t.off_ts)
            );
            (minute(t.on_ts), line)
        })
        .collect();
    for e in last.values() {
        let off = e
            .off_ts
            .map_or("-".to_string(), |o| format!("{:.2}", minute(o)));
        let line = format!(
            "detected {:18} {:8.2}-{off:>8} dP={:7.1} pf={:?} cycles={} stages={} confidence={:.2}",
            e.appliance,
            minute(e.on_ts),
            e.delta_p,
            e.pf.map(|p| (p * 1000.0).round() / 1000.0),
            e.cycles,
            e.stages,
            e.confidence
        );
        lines.push((minute(e.on_ts), line));
    }
    for a in &out.alarms {
        let state = if a.firing { "firing" } else { "resolved" };
        let line = format!(
            "alarm    {:18} run {:8.2} {state} at {:.2}",
            a.appliance,
            minute(a.on_ts),
            minute(a.ts)
        );
        lines.push((minute(a.ts), line));
    }
    lines.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (_, l) in lines {
        println!("{l}");
    }
}

fn main() {
    let a = Args::parse();
    let settings = SiteSettings {
        seed: 1,
        hours: a.hours,
        step_s: a.step_s,
        noise_w: a.noise_w,
        with_q: !a.no_q,
        runs_per_day: a.runs_per_day,
        ..SiteSettings::default()
    };
    let cfg = DetectorConfig::default();
    if let Some(seed) = a.dump {
        dump(&SiteSettings { seed, ..settings }, &cfg);
        return;
    }
    let t = Instant::now();
    let r = evaluate(&settings, a.sites, &cfg);
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{} sites x {} h at {} s ({}), noise {} W, {} runs/appliance/day: {} samples in {:.2} s (generation included)",
        r.sites,
        a.hours,
        a.step_s,
        if a.no_q { "P only" } else { "P and Q" },
        a.noise_w,
        a.runs_per_day,
        r.samples,
        secs
    );
    print!("{}", r.summary());
}
