//! Retention: per-table time to live (`"4 months"`, `"90 days"`, `"3 years"`), and the
//! janitor that drops every month partition lying entirely before now − TTL (through
//! `Storage::expire_months_before`). A month that still holds any unexpired timestamp
//! stays whole. With an archive configured, each month is copied there first; a month
//! brought back by `restore_partition` stays until its hold ends, and the first run
//! after that archives it again (its current files) and drops it.

use std::time::Duration;

use chrono::{DateTime, Months, Utc};
use wattdb_storage::{ExpireReport, Month, Storage};

/// A time to live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    Days(u32),
    Months(u32),
}

/// `"4 months"`, `"90 days"`, `"2 weeks"`, `"3 years"` (also `4 month`, `90d`, `1y`);
/// `"none"` → `None` (keep forever).
pub fn parse_ttl(text: &str) -> Result<Option<Ttl>, String> {
    let t = text.trim().to_ascii_lowercase();
    if t == "none" {
        return Ok(None);
    }
    let split = t
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("retention \"{text}\" has no unit (days, weeks, months, years)"))?;
    let (n, unit) = t.split_at(split);
    let n: u32 = n
        .parse()
        .map_err(|_| format!("retention \"{text}\" does not start with a number"))?;
    if n == 0 {
        return Err(format!("retention \"{text}\" must be positive (or 'none')"));
    }
    let ttl = match unit.trim() {
        "d" | "day" | "days" => Ttl::Days(n),
        "w" | "week" | "weeks" => Ttl::Days(n * 7),
        "mon" | "month" | "months" => Ttl::Months(n),
        "y" | "year" | "years" => Ttl::Months(n * 12),
        other => {
            return Err(format!(
                "retention \"{text}\": unknown unit \"{other}\" (days, weeks, months, years)"
            ));
        }
    };
    Ok(Some(ttl))
}

/// The first month that is kept: every month before it ends at or before `now − ttl`.
pub fn first_kept_month(now: DateTime<Utc>, ttl: Ttl) -> Month {
    let cutoff = match ttl {
        Ttl::Days(d) => now - chrono::Duration::days(i64::from(d)),
        Ttl::Months(m) => now.checked_sub_months(Months::new(m)).unwrap_or(now),
    };
    // A month M is expired iff M ends at or before the cutoff, i.e. M is before the
    // month holding the cutoff (if the cutoff is a month's first instant, the month
    // before ends exactly there and is expired; the cutoff's own month is not).
    Month::of_micros(cutoff.timestamp_micros())
}

/// A retention setting as `Storage::set_retention` takes it: the text to store
/// (trimmed; `None` for `"none"`) and the first month it keeps at `now` (`None`: all).
pub fn retention_setting(
    text: &str,
    now: DateTime<Utc>,
) -> Result<(Option<String>, Option<Month>), String> {
    Ok(match parse_ttl(text)? {
        Some(ttl) => (
            Some(text.trim().to_string()),
            Some(first_kept_month(now, ttl)),
        ),
        None => (None, None),
    })
}

/// The end of a hold of `ttl` from `now` (how long `restore_partition` keeps a month).
pub fn hold_until(now: DateTime<Utc>, ttl: Ttl) -> DateTime<Utc> {
    match ttl {
        Ttl::Days(d) => now + chrono::Duration::days(i64::from(d)),
        Ttl::Months(m) => now.checked_add_months(Months::new(m)).unwrap_or(now),
    }
}

/// What a retention run did to one table: the months dropped, or why it failed (a
/// failed table keeps all its months; the next run retries).
pub type RetentionOutcome = (String, wattdb_storage::Result<ExpireReport>);

/// Drop the expired months of every table with a retention (archiving them first when
/// an archive is configured).
pub async fn run_retention(storage: &Storage, now: DateTime<Utc>) -> Vec<RetentionOutcome> {
    let parts = storage.partitions();
    let mut out = Vec::new();
    for def in storage.tables() {
        let Some(text) = &def.retention else { continue };
        let ttl = match parse_ttl(text) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(table = %def.name, error = %e, "skipping unusable retention");
                continue;
            }
        };
        let before = first_kept_month(now, ttl);
        let has_older = parts
            .iter()
            .any(|p| p.table == def.name && p.month < before);
        if def.expired_before.is_some_and(|e| e >= before) && !has_older {
            continue;
        }
        let r = storage
            .expire_months_before(&def.name, before, now.timestamp_millis())
            .await;
        if let Err(e) = &r {
            tracing::warn!(table = %def.name, error = %e, "retention run failed; will retry");
        }
        out.push((def.name.clone(), r));
    }
    out
}

/// Run retention every `interval` until `shutdown`.
pub fn spawn_janitor(
    storage: Storage,
    interval: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    crate::periodic::spawn_periodic(interval, shutdown, move || {
        let storage = storage.clone();
        async move {
            run_retention(&storage, Utc::now()).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn parses_ttls() {
        assert_eq!(parse_ttl("4 months"), Ok(Some(Ttl::Months(4))));
        assert_eq!(parse_ttl("3 years"), Ok(Some(Ttl::Months(36))));
        assert_eq!(parse_ttl("90d"), Ok(Some(Ttl::Days(90))));
        assert_eq!(parse_ttl("2 weeks"), Ok(Some(Ttl::Days(14))));
        assert_eq!(parse_ttl("NONE"), Ok(None));
        for bad in ["", "months", "0 days", "4 fortnights", "-1 days"] {
            assert!(parse_ttl(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_month_is_dropped_only_when_it_lies_entirely_before_the_cutoff() {
        let m = |s: &str| Month::parse(s).unwrap();
        // 4 months before 2026-11-26T10:00 is 2026-07-26T10:00: July still holds
        // unexpired instants, June ends before the cutoff.
        assert_eq!(
            first_kept_month(at("2026-11-26T10:00:00Z"), Ttl::Months(4)),
            m("2026-07")
        );
        // Cutoff exactly at a month start: the month before is expired, that month not.
        assert_eq!(
            first_kept_month(at("2026-11-01T00:00:00Z"), Ttl::Months(4)),
            m("2026-07")
        );
        assert_eq!(
            first_kept_month(at("2026-11-01T00:00:00.000001Z"), Ttl::Days(31)),
            m("2026-10")
        );
        assert_eq!(
            first_kept_month(at("2026-11-01T00:00:00Z"), Ttl::Days(31)),
            m("2026-10")
        );
    }
}
