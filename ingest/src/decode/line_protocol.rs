//! InfluxDB line protocol:
//! `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//! Measurement = table. Field values: floats (`1.5`, `-2e3`, `7`), integers (`7i`),
//! unsigned (`7u`, stored as integer), booleans (`t`, `true`, `F`, ...), strings (`"..."`).
//! Escapes: `\,` `\ ` `\=` in names and tag values; `\"` and `\\` in strings. Lines
//! starting with `#` and blank lines are ignored. Timestamps are in the configured
//! precision (default nanoseconds) and stored with microsecond precision.

use wattdb_storage::{FieldValue, Row};

use super::{DecodeError, Decoded, TableRow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    Nanoseconds,
    Microseconds,
    Milliseconds,
    Seconds,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ns" | "n" => Precision::Nanoseconds,
            "us" | "u" => Precision::Microseconds,
            "ms" => Precision::Milliseconds,
            "s" => Precision::Seconds,
            _ => return None,
        })
    }

    fn to_micros(self, v: i64) -> Option<i64> {
        match self {
            Precision::Nanoseconds => Some(v.div_euclid(1000)),
            Precision::Microseconds => Some(v),
            Precision::Milliseconds => v.checked_mul(1000),
            Precision::Seconds => v.checked_mul(1_000_000),
        }
    }
}

/// Decode a payload of one or more lines. `now_micros` is used for lines without a
/// timestamp.
pub fn decode(payload: &[u8], precision: Precision, now_micros: i64) -> Decoded {
    let mut out = Decoded::default();
    let text = match std::str::from_utf8(payload) {
        Ok(t) => t,
        Err(e) => {
            out.errors
                .push(DecodeError::whole(format!("payload is not UTF-8: {e}")));
            return out;
        }
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line, precision, now_micros) {
            Ok(row) => out.rows.push(row),
            Err(reason) => out.errors.push(DecodeError::at(n + 1, reason)),
        }
    }
    out
}

/// Split `s` at unescaped occurrences of `sep` outside double quotes.
fn split_unescaped(s: &str, sep: char, respect_quotes: bool) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    let mut quoted = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '"' if respect_quotes => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | ' ' | '=' | '\\' | '"')) => out.push(n),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_key_value(kv: &str) -> Result<(String, &str), String> {
    let parts = split_unescaped(kv, '=', true);
    match parts.as_slice() {
        [k, v] if !k.is_empty() => Ok((unescape(k), v)),
        _ => Err(format!("expected key=value, got \"{kv}\"")),
    }
}

