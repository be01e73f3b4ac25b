//! Appliance detection settings of a table (`set_appliance_detection(table, options)`,
//! catalog kind `appliance_detection`, named by the table): which columns hold active
//! power and reactive power or power factor, which appliances are prohibited, how long one
//! must run before the alarm, and the channels that hear of it. Validated against the
//! table before it is stored; compiled to column positions for the runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use wattdb_algorithms::appliance::{DetectorConfig, Sample, Signature, builtin_signatures};
use wattdb_storage::{FieldType, TableDef};

use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use super::alarm_rule::tag_condition;
use super::duration::parse_duration;
use super::error::RuleError;

/// The catalog kind of detection settings.
pub const DETECTION_KIND: &str = "appliance_detection";
/// The catalog kind of users' own appliance signatures.
pub const APPLIANCE_KIND: &str = "appliance";
/// The table detected appliance runs are written to.
pub const APPLIANCE_EVENTS_TABLE: &str = "appliance_events";
/// The alarm name of prohibited-appliance transitions in `alarm_events`.
pub const APPLIANCE_ALARM: &str = "prohibited_appliance";

const OPTIONS: &[&str] = &[
    "where",
    "power",
    "reactive",
    "pf",
    "prohibited",
    "delay",
    "channels",
    "severity",
];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionDef {
    pub table: String,
    /// Active power column, W.
    pub power: String,
    /// Reactive power column, var.
    #[serde(default)]
    pub reactive: Option<String>,
    /// Power factor column (used when there is no reactive power).
    #[serde(default)]
    pub pf: Option<String>,
    pub prohibited: Vec<String>,
    pub delay_micros: i64,
    #[serde(default)]
    pub channels: Vec<String>,
    pub severity: String,
    /// Only series matching this condition over tags are watched.
    #[serde(default)]
    pub scope: Option<String>,
}

fn bad(m: impl Into<String>) -> RuleError {
    RuleError::InvalidOption(m.into())
}

/// A numeric field of `table` named `name`, or the error a user gets.
fn numeric_column(table: &TableDef, what: &str, name: &str) -> Result<(), RuleError> {
    let field = table
        .fields
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            RuleError::UnknownColumn(format!(
                "\"{what}\": column \"{name}\" does not exist in table \"{}\"",
                table.name
            ))
        })?;
    if !matches!(field.field_type, FieldType::Float | FieldType::Integer) {
        return Err(bad(format!(
            "\"{what}\": column \"{name}\" is {}, not a number",
            field.field_type.sql_name()
        )));
    }
    Ok(())
}

impl DetectionDef {
    /// Parse and check `options` (a JSON object) for `table`; `channels` are the
    /// channels that exist.
    pub fn parse(
        table: &TableDef,
        options: &str,
        channels: &[String],
        custom: &[ApplianceDef],
    ) -> Result<DetectionDef, RuleError> {
        let opts: BTreeMap<String, serde_json::Value> = serde_json::from_str(options)
            .map_err(|e| bad(format!("options are not a JSON object: {e}")))?;
        if let Some(k) = opts.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown option \"{k}\" ({})",
                OPTIONS.join(", ")
            )));
        }
        let text = |k: &str| -> Result<Option<String>, RuleError> {
            match opts.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(v) => Err(bad(format!("\"{k}\" must be a string, not {v}"))),
            }
        };
        let list = |k: &str| -> Result<Option<Vec<String>>, RuleError> {
            match opts.get(k) {
                None => Ok(None),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| bad(format!("\"{k}\" must list strings")))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(v) => Err(bad(format!("\"{k}\" must be a list, not {v}"))),
            }
        };
        let power =
            text("power")?.ok_or_else(|| bad("\"power\" (the active power column) is required"))?;
        numeric_column(table, "power", &power)?;
        let reactive = text("reactive")?;
        if let Some(c) = &reactive {
            numeric_column(table, "reactive", c)?;
        }
        let pf = text("pf")?;
        if let Some(c) = &pf {
            numeric_column(table, "pf", c)?;
        }
        let known: Vec<String> = builtin_signatures()
            .into_iter()
            .map(|s| s.name)
            .chain(custom.iter().map(|a| a.name.clone()))
            .collect();
        let prohibited = match list("prohibited")? {
            Some(p) => p,
            None => DetectorConfig::default().prohibited,
        };
        if let Some(unknown) = prohibited.iter().find(|p| !known.contains(p)) {
            return Err(bad(format!(
                "unknown appliance \"{unknown}\" ({})",
                known.join(", ")
            )));
        }
        let delay_micros = match text("delay")? {
            None => DetectorConfig::default().delay_us,
            Some(d) => parse_duration(&d).map_err(|e| bad(format!("\"delay\": {e}")))?,
        };
        let channels_used = list("channels")?.unwrap_or_default();
        if let Some(c) = channels_used.iter().find(|c| !channels.contains(c)) {
            return Err(bad(format!("channel \"{c}\" does not exist")));
        }
        let severity = text("severity")?.unwrap_or_else(|| "major".into());
        if !["info", "warning", "major", "critical"].contains(&severity.as_str()) {
            return Err(bad(format!(
                "severity \"{severity}\" is not info, warning, major or critical"
            )));
        }
        Ok(DetectionDef {
            table: table.name.clone(),
            power,
            reactive,
            pf,
            prohibited,
            delay_micros,
            channels: channels_used,
            severity,
            scope: text("where")?,
        })
    }
}

