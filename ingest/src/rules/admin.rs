//! The SQL admin functions of alarms and channels: `create_alarm(name, table, condition
//! [, options])`, `drop_alarm(name)`, `enable_alarm(name, true|false)`,
//! `create_channel(name, kind, options)`, `drop_channel(name)`. Definitions are validated and
//! compiled before they are stored (nothing changes on error), stored in the catalog,
//! and the runtime recompiles its alarms.

use wattdb_storage::{RuleEntry, Storage};

use super::alarm_rule::{AlarmDef, CompiledAlarm, Silence, check_name};
use super::alarm_runtime::{ALARM_KIND, AlarmRuntime, EVENTS_TABLE};
use super::appliance_rule::{
    APPLIANCE_EVENTS_TABLE, APPLIANCE_KIND, ApplianceDef, CompiledDetection, DETECTION_KIND,
    DetectionDef,
};
use super::channel::{CHANNEL_KIND, ChannelDef};
use super::duration::parse_duration;
use super::error::RuleError;
use super::stored;

pub const FUNCTIONS: &[&str] = &[
    "create_alarm",
    "create_gap_alarm",
    "drop_alarm",
    "enable_alarm",
    "silence_alarm",
    "create_channel",
    "drop_channel",
    "set_appliance_detection",
    "create_appliance",
];

/// Run one of [`FUNCTIONS`]; `None` when `name` is not one of them.
pub async fn call(
    storage: &Storage,
    runtime: &AlarmRuntime,
    name: &str,
    args: &[String],
) -> Option<Result<String, RuleError>> {
    let result = match name {
        "create_alarm" => create_alarm(storage, runtime, args, false).await,
        "create_gap_alarm" => create_alarm(storage, runtime, args, true).await,
        "drop_alarm" => drop_alarm(storage, runtime, args).await,
        "enable_alarm" => enable_alarm(storage, runtime, args).await,
        "silence_alarm" => silence_alarm(storage, runtime, args).await,
        "create_channel" => create_channel(storage, args).await,
        "drop_channel" => drop_channel(storage, args).await,
        "set_appliance_detection" => set_appliance_detection(storage, runtime, args).await,
        "create_appliance" => create_appliance(storage, runtime, args).await,
        _ => return None,
    };
    Some(result)
}

/// The stored definition of alarm `name`.
fn load_alarm(storage: &Storage, name: &str) -> Result<AlarmDef, RuleError> {
    let entry = storage
        .rules(ALARM_KIND)
        .into_iter()
        .find(|r| r.name == name)
        .ok_or_else(|| {
            RuleError::Storage(wattdb_storage::Error::RuleNotFound {
                kind: ALARM_KIND.into(),
                name: name.to_string(),
            })
        })?;
    serde_json::from_value(entry.body).map_err(|e| RuleError::InvalidOption(e.to_string()))
}

/// Store `value` as rule `kind`/`name` (`create`: it must not exist yet; else it must).
async fn store_rule(
    storage: &Storage,
    kind: &str,
    name: &str,
    value: &impl serde::Serialize,
    create: bool,
) -> Result<(), RuleError> {
    let body = serde_json::to_value(value).map_err(|e| RuleError::InvalidOption(e.to_string()))?;
    storage
        .put_rule(
            RuleEntry {
                kind: kind.into(),
                name: name.to_string(),
                body,
            },
            create,
        )
        .await?;
    Ok(())
}

async fn create_alarm(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
    gap: bool,
) -> Result<String, RuleError> {
    let (name, table, condition, options) = match args {
        [n, t, c] => (n, t, c, None),
        [n, t, c, o] => (n, t, c, Some(o.as_str())),
        _ if gap => {
            return Err(RuleError::Usage(
                "create_gap_alarm(name, table, silent_for [, options_json]) takes 3 or 4 \
                 arguments"
                    .into(),
            ));
        }
        _ => {
            return Err(RuleError::Usage(
                "create_alarm(name, table, condition [, options_json]) takes 3 or 4 arguments"
                    .into(),
            ));
        }
    };
    check_name(name)?;
    if table == EVENTS_TABLE {
        return Err(RuleError::InvalidOption(format!(
            "alarms cannot watch {EVENTS_TABLE} (their own transitions)"
        )));
    }
    let def_table = storage
        .table(table)
        .ok_or_else(|| RuleError::UnknownTable(table.clone()))?;
    let channels: Vec<String> = stored::names(storage, CHANNEL_KIND);
    let def = if gap {
        AlarmDef::parse_gap(name, table, condition, options, &channels)?
    } else {
        AlarmDef::parse(name, table, condition, options, &channels)?
    };
    // Compiles (columns exist, boolean conditions) or nothing is stored.
    CompiledAlarm::compile(def.clone(), &def_table)?;
    store_rule(storage, ALARM_KIND, name, &def, true).await?;
    runtime.reload();
    Ok(format!(
        "created {} alarm {name} on {table}",
        if gap { "gap" } else { "threshold" }
    ))
}

