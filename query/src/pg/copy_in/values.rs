//! The values of text and CSV COPY data: splitting a line into fields, undoing escapes
//! and quotes, and reading each type's text form as PostgreSQL does.

use std::borrow::Cow;

use super::super::copy::CopyOptions;

/// The fields of a text-format line: split at the delimiter, the NULL string recognised
/// before backslash escapes are undone. Values without escapes are borrowed.
pub(super) fn split_text<'a>(line: &'a str, o: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    line.split(o.delimiter)
        .map(|raw| (raw != o.null).then(|| unescape_text(raw)))
        .collect()
}

fn unescape_text(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\\') {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('b') => out.push('\u{8}'),
            Some('f') => out.push('\u{c}'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('v') => out.push('\u{b}'),
            Some('x') => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && chars.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                    v = v * 16 + chars.next().and_then(|c| c.to_digit(16)).unwrap_or(0);
                    n += 1;
                }
                if n == 0 {
                    out.push('x');
                } else if let Some(ch) = char::from_u32(v) {
                    out.push(ch);
                }
            }
            Some(d @ '0'..='7') => {
                let mut v = d.to_digit(8).unwrap_or(0);
                let mut n = 1;
                while n < 3 && chars.peek().is_some_and(|c| ('0'..='7').contains(c)) {
                    v = v * 8 + chars.next().and_then(|c| c.to_digit(8)).unwrap_or(0);
                    n += 1;
                }
                if let Some(ch) = char::from_u32(v) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

/// The fields of a CSV record: quoted values may hold the delimiter, line breaks and
/// (escaped) quotes; an unquoted value equal to the NULL string is NULL. A line without
/// quotes (the usual case) is split without copying its values.
pub(super) fn split_csv<'a>(line: &'a str, o: &CopyOptions) -> Vec<Option<Cow<'a, str>>> {
    if !line.contains(o.quote) {
        return line
            .split(o.delimiter)
            .map(|v| (v != o.null).then_some(Cow::Borrowed(v)))
            .collect();
    }
    let field =
        |value: String, quoted: bool| (quoted || value != o.null).then_some(Cow::Owned(value));
    let mut out = Vec::new();
    let mut value = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            if c == o.escape
                && chars
                    .peek()
                    .is_some_and(|n| *n == o.quote || *n == o.escape)
            {
                if let Some(n) = chars.next() {
                    value.push(n);
                }
            } else if c == o.quote {
                in_quotes = false;
            } else {
                value.push(c);
            }
        } else if c == o.quote {
            in_quotes = true;
            quoted = true;
        } else if c == o.delimiter {
            out.push(field(std::mem::take(&mut value), quoted));
            quoted = false;
        } else {
            value.push(c);
        }
    }
    out.push(field(value, quoted));
    out
}

pub(super) fn parse_float(v: &str) -> Option<f64> {
    let t = v.trim();
    // Numbers first, without the lower-casing the names need.
    if let Ok(f) = t.parse::<f64>()
        && f.is_finite()
    {
        return Some(f);
    }
    match t.to_ascii_lowercase().as_str() {
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        _ => None,
    }
}

pub(super) fn parse_bool(v: &str) -> Option<bool> {
    let t = v.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    let prefix_of = |word: &str| word.starts_with(t.as_str());
    match t.as_str() {
        "1" | "on" => Some(true),
        "0" | "of" | "off" => Some(false),
        _ if prefix_of("true") || prefix_of("yes") => Some(true),
        _ if prefix_of("false") || prefix_of("no") => Some(false),
        _ => None,
    }
}

/// A `timestamptz` as PostgreSQL prints and reads it: `2026-03-01 08:00:00+08`,
/// `2026-03-01T00:00:00.5Z`, `… +05:30`, `… -0330`, a date alone (midnight); without an
/// offset the time is UTC. Microseconds since the epoch.
pub(super) fn parse_timestamp(v: &str) -> Option<i64> {
    let t = v.trim();
    fast_timestamp(t.as_bytes()).or_else(|| parse_general(t))
}

/// [`parse_timestamp`] for every form it takes (chrono's format parsers).
fn parse_general(t: &str) -> Option<i64> {
    let (date, rest) = t.split_at(t.find([' ', 'T', 't']).unwrap_or(t.len()));
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let rest = rest.trim_start_matches([' ', 'T', 't']);
    if rest.is_empty() {
        return Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_micros());
    }
    // Split the time from its offset (the first '+', '-', 'Z' after the time starts).
    let at = rest.find(['+', '-', 'Z', 'z']).unwrap_or(rest.len());
    let (time, offset) = rest.split_at(at);
    let time = chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveTime::parse_from_str(time.trim(), "%H:%M"))
        .ok()?;
    let offset = offset.trim();
    let offset_secs: i64 = if offset.is_empty() || offset.eq_ignore_ascii_case("z") {
        0
    } else {
        let sign = if offset.starts_with('-') { -1 } else { 1 };
        let digits: String = offset[1..].chars().filter(|c| *c != ':').collect();
        if !digits.chars().all(|c| c.is_ascii_digit()) || digits.is_empty() {
            return None;
        }
        let (h, m, s) = match digits.len() {
            1 | 2 => (digits.parse::<i64>().ok()?, 0, 0),
            4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?, 0),
            6 => (
                digits[..2].parse().ok()?,
                digits[2..4].parse().ok()?,
                digits[4..].parse().ok()?,
            ),
            _ => return None,
        };
        sign * (h * 3600 + m * 60 + s)
    };
    let local = date.and_time(time).and_utc().timestamp_micros();
    local.checked_sub(offset_secs * 1_000_000)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (or `T` between), optionally followed by `Z`, `+HH`,
