//! wattdb patch: timestamp values encoded without chrono's format-string machinery.
//!
//! Upstream arrow-pg 0.16.0 parses the column's time zone name and (through pgwire) a
//! strftime format string for every value it encodes; on a 10,000-row result that was
//! two thirds of the query's end-to-end time. Here the zone is parsed once per thread and
//! column and the ISO text form is written digit by digit, the way PostgreSQL prints it:
//! `2026-11-27 20:12:15.5+08`, `… 20:12:15+05:30` (fraction without trailing zeros, the
//! offset's minutes only when not zero). Other `DateStyle`s and years outside 1..=9999
//! still go through chrono.

use std::cell::RefCell;
use std::error::Error;
use std::str::FromStr;
use std::sync::Arc;

#[cfg(not(feature = "datafusion"))]
use arrow::{array::*, datatypes::*};
use bytes::{BufMut, BytesMut};
use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, TimeZone};
#[cfg(feature = "datafusion")]
use datafusion::arrow::{array::*, datatypes::*};
use pgwire::error::PgWireResult;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, Type};
use timezone::Tz;

use crate::error::ToSqlError;

/// Microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// One timestamp value: microseconds since the Unix epoch (UTC for `timestamptz`, wall
/// clock for `timestamp`) and, for `timestamptz`, the zone's offset at that instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgTimestamp {
    micros: i64,
    offset_secs: Option<i32>,
}

impl PgTimestamp {
    /// Wall-clock micros of this value in its zone (the naive value for `timestamp`).
    fn local_micros(&self) -> Option<i64> {
        self.micros
            .checked_add(i64::from(self.offset_secs.unwrap_or(0)) * 1_000_000)
    }

    fn chrono_naive(&self) -> Option<NaiveDateTime> {
        DateTime::from_timestamp_micros(self.micros).map(|d| d.naive_utc())
    }
}

thread_local! {
    /// The zone most recently parsed on this thread: a column's values share one zone.
    static LAST_ZONE: RefCell<Option<(Arc<str>, Tz)>> = const { RefCell::new(None) };
}

fn zone(name: &Arc<str>) -> Result<Tz, ToSqlError> {
    LAST_ZONE.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, tz)) = last.as_ref() {
            if Arc::ptr_eq(cached, name) || cached.as_ref() == name.as_ref() {
                return Ok(*tz);
            }
        }
        let tz = Tz::from_str(name).map_err(ToSqlError::from)?;
        *last = Some((name.clone(), tz));
        Ok(tz)
    })
}

fn to_micros(arr: &dyn Array, idx: usize, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => arr
            .as_primitive::<TimestampSecondType>()
            .value(idx)
            .saturating_mul(1_000_000),
        TimeUnit::Millisecond => arr
            .as_primitive::<TimestampMillisecondType>()
            .value(idx)
            .saturating_mul(1_000),
        TimeUnit::Microsecond => arr.as_primitive::<TimestampMicrosecondType>().value(idx),
        TimeUnit::Nanosecond => arr
            .as_primitive::<TimestampNanosecondType>()
            .value(idx)
            .div_euclid(1_000),
    }
}

/// The value at `idx` of a timestamp array, `None` when it is null.
pub fn timestamp_value(
    arr: &dyn Array,
    idx: usize,
    unit: &TimeUnit,
    timezone: Option<&Arc<str>>,
) -> PgWireResult<Option<PgTimestamp>> {
    if arr.is_null(idx) {
        return Ok(None);
    }
    let micros = to_micros(arr, idx, unit);
    let offset_secs = match timezone {
        None => None,
        Some(name) => {
            let tz = zone(name)?;
            let utc = DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| ToSqlError::from(format!("timestamp {micros} µs out of range")))?;
            Some(
                tz.offset_from_utc_datetime(&utc.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        }
    };
    Ok(Some(PgTimestamp {
        micros,
        offset_secs,
    }))
}

impl ToSql for PgTimestamp {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        // `timestamptz` travels as UTC, `timestamp` as its wall clock: both are `micros`.
        let value = self
            .micros
            .checked_sub(PG_EPOCH_MICROS)
            .ok_or("timestamp out of range for PostgreSQL")?;
        out.put_i64(value);
        Ok(IsNull::No)
    }

    postgres_types::accepts!(TIMESTAMP, TIMESTAMPTZ);
    postgres_types::to_sql_checked!();
}