async fn drop_alarm(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
) -> Result<String, RuleError> {
    let [name] = args else {
        return Err(RuleError::Usage("drop_alarm(name) takes 1 argument".into()));
    };
    storage.drop_rule(ALARM_KIND, name).await?;
    runtime.reload();
    Ok(format!("dropped alarm {name}"))
}

async fn enable_alarm(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
) -> Result<String, RuleError> {
    let [name, on] = args else {
        return Err(RuleError::Usage(
            "enable_alarm(name, true|false) takes 2 arguments".into(),
        ));
    };
    let enabled = match on.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => true,
        "false" | "off" | "0" => false,
        _ => {
            return Err(RuleError::InvalidOption(format!(
                "enable_alarm: \"{on}\" is not true or false"
            )));
        }
    };
    let mut def = load_alarm(storage, name)?;
    def.enabled = enabled;
    store_rule(storage, ALARM_KIND, name, &def, false).await?;
    runtime.reload();
    Ok(format!(
        "alarm {name} {}",
        if enabled { "enabled" } else { "disabled" }
    ))
}

async fn create_channel(storage: &Storage, args: &[String]) -> Result<String, RuleError> {
    let [name, kind, options] = args else {
        return Err(RuleError::Usage(
            "create_channel(name, kind, options_json) takes 3 arguments".into(),
        ));
    };
    let def = ChannelDef::parse(name, kind, options)?;
    store_rule(storage, CHANNEL_KIND, name, &def, true).await?;
    Ok(format!("created {kind} channel {name}"))
}

async fn drop_channel(storage: &Storage, args: &[String]) -> Result<String, RuleError> {
    let [name] = args else {
        return Err(RuleError::Usage(
            "drop_channel(name) takes 1 argument".into(),
        ));
    };
    let users: Vec<String> = stored::definitions::<AlarmDef>(storage.rules(ALARM_KIND))
        .into_iter()
        .filter(|a| a.channels.contains(name))
        .map(|a| a.name)
        .collect();
    if !users.is_empty() {
        return Err(RuleError::InUse(format!(
            "channel \"{name}\" is used by alarm(s) {}",
            users.join(", ")
        )));
    }
    storage.drop_rule(CHANNEL_KIND, name).await?;
    Ok(format!("dropped channel {name}"))
}

