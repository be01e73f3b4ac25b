//! The fast path of the canonical JSON decoder: valid, flat payloads (the common case)
//! are deserialized straight into rows, without building a `serde_json::Value` tree
//! (a BTreeMap per object), which was the main cost of ingesting batched messages.
//!
//! It accepts exactly the payloads the general decoder accepts without error *and* whose
//! `fields` hold no nested objects, and produces the same rows (tags and fields sorted by
//! name, a repeated key keeping its last value — what the general decoder's sorted maps
//! give). On anything else it returns `None` and the caller uses the general decoder,
//! which reports per-item errors and flattens nested objects.

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use wattdb_storage::{FieldValue, Row};

use super::canonical_json::parse_ts;

/// Rows of a payload of one item or an array of items, or None (use the general path).
pub fn decode(payload: &[u8]) -> Option<Vec<Row>> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let rows = de.deserialize_any(Payload).ok()?;
    de.end().ok()?;
    Some(rows)
}

struct Payload;

impl<'de> Visitor<'de> for Payload {
    type Value = Vec<Row>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item or an array of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Row>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(ItemSeed)? {
            rows.push(row);
        }
        Ok(rows)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<Row>, A::Error> {
        Ok(vec![ItemVisitor.visit_map(map)?])
    }
}

struct ItemSeed;

impl<'de> DeserializeSeed<'de> for ItemSeed {
    type Value = Row;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Row, D::Error> {
        d.deserialize_map(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Row;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with ts, tags and fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Row, A::Error> {
        let mut ts = None;
        let mut tags = Vec::new();
        let mut fields = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Ts => ts = Some(map.next_value::<TsValue>()?.0),
                Key::Tags => tags = map.next_value::<Tags>()?.0,
                Key::Fields => fields = Some(map.next_value::<Fields>()?.0),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let ts = parse_ts(&ts.ok_or_else(|| de::Error::custom("missing ts"))?)
            .map_err(de::Error::custom)?;
        let fields = fields.ok_or_else(|| de::Error::custom("missing fields"))?;
        if fields.is_empty() {
            return Err(de::Error::custom("no field values"));
        }
        Ok(Row { ts, tags, fields })
    }
}

/// A key of an item, matched without allocating.
pub(super) enum Key {
    Ts,
    Tags,
    Fields,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(match v {
                    "ts" => Key::Ts,
                    "tags" => Key::Tags,
                    "fields" => Key::Fields,
                    _ => Key::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

/// Sort by name and keep the last value of a repeated name.
fn sorted_last_wins<V>(mut entries: Vec<(String, V)>) -> Vec<(String, V)> {
    entries.reverse();
    entries.sort_by(|a, b| a.0.cmp(&b.0)); // stable: the last occurrence comes first
    entries.dedup_by(|later, kept| later.0 == kept.0);
    entries
}

/// `ts` as the JSON value the general decoder would see.
pub(super) struct TsValue(pub(super) Value);

impl<'de> de::Deserialize<'de> for TsValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TsValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TsValue, E> {
                Ok(TsValue(Value::Number(v.into())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TsValue, E> {
                Ok(TsValue(Value::Number(v.into())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TsValue, E> {
                Number::from_f64(v)
                    .map(|n| TsValue(Value::Number(n)))
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TsValue, E> {
                Ok(TsValue(Value::String(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

struct Tags(Vec<(String, String)>);

impl<'de> de::Deserialize<'de> for Tags {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tags;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of tags or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Tags, E> {
                Ok(Tags(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
                let mut tags = Vec::with_capacity(map.size_hint().unwrap_or(2));
                while let Some((k, v)) = map.next_entry::<String, TagValue>()? {
                    tags.push((k, v.0));
                }
                Ok(Tags(sorted_last_wins(tags)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A tag value: strings as they are, numbers and booleans as the text JSON gives them.
pub(super) struct TagValue(pub(super) String);

impl<'de> de::Deserialize<'de> for TagValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TagValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<TagValue, E> {
                Ok(TagValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TagValue, E> {
                Ok(TagValue(Number::from(v).to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TagValue, E> {
                Ok(TagValue(Number::from(v).to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TagValue, E> {
                Number::from_f64(v)
                    .map(|n| TagValue(n.to_string()))
                    .ok_or_else(|| E::custom("not a finite number"))
            }
        }
        d.deserialize_any(V)
    }
}

struct Fields(Vec<(String, FieldValue)>);

impl<'de> de::Deserialize<'de> for Fields {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of field values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields, A::Error> {
                let mut fields: Vec<(String, Option<FieldValue>)> =
                    Vec::with_capacity(map.size_hint().unwrap_or(10));
                while let Some((k, v)) = map.next_entry::<String, FieldScalar>()? {
                    fields.push((k, v.0));
                }
                // A null is left out, but it still replaces an earlier value of its name.
                let fields = sorted_last_wins(fields)
                    .into_iter()
                    .filter_map(|(k, v)| v.map(|v| (k, v)))
                    .collect();
                Ok(Fields(fields))
            }
        }
        d.deserialize_map(V)
    }
}

/// A flat field value (nested objects and arrays are left to the general decoder).
pub(super) struct FieldScalar(pub(super) Option<FieldValue>);

impl<'de> de::Deserialize<'de> for FieldScalar {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FieldScalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, string, boolean or null")
            }
            fn visit_unit<E: de::Error>(self) -> Result<FieldScalar, E> {
                Ok(FieldScalar(None))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<FieldScalar, E> {
                Ok(FieldScalar(Some(FieldValue::Boolean(v))))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FieldScalar, E> {
                Ok(FieldScalar(Some(FieldValue::Float(v as f64))))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FieldScalar, E> {
                Ok(FieldScalar(Some(FieldValue::Float(v as f64))))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<FieldScalar, E> {
                if v.is_finite() {
                    Ok(FieldScalar(Some(FieldValue::Float(v))))
                } else {
                    Err(E::custom("not a finite number"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldScalar, E> {
                Ok(FieldScalar(Some(FieldValue::Text(v.to_string()))))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<FieldScalar, E> {
                Ok(FieldScalar(Some(FieldValue::Text(v))))
            }
        }
        d.deserialize_any(V)
    }
}
