//! Routes map other topic layouts onto tables: a topic filter, the table, tags taken from
//! topic segments or JSON keys, and a decoder (`json`, `line`, `value`). Presets give
//! working routes for common devices (Tasmota, Shelly Gen1/Gen2, ThingsBoard-style
//! telemetry); any preset key can be overridden.
//!
//! JSON route decoding: nested objects are flattened with `_`; arrays are skipped (device
//! payloads carry history arrays such as Shelly's `by_minute`); numbers become double
//! precision; a timestamp at `ts_path` may be epoch milliseconds or an RFC 3339 string (a
//! string without offset, like Tasmota's `Time`, is taken as UTC); without `ts_path` the
//! arrival time is used.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use wattdb_storage::{FieldValue, Row};

use crate::decode::canonical_json::{Arrays, decode_items, flatten_fields};
use crate::decode::line_protocol::{self, Precision};
use crate::decode::{DecodeError, Decoded, TableRow};
use crate::topic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecoderKind {
    Json,
    Line,
    Value,
}

/// A route as written in the config file (`[[routes]]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Start from a preset: `tasmota`, `shelly_gen1`, `shelly_gen2`, `thingsboard`.
    pub preset: Option<String>,
    /// Topic filter (`+`, `#` allowed).
    pub topic: Option<String>,
    pub table: Option<String>,
    /// Tag name → topic level (0-based) it is taken from.
    #[serde(default)]
    pub topic_tags: BTreeMap<String, usize>,
    pub decoder: Option<DecoderKind>,
    /// JSON: dotted path of the timestamp (e.g. `Time`, `ts`). When the payload lacks
    /// it the arrival time is used, unless `ts_required`.
    pub ts_path: Option<String>,
    /// JSON: refuse items without a timestamp at `ts_path` (they go to `rejected`).
    pub ts_required: Option<bool>,
    /// JSON: dotted path of the object holding the values (e.g. `values`).
    pub values_path: Option<String>,
    /// JSON: keys whose values become tags instead of fields.
    #[serde(default)]
    pub tag_keys: Vec<String>,
    /// JSON: keep only these (flattened) fields.
    pub fields: Option<Vec<String>>,
    /// JSON: flattened field name → column name.
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    /// value: the column name, or...
    pub field: Option<String>,
    /// value: ...the topic level that names the column.
    pub field_segment: Option<usize>,
    /// line: timestamp precision (`ns`, `us`, `ms`, `s`).
    pub precision: Option<String>,
}

fn preset(name: &str) -> Option<RouteConfig> {
    let tags = |v: &[(&str, usize)]| v.iter().map(|(k, i)| (k.to_string(), *i)).collect();
    Some(match name {
        "tasmota" => RouteConfig {
            topic: Some("tele/+/SENSOR".into()),
            table: Some("tasmota".into()),
            topic_tags: tags(&[("device", 1)]),
            decoder: Some(DecoderKind::Json),
            ts_path: Some("Time".into()),
            ..Default::default()
        },
        "shelly_gen1" => RouteConfig {
            topic: Some("shellies/+/emeter/+/+".into()),
            table: Some("shelly_emeter".into()),
            topic_tags: tags(&[("device", 1), ("phase", 3)]),
            decoder: Some(DecoderKind::Value),
            field_segment: Some(4),
            ..Default::default()
        },
        "shelly_gen2" => RouteConfig {
            topic: Some("+/status/+".into()),
            table: Some("shelly_status".into()),
            topic_tags: tags(&[("device", 0), ("component", 2)]),
            decoder: Some(DecoderKind::Json),
            ..Default::default()
        },
        "thingsboard" => RouteConfig {
            topic: Some("thingsboard/+/telemetry".into()),
            table: Some("telemetry".into()),
            topic_tags: tags(&[("device", 1)]),
            decoder: Some(DecoderKind::Json),
            ts_path: Some("ts".into()),
            values_path: Some("values".into()),
            ..Default::default()
        },
        _ => return None,
    })
}