/// `silence_alarm(name, where, duration)`: no notifications for the series matching
/// `where` (a condition over tags) for `duration`; states and `alarm_events` go on.
async fn silence_alarm(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
) -> Result<String, RuleError> {
    let [name, scope, duration] = args else {
        return Err(RuleError::Usage(
            "silence_alarm(name, where, duration) takes 3 arguments".into(),
        ));
    };
    let micros = parse_duration(duration)
        .map_err(|e| RuleError::InvalidOption(format!("silence_alarm: duration: {e}")))?;
    if micros <= 0 {
        return Err(RuleError::InvalidOption(
            "silence_alarm: the duration must be positive".into(),
        ));
    }
    let mut def = load_alarm(storage, name)?;
    let table = storage
        .table(&def.table)
        .ok_or_else(|| RuleError::UnknownTable(def.table.clone()))?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let until_ms = now_ms + micros / 1000;
    def.silences.retain(|s| s.until_ms > now_ms);
    def.silences.push(Silence {
        scope: scope.clone(),
        until_ms,
    });
    // The scope must be a condition over tags (checked by compiling the whole alarm).
    CompiledAlarm::compile(def.clone(), &table)?;
    store_rule(storage, ALARM_KIND, name, &def, false).await?;
    runtime.reload();
    let until = chrono::DateTime::from_timestamp_millis(until_ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    Ok(format!("alarm {name} silenced for {scope} until {until}"))
}

/// What the config file declares (`[[channels]]`, `[[alarms]]`).
#[derive(Debug, Clone, Default)]
pub struct ConfiguredRules {
    /// (name, kind, options JSON)
    pub channels: Vec<(String, String, String)>,
    /// (name, table, condition or silent_for, options JSON)
    pub alarms: Vec<(String, String, ConfiguredAlarm, String)>,
}

#[derive(Debug, Clone)]
pub enum ConfiguredAlarm {
    Threshold(String),
    Gap(String),
}

/// Store the config file's rules at startup: each is validated like the SQL call and
/// created, or replaces the stored one of that name (an alarm keeps its silences and
/// its enabled flag). An alarm on a table that does not exist yet is stored unchecked
/// and compiled once the table appears. Errors name the rule.
pub async fn apply_config(
    storage: &Storage,
    runtime: &AlarmRuntime,
    rules: &ConfiguredRules,
) -> Result<(), RuleError> {
    let named = |kind: &str, name: &str, e: RuleError| match e {
        RuleError::Storage(s) => RuleError::Storage(s),
        e => RuleError::InvalidOption(format!("config [[{kind}]] {name}: {e}")),
    };
    for (name, kind, options) in &rules.channels {
        let def = ChannelDef::parse(name, kind, options).map_err(|e| named("channels", name, e))?;
        let exists = stored::names(storage, CHANNEL_KIND).contains(name);
        store_rule(storage, CHANNEL_KIND, name, &def, !exists).await?;
    }
    let channels: Vec<String> = stored::names(storage, CHANNEL_KIND);
    for (name, table, what, options) in &rules.alarms {
        let mut def = match what {
            ConfiguredAlarm::Threshold(c) => {
                AlarmDef::parse(name, table, c, Some(options), &channels)
            }
            ConfiguredAlarm::Gap(s) => {
                AlarmDef::parse_gap(name, table, s, Some(options), &channels)
            }
        }
        .map_err(|e| named("alarms", name, e))?;
        if let Some(t) = storage.table(table) {
            CompiledAlarm::compile(def.clone(), &t).map_err(|e| named("alarms", name, e))?;
        }
        let stored = load_alarm(storage, name).ok();
        if let Some(old) = &stored {
            def.enabled = old.enabled;
            def.silences = old.silences.clone();
        }
        store_rule(storage, ALARM_KIND, name, &def, stored.is_none()).await?;
    }
    runtime.reload();
    Ok(())
}

/// `set_appliance_detection(table, options_json | NULL)`: detect appliances in `table`'s
/// power readings from now on (replacing earlier settings), or stop (`NULL`).
async fn set_appliance_detection(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
) -> Result<String, RuleError> {
    let [table, options] = args else {
        return Err(RuleError::Usage(
            "set_appliance_detection(table, options_json | NULL) takes 2 arguments".into(),
        ));
    };
    let exists = stored::names(storage, DETECTION_KIND).contains(table);
    if options.trim() == "null" {
        if exists {
            storage.drop_rule(DETECTION_KIND, table).await?;
            runtime.reload();
            return Ok(format!("appliance detection on {table} stopped"));
        }
        return Ok(format!("no appliance detection on {table}"));
    }
    if table == APPLIANCE_EVENTS_TABLE || table == EVENTS_TABLE {
        return Err(RuleError::InvalidOption(format!(
            "{table} holds events, not power readings"
        )));
    }
    let def_table = storage
        .table(table)
        .ok_or_else(|| RuleError::UnknownTable(table.clone()))?;
    // appliance_events takes its tag columns from the tables detected: they must agree.
    if let Some(events) = storage.table(APPLIANCE_EVENTS_TABLE)
        && events.tags != def_table.tags
    {
        return Err(RuleError::InvalidOption(format!(
            "{APPLIANCE_EVENTS_TABLE} has the tag columns ({}) and {table} has ({}): \
             detection writes a table's tags into {APPLIANCE_EVENTS_TABLE}, so they must match",
            events.tags.join(", "),
            def_table.tags.join(", ")
        )));
    }
    let channels: Vec<String> = stored::names(storage, CHANNEL_KIND);
    let custom = stored::definitions::<ApplianceDef>(storage.rules(APPLIANCE_KIND));
    let def = DetectionDef::parse(&def_table, options, &channels, &custom)?;
    CompiledDetection::compile(def.clone(), &def_table, &custom)?;
    // Every column from the start (a run's off_ts only exists once it has ended).
    use wattdb_storage::{FieldDef, FieldType};
    let field = |name: &str, field_type| FieldDef {
        name: name.into(),
        field_type,
    };
    storage
        .create_table(
            APPLIANCE_EVENTS_TABLE,
            def_table.tags.clone(),
            vec![
                field("appliance", FieldType::Text),
                field("off_ts", FieldType::Timestamp),
                field("delta_p", FieldType::Float),
                field("delta_q", FieldType::Float),
                field("pf", FieldType::Float),
                field("confidence", FieldType::Float),
                field("prohibited", FieldType::Boolean),
                field("cycles", FieldType::Integer),
                field("stages", FieldType::Integer),
            ],
            true,
        )
        .await?;
    store_rule(storage, DETECTION_KIND, table, &def, !exists).await?;
    runtime.reload();
    Ok(format!(
        "appliance detection on {table}: power {}{}, prohibited {}",
        def.power,
        def.reactive
            .as_deref()
            .map(|q| format!(", reactive {q}"))
            .or(def.pf.as_deref().map(|pf| format!(", power factor {pf}")))
            .unwrap_or_default(),
        def.prohibited.join(", ")
    ))
}

/// `create_appliance(name, options)`: an appliance signature of one's own (watts, power
/// factor and duration ranges, cycling, varying), usable in `prohibited` and named in
/// `appliance_events` when it matches.
async fn create_appliance(
    storage: &Storage,
    runtime: &AlarmRuntime,
    args: &[String],
) -> Result<String, RuleError> {
    let [name, options] = args else {
        return Err(RuleError::Usage(
            "create_appliance(name, options_json) takes 2 arguments".into(),
        ));
    };
    let def = ApplianceDef::parse(name, options)?;
    store_rule(storage, APPLIANCE_KIND, name, &def, true).await?;
    runtime.reload();
    Ok(format!(
        "created appliance {name}: {}–{} W, power factor {}–{}",
        def.watts.0, def.watts.1, def.pf.0, def.pf.1
    ))
}
