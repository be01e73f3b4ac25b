//! An alarm rule: its stored definition (the catalog's JSON body), how it is validated
//! against its table, and the compiled form evaluated on every write batch — the
//! condition, the clear condition and the scope compiled once to DataFusion physical
//! expressions over the table's columns.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use wattdb_storage::TableDef;

use super::duration::parse_duration;
use super::error::RuleError;

pub const SEVERITIES: &[&str] = &["info", "warning", "major", "critical"];
const DEFAULT_REPEAT: &str = "4 hours";
/// Gap alarms forget a series silent for a week unless told otherwise.
const DEFAULT_FORGET_MICROS: i64 = 7 * 86_400 * 1_000_000;

/// What the catalog stores for an alarm (`kind = "alarm"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmDef {
    pub name: String,
    pub table: String,
    pub condition: String,
    /// `NOT (condition)` when not given.
    pub clear: Option<String>,
    /// How long (series time) the condition must hold before firing, in microseconds.
    pub for_micros: i64,
    /// How long (series time) the clear condition must hold before resolving.
    #[serde(default)]
    pub keep_firing_for_micros: i64,
    pub severity: String,
    pub channels: Vec<String>,
    /// Re-notify while firing (microseconds; 0 = never). Used by delivery.
    pub repeat_micros: i64,
    /// Scope: a condition over tags; rows outside it are not evaluated.
    #[serde(rename = "where")]
    pub scope: Option<String>,
    pub message: Option<String>,
    pub enabled: bool,
    /// `threshold` (a condition over each row) or `gap` (a series silent for
    /// `silent_micros` of arrival time; its condition is `true`).
    #[serde(default = "threshold")]
    pub kind: String,
    #[serde(default)]
    pub silent_micros: i64,
    /// Gap alarms: a series silent this long is forgotten (a decommissioned meter does
    /// not stay firing forever); 0 = never.
    #[serde(default)]
    pub forget_micros: i64,
    /// Maintenance silences: series matching `scope` are not notified until `until_ms`.
    #[serde(default)]
    pub silences: Vec<Silence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    /// A condition over tags.
    pub scope: String,
    /// Wall-clock end (epoch ms).
    pub until_ms: i64,
}

fn threshold() -> String {
    "threshold".into()
}

impl AlarmDef {
    /// Parse `create_alarm(name, table, condition, options)`'s arguments. `channels` are
    /// the channels that exist.
    pub fn parse(
        name: &str,
        table: &str,
        condition: &str,
        options: Option<&str>,
        channels: &[String],
    ) -> Result<AlarmDef, RuleError> {
        Self::parse_with(name, table, condition, options, channels, None)
    }

    /// Parse `create_gap_alarm(name, table, silent_for, options)`'s arguments.
    pub fn parse_gap(
        name: &str,
        table: &str,
        silent_for: &str,
        options: Option<&str>,
        channels: &[String],
    ) -> Result<AlarmDef, RuleError> {
        let silent = parse_duration(silent_for).map_err(|e| {
            RuleError::InvalidOption(format!("gap alarm \"{name}\": silent_for: {e}"))
        })?;
        if silent <= 0 {
            return Err(RuleError::InvalidOption(format!(
                "gap alarm \"{name}\": silent_for must be positive"
            )));
        }
        Self::parse_with(name, table, "true", options, channels, Some(silent))
    }

