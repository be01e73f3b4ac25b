//! What a raw table's rollups look like: the levels (base interval computed from raw
//! rows, coarser ones composed from the base), the numeric fields they summarise, and
//! the columns of each rollup table.

use std::sync::Arc;

use chrono_tz::Tz;
use wattdb_storage::{FieldDef, FieldType, RollupOf, RollupSettings, TableDef};

use wattdb_storage::Interval;

/// Rollup column suffixes, in column order.
pub const SUFFIXES: [&str; 7] = ["min", "max", "avg", "sum", "count", "first", "last"];
pub const DELTA: &str = "delta";

/// Retention of new fixed-interval rollup tables (days keep everything).
pub const FIXED_INTERVAL_RETENTION: &str = "3 years";

/// The built-in intervals when a table sets none.
pub const DEFAULT_INTERVALS: [&str; 2] = ["15m", "1d"];

#[derive(Debug, Clone)]
pub struct Level {
    /// As written in the settings, normalised (`15m`, `1d`): the table name suffix.
    pub label: String,
    pub interval: Interval,
    /// `<source>_<label>`.
    pub table: String,
}

#[derive(Debug, Clone)]
pub struct RollupField {
    pub name: String,
    /// Position among the source table's fields.
    pub source_index: usize,
    pub field_type: FieldType,
    pub counter: bool,
}

#[derive(Debug, Clone)]
pub struct RollupSpec {
    pub source: Arc<TableDef>,
    /// Finest first: `levels[0]` is computed from raw rows, the others from `levels[0]`.
    pub levels: Vec<Level>,
    pub fields: Vec<RollupField>,
}

impl RollupSpec {
    /// The rollups of `def`; `None` for rollup tables and tables without numeric fields.
    /// Settings that do not parse are an error (they are checked when set, so this only
    /// happens with a catalog written by hand).
    pub fn of(def: Arc<TableDef>, tz: Tz) -> Result<Option<Self>, String> {
        if def.is_rollup() {
            return Ok(None);
        }
        let levels = levels(&def.name, &def.rollups, tz)?;
        let fields: Vec<RollupField> = def
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f.field_type, FieldType::Float | FieldType::Integer))
            .map(|(i, f)| RollupField {
                name: f.name.clone(),
                source_index: i,
                field_type: f.field_type,
                counter: def.rollups.counters.contains(&f.name),
            })
            .collect();
        if fields.is_empty() || levels.is_empty() {
            return Ok(None);
        }
        Ok(Some(RollupSpec {
            source: def,
            levels,
            fields,
        }))
    }

    pub fn base(&self) -> &Level {
        &self.levels[0]
    }

    pub fn has_counters(&self) -> bool {
        self.fields.iter().any(|f| f.counter)
    }

    /// Columns of every rollup table of this source (tags come from the source).
    pub fn columns(&self) -> Vec<FieldDef> {
        let mut out = Vec::new();
        for f in &self.fields {
            for s in SUFFIXES {
                let ty = match s {
                    "avg" => FieldType::Float,
                    "count" => FieldType::Integer,
                    _ => f.field_type,
                };
                out.push(FieldDef {
                    name: format!("{}_{s}", f.name),
                    field_type: ty,
                });
            }
            if f.counter {
                out.push(FieldDef {
                    name: format!("{}_{DELTA}", f.name),
                    field_type: f.field_type,
                });
            }
        }
        out
    }

    /// Retention a new rollup table of `level` starts with: 3 years for fixed intervals
    /// (15-minute rows), none for days.
    pub fn default_retention(level: &Level) -> Option<String> {
        match level.interval {
            Interval::Fixed(_) => Some(FIXED_INTERVAL_RETENTION.to_string()),
            Interval::Day(_) => None,
        }
    }

    pub fn rollup_of(&self, level: &Level) -> RollupOf {
        RollupOf {
            source: self.source.id,
            interval: level.label.clone(),
        }
    }
}

