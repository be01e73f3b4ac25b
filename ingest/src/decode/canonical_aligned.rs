//! Canonical JSON read straight into an existing table's columns: rows come out aligned
//! to the [`TableDef`] (what storage's validation would produce), with no field-name
//! strings allocated and no second pass. This is the path of a device publishing to a
//! table that already has all its columns — nearly every message once a fleet is running.
//!
//! It gives exactly `validate_row(def, row)` for each row the general decoder produces,
//! and only for payloads where that succeeds for every row; on anything else (a new
//! field, an unknown tag, a type conflict, an error, a nested object) it returns `None`
//! and the caller takes the general path, which grows the table or reports the errors.

use std::fmt;

use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use wattdb_storage::{FieldValue, TableDef, ValidRow};

use super::canonical_fast::{FieldScalar, Key, TagValue, TsValue};
use super::canonical_json::parse_ts;

/// Rows of a payload of one item or an array of items aligned to `def`, or None (use the
/// general path: also for rows in expired months, which it refuses one by one).
pub fn decode(def: &TableDef, payload: &[u8]) -> Option<Vec<ValidRow>> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let rows: Vec<ValidRow> = de.deserialize_any(Payload(def)).ok()?;
    de.end().ok()?;
    // Rows for a month retention has dropped are refused item by item there.
    if rows.iter().any(|r| def.is_expired(r.ts)) {
        return None;
    }
    Some(rows)
}

struct Payload<'d>(&'d TableDef);

impl<'de> Visitor<'de> for Payload<'_> {
    type Value = Vec<ValidRow>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item or an array of items")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<ValidRow>, A::Error> {
        let mut rows = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(row) = seq.next_element_seed(Item(self.0))? {
            rows.push(row);
        }
        Ok(rows)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Vec<ValidRow>, A::Error> {
        Ok(vec![Item(self.0).visit_map(map)?])
    }
}

#[derive(Clone, Copy)]
struct Item<'d>(&'d TableDef);

impl<'de> DeserializeSeed<'de> for Item<'_> {
    type Value = ValidRow;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ValidRow, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = ValidRow;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with ts, tags and fields")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ValidRow, A::Error> {
        let def = self.0;
        let mut ts = None;
        let mut tags = None;
        let mut fields = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Ts => ts = Some(map.next_value::<TsValue>()?.0),
                Key::Tags => tags = Some(map.next_value_seed(Tags(def))?),
                Key::Fields => fields = Some(map.next_value_seed(Fields(def))?),
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let ts = parse_ts(&ts.ok_or_else(|| de::Error::custom("missing ts"))?)
            .map_err(de::Error::custom)?;
        let mut fields: Vec<Option<FieldValue>> =
            fields.ok_or_else(|| de::Error::custom("missing fields"))?;
        // Trailing nulls are left out, as validation does.
        while matches!(fields.last(), Some(None)) {
            fields.pop();
        }
        if fields.is_empty() {
            return Err(de::Error::custom("no field values"));
        }
        Ok(ValidRow {
            ts,
            tags: tags.unwrap_or_else(|| vec![String::new(); def.tags.len()]),
            fields,
        })
    }
}

/// The tags object as the table's tag columns (missing ones empty, the last of a
/// repeated key wins); an unknown tag name fails.
struct Tags<'d>(&'d TableDef);

impl<'de> DeserializeSeed<'de> for Tags<'_> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tags<'_> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of tags or null")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Vec<String>, E> {
        Ok(vec![String::new(); self.0.tags.len()])
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<String>, A::Error> {
        let mut tags = vec![String::new(); self.0.tags.len()];
        let mut cursor = self.0.cursor();
        while let Some(name) = map.next_key::<ColumnName>()? {
            let i = cursor
                .tag(&name.0)
                .ok_or_else(|| de::Error::custom("not a tag of the table"))?;
            tags[i] = map.next_value::<TagValue>()?.0;
        }
        Ok(tags)
    }
}

/// The fields object as the table's field columns, each converted to its column's type;
/// an unknown name or a type that does not fit fails.
struct Fields<'d>(&'d TableDef);

