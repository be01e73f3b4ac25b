//! Rollup bucket intervals (used by the rollup worker and by the read path's rollup
//! rewrite): fixed widths aligned to the Unix epoch (like `date_bin`), and the
//! calendar day of a time zone (23 or 25 hours long on DST changes).

use chrono::{Duration, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

const MICROS_PER_SEC: i64 = 1_000_000;
const DAY_SECS: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    /// Width in microseconds; divides a day, so buckets never straddle UTC midnight.
    Fixed(i64),
    /// Local calendar days of the given zone.
    Day(Tz),
}

impl Interval {
    /// `"15m"`, `"1h"`, `"30s"`, `"1d"` (the local day of `tz`). A fixed width must
    /// divide a day evenly.
    pub fn parse(text: &str, tz: Tz) -> Result<Self, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("interval \"{text}\" has no unit (s, m, h or d)"))?;
        let (n, unit) = t.split_at(split);
        let n: i64 = n
            .parse()
            .map_err(|_| format!("interval \"{text}\" does not start with a number"))?;
        if n <= 0 {
            return Err(format!("interval \"{text}\" must be positive"));
        }
        let secs = match unit {
            "s" => n,
            "m" | "min" => n * 60,
            "h" => n * 3600,
            "d" if n == 1 => return Ok(Interval::Day(tz)),
            "d" => {
                return Err(format!(
                    "interval \"{text}\": only 1d (a calendar day) is supported"
                ));
            }
            _ => {
                return Err(format!(
                    "interval \"{text}\": unknown unit \"{unit}\" (s, m, h or d)"
                ));
            }
        };
        if DAY_SECS % secs != 0 {
            return Err(format!("interval \"{text}\" does not divide a day evenly"));
        }
        Ok(Interval::Fixed(secs * MICROS_PER_SEC))
    }

    /// Start (UTC microseconds) of the bucket holding `ts`.
    pub fn bucket_start(&self, ts: i64) -> i64 {
        match self {
            Interval::Fixed(w) => ts.saturating_sub(ts.rem_euclid(*w)),
            Interval::Day(tz) => {
                let date = local_date(*tz, ts);
                local_midnight(*tz, date)
            }
        }
    }

    /// Start of the bucket after the one starting at `start`.
    pub fn bucket_end(&self, start: i64) -> i64 {
        match self {
            Interval::Fixed(w) => start.saturating_add(*w),
            Interval::Day(tz) => {
                let date = local_date(*tz, start);
                local_midnight(*tz, date.succ_opt().unwrap_or(date))
            }
        }
    }

    /// Width in microseconds of a fixed interval; a day's longest possible length
    /// otherwise (for ordering intervals from fine to coarse).
    pub fn nominal_micros(&self) -> i64 {
        match self {
            Interval::Fixed(w) => *w,
            Interval::Day(_) => (DAY_SECS + 3600) * MICROS_PER_SEC,
        }
    }
}

/// The local calendar date of `ts` in `tz` (timestamps beyond chrono's range clamp).
fn local_date(tz: Tz, ts: i64) -> NaiveDate {
    let utc = chrono::DateTime::from_timestamp_micros(ts).unwrap_or(if ts < 0 {
        chrono::DateTime::<Utc>::MIN_UTC
    } else {
        chrono::DateTime::<Utc>::MAX_UTC
    });
    utc.with_timezone(&tz).date_naive()
}

/// The first instant of `date` in `tz`. Where midnight is skipped by a DST change (some
/// zones switch at 00:00) the day starts at the first local time that exists.
fn local_midnight(tz: Tz, date: NaiveDate) -> i64 {
    let mut local = date.and_time(NaiveTime::MIN);
    for _ in 0..48 {
        if let Some(t) = tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc).timestamp_micros();
        }
        local += Duration::minutes(30);
    }
    // No zone skips a whole day at midnight; fall back to UTC midnight.
    date.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
}