/// A detection compiled against its table: the detector settings and where the power
/// columns are in a batch of the table's rows.
#[derive(Debug, Clone)]
pub struct CompiledDetection {
    pub def: DetectionDef,
    pub config: DetectorConfig,
    power: usize,
    reactive: Option<usize>,
    pf: Option<usize>,
    scope: Option<Arc<dyn PhysicalExpr>>,
}

fn column_index(table: &TableDef, name: &str) -> Result<usize, RuleError> {
    table
        .fields
        .iter()
        .position(|f| f.name == name)
        .map(|i| table.key_len() + i)
        .ok_or_else(|| RuleError::UnknownColumn(format!("column \"{name}\" does not exist")))
}

fn number(col: &dyn Array, row: usize) -> Option<f64> {
    if col.is_null(row) {
        return None;
    }
    if let Some(a) = col.as_primitive_opt::<Float64Type>() {
        return Some(a.value(row));
    }
    col.as_primitive_opt::<Int64Type>()
        .map(|a| a.value(row) as f64)
}

impl CompiledDetection {
    pub fn compile(
        def: DetectionDef,
        table: &TableDef,
        custom: &[ApplianceDef],
    ) -> Result<CompiledDetection, RuleError> {
        let power = column_index(table, &def.power)?;
        let reactive = def
            .reactive
            .as_deref()
            .map(|c| column_index(table, c))
            .transpose()?;
        let pf = def
            .pf
            .as_deref()
            .map(|c| column_index(table, c))
            .transpose()?;
        let mut signatures = builtin_signatures();
        signatures.extend(custom.iter().map(ApplianceDef::signature));
        let config = DetectorConfig {
            signatures,
            prohibited: def.prohibited.clone(),
            delay_us: def.delay_micros,
            ..DetectorConfig::default()
        };
        let scope = match &def.scope {
            None => None,
            Some(w) => {
                let df_schema = DFSchema::try_from(table.arrow_schema().as_ref().clone())
                    .map_err(|e| RuleError::Syntax(e.to_string()))?;
                let ctx = SessionContext::new();
                Some(tag_condition(&ctx, &df_schema, table, "where", w)?)
            }
        };
        Ok(CompiledDetection {
            def,
            config,
            power,
            reactive,
            pf,
            scope,
        })
    }

    /// Per row of `batch`: is its series watched (the `where` scope)?
    pub fn in_scope(&self, batch: &RecordBatch) -> Vec<bool> {
        let n = batch.num_rows();
        let Some(scope) = &self.scope else {
            return vec![true; n];
        };
        match scope.evaluate(batch).and_then(|v| v.into_array(n)) {
            Ok(a) => {
                let b = a.as_boolean();
                (0..n).map(|i| !b.is_null(i) && b.value(i)).collect()
            }
            Err(e) => {
                tracing::error!(table = %self.def.table, error = %e, "appliance detection scope failed");
                vec![false; n]
            }
        }
    }

    /// The reading at `row` of `batch` (the table's rows), when it has active power.
    pub fn sample(&self, batch: &RecordBatch, ts: i64, row: usize) -> Option<Sample> {
        let p = number(batch.column(self.power).as_ref(), row)?;
        if let Some(q) = self
            .reactive
            .and_then(|c| number(batch.column(c).as_ref(), row))
        {
            return Some(Sample::new(ts, p, Some(q)));
        }
        match self.pf.and_then(|c| number(batch.column(c).as_ref(), row)) {
            Some(pf) if pf.abs() > 0.0 && pf.abs() <= 1.0 => Some(Sample::from_pf(ts, p, pf)),
            _ => Some(Sample::new(ts, p, None)),
        }
    }
}