impl<'de> DeserializeSeed<'de> for Fields<'_> {
    type Value = Vec<Option<FieldValue>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        d: D,
    ) -> Result<Vec<Option<FieldValue>>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = Vec<Option<FieldValue>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of field values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let def = self.0;
        let mut fields: Vec<Option<FieldValue>> = vec![None; def.fields.len()];
        let mut cursor = def.cursor();
        while let Some(name) = map.next_key::<ColumnName>()? {
            let i = cursor
                .field(&name.0)
                .ok_or_else(|| de::Error::custom("not a field of the table"))?;
            // A null clears an earlier value of the same name, as in the general decoder.
            fields[i] = match map.next_value::<FieldScalar>()?.0 {
                None => None,
                Some(v) => Some(
                    v.coerce_to(def.fields[i].field_type)
                        .ok_or_else(|| de::Error::custom("type does not fit the column"))?,
                ),
            };
        }
        Ok(fields)
    }
}

/// A column name, borrowed from the payload when it has no escapes.
struct ColumnName<'de>(std::borrow::Cow<'de, str>);

impl<'de> de::Deserialize<'de> for ColumnName<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ColumnName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(ColumnName(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(ColumnName(std::borrow::Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use wattdb_storage::{FieldDef, FieldType, TableId, validate_row};

    use super::*;
    use crate::decode::canonical_json::decode_general;
    use crate::decode::canonical_json::tests::canonical_payload;

    /// Columns named like the generated payloads' keys, one of each type.
    fn def() -> TableDef {
        let f = |n: &str, t| FieldDef {
            name: n.into(),
            field_type: t,
        };
        TableDef::new(
            TableId(7),
            "t",
            vec!["a".into(), "b".into()],
            vec![
                f("c", FieldType::Float),
                f("ab", FieldType::Float),
                f("_", FieldType::Text),
                f("c_", FieldType::Boolean),
                f("bc", FieldType::Integer),
                f("a_", FieldType::Float),
                f("cc", FieldType::Float),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_meter_reading_is_read_into_columns() {
        let def = def();
        let payload = br#"[{"ts":1700000000000,"tags":{"b":"m2","a":"x"},"fields":{"c":230.5,"ab":7,"_":"ok","c_":true}},
                          {"ts":"2026-11-25T10:00:00Z","fields":{"cc":1.5,"c":null}}]"#;
        let rows = decode(&def, payload).expect("aligned");
        let general = decode_general("t", payload);
        assert!(general.errors.is_empty());
        let expected: Vec<ValidRow> = general
            .rows
            .into_iter()
            .map(|r| validate_row(&def, r.row).unwrap())
            .collect();
        assert_eq!(rows, expected);
        assert_eq!(rows[0].tags, vec!["x".to_string(), "m2".to_string()]);
        assert_eq!(rows[1].fields.len(), 7); // up to the last non-null column
    }

    #[test]
    fn anything_the_table_cannot_take_goes_to_the_general_path() {
        let def = def();
        for payload in [
            r#"{"ts":1,"fields":{"new_field":1}}"#,
            r#"{"ts":1,"tags":{"zone":"x"},"fields":{"c":1}}"#,
            r#"{"ts":1,"fields":{"bc":1.5}}"#,
            r#"{"ts":1,"fields":{"c":"text"}}"#,
            r#"{"ts":1,"fields":{"c":null}}"#,
            r#"{"ts":1,"fields":{"c":{"nested":1}}}"#,
            r#"{"fields":{"c":1}}"#,
            r#"{"ts":1,"fields":{"c":1}} trailing"#,
        ] {
            assert_eq!(decode(&def, payload.as_bytes()), None, "{payload}");
        }
    }

    proptest::proptest! {
        /// Whenever the aligned path answers, it answers exactly what the general decoder
        /// followed by storage's validation gives.
        #[test]
        fn aligned_path_agrees_with_decode_then_validate(payload in canonical_payload()) {
            let def = def();
            if let Some(rows) = decode(&def, payload.as_bytes()) {
                let general = decode_general("t", payload.as_bytes());
                proptest::prop_assert!(general.errors.is_empty(), "aligned path accepted {payload}: {:?}", general.errors);
                let validated: Result<Vec<ValidRow>, _> = general
                    .rows
                    .into_iter()
                    .map(|r| validate_row(&def, r.row))
                    .collect();
                let validated = validated.map_err(|e| proptest::test_runner::TestCaseError::fail(
                    format!("aligned path accepted {payload}, validation refused: {e}")))?;
                proptest::prop_assert_eq!(rows, validated, "payload {}", payload);
            }
        }
    }
}