/// A resolved, validated route.
#[derive(Debug, Clone)]
pub struct Route {
    pub topic: String,
    pub table: String,
    pub topic_tags: BTreeMap<String, usize>,
    pub decoder: DecoderKind,
    ts_path: Option<String>,
    ts_required: bool,
    values_path: Option<String>,
    tag_keys: Vec<String>,
    fields: Option<Vec<String>>,
    rename: BTreeMap<String, String>,
    field: Option<String>,
    field_segment: Option<usize>,
    precision: Precision,
}

impl Route {
    pub fn from_config(c: RouteConfig) -> Result<Route, String> {
        let base = match &c.preset {
            Some(p) => preset(p).ok_or_else(|| {
                format!(
                    "unknown route preset \"{p}\" (tasmota, shelly_gen1, shelly_gen2, thingsboard)"
                )
            })?,
            None => RouteConfig::default(),
        };
        let topic = c.topic.or(base.topic).ok_or("a route needs a topic")?;
        if !topic::valid_filter(&topic) {
            return Err(format!(
                "route topic \"{topic}\" is not a valid MQTT topic filter"
            ));
        }
        let table = c
            .table
            .or(base.table)
            .ok_or_else(|| format!("route {topic}: needs a table"))?;
        wattdb_storage::model::schema::validate_table_name(&table)
            .map_err(|e| format!("route {topic}: {e}"))?;
        let mut topic_tags = base.topic_tags;
        topic_tags.extend(c.topic_tags);
        let decoder = c.decoder.or(base.decoder).unwrap_or(DecoderKind::Json);
        let precision = match c.precision.or(base.precision) {
            None => Precision::default(),
            Some(p) => Precision::parse(&p)
                .ok_or_else(|| format!("route {topic}: unknown precision \"{p}\""))?,
        };
        let route = Route {
            topic,
            table,
            topic_tags,
            decoder,
            ts_path: c.ts_path.or(base.ts_path),
            ts_required: c.ts_required.or(base.ts_required).unwrap_or(false),
            values_path: c.values_path.or(base.values_path),
            tag_keys: if c.tag_keys.is_empty() {
                base.tag_keys
            } else {
                c.tag_keys
            },
            fields: c.fields.or(base.fields),
            rename: if c.rename.is_empty() {
                base.rename
            } else {
                c.rename
            },
            field: c.field.or(base.field),
            field_segment: c.field_segment.or(base.field_segment),
            precision,
        };
        if route.decoder == DecoderKind::Value
            && route.field.is_none()
            && route.field_segment.is_none()
        {
            return Err(format!(
                "route {}: the value decoder needs field or field_segment",
                route.topic
            ));
        }
        Ok(route)
    }

    pub fn matches(&self, topic: &str) -> bool {
        topic::matches(&self.topic, topic)
    }

    pub fn decode(&self, topic: &str, payload: &[u8], now_micros: i64) -> Decoded {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut topic_tags = Vec::new();
        for (tag, i) in &self.topic_tags {
            match levels.get(*i) {
                Some(v) => topic_tags.push((tag.clone(), v.to_string())),
                None => {
                    return Decoded {
                        rows: vec![],
                        errors: vec![DecodeError::whole(format!(
                            "topic {topic} has no level {i} for tag {tag}"
                        ))],
                    };
                }
            }
        }
        let mut out = match self.decoder {
            DecoderKind::Line => {
                let mut d = line_protocol::decode(payload, self.precision, now_micros);
                for r in &mut d.rows {
                    r.table = self.table.clone();
                }
                d
            }
            DecoderKind::Value => self.decode_value(&levels, payload, now_micros),
            DecoderKind::Json => self.decode_json(payload, now_micros),
        };
        for r in &mut out.rows {
            r.row.tags.extend(topic_tags.iter().cloned());
        }
        out
    }

