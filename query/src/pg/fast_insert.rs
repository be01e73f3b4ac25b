//! The direct path for a prepared `INSERT INTO t [(columns)] VALUES (…), …` whose
//! values are parameters (`$n`) and plain literals: each execution decodes the bound
//! parameters straight into the table's columns and writes them, instead of binding
//! thousands of values into a DataFusion plan and optimising it again (~6 ms per
//! execution whatever its size). Anything else — expressions, casts, `ON CONFLICT`,
//! `RETURNING`, `INSERT … SELECT`, unknown tables or columns — is left to the planner,
//! which also reports the errors; the values written and the errors for bad values are
//! the planner's: parameters are typed by their column and values are cast to it with
//! the same Arrow casts, and rows go through the same conversion to table rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Insert, ObjectName, SetExpr, Statement, TableObject, UnaryOperator, Value,
};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::into_pg_type;
use pgwire::api::portal::Portal;
use pgwire::api::results::{Response, Tag};
use pgwire::error::{PgWireError, PgWireResult};
use wattdb_storage::{Storage, TableDef};

use super::sqlstate::{self, user_error};
use crate::provider::{InsertError, write_batch};

/// Where one value of the statement comes from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// `$n`, zero-based.
    Param(usize),
    Literal(ScalarValue),
    /// A column the statement does not name.
    Omitted,
}

/// An `INSERT … VALUES` the direct path can run: the table and, per row, the source of
/// each of the table's columns (in the table's column order).
#[derive(Debug)]
pub struct FastInsert {
    def: Arc<TableDef>,
    schema: SchemaRef,
    rows: Vec<Vec<Source>>,
    /// The type of each parameter: its column's.
    param_types: Vec<DataType>,
}