/// `+HH:MM` or `+HHMM` — what exports and PostgreSQL itself print — read without
/// parsing a format; anything else (or an invalid date) is left to the general parser.
fn fast_timestamp(b: &[u8]) -> Option<i64> {
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        let mut v = 0i64;
        for &c in part {
            if !c.is_ascii_digit() {
                return None;
            }
            v = v * 10 + i64::from(c - b'0');
        }
        Some(v)
    };
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b' ' | b'T') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month as u32, day as u32)?;
    let mut pos = 19;
    let mut micros = 0i64;
    if b.get(pos) == Some(&b'.') {
        pos += 1;
        let start = pos;
        while pos < b.len() && b[pos].is_ascii_digit() {
            pos += 1;
        }
        let n = pos - start;
        if n == 0 || n > 6 {
            return None; // more than microseconds: the general parser rounds
        }
        micros = digits(start..pos)? * 10i64.pow((6 - n) as u32);
    }
    let offset = match b.get(pos) {
        None => 0,
        Some(b'Z' | b'z') if pos + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[pos + 1..];
            let (h, m) = match rest.len() {
                2 => (digits(pos + 1..pos + 3)?, 0),
                4 => (digits(pos + 1..pos + 3)?, digits(pos + 3..pos + 5)?),
                5 if rest[2] == b':' => (digits(pos + 1..pos + 3)?, digits(pos + 4..pos + 6)?),
                _ => return None,
            };
            let secs = h * 3600 + m * 60;
            if sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let days = date
        .signed_duration_since(chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?)
        .num_days();
    let local = ((days * 24 + hour) * 60 + minute) * 60 + second;
    (local - offset).checked_mul(1_000_000)?.checked_add(micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::copy::CopyFormat;
    use crate::pg::copy_in::test_options as opts;

    #[test]
    fn text_lines_unescape_and_know_null() {
        let o = opts(CopyFormat::Text);
        assert_eq!(
            split_text("a\\tb\t\\N\tx\\\\y\\n\t\\101", &o),
            vec![
                Some("a\tb".into()),
                None,
                Some("x\\y\n".into()),
                Some("A".into())
            ]
        );
    }

    #[test]
    fn csv_quotes_hold_delimiters_and_tell_empty_from_null() {
        let o = opts(CopyFormat::Csv);
        assert_eq!(
            split_csv("m1,\"a,b\",,\"\",\"say \"\"hi\"\"\"", &o),
            vec![
                Some("m1".into()),
                Some("a,b".into()),
                None,
                Some("".into()),
                Some("say \"hi\"".into())
            ]
        );
    }

    #[test]
    fn timestamps_in_postgres_forms() {
        let t0 = 1_772_323_200_000_000_i64; // 2026-03-01 00:00:00 UTC
        for (text, want) in [
            ("2026-03-01 00:00:00+00", t0),
            ("2026-03-01 08:00:00+08", t0),
            ("2026-03-01T00:00:00Z", t0),
            ("2026-03-01 05:30:00+05:30", t0),
            ("2026-02-28 20:30:00-0330", t0),
            ("2026-03-01", t0),
            ("2026-03-01 00:00:00.5+00", t0 + 500_000),
            ("2026-03-01 00:01", t0 + 60_000_000),
            ("2026-03-01 00:00:00.123456", t0 + 123_456),
            ("2026-03-01T01:00:00+0100", t0),
            ("1969-12-31 23:59:59-00", -1_000_000),
        ] {
            assert_eq!(parse_timestamp(text), Some(want), "{text}");
        }
        // The fast path agrees with the general parser wherever it answers.
        for text in [
            "2026-03-01 08:00:00+08",
            "2024-02-29 23:59:59.5-05:30",
            "2000-01-01T00:00:00Z",
            "1900-06-15 12:00:00",
        ] {
            let fast = super::fast_timestamp(text.as_bytes());
            assert!(fast.is_some(), "{text}");
            assert_eq!(fast, parse_general(text), "{text}");
        }
        assert_eq!(super::fast_timestamp(b"2026-02-30 00:00:00"), None);
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(parse_timestamp("2026-13-01 00:00:00"), None);
    }

    #[test]
    fn booleans_and_floats_as_postgres_reads_them() {
        for (t, b) in [
            ("t", true),
            ("TRUE", true),
            ("yes", true),
            ("on", true),
            ("1", true),
            ("f", false),
            ("no", false),
            ("off", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(t), Some(b), "{t}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert_eq!(parse_float("1e-05"), Some(1e-5));
        assert_eq!(parse_float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_float("12abc"), None);
    }
}
