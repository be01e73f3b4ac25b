//! Month partitions: every row lives in the UTC calendar month of its timestamp.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// A UTC calendar month, ordered by time. Stored as `year * 12 + (month - 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Month(i32);

impl From<Month> for String {
    fn from(m: Month) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Month {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Month::parse(&s).ok_or_else(|| format!("invalid month \"{s}\" (expected YYYY-MM)"))
    }
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Self> {
        (1..=12)
            .contains(&month)
            .then(|| Month(year * 12 + month as i32 - 1))
    }

    /// The month that contains a timestamp in microseconds since the epoch (UTC).
    pub fn of_micros(ts: i64) -> Self {
        let dt = DateTime::<Utc>::from_timestamp_micros(ts).unwrap_or(DateTime::<Utc>::MIN_UTC);
        Month(dt.year() * 12 + dt.month0() as i32)
    }

    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    pub fn next(self) -> Self {
        Month(self.0 + 1)
    }

    /// First microsecond of the month (UTC).
    pub fn start_micros(self) -> i64 {
        NaiveDate::from_ymd_opt(self.year(), self.month(), 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(|dt| Utc.from_utc_datetime(&dt).timestamp_micros())
            .unwrap_or(i64::MIN)
    }

    /// First microsecond after the month (exclusive end).
    pub fn end_micros(self) -> i64 {
        self.next().start_micros()
    }

    /// Parse `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Self> {
        let (y, m) = s.split_once('-')?;
        Month::new(y.parse().ok()?, m.parse().ok()?)
    }
}

impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_of_timestamps_and_bounds() {
        // 2024-02-29T23:59:59.999999Z is still February; one microsecond later is March.
        let feb_end = 1_709_251_199_999_999_i64;
        assert_eq!(Month::of_micros(feb_end).to_string(), "2024-02");
        assert_eq!(Month::of_micros(feb_end + 1).to_string(), "2024-03");
        let feb = Month::parse("2024-02").unwrap();
        assert_eq!(feb.end_micros(), feb_end + 1);
        assert_eq!(feb.next().start_micros(), feb_end + 1);
        assert_eq!(
            Month::parse("2023-12").unwrap().next().to_string(),
            "2024-01"
        );
        assert_eq!(Month::of_micros(-1).to_string(), "1969-12");
        assert!(Month::parse("2024-13").is_none());
    }
}