/// Parse and order a table's intervals, and check they compose: every level is computed
/// from the finest one, so the finest must divide each coarser fixed interval, and — with
/// `1d` — must divide 15 minutes (zones are offset from UTC in steps of 15 minutes, so a
/// local midnight always falls on such a boundary).
pub fn levels(table: &str, settings: &RollupSettings, tz: Tz) -> Result<Vec<Level>, String> {
    let texts: Vec<String> = match &settings.intervals {
        Some(v) => v.clone(),
        None => DEFAULT_INTERVALS.iter().map(|s| s.to_string()).collect(),
    };
    let mut levels: Vec<Level> = Vec::new();
    for text in texts {
        let label = text.trim().to_ascii_lowercase().replace("min", "m");
        let interval = Interval::parse(&label, tz)?;
        if levels.iter().any(|l| l.interval == interval) {
            continue;
        }
        levels.push(Level {
            table: format!("{table}_{label}"),
            label,
            interval,
        });
    }
    levels.sort_by_key(|l| l.interval.nominal_micros());
    if let Some((base, rest)) = levels.split_first() {
        for l in rest {
            let ok = match (base.interval, l.interval) {
                (Interval::Fixed(b), Interval::Fixed(w)) => w % b == 0,
                (Interval::Fixed(b), Interval::Day(_)) => (15 * 60 * 1_000_000) % b == 0,
                (Interval::Day(_), _) => false,
            };
            if !ok {
                return Err(format!(
                    "interval {} cannot be composed from the finest interval {} \
                     (it must be a multiple of it; with 1d the finest must divide 15m)",
                    l.label, base.label
                ));
            }
        }
    }
    Ok(levels)
}

/// Check settings before they are stored: intervals parse and compose, and counters name
/// numeric fields (or fields that do not exist yet).
pub fn check_settings(def: &TableDef, settings: &RollupSettings, tz: Tz) -> Result<(), String> {
    if def.is_rollup() {
        return Err(format!("\"{}\" is a rollup table", def.name));
    }
    if let Some(v) = &settings.intervals
        && v.is_empty()
    {
        return Err("give at least one interval (rollups cannot be switched off yet)".into());
    }
    levels(&def.name, settings, tz)?;
    for c in &settings.counters {
        if let Some(f) = def.fields.iter().find(|f| &f.name == c)
            && !matches!(f.field_type, FieldType::Float | FieldType::Integer)
        {
            return Err(format!(
                "counter \"{c}\" is a {} field; counters must be numeric",
                f.field_type.sql_name()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattdb_storage::TableId;

    fn def() -> TableDef {
        let f = |n: &str, t| FieldDef {
            name: n.into(),
            field_type: t,
        };
        TableDef::new(
            TableId(3),
            "electric",
            vec!["pid".into()],
            vec![
                f("ua", FieldType::Float),
                f("state", FieldType::Text),
                f("ep", FieldType::Float),
                f("n", FieldType::Integer),
            ],
        )
        .unwrap()
    }

    #[test]
    fn default_levels_and_columns() {
        let mut d = def();
        d.rollups.counters = vec!["ep".into()];
        let spec = RollupSpec::of(Arc::new(d), chrono_tz::UTC)
            .unwrap()
            .unwrap();
        let names: Vec<&str> = spec.levels.iter().map(|l| l.table.as_str()).collect();
        assert_eq!(names, ["electric_15m", "electric_1d"]);
        let cols: Vec<String> = spec.columns().into_iter().map(|c| c.name).collect();
        assert_eq!(cols.len(), 7 * 3 + 1, "three numeric fields, one counter");
        assert!(cols.contains(&"ep_delta".to_string()));
        assert!(!cols.iter().any(|c| c.starts_with("state")));
        let n_sum = spec
            .columns()
            .into_iter()
            .find(|c| c.name == "n_sum")
            .unwrap();
        assert_eq!(n_sum.field_type, FieldType::Integer);
    }

    #[test]
    fn settings_are_checked() {
        let tz = chrono_tz::Asia::Kolkata;
        let ok = |i: &[&str]| RollupSettings {
            intervals: Some(i.iter().map(|s| s.to_string()).collect()),
            counters: vec![],
            ..Default::default()
        };
        assert!(check_settings(&def(), &ok(&["5m", "1h", "1d"]), tz).is_ok());
        assert!(check_settings(&def(), &ok(&["1d"]), tz).is_ok());
        assert!(check_settings(&def(), &ok(&["1h", "1d"]), tz).is_err());
        assert!(check_settings(&def(), &ok(&["10m", "15m"]), tz).is_err());
        assert!(check_settings(&def(), &ok(&[]), tz).is_err());
        let bad_counter = RollupSettings {
            intervals: None,
            counters: vec!["state".into()],
            ..Default::default()
        };
        assert!(check_settings(&def(), &bad_counter, tz).is_err());
    }
}
