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
    // Valid flat payloads go straight to rows; anything else (errors to report, nested
    // fields to flatten) takes the general path below, which gives the same rows.
    if let Some(rows) = super::canonical_fast::decode(payload) {
        return Decoded {
            rows: rows
                .into_iter()
                .map(|row| TableRow {
                    table: table.to_string(),
                    row,
                })
                .collect(),
            errors: vec![],
        };
    }
    decode_general(table, payload)
}

/// The general decoder: a `serde_json::Value` tree, per-item errors, nested fields.
pub fn decode_general(table: &str, payload: &[u8]) -> Decoded {
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
pub(crate) mod tests {
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
    fn fast_path_takes_flat_payloads_and_leaves_the_rest() {
        let fast = |p: &str| super::super::canonical_fast::decode(p.as_bytes());
        for p in [
            r#"{"ts": 1700000000123, "tags": {"pid": "p1", "ch": 2}, "fields": {"ua": 221.5, "on": true}}"#,
            r#"[{"ts": "2026-11-25T10:00:00+08:00", "fields": {"b": 1, "a": null, "b": 2}}, {"ts": 5, "tags": null, "fields": {"x": "t"}, "extra": [1]}]"#,
            "[]",
        ] {
            let rows = fast(p).unwrap_or_else(|| panic!("fast path refused {p}"));
            let general: Vec<Row> = decode_general("t", p.as_bytes())
                .rows
                .into_iter()
                .map(|r| r.row)
                .collect();
            assert_eq!(rows, general, "{p}");
        }
        // Nested fields, arrays, bad types and missing keys take the general path.
        for p in [
            r#"{"ts": 1, "fields": {"e": {"total": 1}}}"#,
            r#"{"ts": 1, "fields": {"e": [1]}}"#,
            r#"{"ts": true, "fields": {"a": 1}}"#,
            r#"{"fields": {"a": 1}}"#,
            r#"{"ts": 1, "fields": {}}"#,
            r#"{"ts": 1, "tags": {"a": null}, "fields": {"a": 1}}"#,
            r#"[{"ts": 1, "fields": {"a": 1}}, 7]"#,
        ] {
            assert!(fast(p).is_none(), "fast path took {p}");
        }
    }

    #[test]
    fn invalid_json_is_one_error() {
        let d = decode("t", b"{not json");
        assert!(d.rows.is_empty());
        assert!(d.errors[0].reason.starts_with("invalid JSON"));
    }

    /// Items with random keys (some repeated), values of every JSON type, nesting, nulls.
    pub(crate) fn canonical_payload() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let scalar = prop_oneof![
            1 => Just("null".to_string()),
            2 => Just("true".to_string()),
            3 => any::<i64>().prop_map(|v| v.to_string()),
            1 => any::<u64>().prop_map(|v| v.to_string()),
            6 => (-1e12f64..1e12).prop_map(|v| format!("{v:?}")),
            2 => "[a-z\\\\\"]{0,4}".prop_map(|s| format!("\"{s}\"")),
        ];
        let value = prop_oneof![
            20 => scalar.clone(),
            1 => proptest::collection::vec(("[ab]{1,2}", scalar.clone()), 0..3).prop_map(|kv| {
                let inner: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", inner.join(","))
            }),
            1 => Just("[1,2]".to_string()),
        ];
        let ts = prop_oneof![
            1 => any::<i64>().prop_map(|v| v.to_string()),
            12 => (0i64..4_000_000_000_000).prop_map(|v| v.to_string()),
            2 => Just("\"2026-11-25T10:00:00Z\"".to_string()),
            1 => Just("\"yesterday\"".to_string()),
            1 => Just("1.5e3".to_string()),
            1 => Just("null".to_string()),
        ];
        let obj = |entries: Vec<(String, String)>| {
            let inner: Vec<String> = entries
                .iter()
                .map(|(k, v)| format!("\"{k}\":{v}"))
                .collect();
            format!("{{{}}}", inner.join(","))
        };
        let item = (
            proptest::option::weighted(0.95, ts),
            proptest::collection::vec(("[ab]", value.clone()), 0..4),
            proptest::option::weighted(
                0.95,
                proptest::collection::vec(("[a-c_]{1,2}", value), 0..6),
            ),
            any::<bool>(),
        )
            .prop_map(move |(ts, tags, fields, extra)| {
                let mut e = Vec::new();
                if let Some(ts) = ts {
                    e.push(("ts".to_string(), ts));
                }
                e.push(("tags".to_string(), obj(tags)));
                if let Some(f) = fields {
                    e.push(("fields".to_string(), obj(f)));
                }
                if extra {
                    e.push(("note".to_string(), "[{}]".to_string()));
                }
                obj(e)
            });
        proptest::prop_oneof![
            item.clone(),
            proptest::collection::vec(item, 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
        ]
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

        /// The fast path gives exactly what the general decoder gives, for any payload
        /// built from the pieces devices send (and some they should not).
        #[test]
        fn fast_path_agrees_with_the_general_decoder(payload in canonical_payload()) {
            let general = decode_general("t", payload.as_bytes());
            if let Some(rows) = super::super::canonical_fast::decode(payload.as_bytes()) {
                proptest::prop_assert!(general.errors.is_empty(), "fast path accepted {payload}: {:?}", general.errors);
                let general_rows: Vec<_> = general.rows.into_iter().map(|r| r.row).collect();
                proptest::prop_assert_eq!(rows, general_rows, "payload {}", payload);
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode("t", &bytes);
        }
    }
}
