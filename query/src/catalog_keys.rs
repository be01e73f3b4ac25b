//! Primary keys in the PostgreSQL catalog emulation: every wattdb table's key (tags, then
//! `ts`) appears as a unique btree index `<table>_pkey` and a `PRIMARY KEY` constraint,
//! so psql's `\d`, SQLAlchemy's `get_pk_constraint`, pgjdbc's `getPrimaryKeys` and the
//! tools built on them see it.
//!
//! The pg_catalog tables come from datafusion-pg-catalog; [`KeyedPgCatalog`] wraps its
//! schema and answers `pg_class`, `pg_index` and `pg_constraint` with their rows plus
//! one index row, one `pg_index` row and one constraint row per table. Table OIDs are
//! assigned inside that crate, so they are read from its `pg_class` at scan time; the
//! index and constraint OIDs are derived from them. `pg_get_indexdef` and
//! `pg_get_constraintdef` answer from what the scans saw ([`KeyDefinitions`]). This
//! module only adds rows; it must not change the crate's own. (The wrapper also serves
//! `pg_settings` from [`crate::catalog_settings`].)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, Session};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::physical_plan::ExecutionPlan;
use wattdb_storage::{Storage, TableDef};

/// Index OID = table OID + this; constraint OID = table OID + 2 × this.
const OID_STEP: i32 = 100_000_000;

/// Index and constraint definitions by OID, as the last catalog scans found them.
#[derive(Debug, Default)]
pub struct KeyDefinitions {
    /// index OID → (`CREATE UNIQUE INDEX …`, its quoted column names)
    indexes: RwLock<HashMap<i32, (String, Vec<String>)>>,
    /// constraint OID → `PRIMARY KEY (…)`
    constraints: RwLock<HashMap<i32, String>>,
}

/// The key columns of `def` in key order (tags, then ts).
fn key_columns(def: &TableDef) -> Vec<String> {
    let mut cols = def.tags.clone();
    cols.push(wattdb_storage::TS_COLUMN.to_string());
    cols
}

/// 1-based column numbers of the key (pg_attribute order: ts, tags, fields).
fn key_attnums(def: &TableDef) -> Vec<i16> {
    let schema = def.arrow_schema();
    key_columns(def)
        .iter()
        .filter_map(|c| schema.index_of(c).ok().map(|i| i as i16 + 1))
        .collect()
}