/// A user's own appliance signature (`create_appliance(name, options)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplianceDef {
    pub name: String,
    /// Step size, W.
    pub watts: (f64, f64),
    /// Step power factor.
    pub pf: (f64, f64),
    #[serde(default)]
    pub min_duration_micros: i64,
    #[serde(default)]
    pub max_duration_micros: Option<i64>,
    #[serde(default)]
    pub cycling: Option<bool>,
    #[serde(default)]
    pub varying: Option<bool>,
}

const APPLIANCE_OPTIONS: &[&str] = &[
    "watts",
    "pf",
    "min_duration",
    "max_duration",
    "cycling",
    "varying",
];

fn range(
    opts: &BTreeMap<String, serde_json::Value>,
    k: &str,
) -> Result<Option<(f64, f64)>, RuleError> {
    let Some(v) = opts.get(k) else {
        return Ok(None);
    };
    let pair = v
        .as_array()
        .filter(|a| a.len() == 2)
        .and_then(|a| Some((a[0].as_f64()?, a[1].as_f64()?)))
        .ok_or_else(|| bad(format!("\"{k}\" must be [low, high], not {v}")))?;
    if !(pair.0.is_finite() && pair.1.is_finite() && pair.0 <= pair.1) {
        return Err(bad(format!("\"{k}\": low must not exceed high")));
    }
    Ok(Some(pair))
}

impl ApplianceDef {
    /// Parse `options` for appliance `name` (which must not be a built-in one).
    pub fn parse(name: &str, options: &str) -> Result<ApplianceDef, RuleError> {
        super::alarm_rule::check_name(name)?;
        if builtin_signatures().iter().any(|s| s.name == name) || UNKNOWN_NAMES.contains(&name) {
            return Err(bad(format!("\"{name}\" is a built-in appliance")));
        }
        let opts: BTreeMap<String, serde_json::Value> = serde_json::from_str(options)
            .map_err(|e| bad(format!("options are not a JSON object: {e}")))?;
        if let Some(k) = opts
            .keys()
            .find(|k| !APPLIANCE_OPTIONS.contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown option \"{k}\" ({})",
                APPLIANCE_OPTIONS.join(", ")
            )));
        }
        let watts =
            range(&opts, "watts")?.ok_or_else(|| bad("\"watts\": [low, high] is required"))?;
        if watts.0 <= 0.0 {
            return Err(bad("\"watts\" must be positive"));
        }
        let pf = range(&opts, "pf")?.unwrap_or((0.0, 1.0));
        if pf.0 < 0.0 || pf.1 > 1.0 {
            return Err(bad("\"pf\" must be within [0, 1]"));
        }
        let duration = |k: &str| -> Result<Option<i64>, RuleError> {
            match opts.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(d)) => parse_duration(d)
                    .map(Some)
                    .map_err(|e| bad(format!("\"{k}\": {e}"))),
                Some(v) => Err(bad(format!("\"{k}\" must be a duration, not {v}"))),
            }
        };
        let flag = |k: &str| -> Result<Option<bool>, RuleError> {
            match opts.get(k) {
                None => Ok(None),
                Some(serde_json::Value::Bool(b)) => Ok(Some(*b)),
                Some(v) => Err(bad(format!("\"{k}\" must be true or false, not {v}"))),
            }
        };
        let def = ApplianceDef {
            name: name.to_string(),
            watts,
            pf,
            min_duration_micros: duration("min_duration")?.unwrap_or(0),
            max_duration_micros: duration("max_duration")?,
            cycling: flag("cycling")?,
            varying: flag("varying")?,
        };
        if def
            .max_duration_micros
            .is_some_and(|max| max < def.min_duration_micros)
        {
            return Err(bad("\"max_duration\" is shorter than \"min_duration\""));
        }
        Ok(def)
    }

    pub fn signature(&self) -> Signature {
        Signature {
            name: self.name.clone(),
            watts: self.watts,
            pf: self.pf,
            min_duration_s: self.min_duration_micros as f64 / 1e6,
            max_duration_s: self
                .max_duration_micros
                .map_or(f64::INFINITY, |m| m as f64 / 1e6),
            cycling: self.cycling,
            varying: self.varying,
        }
    }
}

/// What runs no signature matches are called.
pub const UNKNOWN_NAMES: [&str; 2] = ["unknown_resistive", "unknown"];
