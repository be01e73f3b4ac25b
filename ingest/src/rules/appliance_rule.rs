//! Appliance detection settings of a table (`set_appliance_detection(table, options)`,
//! catalog kind `appliance_detection`, named by the table): which columns hold active
//! power and reactive power or power factor, which appliances are prohibited, how long one
//! must run before the alarm, and the channels that hear of it. Validated against the
//! table before it is stored; compiled to column positions for the runtime.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use wattdb_algorithms::appliance::{DetectorConfig, Sample, builtin_signatures};
use wattdb_storage::{FieldType, TableDef};

use super::duration::parse_duration;
use super::error::RuleError;

/// The catalog kind of detection settings.
pub const DETECTION_KIND: &str = "appliance_detection";
/// The table detected appliance runs are written to.
pub const APPLIANCE_EVENTS_TABLE: &str = "appliance_events";
/// The alarm name of prohibited-appliance transitions in `alarm_events`.
pub const APPLIANCE_ALARM: &str = "prohibited_appliance";

const OPTIONS: &[&str] = &[
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
        let known: Vec<String> = builtin_signatures().into_iter().map(|s| s.name).collect();
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
    pub fn compile(def: DetectionDef, table: &TableDef) -> Result<CompiledDetection, RuleError> {
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
        let config = DetectorConfig {
            prohibited: def.prohibited.clone(),
            delay_us: def.delay_micros,
            ..DetectorConfig::default()
        };
        Ok(CompiledDetection {
            def,
            config,
            power,
            reactive,
            pf,
        })
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