fn quoted(name: &str) -> String {
    if name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
    {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The pg_catalog schema with keys added (see the module docs).
use crate::sessions::activity_table;

#[derive(Debug)]
pub struct KeyedPgCatalog {
    inner: Arc<dyn SchemaProvider>,
    storage: crate::provider::StorageHandle,
    defs: Arc<KeyDefinitions>,
    /// The role relations are built from them (see [`crate::catalog_roles`]).
    users: Arc<crate::users::Users>,
    /// `pg_stat_activity` shows them.
    sessions: Arc<crate::sessions::Sessions>,
}

impl KeyedPgCatalog {
    pub fn new(
        inner: Arc<dyn SchemaProvider>,
        storage: Storage,
        defs: Arc<KeyDefinitions>,
        users: Arc<crate::users::Users>,
        sessions: Arc<crate::sessions::Sessions>,
    ) -> Self {
        KeyedPgCatalog {
            inner,
            storage: crate::provider::StorageHandle(storage),
            defs,
            users,
            sessions,
        }
    }
}

#[async_trait]
impl SchemaProvider for KeyedPgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        for role in crate::catalog_roles::ROLE_RELATIONS {
            if !names.iter().any(|n| n == role) {
                names.push(role.to_string());
            }
        }
        for extra in
            std::iter::once(&activity_table::NAME).chain(crate::catalog_empty::EMPTY_RELATIONS)
        {
            if !names.iter().any(|n| n == extra) {
                names.push(extra.to_string());
            }
        }
        names
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if name == activity_table::NAME {
            return Ok(Some(Arc::new(activity_table::ActivityTable::new(
                self.sessions.clone(),
                self.users.clone(),
            ))));
        }
        if crate::catalog_empty::EMPTY_RELATIONS.contains(&name) && !self.inner.table_exist(name) {
            return crate::catalog_empty::empty_table(name);
        }
        if crate::catalog_roles::ROLE_RELATIONS.contains(&name) {
            let schema = match self.inner.table(name).await? {
                Some(t) => t.schema(),
                None => crate::catalog_roles::user_schema(),
            };
            return crate::catalog_roles::role_table(name, schema, &self.users).map(Some);
        }
        let Some(table) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let kind = match name {
            "pg_settings" => {
                return crate::catalog_settings::settings_table(table.schema()).map(Some);
            }
            "pg_class" => Kind::Class,
            "pg_index" => Kind::Index,
            "pg_constraint" => Kind::Constraint,
            _ => return Ok(Some(table)),
        };
        let (Some(class), Some(namespace)) = (
            self.inner.table("pg_class").await?,
            self.inner.table("pg_namespace").await?,
        ) else {
            return Ok(Some(table));
        };
        Ok(Some(Arc::new(KeyedTable {
            kind,
            inner: table,
            class,
            namespace,
            storage: self.storage.clone(),
            defs: self.defs.clone(),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        crate::catalog_roles::ROLE_RELATIONS.contains(&name)
            || name == activity_table::NAME
            || crate::catalog_empty::EMPTY_RELATIONS.contains(&name)
            || self.inner.table_exist(name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Class,
    Index,
    Constraint,
}

/// Columns the static catalog holds as text that are `int2vector` / `int2[]` in
/// PostgreSQL; given as lists here, so `unnest(indkey)` and `= ANY(conkey)` work.
const INT2_ARRAY_COLUMNS: &[&str] = &["indkey", "indoption", "conkey", "confkey"];
/// Likewise `oidvector` columns, as lists of int4.
const OID_ARRAY_COLUMNS: &[&str] = &["indclass", "indcollation"];

fn list_type(column: &str) -> Option<DataType> {
    let element = if INT2_ARRAY_COLUMNS.contains(&column) {
        DataType::Int16
    } else if OID_ARRAY_COLUMNS.contains(&column) {
        DataType::Int32
    } else {
        return None;
    };
    Some(DataType::List(Arc::new(
        arrow::datatypes::Field::new_list_field(element, true),
    )))
}

/// The schema with [`INT2_ARRAY_COLUMNS`] as lists of int2.
fn with_int2_lists(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<arrow::datatypes::FieldRef> = schema
        .fields()
        .iter()
        .map(|f| match list_type(f.name()) {
            Some(t) => Arc::new(f.as_ref().clone().with_data_type(t)),
            None => f.clone(),
        })
        .collect();
    Arc::new(arrow::datatypes::Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    ))
}

/// `"1 2"` (int2vector, oidvector) or `"[1, 5]"` (int2[]) as a list of numbers.
fn parse_int2s(text: &str) -> Vec<Option<i32>> {
    text.split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().ok())
        .collect()
}

/// `batch` (of the static schema) with its text int2/oid arrays parsed into lists.
fn lists_from_text(batch: RecordBatch, schema: &SchemaRef) -> DfResult<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    for (i, f) in batch.schema().fields().iter().enumerate() {
        let Some(target) = list_type(f.name()) else {
            continue;
        };
        let text = arrow::compute::cast(&columns[i], &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut builder = arrow::array::ListBuilder::new(arrow::array::Int32Builder::new());
        for v in text.iter() {
            match v {
                Some(t) => {
                    builder.values().extend(parse_int2s(t));
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        let list: ArrayRef = Arc::new(builder.finish());
        columns[i] = arrow::compute::cast(&list, &target)?;
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

#[derive(Debug)]
struct KeyedTable {
    kind: Kind,
    inner: Arc<dyn TableProvider>,
    class: Arc<dyn TableProvider>,
    namespace: Arc<dyn TableProvider>,
    storage: crate::provider::StorageHandle,
    defs: Arc<KeyDefinitions>,
}

/// Every row of a catalog table.
async fn all_rows(state: &dyn Session, table: &Arc<dyn TableProvider>) -> DfResult<RecordBatch> {
    let plan = table.scan(state, None, &[], None).await?;
    let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    Ok(arrow::compute::concat_batches(&table.schema(), &batches)?)
}

/// A column of `batch` as Int32 (OID columns).
fn oids(batch: &RecordBatch, name: &str) -> DfResult<Vec<Option<i32>>> {
    let col = batch.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("pg catalog lacks {name}"))
    })?;
    let col = arrow::compute::cast(col, &DataType::Int32)?;
    Ok(col.as_primitive::<Int32Type>().iter().collect())
}

fn texts(batch: &RecordBatch, name: &str) -> DfResult<Vec<Option<String>>> {
    let col = batch.column_by_name(name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("pg catalog lacks {name}"))
    })?;
    let col = arrow::compute::cast(col, &DataType::Utf8)?;
    Ok(col
        .as_string::<i32>()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect())
}

/// One keyed table as the catalog shows it.
struct Keyed {
    def: TableDef,
    /// Row of the table in pg_class.
    class_row: usize,
    oid: i32,
    namespace: i32,
}

fn int2_list(values: &[i16]) -> ScalarValue {
    let list = ScalarValue::new_list_nullable(
        &values
            .iter()
            .map(|v| ScalarValue::Int16(Some(*v)))
            .collect::<Vec<_>>(),
        &DataType::Int16,
    );
    ScalarValue::List(list)
}

/// A batch of `schema` with one row per entry of `rows` (column name → value); columns
/// not given are NULL, or zero / empty / false where NULL is not allowed.
fn batch_of(schema: &SchemaRef, rows: &[HashMap<&str, ScalarValue>]) -> DfResult<RecordBatch> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let blank = if field.is_nullable() {
            ScalarValue::try_from(field.data_type())?
        } else {
            match field.data_type() {
                DataType::Utf8 => ScalarValue::Utf8(Some(String::new())),
                dt => ScalarValue::new_zero(dt).or_else(|_| ScalarValue::try_from(dt))?,
            }
        };
        let values = rows.iter().map(|r| {
            r.get(field.name().as_str())
                .cloned()
                .unwrap_or_else(|| blank.clone())
        });
        let array = if rows.is_empty() {
            arrow::array::new_empty_array(field.data_type())
        } else {
            let a = ScalarValue::iter_to_array(values)?;
            arrow::compute::cast(&a, field.data_type())?
        };
        columns.push(array);
    }
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

impl KeyedTable {
    /// The wattdb tables in pg_class (namespace `public`), with their OIDs.
    async fn keyed(&self, state: &dyn Session, class: &RecordBatch) -> DfResult<Vec<Keyed>> {
        let ns = all_rows(state, &self.namespace).await?;
        let public: Vec<i32> = oids(&ns, "oid")?
            .into_iter()
            .zip(texts(&ns, "nspname")?)
            .filter_map(|(o, n)| (n.as_deref() == Some("public")).then_some(o).flatten())
            .collect();
        let tables: HashMap<String, TableDef> = self
            .storage
            .0
            .tables()
            .into_iter()
            .map(|t| (t.name.clone(), t))
            .collect();
        let (class_oids, names, spaces, kinds) = (
            oids(class, "oid")?,
            texts(class, "relname")?,
            oids(class, "relnamespace")?,
            texts(class, "relkind")?,
        );
        let mut out = Vec::new();
        for r in 0..class.num_rows() {
            let (Some(oid), Some(name), Some(ns)) = (class_oids[r], &names[r], spaces[r]) else {
                continue;
            };
            if kinds[r].as_deref() != Some("r") || !public.contains(&ns) {
                continue;
            }
            if let Some(def) = tables.get(name) {
                out.push(Keyed {
                    def: def.clone(),
                    class_row: r,
                    oid,
                    namespace: ns,
                });
            }
        }
        // Remember the definitions for pg_get_indexdef / pg_get_constraintdef.
        let mut indexes = self.defs.indexes.write().unwrap_or_else(|p| p.into_inner());
        let mut constraints = self
            .defs
            .constraints
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for k in &out {
            let cols: Vec<String> = key_columns(&k.def).iter().map(|c| quoted(c)).collect();
            indexes.insert(
                k.oid + OID_STEP,
                (
                    format!(
                        "CREATE UNIQUE INDEX {} ON public.{} USING btree ({})",
                        quoted(&format!("{}_pkey", k.def.name)),
                        quoted(&k.def.name),
                        cols.join(", ")
                    ),
                    cols.clone(),
                ),
            );
            constraints.insert(
                k.oid + 2 * OID_STEP,
                format!("PRIMARY KEY ({})", cols.join(", ")),
            );
        }
        Ok(out)
    }

    /// pg_class: the tables flagged as having an index, and the index rows.
    fn class_rows(&self, class: RecordBatch, keyed: &[Keyed]) -> DfResult<RecordBatch> {
        let schema = class.schema();
        let mut has_index: Vec<bool> = class
            .column_by_name("relhasindex")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
            .map(|b| b.iter().map(|v| v.unwrap_or(false)).collect())
            .unwrap_or_else(|| vec![false; class.num_rows()]);
        for k in keyed {
            has_index[k.class_row] = true;
        }
        let mut columns = class.columns().to_vec();
        if let Ok(i) = schema.index_of("relhasindex") {
            columns[i] = Arc::new(BooleanArray::from(has_index));
        }
        let flagged = RecordBatch::try_new(schema.clone(), columns)?;
        // Index rows: copies of their table's row with the index's identity.
        let take = UInt32Array::from(keyed.iter().map(|k| k.class_row as u32).collect::<Vec<_>>());
        let mut index_columns: Vec<ArrayRef> = flagged
            .columns()
            .iter()
            .map(|c| arrow::compute::take(c, &take, None))
            .collect::<Result<_, _>>()?;
        let set = |columns: &mut Vec<ArrayRef>, name: &str, values: ArrayRef| -> DfResult<()> {
            if let Ok(i) = schema.index_of(name) {
                columns[i] = arrow::compute::cast(&values, schema.field(i).data_type())?;
            }
            Ok(())
        };
        let n = keyed.len();
        set(
            &mut index_columns,
            "oid",
            Arc::new(Int32Array::from(
                keyed.iter().map(|k| k.oid + OID_STEP).collect::<Vec<_>>(),
            )),
        )?;
        set(
            &mut index_columns,
            "relfilenode",
            Arc::new(Int32Array::from(
                keyed.iter().map(|k| k.oid + OID_STEP).collect::<Vec<_>>(),
            )),
        )?;
        set(
            &mut index_columns,
            "relname",
            Arc::new(StringArray::from(
                keyed
                    .iter()
                    .map(|k| format!("{}_pkey", k.def.name))
                    .collect::<Vec<_>>(),
            )),
        )?;
        set(
            &mut index_columns,
            "relkind",
            Arc::new(StringArray::from(vec!["i"; n])),
        )?;
        // 403: btree.
        set(
            &mut index_columns,
            "relam",
            Arc::new(Int32Array::from(vec![403; n])),
        )?;
        set(
            &mut index_columns,
            "reltype",
            Arc::new(Int32Array::from(vec![0; n])),
        )?;
        set(
            &mut index_columns,
            "relhasindex",
            Arc::new(BooleanArray::from(vec![false; n])),
        )?;
        set(
            &mut index_columns,
            "relnatts",
            Arc::new(arrow::array::Int16Array::from(
                keyed
                    .iter()
                    .map(|k| k.def.key_len() as i16)
                    .collect::<Vec<_>>(),
            )),
        )?;
        let indexes = RecordBatch::try_new(schema.clone(), index_columns)?;
        Ok(arrow::compute::concat_batches(
            &schema,
            &[flagged, indexes],
        )?)
    }

    fn index_rows(&self, schema: &SchemaRef, keyed: &[Keyed]) -> DfResult<RecordBatch> {
        let rows: Vec<HashMap<&str, ScalarValue>> = keyed
            .iter()
            .map(|k| {
                let attnums = key_attnums(&k.def);
                let n = attnums.len() as i16;
                HashMap::from([
                    ("indexrelid", ScalarValue::Int32(Some(k.oid + OID_STEP))),
                    ("indrelid", ScalarValue::Int32(Some(k.oid))),
                    ("indnatts", ScalarValue::Int16(Some(n))),
                    ("indnkeyatts", ScalarValue::Int16(Some(n))),
                    ("indisunique", ScalarValue::Boolean(Some(true))),
                    ("indisprimary", ScalarValue::Boolean(Some(true))),
                    ("indimmediate", ScalarValue::Boolean(Some(true))),
                    ("indisvalid", ScalarValue::Boolean(Some(true))),
                    ("indisready", ScalarValue::Boolean(Some(true))),
                    ("indislive", ScalarValue::Boolean(Some(true))),
                    ("indkey", int2_list(&attnums)),
                    ("indcollation", int2_list(&vec![0; n as usize])),
                    ("indclass", int2_list(&vec![0; n as usize])),
                    ("indoption", int2_list(&vec![0; n as usize])),
                ])
            })
            .collect();
        batch_of(schema, &rows)
    }

    fn constraint_rows(&self, schema: &SchemaRef, keyed: &[Keyed]) -> DfResult<RecordBatch> {
        let rows: Vec<HashMap<&str, ScalarValue>> = keyed
            .iter()
            .map(|k| {
                let attnums = key_attnums(&k.def);
                HashMap::from([
                    ("oid", ScalarValue::Int32(Some(k.oid + 2 * OID_STEP))),
                    (
                        "conname",
                        ScalarValue::Utf8(Some(format!("{}_pkey", k.def.name))),
                    ),
                    ("connamespace", ScalarValue::Int32(Some(k.namespace))),
                    ("contype", ScalarValue::Utf8(Some("p".into()))),
                    ("condeferrable", ScalarValue::Boolean(Some(false))),
                    ("condeferred", ScalarValue::Boolean(Some(false))),
                    ("convalidated", ScalarValue::Boolean(Some(true))),
                    ("conrelid", ScalarValue::Int32(Some(k.oid))),
                    ("contypid", ScalarValue::Int32(Some(0))),
                    ("conindid", ScalarValue::Int32(Some(k.oid + OID_STEP))),
                    ("conparentid", ScalarValue::Int32(Some(0))),
                    ("confrelid", ScalarValue::Int32(Some(0))),
                    ("conislocal", ScalarValue::Boolean(Some(true))),
                    ("connoinherit", ScalarValue::Boolean(Some(true))),
                    ("conkey", int2_list(&attnums)),
                ])
            })
            .collect();
        batch_of(schema, &rows)
    }
}

#[async_trait]
impl TableProvider for KeyedTable {
    fn schema(&self) -> SchemaRef {
        match self.kind {
            Kind::Class => self.inner.schema(),
            Kind::Index | Kind::Constraint => with_int2_lists(&self.inner.schema()),
        }
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let schema = self.schema();
        let class = all_rows(state, &self.class).await?;
        let keyed = self.keyed(state, &class).await?;
        let batch = match self.kind {
            Kind::Class => self.class_rows(class, &keyed)?,
            Kind::Index | Kind::Constraint => {
                let own = lists_from_text(all_rows(state, &self.inner).await?, &schema)?;
                let ours = if self.kind == Kind::Index {
                    self.index_rows(&schema, &keyed)?
                } else {
                    self.constraint_rows(&schema, &keyed)?
                };
                arrow::compute::concat_batches(&schema, &[own, ours])?
            }
        };
        let source = MemorySourceConfig::try_new(&[vec![batch]], schema, projection.cloned())?;
        Ok(DataSourceExec::from_data_source(source))
    }
}

/// `pg_get_indexdef(oid [, column, pretty])` and `pg_get_constraintdef(oid [, pretty])`
/// for the keys above ('' for anything else, as datafusion-pg-catalog answers).
#[derive(Debug)]
struct KeyDefFunction {
    name: &'static str,
    signature: Signature,
    defs: Arc<KeyDefinitions>,
}

impl PartialEq for KeyDefFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for KeyDefFunction {}

impl std::hash::Hash for KeyDefFunction {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state)
    }
}

impl ScalarUDFImpl for KeyDefFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let oids = arrow::compute::cast(&arrays[0], &DataType::Int32)?;
        let oids = oids.as_primitive::<Int32Type>();
        let out: StringArray = if self.name == "pg_get_indexdef" {
            // pg_get_indexdef(oid, column, pretty): column 0 is the whole definition,
            // column n the n-th key column.
            let columns = match arrays.get(1) {
                Some(c) => Some(arrow::compute::cast(c, &DataType::Int64)?),
                None => None,
            };
            let columns = columns
                .as_ref()
                .map(|c| c.as_primitive::<arrow::datatypes::Int64Type>());
            let map = self.defs.indexes.read().unwrap_or_else(|p| p.into_inner());
            oids.iter()
                .enumerate()
                .map(|(row, o)| {
                    let (def, cols) = o.and_then(|o| map.get(&o))?;
                    let column =
                        columns.map_or(0, |c| if c.is_null(row) { 0 } else { c.value(row) });
                    if column > 0 {
                        cols.get(column as usize - 1).cloned()
                    } else {
                        Some(def.clone())
                    }
                })
                .map(|v| Some(v.unwrap_or_default()))
                .collect()
        } else {
            let map = self
                .defs
                .constraints
                .read()
                .unwrap_or_else(|p| p.into_inner());
            oids.iter()
                .map(|o| Some(o.and_then(|o| map.get(&o).cloned()).unwrap_or_default()))
                .collect()
        };
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The two definition functions, answering from `defs`.
pub fn key_def_functions(defs: &Arc<KeyDefinitions>) -> Vec<ScalarUDF> {
    let any_int = [DataType::Int32, DataType::Int64, DataType::UInt32];
    let mut index_sigs = Vec::new();
    let mut constraint_sigs = Vec::new();
    for t in &any_int {
        index_sigs.push(TypeSignature::Exact(vec![t.clone()]));
        index_sigs.push(TypeSignature::Exact(vec![
            t.clone(),
            DataType::Int64,
            DataType::Boolean,
        ]));
        index_sigs.push(TypeSignature::Exact(vec![
            t.clone(),
            DataType::Int32,
            DataType::Boolean,
        ]));
        constraint_sigs.push(TypeSignature::Exact(vec![t.clone()]));
        constraint_sigs.push(TypeSignature::Exact(vec![t.clone(), DataType::Boolean]));
    }
    vec![
        ScalarUDF::new_from_impl(KeyDefFunction {
            name: "pg_get_indexdef",
            signature: Signature::one_of(index_sigs, Volatility::Stable),
            defs: defs.clone(),
        }),
        ScalarUDF::new_from_impl(KeyDefFunction {
            name: "pg_get_constraintdef",
            signature: Signature::one_of(constraint_sigs, Volatility::Stable),
            defs: defs.clone(),
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_attnums_follow_the_key_order() {
        let def = TableDef::new(
            wattdb_storage::TableId(1),
            "m",
            vec!["meter".into(), "phase".into()],
            vec![wattdb_storage::FieldDef {
                name: "v".into(),
                field_type: wattdb_storage::FieldType::Float,
            }],
        )
        .unwrap();
        // Columns: ts(1), meter(2), phase(3), v(4); key: meter, phase, ts.
        assert_eq!(key_attnums(&def), vec![2, 3, 1]);
        assert_eq!(key_columns(&def), vec!["meter", "phase", "ts"]);
        assert_eq!(quoted("Meter"), "\"Meter\"");
        assert_eq!(quoted("meter_1"), "meter_1");
    }

    #[test]
    fn int2_arrays_are_parsed_from_both_text_forms() {
        assert_eq!(parse_int2s("1 2"), vec![Some(1), Some(2)]);
        assert_eq!(parse_int2s("[1, 5]"), vec![Some(1), Some(5)]);
        assert_eq!(parse_int2s("{3,-1}"), vec![Some(3), Some(-1)]);
        assert!(parse_int2s("").is_empty());
    }

    #[test]
    fn blank_values_fill_columns_not_given() {
        let schema = Arc::new(arrow::datatypes::Schema::new(vec![
            arrow::datatypes::Field::new("a", DataType::Int32, false),
            arrow::datatypes::Field::new("b", DataType::Utf8, true),
            arrow::datatypes::Field::new("c", DataType::Boolean, false),
        ]));
        let rows = vec![HashMap::from([("a", ScalarValue::Int32(Some(7)))])];
        let b = batch_of(&schema, &rows).unwrap();
        assert_eq!(b.num_rows(), 1);
        assert!(b.column(1).is_null(0));
        assert!(!b.column(2).as_boolean().value(0));
    }
}