    fn decode_value(&self, levels: &[&str], payload: &[u8], now_micros: i64) -> Decoded {
        let mut out = Decoded::default();
        let name = match (&self.field, self.field_segment) {
            (Some(f), _) => f.clone(),
            (None, Some(i)) => levels.get(i).map(|s| s.to_string()).unwrap_or_default(),
            (None, None) => String::new(),
        };
        let text = match std::str::from_utf8(payload) {
            Ok(t) => t.trim(),
            Err(_) => {
                out.errors.push(DecodeError::whole("payload is not UTF-8"));
                return out;
            }
        };
        if name.is_empty() || text.is_empty() {
            out.errors
                .push(DecodeError::whole("empty value or field name"));
            return out;
        }
        let value = match text.parse::<f64>() {
            Ok(f) if f.is_finite() => FieldValue::Float(f),
            _ => match text {
                "true" => FieldValue::Boolean(true),
                "false" => FieldValue::Boolean(false),
                _ => FieldValue::Text(text.to_string()),
            },
        };
        out.rows.push(TableRow {
            table: self.table.clone(),
            row: Row {
                ts: now_micros,
                tags: vec![],
                fields: vec![(self.rename.get(&name).cloned().unwrap_or(name), value)],
            },
        });
        out
    }

    fn decode_json(&self, payload: &[u8], now_micros: i64) -> Decoded {
        decode_items(&self.table, payload, |item| {
            self.json_item(item, now_micros)
        })
    }

    fn json_item(&self, item: Value, now_micros: i64) -> Result<Row, String> {
        let Value::Object(mut obj) = item else {
            return Err("expected a JSON object".into());
        };
        let ts = match &self.ts_path {
            None => now_micros,
            Some(path) => match take_path(&mut obj, path) {
                Some(v) => parse_route_ts(&v)?,
                None if self.ts_required => return Err(format!("missing timestamp at \"{path}\"")),
                None => now_micros,
            },
        };
        let mut tags = Vec::new();
        for key in &self.tag_keys {
            if let Some(v) = take_path(&mut obj, key) {
                let v = match v {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => return Err(format!("tag \"{key}\" must be a scalar, got {other}")),
                };
                tags.push((key.replace('.', "_"), v));
            }
        }
        let values = match &self.values_path {
            Some(path) => match take_path(&mut obj, path) {
                Some(Value::Object(v)) => v,
                Some(other) => return Err(format!("\"{path}\" must be an object, got {other}")),
                None => obj, // plain {"key": value} telemetry
            },
            None => obj,
        };
        let mut fields = Vec::new();
        flatten_fields("", values, Arrays::Skip, &mut fields)?;
        if let Some(keep) = &self.fields {
            fields.retain(|(name, _)| keep.contains(name));
        }
        for (name, _) in &mut fields {
            if let Some(new) = self.rename.get(name) {
                *name = new.clone();
            }
        }
        if fields.is_empty() {
            return Err("no field values".into());
        }
        Ok(Row { ts, tags, fields })
    }
}

/// Remove and return the value at a dotted path.
fn take_path(obj: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => obj.remove(path),
        Some((head, rest)) => match obj.get_mut(head) {
            Some(Value::Object(inner)) => take_path(inner, rest),
            _ => None,
        },
    }
}