    fn parse_with(
        name: &str,
        table: &str,
        condition: &str,
        options: Option<&str>,
        channels: &[String],
        gap: Option<i64>,
    ) -> Result<AlarmDef, RuleError> {
        check_name(name)?;
        let opts: BTreeMap<String, serde_json::Value> = match options {
            None => BTreeMap::new(),
            Some(o) if o.trim().is_empty() => BTreeMap::new(),
            Some(o) => serde_json::from_str(o).map_err(|e| {
                RuleError::InvalidOption(format!(
                    "alarm \"{name}\": options are not a JSON object: {e}"
                ))
            })?,
        };
        let text = |key: &str| -> Result<Option<String>, RuleError> {
            match opts.get(key) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(RuleError::InvalidOption(format!(
                    "alarm \"{name}\": option \"{key}\" must be a string, not {other}"
                ))),
            }
        };
        let allowed: &[&str] = if gap.is_some() {
            &[
                "severity",
                "channels",
                "repeat",
                "where",
                "message",
                "forget_after",
            ]
        } else {
            &[
                "for",
                "clear",
                "keep_firing_for",
                "severity",
                "channels",
                "repeat",
                "where",
                "message",
            ]
        };
        for key in opts.keys() {
            if !allowed.contains(&key.as_str()) {
                return Err(RuleError::InvalidOption(format!(
                    "alarm \"{name}\": unknown option \"{key}\" ({})",
                    allowed.join(", ")
                )));
            }
        }
        let for_micros = match text("for")? {
            Some(d) => parse_duration(&d)
                .map_err(|e| RuleError::InvalidOption(format!("alarm \"{name}\": \"for\": {e}")))?,
            None => 0,
        };
        let keep_firing_for_micros = match text("keep_firing_for")? {
            Some(d) => parse_duration(&d).map_err(|e| {
                RuleError::InvalidOption(format!("alarm \"{name}\": \"keep_firing_for\": {e}"))
            })?,
            None => 0,
        };
        let forget_micros = match (gap, text("forget_after")?) {
            (Some(_), Some(d)) => parse_duration(&d).map_err(|e| {
                RuleError::InvalidOption(format!("alarm \"{name}\": \"forget_after\": {e}"))
            })?,
            (Some(_), None) => DEFAULT_FORGET_MICROS,
            (None, _) => 0,
        };
        if let Some(silent) = gap
            && forget_micros != 0
            && forget_micros <= silent
        {
            return Err(RuleError::InvalidOption(format!(
                "alarm \"{name}\": \"forget_after\" must be longer than silent_for"
            )));
        }
        let repeat_micros = parse_duration(&text("repeat")?.unwrap_or(DEFAULT_REPEAT.into()))
            .map_err(|e| RuleError::InvalidOption(format!("alarm \"{name}\": \"repeat\": {e}")))?;
        let severity = text("severity")?.unwrap_or_else(|| "warning".into());
        if !SEVERITIES.contains(&severity.as_str()) {
            return Err(RuleError::InvalidOption(format!(
                "alarm \"{name}\": severity \"{severity}\" is not one of info, warning, major, critical"
            )));
        }
        let wanted: Vec<String> = match opts.get("channels") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        RuleError::InvalidOption(format!(
                            "alarm \"{name}\": \"channels\" must be a list of channel names"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(RuleError::InvalidOption(format!(
                    "alarm \"{name}\": \"channels\" must be a list of channel names"
                )));
            }
        };
        for c in &wanted {
            if !channels.contains(c) {
                return Err(RuleError::InvalidOption(format!(
                    "alarm \"{name}\": channel \"{c}\" does not exist"
                )));
            }
        }
        Ok(AlarmDef {
            name: name.to_string(),
            table: table.to_string(),
            condition: condition.to_string(),
            clear: text("clear")?,
            for_micros,
            keep_firing_for_micros,
            severity,
            channels: wanted,
            repeat_micros,
            scope: text("where")?,
            message: text("message")?,
            enabled: true,
            kind: if gap.is_some() {
                "gap".into()
            } else {
                threshold()
            },
            silent_micros: gap.unwrap_or(0),
            forget_micros,
            silences: Vec::new(),
        })
    }
}

/// Rule names: what a series key or a notification can carry unquoted.
pub fn check_name(name: &str) -> Result<(), RuleError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(RuleError::InvalidOption(format!(
            "invalid name \"{name}\": use 1–63 letters, digits, '_' or '-'"
        )))
    }
}

/// An alarm ready to evaluate against batches of its table (in the layout it was
/// compiled for).
#[derive(Debug)]
pub struct CompiledAlarm {
    pub def: AlarmDef,
    /// The table layout the expressions were compiled for (fields only grow).
    pub fields: usize,
    condition: Arc<dyn PhysicalExpr>,
    clear: Arc<dyn PhysicalExpr>,
    scope: Option<Arc<dyn PhysicalExpr>>,
    /// Active or future silences: (scope, until epoch ms).
    silences: Vec<(Arc<dyn PhysicalExpr>, i64)>,
    /// Column reported as the transition's value: the first numeric field the
    /// condition reads.
    pub value_column: Option<usize>,
}

/// A condition over `table`'s tags only (a scope or a silence).
pub fn tag_condition(
    ctx: &SessionContext,
    schema: &DFSchema,
    table: &TableDef,
    what: &str,
    sql: &str,
) -> Result<Arc<dyn PhysicalExpr>, RuleError> {
    let (e, p) = boolean(ctx, schema, what, sql)?;
    let tags: Vec<&str> = table.tags.iter().map(String::as_str).collect();
    if let Some(c) = e
        .column_refs()
        .iter()
        .find(|c| !tags.contains(&c.name.as_str()))
    {
        return Err(RuleError::InvalidOption(format!(
            "{what} \"{sql}\": \"{}\" is not a tag of {} (it must name series)",
            c.name, table.name
        )));
    }
    Ok(p)
}