/// Remembers the last day bucket looked up, so consecutive rows of one day cost two
/// comparisons instead of two time-zone conversions.
#[derive(Debug, Clone)]
pub struct BucketCache {
    interval: Interval,
    start: i64,
    end: i64,
}

impl BucketCache {
    pub fn new(interval: Interval) -> Self {
        BucketCache {
            interval,
            start: 0,
            end: 0,
        }
    }

    pub fn start_of(&mut self, ts: i64) -> i64 {
        match self.interval {
            Interval::Fixed(w) => ts.saturating_sub(ts.rem_euclid(w)),
            Interval::Day(_) => {
                if ts < self.start || ts >= self.end {
                    self.start = self.interval.bucket_start(ts);
                    self.end = self.interval.bucket_end(self.start);
                }
                self.start
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(rfc3339: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn parses_and_rejects() {
        let tz = chrono_tz::UTC;
        assert_eq!(Interval::parse("15m", tz), Ok(Interval::Fixed(900_000_000)));
        assert_eq!(
            Interval::parse("1h", tz),
            Ok(Interval::Fixed(3_600_000_000))
        );
        assert_eq!(Interval::parse("1d", tz), Ok(Interval::Day(tz)));
        for bad in ["", "m", "0m", "7m", "2d", "15x", "-5m"] {
            assert!(Interval::parse(bad, tz).is_err(), "{bad}");
        }
    }

    #[test]
    fn berlin_days_are_23_and_25_hours_on_dst_changes() {
        let day = Interval::Day(chrono_tz::Europe::Berlin);
        // 2026-03-29: clocks go 02:00 -> 03:00 (23 h); 2026-10-25: 03:00 -> 02:00 (25 h).
        let spring = day.bucket_start(us("2026-03-29T12:00:00+02:00"));
        assert_eq!(spring, us("2026-03-29T00:00:00+01:00"));
        assert_eq!(day.bucket_end(spring) - spring, 23 * 3_600_000_000);
        let autumn = day.bucket_start(us("2026-10-25T12:00:00+01:00"));
        assert_eq!(autumn, us("2026-10-25T00:00:00+02:00"));
        assert_eq!(day.bucket_end(autumn) - autumn, 25 * 3_600_000_000);
        let plain = day.bucket_start(us("2026-11-26T08:00:00+01:00"));
        assert_eq!(day.bucket_end(plain) - plain, 24 * 3_600_000_000);
    }

    #[test]
    fn local_midnight_belongs_to_the_new_day() {
        let day = Interval::Day(chrono_tz::Asia::Shanghai);
        let midnight = us("2026-11-26T00:00:00+08:00");
        assert_eq!(day.bucket_start(midnight), midnight);
        assert_eq!(
            day.bucket_start(midnight - 1),
            us("2026-11-25T00:00:00+08:00")
        );
        let q = Interval::Fixed(900_000_000);
        assert_eq!(q.bucket_start(midnight), midnight);
        assert_eq!(q.bucket_start(midnight - 1), midnight - 900_000_000);
        // Before the epoch, buckets still floor (not truncate toward zero).
        assert_eq!(q.bucket_start(-1), -900_000_000);
    }

    #[test]
    fn a_zone_that_skips_midnight_starts_the_day_at_one() {
        // America/Santiago moved clocks 00:00 -> 01:00 on 2024-09-08.
        let day = Interval::Day(chrono_tz::America::Santiago);
        let start = day.bucket_start(us("2024-09-08T12:00:00-03:00"));
        assert_eq!(start, us("2024-09-08T01:00:00-03:00"));
    }

    #[test]
    fn cache_agrees_with_direct_lookup() {
        let day = Interval::Day(chrono_tz::Europe::Berlin);
        let mut cache = BucketCache::new(day);
        let mut ts = us("2026-03-27T00:00:00Z");
        while ts < us("2026-04-02T00:00:00Z") {
            assert_eq!(cache.start_of(ts), day.bucket_start(ts));
            ts += 7 * 60_000_000 + 13;
        }
    }
}