fn is_iso_style(date_style: &str) -> bool {
    let style = date_style
        .split_once(',')
        .map_or(date_style, |(style, _)| style)
        .trim();
    // pgwire falls back to ISO for a style it does not know; so do we.
    !["sql", "german", "postgres"]
        .iter()
        .any(|other| style.eq_ignore_ascii_case(other))
}

impl ToSqlText for PgTimestamp {
    fn to_sql_text(
        &self,
        ty: &Type,
        out: &mut BytesMut,
        format_options: &FormatOptions,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        let fast = matches!(*ty, Type::TIMESTAMP | Type::TIMESTAMPTZ)
            && is_iso_style(&format_options.date_style);
        if fast {
            if let Some(local) = self.local_micros() {
                if write_iso(local, self.offset_secs, out) {
                    return Ok(IsNull::No);
                }
            }
        }
        // Slow path, as upstream: chrono formatting.
        let naive = self.chrono_naive().ok_or("timestamp out of range")?;
        match self.offset_secs {
            Some(secs) => {
                let offset = FixedOffset::east_opt(secs).ok_or("time zone offset out of range")?;
                offset
                    .from_utc_datetime(&naive)
                    .to_sql_text(ty, out, format_options)
            }
            None => naive.to_sql_text(ty, out, format_options),
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn push_2(buf: &mut Vec<u8>, v: u32) {
    buf.push(b'0' + (v / 10) as u8);
    buf.push(b'0' + (v % 10) as u8);
}

/// Writes `local` (wall-clock micros) in PostgreSQL's ISO form; false when the year is
/// outside 1..=9999 (left to chrono).
fn write_iso(local: i64, offset_secs: Option<i32>, out: &mut BytesMut) -> bool {
    let days = local.div_euclid(MICROS_PER_DAY);
    let in_day = local.rem_euclid(MICROS_PER_DAY);
    let (year, month, day) = civil_from_days(days);
    if !(1..=9999).contains(&year) {
        return false;
    }
    let mut buf = Vec::with_capacity(32);
    let year = year as u32;
    push_2(&mut buf, year / 100);
    push_2(&mut buf, year % 100);
    buf.push(b'-');
    push_2(&mut buf, month);
    buf.push(b'-');
    push_2(&mut buf, day);
    buf.push(b' ');
    let secs = (in_day / 1_000_000) as u32;
    let mut frac = (in_day % 1_000_000) as u32;
    push_2(&mut buf, secs / 3600);
    buf.push(b':');
    push_2(&mut buf, secs / 60 % 60);
    buf.push(b':');
    push_2(&mut buf, secs % 60);
    if frac != 0 {
        buf.push(b'.');
        let mut digits = 6;
        while frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        let start = buf.len();
        for _ in 0..digits {
            buf.push(b'0' + (frac % 10) as u8);
            frac /= 10;
        }
        buf[start..].reverse();
    }
    if let Some(offset) = offset_secs {
        buf.push(if offset < 0 { b'-' } else { b'+' });
        let abs = offset.unsigned_abs();
        push_2(&mut buf, abs / 3600);
        let (minutes, seconds) = (abs / 60 % 60, abs % 60);
        if minutes != 0 || seconds != 0 {
            buf.push(b':');
            push_2(&mut buf, minutes);
        }
        if seconds != 0 {
            buf.push(b':');
            push_2(&mut buf, seconds);
        }
    }
    out.put_slice(&buf);
    true
}
