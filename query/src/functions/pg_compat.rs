//! Small PostgreSQL functions clients call that the pg_catalog emulation does not
//! provide: `version()` in PostgreSQL's format (drivers parse it), `to_regtype`, and what
//! psql's describe commands and ORMs' reflection call (`pg_size_pretty`,
//! `pg_function_is_visible`, object comments, sizes and function signatures — the last
//! three unknown, NULL, for wattdb's objects).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};

/// PostgreSQL's `pg_size_pretty`: bytes below 10 kB, then kB, MB, ... rounded half up,
/// switching unit once the value reaches 10240 of the current one.
pub fn size_pretty(size: i64) -> String {
    const UNITS: [&str; 6] = ["bytes", "kB", "MB", "GB", "TB", "PB"];
    if size.abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    let mut v = size as f64;
    let mut unit = 0;
    while unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
        if v.abs().round() < 10.0 * 1024.0 {
            break;
        }
    }
    format!("{} {}", v.round() as i64, UNITS[unit])
}

fn pg_size_pretty(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let input = arrow::compute::cast(&arrays[0], &DataType::Int64)?;
    let ints = input.as_primitive::<Int64Type>();
    let out: StringArray = (0..ints.len())
        .map(|i| (!ints.is_null(i)).then(|| size_pretty(ints.value(i))))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

fn pg_function_is_visible(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let out: BooleanArray = (0..arrays[0].len())
        .map(|i| (!arrays[0].is_null(i)).then_some(true))
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

/// Type names `to_regtype` knows (PostgreSQL's names and aliases) and their oids.
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("char", 18),
    ("name", 19),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("integer", 23),
    ("int", 23),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("bpchar", 1042),
    ("character", 1042),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("time", 1083),
    ("time without time zone", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("numeric", 1700),
    ("decimal", 1700),
    ("uuid", 2950),
    ("jsonb", 3802),
    ("regtype", 2206),
    ("regclass", 2205),
];

/// PostgreSQL's `to_regtype(text)`: the type's oid, or NULL when there is no such type
/// (drivers probe for extension types such as `hstore` with it).
pub fn type_oid(name: &str) -> Option<i32> {
    let n = name
        .trim()
        .trim_start_matches("pg_catalog.")
        .trim_matches('"');
    let (base, array) = match n.strip_suffix("[]") {
        Some(b) => (b, true),
        None => (n, false),
    };
    let oid = TYPE_OIDS
        .iter()
        .find(|(t, _)| t.eq_ignore_ascii_case(base))
        .map(|(_, oid)| *oid)?;
    if !array {
        return Some(oid);
    }
    postgres_types_array_oid(oid)
}

/// The array type of a base type oid, for the types above that have one.
fn postgres_types_array_oid(oid: i32) -> Option<i32> {
    let t = pgwire::api::Type::from_oid(oid as u32)?;
    let array_name = format!("_{}", t.name());
    [
        pgwire::api::Type::BOOL_ARRAY,
        pgwire::api::Type::BYTEA_ARRAY,
        pgwire::api::Type::INT8_ARRAY,
        pgwire::api::Type::INT2_ARRAY,
        pgwire::api::Type::INT4_ARRAY,
        pgwire::api::Type::TEXT_ARRAY,
        pgwire::api::Type::FLOAT4_ARRAY,
        pgwire::api::Type::FLOAT8_ARRAY,
        pgwire::api::Type::VARCHAR_ARRAY,
        pgwire::api::Type::DATE_ARRAY,
        pgwire::api::Type::TIMESTAMP_ARRAY,
        pgwire::api::Type::TIMESTAMPTZ_ARRAY,
        pgwire::api::Type::NUMERIC_ARRAY,
        pgwire::api::Type::UUID_ARRAY,
    ]
    .iter()
    .find(|a| a.name() == array_name)
    .map(|a| a.oid() as i32)
}

fn to_regtype(args: &[ColumnarValue]) -> Result<ColumnarValue> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let names = arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
    let names = names.as_string::<i32>();
    let out: arrow::array::Int32Array = (0..names.len())
        .map(|i| {
            (!names.is_null(i))
                .then(|| type_oid(names.value(i)))
                .flatten()
        })
        .collect();
    Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
}

/// A function of these arguments that answers NULL of type `ret` for every row: what
/// wattdb has no value for (comments, sizes by catalog oid, function signatures,
/// sequences).
fn unknown(name: &str, args: Vec<DataType>, ret: DataType) -> ScalarUDF {
    let out = ret.clone();
    create_udf(
        name,
        args,
        ret,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let n = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            Ok(ColumnarValue::Array(arrow::array::new_null_array(&out, n)))
        }),
    )
}