fn parse_route_ts(v: &Value) -> Result<i64, String> {
    if let Value::String(s) = v
        && chrono::DateTime::parse_from_rfc3339(s).is_err()
    {
        // Device-local time without an offset (Tasmota): taken as UTC.
        return chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
            .map(|n| n.and_utc().timestamp_micros())
            .map_err(|e| {
                format!("timestamp \"{s}\" is neither RFC 3339 nor YYYY-MM-DDTHH:MM:SS: {e}")
            });
    }
    crate::decode::canonical_json::parse_ts(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(preset: &str) -> Route {
        Route::from_config(RouteConfig {
            preset: Some(preset.into()),
            ..Default::default()
        })
        .unwrap()
    }

    fn field(row: &Row, name: &str) -> Option<FieldValue> {
        row.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    fn tag(row: &Row, name: &str) -> Option<String> {
        row.tags
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn tasmota_sensor() {
        let r = route("tasmota");
        let topic = "tele/plug-kitchen/SENSOR";
        assert!(r.matches(topic));
        let payload = br#"{"Time":"2018-02-15T17:37:10","ENERGY":{"TotalStartTime":"2018-11-14T18:39:40","Total":6.294,"Yesterday":5.340,"Today":0.954,"Period":217,"Power":2635,"ApparentPower":2650,"ReactivePower":282,"Factor":0.99,"Voltage":227,"Current":11.661}}"#;
        let d = r.decode(topic, payload, 0);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let row = &d.rows[0].row;
        assert_eq!(d.rows[0].table, "tasmota");
        assert_eq!(row.ts, 1_518_716_230_000_000); // 2018-02-15T17:37:10Z
        assert_eq!(tag(row, "device").as_deref(), Some("plug-kitchen"));
        assert_eq!(field(row, "ENERGY_Power"), Some(FieldValue::Float(2635.0)));
        assert_eq!(
            field(row, "ENERGY_Current"),
            Some(FieldValue::Float(11.661))
        );
        assert_eq!(field(row, "ENERGY_Factor"), Some(FieldValue::Float(0.99)));
        assert_eq!(
            field(row, "ENERGY_TotalStartTime"),
            Some(FieldValue::Text("2018-11-14T18:39:40".into()))
        );
        assert_eq!(row.fields.len(), 11);
    }

    #[test]
    fn shelly_gen1_one_value_per_topic() {
        let r = route("shelly_gen1");
        for (leaf, payload, expected) in [
            ("voltage", "230.35", 230.35),
            ("power", "1520.5", 1520.5),
            ("pf", "0.97", 0.97),
            ("current", "6.61", 6.61),
            ("total", "123456.7", 123456.7),
            ("total_returned", "0.0", 0.0),
        ] {
            let topic = format!("shellies/shellyem3-A1B2C3/emeter/2/{leaf}");
            assert!(r.matches(&topic));
            let d = r.decode(&topic, payload.as_bytes(), 77);
            assert!(d.errors.is_empty());
            let row = &d.rows[0].row;
            assert_eq!(row.ts, 77);
            assert_eq!(
                row.fields,
                vec![(leaf.to_string(), FieldValue::Float(expected))]
            );
            assert_eq!(tag(row, "device").as_deref(), Some("shellyem3-A1B2C3"));
            assert_eq!(tag(row, "phase").as_deref(), Some("2"));
        }
        assert!(!r.matches("shellies/x/relay/0"));
    }

    #[test]
    fn shelly_gen2_switch_status() {
        let r = route("shelly_gen2");
        let topic = "shellyplus1pm-441793d69718/status/switch:0";
        let payload = br#"{"id":0,"source":"init","output":false,"apower":0.0,"voltage":232.7,"current":0.000,"aenergy":{"total":0.000,"by_minute":[0.000,0.000,0.000],"minute_ts":1661517385},"temperature":{"tC":39.2,"tF":102.5}}"#;
        let d = r.decode(topic, payload, 5);
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let row = &d.rows[0].row;
        assert_eq!(row.ts, 5);
        assert_eq!(tag(row, "component").as_deref(), Some("switch:0"));
        assert_eq!(field(row, "voltage"), Some(FieldValue::Float(232.7)));
        assert_eq!(field(row, "output"), Some(FieldValue::Boolean(false)));
        assert_eq!(field(row, "aenergy_total"), Some(FieldValue::Float(0.0)));
        assert_eq!(field(row, "temperature_tC"), Some(FieldValue::Float(39.2)));
        assert_eq!(field(row, "aenergy_by_minute"), None, "arrays are skipped");
    }

    #[test]
    fn thingsboard_telemetry_object_array_and_plain() {
        let r = route("thingsboard");
        let topic = "thingsboard/meter-9/telemetry";
        let d = r.decode(
            topic,
            br#"{"ts":1451649600512,"values":{"voltage":229.1}}"#,
            0,
        );
        assert_eq!(d.rows[0].row.ts, 1_451_649_600_512_000);
        assert_eq!(
            d.rows[0].row.fields,
            vec![("voltage".into(), FieldValue::Float(229.1))]
        );
        let d = r.decode(
            topic,
            br#"[{"ts":1451649600512,"values":{"voltage":229.1}},{"ts":1451649660512,"values":{"voltage":230.4,"current":1.5}}]"#,
            0,
        );
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[1].row.fields.len(), 2);
        assert_eq!(tag(&d.rows[1].row, "device").as_deref(), Some("meter-9"));
        // Plain key/value telemetry without ts: arrival time, as ThingsBoard does.
        let d = r.decode(topic, br#"{"voltage":229.1}"#, 99);
        assert_eq!(d.rows[0].row.ts, 99);
        assert_eq!(
            d.rows[0].row.fields,
            vec![("voltage".into(), FieldValue::Float(229.1))]
        );
        // A route can insist on a device timestamp instead.
        let strict = Route::from_config(RouteConfig {
            preset: Some("thingsboard".into()),
            ts_required: Some(true),
            ..Default::default()
        })
        .unwrap();
        let d = strict.decode(topic, br#"{"voltage":229.1}"#, 99);
        assert!(d.rows.is_empty());
        assert!(d.errors[0].reason.contains("missing timestamp"));
    }

    #[test]
    fn custom_route_with_tag_keys_selection_and_renames() {
        let r = Route::from_config(RouteConfig {
            topic: Some("site/+/meter".into()),
            table: Some("electric".into()),
            topic_tags: [("site".to_string(), 1)].into(),
            ts_path: Some("t".into()),
            tag_keys: vec!["pid".into()],
            fields: Some(vec!["u_a".into(), "p".into()]),
            rename: [("u_a".to_string(), "ua".to_string())].into(),
            ..Default::default()
        })
        .unwrap();
        let d = r.decode(
            "site/s7/meter",
            br#"{"t":"2026-11-01T00:00:00Z","pid":"m1","u":{"a":221.0,"b":222.0},"p":3.5}"#,
            0,
        );
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        let row = &d.rows[0].row;
        assert_eq!(
            row.tags,
            vec![("pid".into(), "m1".into()), ("site".into(), "s7".into())]
        );
        assert_eq!(
            row.fields,
            vec![
                ("p".into(), FieldValue::Float(3.5)),
                ("ua".into(), FieldValue::Float(221.0))
            ]
        );
    }

    #[test]
    fn bad_configs_are_refused_with_reasons() {
        let err = |c: RouteConfig| Route::from_config(c).unwrap_err();
        assert!(
            err(RouteConfig {
                preset: Some("nope".into()),
                ..Default::default()
            })
            .contains("unknown route preset")
        );
        assert!(
            err(RouteConfig {
                topic: Some("a/#/b".into()),
                table: Some("t".into()),
                ..Default::default()
            })
            .contains("not a valid")
        );
        assert!(
            err(RouteConfig {
                topic: Some("a".into()),
                ..Default::default()
            })
            .contains("needs a table")
        );
        assert!(
            err(RouteConfig {
                topic: Some("a".into()),
                table: Some("t".into()),
                decoder: Some(DecoderKind::Value),
                ..Default::default()
            })
            .contains("field")
        );
    }

    proptest::proptest! {
        #[test]
        fn random_payloads_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            for p in ["tasmota", "shelly_gen1", "shelly_gen2", "thingsboard"] {
                let _ = route(p).decode("tele/x/SENSOR", &bytes, 0);
            }
        }
    }
}