/// An identifier as the planner resolves it: unquoted ones fold to lower case.
fn normalized(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The table an unqualified or `public.`-qualified name means.
fn table_name(name: &ObjectName) -> Option<String> {
    let parts: Vec<&Ident> = name.0.iter().map(|p| p.as_ident()).collect::<Option<_>>()?;
    match parts.as_slice() {
        [table] => Some(normalized(table)),
        [schema, table] if normalized(schema) == "public" => Some(normalized(table)),
        _ => None,
    }
}

/// A literal value as the planner types it, or `None` for anything else.
fn literal(expr: &Expr) -> Option<ScalarValue> {
    match expr {
        Expr::Value(v) => match &v.value {
            Value::Null => Some(ScalarValue::Null),
            Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            Value::Number(n, false) => number(n, false),
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                Value::Number(n, false) => number(n, true),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Integers that fit `i64` are `Int64`, numbers with a point or exponent `Float64`;
/// anything else (huge integers the planner makes decimals) is not taken.
fn number(text: &str, negative: bool) -> Option<ScalarValue> {
    let signed = if negative {
        format!("-{text}")
    } else {
        text.to_string()
    };
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return signed
            .parse::<i64>()
            .ok()
            .map(|v| ScalarValue::Int64(Some(v)));
    }
    signed
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(|v| ScalarValue::Float64(Some(v)))
}

/// `$n` as a zero-based index.
fn placeholder(expr: &Expr) -> Option<usize> {
    let Expr::Value(v) = expr else { return None };
    let Value::Placeholder(p) = &v.value else {
        return None;
    };
    p.strip_prefix('$')?
        .parse::<usize>()
        .ok()
        .filter(|n| *n >= 1)
        .map(|n| n - 1)
}

impl FastInsert {
    /// The direct path for `statement`, if it is an INSERT the path can run exactly as
    /// the planner would.
    pub fn compile(statement: &Statement, storage: &Storage) -> Option<FastInsert> {
        let Statement::Insert(insert) = statement else {
            return None;
        };
        let Insert {
            or: None,
            ignore: false,
            table: TableObject::TableName(name),
            table_alias: None,
            columns,
            overwrite: false,
            source: Some(source),
            assignments,
            partitioned: None,
            after_columns,
            on: None,
            returning: None,
            output: None,
            replace_into: false,
            priority: None,
            insert_alias: None,
            settings: None,
            format_clause: None,
            multi_table_insert_type: None,
            ..
        } = insert
        else {
            return None;
        };
        if !assignments.is_empty() || !after_columns.is_empty() {
            return None;
        }
        let def = storage.shared_table(&table_name(name)?)?;
        if def.is_rollup() {
            return None;
        }
        let schema = def.arrow_schema();
        let width = schema.fields().len();
        // Which table column each written value goes to.
        let targets: Vec<usize> = if columns.is_empty() {
            (0..width).collect()
        } else {
            let mut seen = vec![false; width];
            let mut targets = Vec::with_capacity(columns.len());
            for column in columns {
                let [ident] = column.0.as_slice() else {
                    return None;
                };
                let i = schema.index_of(&normalized(ident.as_ident()?)).ok()?;
                if std::mem::replace(&mut seen[i], true) {
                    return None;
                }
                targets.push(i);
            }
            targets
        };
        if source.with.is_some()
            || source.order_by.is_some()
            || source.limit_clause.is_some()
            || source.fetch.is_some()
        {
            return None;
        }
        let SetExpr::Values(values) = source.body.as_ref() else {
            return None;
        };
        let mut param_types: Vec<Option<DataType>> = Vec::new();
        let mut rows = Vec::with_capacity(values.rows.len());
        for row in &values.rows {
            if row.content.len() != targets.len() {
                return None;
            }
            let mut sources = vec![Source::Omitted; width];
            for (expr, &column) in row.content.iter().zip(&targets) {
                sources[column] = if let Some(p) = placeholder(expr) {
                    let ty = schema.field(column).data_type();
                    if param_types.len() <= p {
                        param_types.resize(p + 1, None);
                    }
                    match &param_types[p] {
                        Some(t) if t != ty => return None,
                        _ => param_types[p] = Some(ty.clone()),
                    }
                    Source::Param(p)
                } else {
                    Source::Literal(literal(expr)?)
                };
            }
            rows.push(sources);
        }
        // A parameter number the statement skips has no column to type it.
        let param_types = param_types.into_iter().collect::<Option<Vec<_>>>()?;
        Some(FastInsert {
            def,
            schema,
            rows,
            param_types,
        })
    }

    /// Write the rows with `portal`'s parameters, decoded by their columns' types, and
    /// answer with the `INSERT 0 n` tag once they are durable.
    pub async fn execute<S: Clone>(
        &self,
        portal: &Portal<S>,
        storage: &Storage,
    ) -> PgWireResult<Response> {
        let params = self.decode(portal)?;
        self.write(&params, storage).await
    }

    /// Over the simple protocol: a statement with literals only.
    pub async fn execute_literal(&self, storage: &Storage) -> Option<PgWireResult<Response>> {
        if !self.param_types.is_empty() {
            return None;
        }
        Some(self.write(&[], storage).await)
    }

    async fn write(&self, params: &[ScalarValue], storage: &Storage) -> PgWireResult<Response> {
        let batch = self.batch(params)?;
        let n = write_batch(storage, &self.def, &batch)
            .await
            .map_err(|e| match e {
                InsertError::Rows(e) => to_pg(e),
                InsertError::Storage(e) => user_error(sqlstate::for_storage(&e), e.to_string()),
            })?;
        Ok(Response::Execution(
            Tag::new("INSERT").with_oid(0).with_rows(n),
        ))
    }

    /// `portal`'s parameters, typed by their columns (a type the client named in Parse
    /// wins, as on the planner's path; the value is then cast to the column).
    fn decode<S: Clone>(&self, portal: &Portal<S>) -> PgWireResult<Vec<ScalarValue>> {
        if portal.parameter_len() != self.param_types.len() {
            return Err(user_error(
                sqlstate::PROTOCOL_VIOLATION,
                format!(
                    "bind message supplies {} parameters, but prepared statement requires {}",
                    portal.parameter_len(),
                    self.param_types.len()
                ),
            ));
        }
        let wire = self
            .param_types
            .iter()
            .map(into_pg_type)
            .collect::<PgWireResult<Vec<_>>>()?;
        let wire_refs: Vec<_> = wire.iter().map(Some).collect();
        let inferred: Vec<_> = self.param_types.iter().map(Some).collect();
        match deserialize_parameters_with_server_types(portal, &inferred, &wire_refs)? {
            ParamValues::List(params) => Ok(params.into_iter().map(|p| p.value).collect()),
            ParamValues::Map(_) => Err(user_error(
                sqlstate::PROTOCOL_VIOLATION,
                "positional parameters expected",
            )),
        }
    }

    /// The statement's rows with `params`, cast to the table's column types.
    fn batch(&self, params: &[ScalarValue]) -> PgWireResult<RecordBatch> {
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (c, field) in self.schema.fields().iter().enumerate() {
            let target = field.data_type();
            let null = ScalarValue::try_from(target).map_err(to_pg)?;
            let values = self.rows.iter().map(|row| match &row[c] {
                Source::Param(p) => params[*p].clone(),
                Source::Literal(v) => v.clone(),
                Source::Omitted => null.clone(),
            });
            // Values of one column share a type unless literals and parameters mix
            // (`42` next to a float parameter): such values are cast on their own.
            let values: Vec<ScalarValue> = values
                .map(|v| {
                    if v.data_type() == *target {
                        Ok(v)
                    } else if v.is_null() {
                        Ok(null.clone())
                    } else {
                        v.cast_to_with_options(target, &options)
                            .map_err(|e| cast_error(&self.def.name, field.name(), e))
                    }
                })
                .collect::<PgWireResult<_>>()?;
            let array = ScalarValue::iter_to_array(values).map_err(to_pg)?;
            let array = if array.data_type() == target {
                array
            } else {
                cast_with_options(&array, target, &options)
                    .map_err(|e| cast_error(&self.def.name, field.name(), e.into()))?
            };
            if !field.is_nullable()
                && let Some(row) = (0..array.len()).find(|&i| array.is_null(i))
            {
                return Err(user_error(
                    sqlstate::NOT_NULL_VIOLATION,
                    format!(
                        "null value in column \"{}\" of relation \"{}\" violates not-null \
                         constraint (row {} of the statement)",
                        field.name(),
                        self.def.name,
                        row + 1
                    ),
                ));
            }
            columns.push(array);
        }
        RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| to_pg(e.into()))
    }
}

fn to_pg(e: datafusion::error::DataFusionError) -> PgWireError {
    PgWireError::ApiError(Box::new(e))
}

fn cast_error(table: &str, column: &str, e: datafusion::error::DataFusionError) -> PgWireError {
    user_error(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        format!("column \"{column}\" of relation \"{table}\": {e}"),
    )
}
