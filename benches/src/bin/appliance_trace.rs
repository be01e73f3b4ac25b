//! One generated site's samples and the steps the step detector finds in them, between
//! two minutes — to see why a run was missed or split:
//!
//!   appliance_trace --seed 5 --step-s 60 --from 2160 --to 2270

use clap::Parser;
use wattdb_algorithms::appliance::steps::StepDetector;
use wattdb_algorithms::appliance::synthetic::{AVERAGED_FROM_S, SiteSettings, site};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Sampling interval, s.
    #[arg(long, default_value_t = 5)]
    step_s: i64,
    /// First and last minute shown (from the site's start).
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    #[arg(long, default_value_t = 60.0)]
    to: f64,
    /// Runs of each appliance per day.
    #[arg(long, default_value_t = 3.0)]
    runs_per_day: f64,
    /// Steps only, no samples.
    #[arg(long)]
    steps_only: bool,
}

fn main() {
    let a = Args::parse();
    let s = SiteSettings {
        seed: a.seed,
        step_s: a.step_s,
        runs_per_day: a.runs_per_day,
        ..SiteSettings::default()
    };
    let (samples, _) = site(&s);
    let minute = |ts: i64| (ts - s.start_ts) as f64 / 60e6;
    let mut d = StepDetector::new();
    let mut steps = Vec::new();
    for x in samples {
        steps.clear();
        d.push(x, 15.0, a.step_s >= AVERAGED_FROM_S, &mut steps);
        let m = minute(x.ts);
        if m < a.from || m > a.to {
            continue;
        }
        if !a.steps_only {
            println!("{m:8.2} p={:7.1} q={:7.1}", x.p, x.q.unwrap_or(f64::NAN));
        }
        for st in &steps {
            println!(
                "         step at {:.2}: dP={:.1} dQ={:.1} level={:.1}{}",
                minute(st.ts),
                st.dp,
                st.dq.unwrap_or(f64::NAN),
                st.level,
                if st.doubtful { " (doubtful)" } else { "" }
            );
        }
    }
}
