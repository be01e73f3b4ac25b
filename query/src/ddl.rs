//! `CREATE TABLE` and `DROP TABLE`, translated from the SQL syntax tree into storage
//! operations. The primary key names the tags (every key column but `ts`); without a
//! primary key the table has no tags (a single series keyed by `ts`).

use datafusion::sql::sqlparser::ast::{
    ColumnOption, CreateTable, DataType as SqlType, Expr, ObjectName, ObjectType, Statement,
    TableConstraint,
};
use wattdb_storage::model::TS_COLUMN;
use wattdb_storage::{FieldDef, FieldType, Storage};

use crate::pg::sqlstate;

/// A DDL failure with the SQLSTATE to report.
#[derive(Debug)]
pub struct DdlError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> DdlError {
    DdlError {
        code,
        message: message.into(),
    }
}

impl From<wattdb_storage::Error> for DdlError {
    fn from(e: wattdb_storage::Error) -> Self {
        DdlError {
            code: sqlstate::for_storage(&e),
            message: e.to_string(),
        }
    }
}

/// The table name of `[public.]name`; other schemas are refused.
pub fn table_name(name: &ObjectName) -> Result<String, DdlError> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| i.value.clone())
                .unwrap_or_else(|| p.to_string())
        })
        .collect();
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [s, t] if s == "public" => Ok(t.clone()),
        [c, s, t] if c == "wattdb" && s == "public" => Ok(t.clone()),
        _ => Err(err(
            sqlstate::UNDEFINED_OBJECT,
            format!("tables live in schema \"public\"; cannot use \"{name}\""),
        )),
    }
}

enum ColumnKind {
    Timestamp,
    Field(FieldType),
}

fn column_kind(t: &SqlType) -> Option<ColumnKind> {
    let s = t.to_string().to_ascii_lowercase();
    let base = s.split('(').next().unwrap_or("").trim();
    Some(match base {
        "timestamptz"
        | "timestamp with time zone"
        | "timestamp"
        | "timestamp without time zone" => ColumnKind::Timestamp,
        "text" | "varchar" | "character varying" | "char" | "character" | "string" | "bpchar" => {
            ColumnKind::Field(FieldType::Text)
        }
        "double precision" | "double" | "float" | "float8" | "float4" | "real" | "numeric"
        | "decimal" => ColumnKind::Field(FieldType::Float),
        "bigint" | "int8" | "int" | "integer" | "int4" | "smallint" | "int2" => {
            ColumnKind::Field(FieldType::Integer)
        }
        "boolean" | "bool" => ColumnKind::Field(FieldType::Boolean),
        _ => return None,
    })
}

fn key_column_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(i.value.clone()),
        _ => None,
    }
}

pub async fn create_table(storage: &Storage, ct: &CreateTable) -> Result<String, DdlError> {
    let name = table_name(&ct.name)?;
    if ct.query.is_some() {
        return Err(err(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "CREATE TABLE ... AS SELECT is not supported",
        ));
    }
    let mut pk: Option<Vec<String>> = None;
    for c in &ct.constraints {
        if let TableConstraint::PrimaryKey(p) = c {
            let cols = p
                .columns
                .iter()
                .map(|ic| key_column_name(&ic.column.expr))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    err(
                        sqlstate::INVALID_TABLE_DEFINITION,
                        "PRIMARY KEY must list plain column names",
                    )
                })?;
            pk = Some(cols);
        }
    }
    for col in &ct.columns {
        if col
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::PrimaryKey(_)))
        {
            pk.get_or_insert_with(Vec::new).push(col.name.value.clone());
        }
    }
    let pk = pk.unwrap_or_else(|| vec![TS_COLUMN.to_string()]);
    if !pk.iter().any(|c| c == TS_COLUMN) {
        return Err(err(
            sqlstate::INVALID_TABLE_DEFINITION,
            format!("the primary key of \"{name}\" must include ts, e.g. PRIMARY KEY (pid, ts)"),
        ));
    }
    let mut has_ts = false;
    let mut tags = Vec::new();
    let mut fields = Vec::new();
    for col in &ct.columns {
        let cname = col.name.value.clone();
        let kind = column_kind(&col.data_type).ok_or_else(|| {
            err(
                sqlstate::FEATURE_NOT_SUPPORTED,
                format!(
                    "column \"{cname}\": type {} is not supported (use timestamptz for ts; text, double precision, bigint, boolean or timestamptz otherwise)",
                    col.data_type
                ),
            )
        })?;
        match kind {
            ColumnKind::Timestamp if cname == TS_COLUMN => has_ts = true,
            ColumnKind::Timestamp if pk.contains(&cname) => {
                return Err(err(
                    sqlstate::INVALID_TABLE_DEFINITION,
                    format!(
                        "key column \"{cname}\" must be text (tags are strings); ts is the key's time"
                    ),
                ));
            }
            // Another point in time, stored as UTC microseconds like ts.
            ColumnKind::Timestamp => fields.push(FieldDef {
                name: cname,
                field_type: FieldType::Timestamp,
            }),
            ColumnKind::Field(_) if cname == TS_COLUMN => {
                return Err(err(
                    sqlstate::INVALID_TABLE_DEFINITION,
                    "column ts must be of type timestamptz",
                ));
            }
            ColumnKind::Field(ft) if pk.contains(&cname) => {
                if ft != FieldType::Text {
                    return Err(err(
                        sqlstate::INVALID_TABLE_DEFINITION,
                        format!("key column \"{cname}\" must be text (tags are strings)"),
                    ));
                }
                tags.push(cname);
            }
            ColumnKind::Field(ft) => fields.push(FieldDef {
                name: cname,
                field_type: ft,
            }),
        }
    }
    if !has_ts {
        return Err(err(
            sqlstate::INVALID_TABLE_DEFINITION,
            format!("table \"{name}\" needs a column ts timestamptz"),
        ));
    }
    if let Some(missing) = pk.iter().find(|c| *c != TS_COLUMN && !tags.contains(c)) {
        return Err(err(
            sqlstate::UNDEFINED_COLUMN,
            format!("primary key column \"{missing}\" is not defined"),
        ));
    }
    // Tags in primary-key order: that is the series sort order in files.
    tags.sort_by_key(|t| pk.iter().position(|c| c == t));
    let fulltext =
        crate::table_options::fulltext_columns(&name, &ct.table_options, &fields, &tags)?;
    storage
        .create_table_with_fulltext(&name, tags, fields, fulltext, ct.if_not_exists)
        .await?;
    Ok("CREATE TABLE".into())
}

pub async fn drop_tables(storage: &Storage, stmt: &Statement) -> Option<Result<String, DdlError>> {
    let Statement::Drop {
        object_type: ObjectType::Table,
        if_exists,
        names,
        ..
    } = stmt
    else {
        return None;
    };
    Some(
        async {
            let names = names
                .iter()
                .map(table_name)
                .collect::<Result<Vec<_>, _>>()?;
            for n in &names {
                if storage.table(n).is_none() && !if_exists {
                    return Err(err(
                        sqlstate::UNDEFINED_TABLE,
                        format!("table \"{n}\" does not exist"),
                    ));
                }
            }
            for n in &names {
                storage.drop_table(n).await?;
            }
            Ok("DROP TABLE".to_string())
        }
        .await,
    )
}
