//! PostgreSQL's binary COPY format: header, tuples of length-prefixed values in each
//! type's binary form, trailer.

use pgwire::error::PgWireError;
use wattdb_storage::{FieldType, FieldValue, ValidRow};

use super::super::sqlstate::{self, user_error};
use super::{CopyIn, ParsedRows, Target, null_key};

/// The signature that starts PostgreSQL's binary COPY data.
const BINARY_SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;

impl CopyIn {
    /// Parse the complete tuples at the start of `data` (PostgreSQL's binary COPY
    /// format: header, then per tuple a field count and each field's length and bytes in
    /// the type's binary form, then a `-1` trailer); returns how many bytes were used.
    pub(super) fn binary_tuples(
        &self,
        p: &mut ParsedRows,
        data: &[u8],
    ) -> Result<usize, PgWireError> {
        let mut at = 0;
        if p.line == 0 {
            // The header: signature, flags, extension length and extension.
            if data.len() < BINARY_SIGNATURE.len() + 8 {
                return Ok(0);
            }
            if !data.starts_with(BINARY_SIGNATURE) {
                return Err(user_error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "COPY {}: binary data does not start with the COPY signature",
                        self.def.name
                    ),
                ));
            }
            let flags = be_u32(&data[11..15]);
            if flags & (1 << 16) != 0 {
                return Err(user_error(
                    sqlstate::BAD_COPY_FILE_FORMAT,
                    format!(
                        "COPY {}: binary data with OIDs is not supported",
                        self.def.name
                    ),
                ));
            }
            let ext = be_u32(&data[15..19]) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            at = 19 + ext;
            p.line = 1;
        }
        while !p.ended {
            let Some(tuple) = data.get(at..) else { break };
            let Some(count) = tuple.get(..2).map(|b| i16::from_be_bytes([b[0], b[1]])) else {
                break;
            };
            if count == -1 {
                p.ended = true;
                at += 2;
                break;
            }
            // All of the tuple's fields, or wait for more data.
            let mut fields = Vec::with_capacity(count.max(0) as usize);
            let mut pos = 2;
            let mut complete = true;
            for _ in 0..count.max(0) {
                let Some(len) = tuple.get(pos..pos + 4).map(be_u32) else {
                    complete = false;
                    break;
                };
                pos += 4;
                if len == u32::MAX {
                    fields.push(None);
                    continue;
                }
                let len = len as usize;
                let Some(bytes) = tuple.get(pos..pos + len) else {
                    complete = false;
                    break;
                };
                fields.push(Some(bytes));
                pos += len;
            }
            if !complete {
                break;
            }
            let row = p.line;
            self.binary_row(p, row, count, &fields)?;
            p.line += 1;
            at += pos;
        }
        Ok(at)
    }

    /// One binary tuple (`row` counts from 1).
    fn binary_row(
        &self,
        p: &mut ParsedRows,
        row: u64,
        count: i16,
        values: &[Option<&[u8]>],
    ) -> Result<(), PgWireError> {
        let context = |column: Option<&str>| match column {
            Some(c) => format!("COPY {}, row {row}, column {c}", self.def.name),
            None => format!("COPY {}, row {row}", self.def.name),
        };
        if count as usize != self.targets.len() {
            return Err(user_error(
                sqlstate::BAD_COPY_FILE_FORMAT,
                format!(
                    "row field count is {count}, expected {} ({})",
                    self.targets.len(),
                    context(None)
                ),
            ));
        }
        let mut ts = None;
        let mut tags = vec![String::new(); self.def.tags.len()];
        let mut fields: Vec<Option<FieldValue>> = vec![None; self.def.fields.len()];
        for ((name, target), value) in self.targets.iter().zip(values.iter().copied()) {
            let bad = |type_name: &str, v: &[u8]| {
                user_error(
                    INVALID_BINARY_REPRESENTATION,
                    format!(
                        "{} bytes are not a binary {type_name} ({})",
                        v.len(),
                        context(Some(name))
                    ),
                )
            };
            match (target, value) {
                (Target::Ts | Target::Tag(_), None) => {
                    return Err(null_key(name, &context(Some(name))));
                }
                (Target::Ts, Some(v)) => {
                    ts = Some(binary_timestamp(v).ok_or_else(|| bad("timestamp", v))?);
                }
                (Target::Tag(i), Some(v)) => {
                    tags[*i] = String::from_utf8(v.to_vec()).map_err(|_| bad("text", v))?;
                }
                (Target::Field(..), None) => {}
                (Target::Field(i, t), Some(v)) => {
                    fields[*i] = Some(match t {
                        FieldType::Float => FieldValue::Float(match v.len() {
                            8 => f64::from_be_bytes(v.try_into().map_err(|_| bad("float8", v))?),
                            4 => f32::from_be_bytes(v.try_into().map_err(|_| bad("float4", v))?)
                                as f64,
                            _ => return Err(bad("double precision", v)),
                        }),
                        FieldType::Integer => {
                            FieldValue::Integer(match v.len() {
                                8 => i64::from_be_bytes(v.try_into().map_err(|_| bad("int8", v))?),
                                4 => i32::from_be_bytes(v.try_into().map_err(|_| bad("int4", v))?)
                                    as i64,
                                2 => i16::from_be_bytes(v.try_into().map_err(|_| bad("int2", v))?)
                                    as i64,
                                _ => return Err(bad("bigint", v)),
                            })
                        }
                        FieldType::Boolean => match v {
                            [b] => FieldValue::Boolean(*b != 0),
                            _ => return Err(bad("boolean", v)),
                        },
                        FieldType::Text => FieldValue::Text(
                            String::from_utf8(v.to_vec()).map_err(|_| bad("text", v))?,
                        ),
                        FieldType::Timestamp => FieldValue::Timestamp(
                            binary_timestamp(v).ok_or_else(|| bad("timestamp", v))?,
                        ),
                    });
                }
            }
        }
        let Some(ts) = ts else {
            return Err(user_error(sqlstate::INTERNAL_ERROR, "COPY row without ts"));
        };
        self.push_row(p, ValidRow { ts, tags, fields }, || {
            context(Some(wattdb_storage::TS_COLUMN))
        })
    }
}

const INVALID_BINARY_REPRESENTATION: &str = "22P03";

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// A binary `timestamp`/`timestamptz`: microseconds since 2000-01-01 UTC.
fn binary_timestamp(v: &[u8]) -> Option<i64> {
    let micros = i64::from_be_bytes(v.try_into().ok()?);
    micros.checked_add(PG_EPOCH_MICROS)
}