fn version(_args: &[ColumnarValue]) -> Result<ColumnarValue> {
    Ok(ColumnarValue::Scalar(
        datafusion::common::ScalarValue::Utf8(Some(crate::pg::settings::version_string())),
    ))
}

pub fn udfs() -> Vec<ScalarUDF> {
    vec![
        // psql's \df, \dt+, \l+ and ORMs' reflection: wattdb has no SQL-defined
        // functions, no comments, no sequences; sizes are in system.files /
        // system.partitions (the catalog's oids are not wattdb's table ids).
        unknown(
            "pg_get_function_result",
            vec![DataType::Int64],
            DataType::Utf8,
        ),
        unknown(
            "pg_get_function_arguments",
            vec![DataType::Int64],
            DataType::Utf8,
        ),
        unknown(
            "obj_description",
            vec![DataType::Int64, DataType::Utf8],
            DataType::Utf8,
        ),
        unknown(
            "shobj_description",
            vec![DataType::Int64, DataType::Utf8],
            DataType::Utf8,
        ),
        unknown(
            "col_description",
            vec![DataType::Int64, DataType::Int64],
            DataType::Utf8,
        ),
        unknown("pg_table_size", vec![DataType::Int64], DataType::Int64),
        // asyncpg's pool calls it whenever a connection goes back: wattdb takes no
        // advisory locks, so there are none to release (PostgreSQL returns void).
        unknown("pg_advisory_unlock_all", vec![], DataType::Utf8),
        unknown("pg_database_size", vec![DataType::Utf8], DataType::Int64),
        unknown(
            "pg_get_serial_sequence",
            vec![DataType::Utf8, DataType::Utf8],
            DataType::Utf8,
        ),
        create_udf(
            "pg_collation_is_visible",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(pg_function_is_visible),
        ),
        create_udf(
            "to_regtype",
            vec![DataType::Utf8],
            DataType::Int32,
            Volatility::Stable,
            Arc::new(to_regtype),
        ),
        create_udf(
            "version",
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(version),
        ),
        create_udf(
            "pg_size_pretty",
            vec![DataType::Int64],
            DataType::Utf8,
            Volatility::Immutable,
            Arc::new(pg_size_pretty),
        ),
        create_udf(
            "pg_function_is_visible",
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(pg_function_is_visible),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    /// Expected strings are what PostgreSQL 15 prints for the same inputs.
    #[test]
    fn matches_postgres() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_048_576), "1024 kB");
        assert_eq!(size_pretty(10_485_760), "10 MB");
        assert_eq!(size_pretty(123_456_789), "118 MB");
    }

    /// Oids as PostgreSQL 15's `SELECT to_regtype('…')::oid` gives them.
    #[test]
    fn to_regtype_knows_names_aliases_and_arrays() {
        use super::type_oid;
        assert_eq!(type_oid("integer"), Some(23));
        assert_eq!(type_oid("pg_catalog.int4"), Some(23));
        assert_eq!(type_oid("double precision"), Some(701));
        assert_eq!(type_oid("timestamptz"), Some(1184));
        assert_eq!(type_oid("text[]"), Some(1009));
        assert_eq!(type_oid("int4[]"), Some(1007));
        assert_eq!(type_oid("hstore"), None);
    }
}
