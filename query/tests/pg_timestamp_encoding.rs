//! The patched arrow-pg timestamp encoder (vendor/arrow-pg/src/timestamp.rs): its
//! hand-written ISO text must equal what chrono computes for the same instant, in the
//! form PostgreSQL prints (`2026-11-27 20:12:15.5+08`), and its binary form must be
//! PostgreSQL's (UTC microseconds since 2000-01-01).

use std::sync::Arc;

use arrow::array::{Array, TimestampMicrosecondArray, TimestampNanosecondArray};
use arrow::datatypes::TimeUnit;
use arrow_pg::timestamp::{PgTimestamp, timestamp_value};
use bytes::BytesMut;
use chrono::{DateTime, FixedOffset, TimeZone};
use pgwire::api::Type;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::ToSql;

fn value(arr: &dyn Array, idx: usize, unit: TimeUnit, zone: Option<&str>) -> PgTimestamp {
    let zone: Option<Arc<str>> = zone.map(Arc::from);
    timestamp_value(arr, idx, &unit, zone.as_ref())
        .expect("encodable")
        .expect("not null")
}

fn text(ts: PgTimestamp, ty: &Type, date_style: &str) -> String {
    let mut out = BytesMut::new();
    let mut options = FormatOptions::default();
    options.date_style = date_style.to_string();
    ts.to_sql_text(ty, &mut out, &options).expect("text");
    String::from_utf8(out.to_vec()).expect("utf-8")
}

/// PostgreSQL's ISO output computed independently with chrono: fraction without
/// trailing zeros, offset as `+HH` or `+HH:MM`.
fn expected_iso(micros: i64, offset_secs: Option<i32>) -> String {
    let utc = DateTime::from_timestamp_micros(micros).expect("in range");
    let offset = FixedOffset::east_opt(offset_secs.unwrap_or(0)).expect("offset");
    let local = offset.from_utc_datetime(&utc.naive_utc());
    let mut s = local.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = local.format("%6f").to_string();
    let frac = frac.trim_end_matches('0');
    if !frac.is_empty() {
        s.push('.');
        s.push_str(frac);
    }
    if let Some(secs) = offset_secs {
        s.push(if secs < 0 { '-' } else { '+' });
        let abs = secs.unsigned_abs();
        s.push_str(&format!("{:02}", abs / 3600));
        if abs % 3600 != 0 {
            s.push_str(&format!(":{:02}", abs / 60 % 60));
        }
    }
    s
}

#[test]
fn iso_text_agrees_with_chrono_over_the_calendar() {
    // Every ~97 days and an odd number of microseconds from year 1 to 9999, both signs
    // of the Unix epoch, with and without a zone.
    let mut micros: i64 = -62_135_596_800_000_000 + 86_400_000_000; // 0001-01-02
    let step: i64 = 97 * 86_400_000_000 + 3_723_000_017;
    let end: i64 = 253_402_214_400_000_000 - 86_400_000_000; // 9999-12-31
    let mut checked = 0;
    while micros < end {
        let arr = TimestampMicrosecondArray::from(vec![micros]);
        let naive = value(&arr, 0, TimeUnit::Microsecond, None);
        assert_eq!(
            text(naive, &Type::TIMESTAMP, "ISO, MDY"),
            expected_iso(micros, None),
            "{micros}"
        );
        let shanghai = value(&arr, 0, TimeUnit::Microsecond, Some("+08:00"));
        assert_eq!(
            text(shanghai, &Type::TIMESTAMPTZ, "ISO, MDY"),
            expected_iso(micros, Some(8 * 3600)),
            "{micros}"
        );
        micros += step;
        checked += 1;
    }
    assert!(checked > 30_000);
}

#[test]
fn offsets_and_fractions_print_as_postgresql_does() {
    // 2026-11-27 12:12:15.5 UTC
    let arr = TimestampMicrosecondArray::from(vec![1_795_781_535_500_000, 0, -1]);
    let at = |idx, zone| value(&arr, idx, TimeUnit::Microsecond, zone);
    assert_eq!(
        text(at(0, Some("Asia/Shanghai")), &Type::TIMESTAMPTZ, "ISO"),
        "2026-11-27 20:12:15.5+08"
    );
    assert_eq!(
        text(at(0, Some("UTC")), &Type::TIMESTAMPTZ, "ISO"),
        "2026-11-27 12:12:15.5+00"
    );
    assert_eq!(
        text(at(0, Some("America/St_Johns")), &Type::TIMESTAMPTZ, "ISO"),
        "2026-11-27 08:42:15.5-03:30"
    );
    assert_eq!(
        text(at(1, Some("Asia/Kathmandu")), &Type::TIMESTAMPTZ, "ISO"),
        "1970-01-01 05:30:00+05:30"
    );
    assert_eq!(
        text(at(2, None), &Type::TIMESTAMP, "ISO"),
        "1969-12-31 23:59:59.999999"
    );
}

#[test]
fn named_zones_follow_daylight_saving() {
    let arr = TimestampMicrosecondArray::from(vec![
        1_767_225_600_000_000, // 2026-01-01 00:00 UTC: CET
        1_782_864_000_000_000, // 2026-07-01 00:00 UTC: CEST
    ]);
    let winter = value(&arr, 0, TimeUnit::Microsecond, Some("Europe/Berlin"));
    let summer = value(&arr, 1, TimeUnit::Microsecond, Some("Europe/Berlin"));
    assert_eq!(
        text(winter, &Type::TIMESTAMPTZ, "ISO"),
        "2026-01-01 01:00:00+01"
    );
    assert_eq!(
        text(summer, &Type::TIMESTAMPTZ, "ISO"),
        "2026-07-01 02:00:00+02"
    );
}

#[test]
fn binary_is_utc_micros_since_2000_whatever_the_zone() {
    let arr = TimestampNanosecondArray::from(vec![946_684_801_500_000_999]);
    let ts = value(&arr, 0, TimeUnit::Nanosecond, Some("Asia/Shanghai"));
    let mut out = BytesMut::new();
    ts.to_sql(&Type::TIMESTAMPTZ, &mut out).expect("binary");
    assert_eq!(out.as_ref(), 1_500_000_i64.to_be_bytes());
}

#[test]
fn other_date_styles_and_nulls() {
    let arr = TimestampMicrosecondArray::from(vec![Some(0), None]);
    let epoch = value(&arr, 0, TimeUnit::Microsecond, None);
    assert_eq!(
        text(epoch, &Type::TIMESTAMP, "German, DMY"),
        "01.01.1970 00:00:00.000000"
    );
    let null = timestamp_value(&arr, 1, &TimeUnit::Microsecond, None).expect("ok");
    assert!(null.is_none());
}
