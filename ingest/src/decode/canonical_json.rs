//! The canonical JSON payload on topic `wattdb/<table>`: one object or an array of
//! objects `{"ts": <epoch ms | RFC 3339>, "tags": {...}, "fields": {...}}`.
//!
//! - `ts` is required: a number of milliseconds since the epoch or an RFC 3339 string.
//! - Tag values must be strings; numbers and booleans are accepted and written as text.
//! - Field values: numbers become double precision (JSON does not say int vs float, and a
//!   meter reading `230` must not fix a column as integer before `230.5` arrives),
//!   booleans boolean, strings text; `null` is skipped; nested objects are flattened with
//!   `_` (`{"energy": {"total": 1}}` → `energy_total`); arrays are refused.

use serde_json::{Map, Value};
use wattdb_storage::{FieldValue, Row};

use super::{DecodeError, Decoded, TableRow};

pub fn decode(table: &str, payload: &[u8]) -> Decoded {
    decode_items(table, payload, decode_item)
}

/// Decode a JSON payload holding one item or an array of items, turning each item into a
/// row with `item_to_row`; a bad item is reported with its array index.
pub fn decode_items(
    table: &str,
    payload: &[u8],
    mut item_to_row: impl FnMut(Value) -> Result<Row, String>,
) -> Decoded {
    let mut out = Decoded::default();
    let value: Value = match serde_json::from_slice(payload) {
        Ok(v) => v,
        Err(e) => {
            out.errors
                .push(DecodeError::whole(format!("invalid JSON: {e}")));
            return out;
        }
    };
    let items = match value {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Some(i), v))
            .collect(),
        other => vec![(None, other)],
    };
    for (i, item) in items {
        match item_to_row(item) {
            Ok(row) => out.rows.push(TableRow {
                table: table.to_string(),
                row,
            }),
            Err(reason) => out.errors.push(DecodeError { item: i, reason }),
        }
    }
    out
}

/// Milliseconds since the epoch (number) or RFC 3339 (string) → microseconds.
pub fn parse_ts(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => {
            if let Some(ms) = n.as_i64() {
                ms.checked_mul(1000)
                    .ok_or_else(|| format!("ts {n} out of range"))
            } else if let Some(ms) = n.as_f64().filter(|f| f.is_finite()) {
                let us = (ms * 1000.0).round();
                if us.abs() < 9.2e18 {
                    Ok(us as i64)
                } else {
                    Err(format!("ts {n} out of range"))
                }
            } else {
                Err(format!("ts {n} is not a number of milliseconds"))
            }
        }
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_micros())
            .map_err(|e| format!("ts \"{s}\" is not RFC 3339: {e}")),
        other => Err(format!(
            "ts must be epoch milliseconds or an RFC 3339 string, got {other}"
        )),
    }
}

fn decode_item(item: Value) -> Result<Row, String> {
    let Value::Object(mut obj) = item else {
        return Err("expected an object with ts, tags and fields".into());
    };
    let ts = parse_ts(obj.get("ts").ok_or("missing ts")?)?;
    let mut tags = Vec::new();
    match obj.remove("tags") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            for (k, v) in t {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(format!("tag \"{k}\" must be a string, got {other}")),
                };
                tags.push((k, v));
            }
        }
        Some(other) => return Err(format!("tags must be an object, got {other}")),
    }
    let mut fields = Vec::new();
    match obj.remove("fields") {
        Some(Value::Object(f)) => flatten_fields("", f, Arrays::Refuse, &mut fields)?,
        Some(other) => return Err(format!("fields must be an object, got {other}")),
        None => return Err("missing fields".into()),
    }
    if fields.is_empty() {
        return Err("no field values".into());
    }
    Ok(Row { ts, tags, fields })
}

/// What to do with a JSON array among the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrays {
    /// Refuse the item (canonical payloads have no arrays of values).
    Refuse,
    /// Leave them out (device payloads carry history arrays such as Shelly's `by_minute`).
    Skip,
}

/// Flatten nested objects into `prefix_key` fields; `null`s are left out.
pub fn flatten_fields(
    prefix: &str,
    obj: Map<String, Value>,
    arrays: Arrays,
    out: &mut Vec<(String, FieldValue)>,
) -> Result<(), String> {
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}_{k}")
        };
        match v {
            Value::Null => {}
            Value::Bool(b) => out.push((name, FieldValue::Boolean(b))),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => out.push((name, FieldValue::Float(f))),
                _ => return Err(format!("field \"{name}\": number {n} is out of range")),
            },
            Value::String(s) => out.push((name, FieldValue::Text(s))),
            Value::Object(o) => flatten_fields(&name, o, arrays, out)?,
            Value::Array(_) if arrays == Arrays::Skip => {}
            Value::Array(_) => return Err(format!("field \"{name}\": arrays are not supported")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_array_payloads() {
        let d = decode(
            "electric",
            br#"{"ts": 1700000000123, "tags": {"pid": "p1", "ch": 2}, "fields": {"ua": 221.5, "on": true, "e": {"total": 6}}}"#,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let r = &d.rows[0];
        assert_eq!(r.table, "electric");
        assert_eq!(r.row.ts, 1_700_000_000_123_000);
        assert_eq!(
            r.row.tags,
            vec![("ch".into(), "2".into()), ("pid".into(), "p1".into())]
        );
        assert_eq!(
            r.row.fields,
            vec![
                ("e_total".into(), FieldValue::Float(6.0)),
                ("on".into(), FieldValue::Boolean(true)),
                ("ua".into(), FieldValue::Float(221.5)),
            ]
        );
        let d = decode(
            "t",
            br#"[{"ts": "2026-11-01T08:00:00+08:00", "tags": {}, "fields": {"v": 1}},
                 {"ts": "yesterday", "fields": {"v": 2}},
                 {"tags": {"a": "b"}, "fields": {"v": 3}},
                 {"ts": 5, "fields": {"v": [1]}},
                 {"ts": 6, "fields": {"v": 4, "w": null}}]"#,
        );
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0].row.ts, 1_793_491_200_000_000);
        assert_eq!(
            d.rows[1].row.fields,
            vec![("v".into(), FieldValue::Float(4.0))]
        );
        let bad: Vec<_> = d.errors.iter().map(|e| e.item).collect();
        assert_eq!(bad, vec![Some(1), Some(2), Some(3)]);
        assert!(
            d.errors[1].to_string().contains("missing ts"),
            "{}",
            d.errors[1]
        );
    }

    #[test]
    fn invalid_json_is_one_error() {
        let d = decode("t", b"{not json");
        assert!(d.rows.is_empty());
        assert!(d.errors[0].reason.starts_with("invalid JSON"));
    }

    proptest::proptest! {
        /// Every f64 a device prints (shortest round-trip form) is stored bit for bit.
        #[test]
        fn floats_round_trip_exactly(bits in proptest::prelude::any::<u64>()) {
            let v = f64::from_bits(bits);
            proptest::prop_assume!(v.is_finite());
            let text = format!(r#"{{"ts": 1, "fields": {{"v": {v:?}}}}}"#);
            let d = decode("t", text.as_bytes());
            let expected: f64 = format!("{v:?}").parse().unwrap();
            match &d.rows[0].row.fields[0].1 {
                FieldValue::Float(got) => proptest::prop_assert_eq!(got.to_bits(), expected.to_bits()),
                other => proptest::prop_assert!(false, "not a float: {other:?}"),
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode("t", &bytes);
        }
    }
}