fn parse_field_value(v: &str) -> Result<FieldValue, String> {
    if let Some(s) = v.strip_prefix('"') {
        let inner = s
            .strip_suffix('"')
            .ok_or_else(|| format!("unterminated string {v}"))?;
        return Ok(FieldValue::Text(unescape(inner)));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(FieldValue::Boolean(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(FieldValue::Boolean(false)),
        _ => {}
    }
    if let Some(i) = v.strip_suffix('i') {
        return i
            .parse::<i64>()
            .map(FieldValue::Integer)
            .map_err(|_| format!("bad integer {v}"));
    }
    if let Some(u) = v.strip_suffix('u') {
        let n = u
            .parse::<u64>()
            .map_err(|_| format!("bad unsigned integer {v}"))?;
        return i64::try_from(n)
            .map(FieldValue::Integer)
            .map_err(|_| format!("unsigned integer {v} is larger than a bigint"));
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok(FieldValue::Float(f)),
        _ => Err(format!("bad field value {v}")),
    }
}

fn parse_line(line: &str, precision: Precision, now_micros: i64) -> Result<TableRow, String> {
    let sections = split_unescaped(line, ' ', true);
    let sections: Vec<&str> = sections.into_iter().filter(|s| !s.is_empty()).collect();
    let (series, fields, ts) = match sections.as_slice() {
        [s, f] => (*s, *f, None),
        [s, f, t] => (*s, *f, Some(*t)),
        _ => return Err("expected \"measurement[,tags] fields [timestamp]\"".into()),
    };
    let mut series_parts = split_unescaped(series, ',', false).into_iter();
    let table = unescape(series_parts.next().unwrap_or(""));
    if table.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags = Vec::new();
    for kv in series_parts {
        let (k, v) = parse_key_value(kv)?;
        tags.push((k, unescape(v)));
    }
    let mut out_fields = Vec::new();
    for kv in split_unescaped(fields, ',', true) {
        let (k, v) = parse_key_value(kv)?;
        out_fields.push((k, parse_field_value(v)?));
    }
    if out_fields.is_empty() {
        return Err("no fields".into());
    }
    let ts = match ts {
        None => now_micros,
        Some(t) => {
            let raw: i64 = t.parse().map_err(|_| format!("bad timestamp {t}"))?;
            precision
                .to_micros(raw)
                .ok_or_else(|| format!("timestamp {t} out of range"))?
        }
    };
    Ok(TableRow {
        table,
        row: Row {
            ts,
            tags,
            fields: out_fields,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> TableRow {
        let d = decode(line.as_bytes(), Precision::Nanoseconds, 42);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.rows.len(), 1);
        d.rows.into_iter().next().unwrap()
    }

    #[test]
    fn types_tags_and_timestamp() {
        let r = one(
            "electric,pid=p1,site=s\\ 1 ua=221.5,n=3i,u=4u,ok=t,note=\"a \\\"b\\\", c\" 1700000000123456789",
        );
        assert_eq!(r.table, "electric");
        assert_eq!(r.row.ts, 1_700_000_000_123_456);
        assert_eq!(
            r.row.tags,
            vec![("pid".into(), "p1".into()), ("site".into(), "s 1".into())]
        );
        assert_eq!(
            r.row.fields,
            vec![
                ("ua".into(), FieldValue::Float(221.5)),
                ("n".into(), FieldValue::Integer(3)),
                ("u".into(), FieldValue::Integer(4)),
                ("ok".into(), FieldValue::Boolean(true)),
                ("note".into(), FieldValue::Text("a \"b\", c".into())),
            ]
        );
    }

    #[test]
    fn escapes_in_measurement_and_keys() {
        let r = one("my\\,table,ta\\=g=v\\,1 fi\\ eld=1 10");
        assert_eq!(r.table, "my,table");
        assert_eq!(r.row.tags, vec![("ta=g".into(), "v,1".into())]);
        assert_eq!(r.row.fields[0].0, "fi eld");
    }

    #[test]
    fn missing_timestamp_uses_arrival_time_and_precision_applies() {
        assert_eq!(one("m v=1").row.ts, 42);
        let d = decode(b"m v=1 1700000000", Precision::Seconds, 0);
        assert_eq!(d.rows[0].row.ts, 1_700_000_000_000_000);
        let d = decode(b"m v=1 1700000000123", Precision::Milliseconds, 0);
        assert_eq!(d.rows[0].row.ts, 1_700_000_000_123_000);
    }

    #[test]
    fn bad_lines_are_reported_and_good_ones_kept() {
        let payload = b"# comment\nm v=1 1\n\nm v= 2\nm v=\"open 3\nm,t=x 4\nm v=1i2 5\nm v=2 6";
        let d = decode(payload, Precision::Nanoseconds, 0);
        assert_eq!(d.rows.len(), 2);
        let lines: Vec<Option<usize>> = d.errors.iter().map(|e| e.item).collect();
        assert_eq!(lines, vec![Some(4), Some(5), Some(6), Some(7)]);
    }

    #[test]
    fn not_utf8_is_one_error() {
        let d = decode(&[0xff, 0xfe], Precision::Nanoseconds, 0);
        assert!(d.rows.is_empty());
        assert_eq!(d.errors.len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode(&bytes, Precision::Nanoseconds, 0);
        }

        #[test]
        fn random_text_never_panics(s in "[a-z,= \\\\\"0-9.ietf\\n-]{0,80}") {
            let _ = decode(s.as_bytes(), Precision::Milliseconds, 0);
        }
    }
}