/// Per row of a batch: is it in scope, does the condition / clear condition hold.
pub struct Evaluated {
    pub in_scope: BooleanArray,
    pub condition: BooleanArray,
    pub clear: BooleanArray,
}

fn boolean(
    ctx: &SessionContext,
    schema: &DFSchema,
    what: &str,
    sql: &str,
) -> Result<(Expr, Arc<dyn PhysicalExpr>), RuleError> {
    let expr = ctx
        .parse_sql_expr(sql, schema)
        .map_err(|e| classify(what, sql, e))?;
    let ty = expr.get_type(schema).map_err(|e| classify(what, sql, e))?;
    if ty != DataType::Boolean {
        return Err(RuleError::Syntax(format!(
            "{what} \"{sql}\" is of type {ty}, not boolean"
        )));
    }
    let physical = ctx
        .create_physical_expr(expr.clone(), schema)
        .map_err(|e| classify(what, sql, e))?;
    Ok((expr, physical))
}

fn classify(what: &str, sql: &str, e: DataFusionError) -> RuleError {
    let root = e.find_root();
    match root {
        DataFusionError::SchemaError(s, _)
            if matches!(
                s.as_ref(),
                datafusion::common::SchemaError::FieldNotFound { .. }
            ) =>
        {
            RuleError::UnknownColumn(format!("{what} \"{sql}\": {root}"))
        }
        _ => RuleError::Syntax(format!("{what} \"{sql}\": {root}")),
    }
}

impl CompiledAlarm {
    pub fn compile(def: AlarmDef, table: &TableDef) -> Result<CompiledAlarm, RuleError> {
        let schema = table.arrow_schema();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())
            .map_err(|e| RuleError::Syntax(e.to_string()))?;
        let ctx = SessionContext::new();
        let (cond_expr, condition) = boolean(&ctx, &df_schema, "condition", &def.condition)?;
        let clear_sql = match &def.clear {
            Some(c) => c.clone(),
            None => format!("NOT ({})", def.condition),
        };
        let (_, clear) = boolean(&ctx, &df_schema, "clear", &clear_sql)?;
        let scope = match &def.scope {
            None => None,
            Some(w) => Some(tag_condition(&ctx, &df_schema, table, "where", w)?),
        };
        let silences = def
            .silences
            .iter()
            .map(|s| {
                tag_condition(&ctx, &df_schema, table, "silence", &s.scope).map(|p| (p, s.until_ms))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let key_len = table.key_len();
        let mut refs: Vec<String> = cond_expr
            .column_refs()
            .iter()
            .map(|c| c.name.clone())
            .collect();
        refs.sort();
        let value_column = table
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| refs.contains(&f.name))
            .map(|(i, _)| key_len + i)
            .find(|&i| {
                matches!(
                    schema.field(i).data_type(),
                    DataType::Float64 | DataType::Int64
                )
            });
        Ok(CompiledAlarm {
            def,
            fields: table.fields.len(),
            condition,
            clear,
            scope,
            silences,
            value_column,
        })
    }

    /// Rows of `batch` whose series is silenced at `now_ms`.
    pub fn silenced(&self, batch: &RecordBatch, now_ms: i64) -> Vec<bool> {
        let mut out = vec![false; batch.num_rows()];
        for (expr, until) in &self.silences {
            if *until <= now_ms {
                continue;
            }
            let Ok(v) = expr
                .evaluate(batch)
                .and_then(|v| v.into_array(batch.num_rows()))
            else {
                continue;
            };
            let b = v.as_boolean();
            for (i, o) in out.iter_mut().enumerate() {
                *o |= !b.is_null(i) && b.value(i);
            }
        }
        out
    }

    pub fn evaluate(&self, batch: &RecordBatch) -> Result<Evaluated, DataFusionError> {
        let n = batch.num_rows();
        let eval = |e: &Arc<dyn PhysicalExpr>| -> Result<BooleanArray, DataFusionError> {
            let a = e.evaluate(batch)?.into_array(n)?;
            Ok(a.as_boolean().clone())
        };
        let in_scope = match &self.scope {
            Some(s) => eval(s)?,
            None => BooleanArray::from(vec![true; n]),
        };
        Ok(Evaluated {
            in_scope,
            condition: eval(&self.condition)?,
            clear: eval(&self.clear)?,
        })
    }

    /// The reported value of row `i`.
    pub fn value(&self, batch: &RecordBatch, i: usize) -> Option<f64> {
        let c = batch.column(self.value_column?);
        if c.is_null(i) {
            return None;
        }
        match c.data_type() {
            DataType::Float64 => Some(c.as_primitive::<Float64Type>().value(i)),
            DataType::Int64 => Some(c.as_primitive::<Int64Type>().value(i) as f64),
            _ => None,
        }
    }
}
