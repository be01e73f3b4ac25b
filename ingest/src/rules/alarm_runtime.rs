//! The alarm runtime: evaluates every durable write of a table against that table's
//! alarms and keeps each (alarm, series) state (see `wattdb_algorithms::alarm`).
//!
//! - **On the write path, without waiting.** As a WAL observer it gets each group commit
//!   after fsync: the rows of tables with alarms become one Arrow batch per table, each
//!   alarm's compiled expressions are evaluated over it, and rows are fed to the series'
//!   state machines in time order. No I/O happens there; transitions are queued.
//! - **Transitions are never lost.** The queue is written to the `alarm_events` table by
//!   a task (through the WAL, so a written transition is durable). Before the WAL may
//!   release records, the states, the WAL sequence they include and the transitions not
//!   yet written are stored in `<data-dir>/rules/alarm_state.json` (fsynced), so after a
//!   crash the server restores them and WAL replay re-evaluates exactly the newer records.
//!   A transition written twice (a crash between its write and the state file) has the
//!   same key (alarm, series, ts) and event id, so `alarm_events` keeps one row.
//! - **Replays change nothing.** Rows are taken in the order they became durable; a row
//!   not newer than the newest row of its series that an alarm has seen (MQTT
//!   redelivery, late data) does not change the state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use wattdb_algorithms::alarm::{AlarmState, Observation, SeriesAlarm, Transition};
use wattdb_algorithms::appliance::{Output as ApplianceOutput, SeriesDetector};
use wattdb_storage::wal::{DurableObserver, WalRecord, WalSeq};
use wattdb_storage::{
    CatalogReader, FieldDef, FieldType, FieldValue, Row, Storage, TableDef, TableId,
    WalReleaseGuard, WriteBatch, WriteMode,
};

use super::alarm_rule::{AlarmDef, CompiledAlarm};
use super::appliance_rule::{
    APPLIANCE_ALARM, APPLIANCE_EVENTS_TABLE, APPLIANCE_KIND, ApplianceDef, CompiledDetection,
    DETECTION_KIND, DetectionDef,
};
use super::error::RuleError;
use super::outbox::Outbox;
use super::state_file::{self, AlarmEvent, ApplianceRow, DetectorEntry, SeriesEntry, StateFile};
use super::stored::definitions;

/// The table transitions are written to.
pub const EVENTS_TABLE: &str = "alarm_events";
/// The catalog kind of alarm rules.
pub const ALARM_KIND: &str = "alarm";
/// The directory (under the data dir) of the runtime's state file.
pub const RULES_DIR: &str = "rules";

/// A pending or firing (alarm, series), for `system.alarm_state`.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    pub alarm: String,
    pub tags: Vec<String>,
    /// `pending` or `firing`.
    pub state: &'static str,
    pub since: i64,
    /// The newest row observed and its value.
    pub newest: Option<i64>,
    pub value: Option<f64>,
}

/// One series of one alarm.
#[derive(Debug, Clone, Default)]
struct Series {
    machine: SeriesAlarm,
    /// The value of the newest row observed.
    value: Option<f64>,
    /// Wall-clock time (µs) it fired, while firing; reminders sent since (`repeat`).
    fired_wall: Option<i64>,
    reminders: u32,
}

type CompiledAlarms = HashMap<TableId, Vec<CompiledAlarm>>;

#[derive(Default)]
struct State {
    /// Compiled alarms per table, built from the catalog when first needed (see
    /// [`AlarmRuntime::compiled`]); replaced whole when rules change.
    alarms: Option<Arc<CompiledAlarms>>,
    series: HashMap<String, HashMap<Vec<String>, Series>>,
    /// WAL records up to this one are evaluated (or were before a restart).
    seq: u64,
    /// The sequence the state file on disk includes.
    stored_seq: u64,
    /// Transitions not yet written to `alarm_events`, oldest first.
    unwritten: Vec<AlarmEvent>,
    /// Appliance detection per table, compiled like the alarms.
    detections: Option<Arc<HashMap<TableId, CompiledDetection>>>,
    /// Appliance detectors by table name and series.
    detectors: HashMap<String, HashMap<Vec<String>, SeriesDetector>>,
    /// Appliance events not yet written to `appliance_events`, oldest first.
    unwritten_appliances: Vec<ApplianceRow>,
    /// Something changed since the state file was written.
    dirty: bool,
}

pub struct AlarmRuntime {
    state: Mutex<State>,
    catalog: OnceLock<CatalogReader>,
    path: PathBuf,
    wake: tokio::sync::Notify,
    outbox: Outbox,
    /// Tables alarms are declared for that did not exist at the last compile.
    waiting: Mutex<std::collections::HashSet<String>>,
    /// When this process opened the runtime (µs): gap alarms judge no series silent
    /// for less than their `silent_for` since then.
    started: i64,
    /// Woken when notifications were queued.
    pub delivery_wake: tokio::sync::Notify,
}

/// A series as text, e.g. `pid=meter-3` (tag names of `def`, values `tags`).
pub(crate) fn series_text(def: &TableDef, tags: &[String]) -> String {
    def.tags
        .iter()
        .zip(tags)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A stable id of a transition (FNV-1a over its identity).
fn event_id(alarm: &str, series: &str, ts: i64, state: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        alarm.as_bytes(),
        series.as_bytes(),
        &ts.to_be_bytes(),
        state.as_bytes(),
    ] {
        for b in part.iter().chain([0xffu8].iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// The series' entry, created on first sight (looked up without copying its tags).
fn series_entry<'m>(map: &'m mut HashMap<Vec<String>, Series>, tags: &[String]) -> &'m mut Series {
    if !map.contains_key(tags) {
        map.insert(tags.to_vec(), Series::default());
    }
    map.get_mut(tags).expect("inserted above")
}

/// Is the series of `tags` silenced for alarm `a` at `now` (µs)?
fn series_silenced(a: &CompiledAlarm, def: &TableDef, tags: &[String], now: i64) -> bool {
    let row = wattdb_storage::ValidRow {
        ts: now,
        tags: tags.to_vec(),
        fields: Vec::new(),
    };
    match wattdb_storage::batch::rows_to_batch(def, std::iter::once(&row)) {
        Ok(batch) => a
            .silenced(&batch, now / 1000)
            .first()
            .copied()
            .unwrap_or(false),
        Err(_) => false,
    }
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

/// A gap alarm's transition of `tags` at `ts` (detection or arrival time).
fn gap_event(
    a: &CompiledAlarm,
    tags: Vec<String>,
    series: String,
    ts: i64,
    label: &str,
) -> AlarmEvent {
    AlarmEvent {
        alarm: a.def.name.clone(),
        tags,
        event_id: event_id(&a.def.name, &series, ts, label),
        message: message(a, &series, label, ts, None, None),
        series,
        ts,
        state: label.to_string(),
        severity: a.def.severity.clone(),
        value: None,
        channels: a.def.channels.clone(),
    }
}

fn format_ts(ts: i64) -> String {
    chrono::DateTime::from_timestamp_micros(ts)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|| ts.to_string())
}

fn format_value(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "null".into())
}

/// The message of a transition: the alarm's template, or the default one.
fn message(
    a: &CompiledAlarm,
    series: &str,
    state: &str,
    ts: i64,
    value: Option<f64>,
    row: Option<(&RecordBatch, usize)>,
) -> String {
    let template = a.def.message.clone().unwrap_or_else(|| {
        if a.def.kind == "gap" {
            format!(
                "[{{severity}}] {{alarm}} {{state}}: {{series}} (silent for {} s) at {{ts}}",
                a.def.silent_micros / 1_000_000
            )
        } else {
            "[{severity}] {alarm} {state}: {series}, value {value} at {ts}".to_string()
        }
    });
    let mut out = template
        .replace("{alarm}", &a.def.name)
        .replace("{series}", series)
        .replace("{severity}", &a.def.severity)
        .replace("{state}", state)
        .replace("{ts}", &format_ts(ts))
        .replace("{value}", &format_value(value));
    if out.contains('{')
        && let Some((batch, row)) = row
    {
        for (i, f) in batch.schema().fields().iter().enumerate() {
            let key = format!("{{{}}}", f.name());
            if out.contains(&key) {
                let col = batch.column(i);
                let text = match wattdb_storage::batch::field_value(col.as_ref(), row) {
                    Ok(Some(FieldValue::Float(v))) => v.to_string(),
                    Ok(Some(FieldValue::Integer(v))) => v.to_string(),
                    Ok(Some(FieldValue::Boolean(v))) => v.to_string(),
                    Ok(Some(FieldValue::Text(v))) => v,
                    Ok(Some(FieldValue::Timestamp(v))) => format_ts(v),
                    _ if i == 0 => format_ts(ts),
                    _ => col
                        .as_any()
                        .downcast_ref::<arrow::array::StringArray>()
                        .filter(|s| !s.is_null(row))
                        .map(|s| s.value(row).to_string())
                        .unwrap_or_else(|| "null".into()),
                };
                out = out.replace(&key, &text);
            }
        }
    }
    out
}

/// `alarm_events` as its first write would create it, with `message` searchable by
/// `matches()` (created once, by the first transition; an existing table — also one
/// whose `message` was set otherwise with `set_fulltext` — is left as it is).
async fn create_events_table(storage: &Storage) -> Result<(), RuleError> {
    if storage.table(EVENTS_TABLE).is_some() {
        return Ok(());
    }
    let field = |name: &str, field_type| FieldDef {
        name: name.into(),
        field_type,
    };
    storage
        .create_table_with_fulltext(
            EVENTS_TABLE,
            vec!["alarm".into(), "series".into()],
            vec![
                field("state", FieldType::Text),
                field("severity", FieldType::Text),
                field("message", FieldType::Text),
                field("event_id", FieldType::Text),
                field("value", FieldType::Float),
            ],
            [("message".to_string(), Default::default())].into(),
            true,
        )
        .await?;
    Ok(())
}

impl AlarmRuntime {
    /// Open the runtime's state in `<data_dir>/rules` (created if missing).
    pub fn open(data_dir: &Path) -> Result<Arc<AlarmRuntime>, RuleError> {
        let dir = data_dir.join(RULES_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| RuleError::State {
            path: dir.clone(),
            reason: e.to_string(),
        })?;
        let path = state_file::path_in(&dir);
        let stored = state_file::load(&path)?;
        let outbox = Outbox::open(&dir)?;
        let mut series: HashMap<String, HashMap<Vec<String>, Series>> = HashMap::new();
        for e in stored.series {
            let state = match e.state.as_str() {
                "pending" => AlarmState::Pending { since: e.since },
                "firing" => AlarmState::Firing { since: e.since },
                _ => AlarmState::Ok,
            };
            series.entry(e.alarm).or_default().insert(
                e.tags,
                Series {
                    machine: SeriesAlarm {
                        state,
                        newest: e.newest,
                        clearing_since: e.clearing_since,
                    },
                    value: e.value,
                    fired_wall: e.fired_wall,
                    reminders: e.reminders,
                },
            );
        }
        let mut detectors: HashMap<String, HashMap<Vec<String>, SeriesDetector>> = HashMap::new();
        for d in stored.detectors {
            detectors
                .entry(d.table)
                .or_default()
                .insert(d.tags, d.detector);
        }
        Ok(Arc::new(AlarmRuntime {
            state: Mutex::new(State {
                alarms: None,
                series,
                seq: stored.seq,
                stored_seq: stored.seq,
                unwritten: stored.unwritten,
                detections: None,
                detectors,
                unwritten_appliances: stored.unwritten_appliances,
                dirty: false,
            }),
            catalog: OnceLock::new(),
            path,
            wake: tokio::sync::Notify::new(),
            outbox,
            waiting: Mutex::new(Default::default()),
            started: now_micros(),
            delivery_wake: tokio::sync::Notify::new(),
        }))
    }

    /// The notification outbox.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    /// Called when the storage opens, before WAL replay.
    pub fn attach(&self, catalog: CatalogReader) {
        let _ = self.catalog.set(catalog);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The enabled alarms compiled against their tables (alarms that no longer compile
    /// are skipped with a warning); alarms on tables that do not exist yet are noted in
    /// `state.waiting` and compiled when such a table is written.
    fn compile_all(&self) -> HashMap<TableId, Vec<CompiledAlarm>> {
        let mut out: HashMap<TableId, Vec<CompiledAlarm>> = HashMap::new();
        let mut waiting = std::collections::HashSet::new();
        let Some(catalog) = self.catalog.get() else {
            return out;
        };
        for entry in catalog.rules(ALARM_KIND) {
            let def: AlarmDef = match serde_json::from_value(entry.body) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(alarm = %entry.name, error = %e, "unreadable alarm definition skipped");
                    continue;
                }
            };
            if !def.enabled {
                continue;
            }
            let Some(table) = catalog.table(&def.table) else {
                waiting.insert(def.table.clone());
                continue;
            };
            match CompiledAlarm::compile(def, &table) {
                Ok(c) => out.entry(table.id).or_default().push(c),
                Err(e) => {
                    tracing::warn!(alarm = %entry.name, error = %e, "alarm no longer compiles; skipped")
                }
            }
        }
        *self.waiting.lock().unwrap_or_else(|p| p.into_inner()) = waiting;
        out
    }

    /// Is `table` one that an alarm waits for (its table did not exist when compiled)?
    fn awaited(&self, table: TableId) -> bool {
        let waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        !waiting.is_empty()
            && self
                .catalog
                .get()
                .and_then(|c| c.table_by_id(table))
                .is_some_and(|t| waiting.contains(&t.name))
    }

    /// Appliance detection settings compiled against their tables (settings whose
    /// table no longer fits are skipped with a warning).
    fn compile_detections(&self) -> HashMap<TableId, CompiledDetection> {
        let mut out = HashMap::new();
        let Some(catalog) = self.catalog.get() else {
            return out;
        };
        let custom: Vec<ApplianceDef> = definitions(catalog.rules(APPLIANCE_KIND));
        for entry in catalog.rules(DETECTION_KIND) {
            let compiled = serde_json::from_value::<DetectionDef>(entry.body)
                .map_err(|e| e.to_string())
                .and_then(|def| {
                    let table = catalog
                        .table(&def.table)
                        .ok_or_else(|| format!("table {} does not exist", def.table))?;
                    let id = table.id;
                    CompiledDetection::compile(def, &table, &custom)
                        .map(|c| (id, c))
                        .map_err(|e| e.to_string())
                });
            match compiled {
                Ok((id, c)) => {
                    out.insert(id, c);
                }
                Err(e) => {
                    tracing::warn!(table = %entry.name, error = %e, "appliance detection skipped")
                }
            }
        }
        out
    }

    fn detections(&self, state: &mut State) -> Arc<HashMap<TableId, CompiledDetection>> {
        state
            .detections
            .get_or_insert_with(|| Arc::new(self.compile_detections()))
            .clone()
    }

    /// Rules changed (created, dropped, enabled): recompile; states of alarms that no
    /// longer exist are forgotten, those of disabled alarms kept; detectors of tables no
    /// longer detected are forgotten.
    pub fn reload(&self) {
        let detections = self.compile_detections();
        let detected: Vec<String> = detections.values().map(|d| d.def.table.clone()).collect();
        {
            let mut state = self.lock();
            state.detectors.retain(|table, _| detected.contains(table));
            state.detections = Some(Arc::new(detections));
        }
        let compiled = self.compile_all();
        let known: Vec<String> = self
            .catalog
            .get()
            .map(|c| c.rules(ALARM_KIND).into_iter().map(|r| r.name).collect())
            .unwrap_or_default();
        let mut state = self.lock();
        state.series.retain(|alarm, _| known.contains(alarm));
        state.alarms = Some(Arc::new(compiled));
        state.dirty = true;
    }

    /// The compiled alarms, compiled from the catalog on first use.
    fn compiled(&self, state: &mut State) -> Arc<CompiledAlarms> {
        state
            .alarms
            .get_or_insert_with(|| Arc::new(self.compile_all()))
            .clone()
    }

    fn evaluate(&self, state: &mut State, records: &[(WalSeq, &WalRecord)]) {
        let mut alarms = self.compiled(state);
        let detections = self.detections(state);
        let Some(catalog) = self.catalog.get() else {
            return;
        };
        // The rows of each table with alarms, in WAL order.
        let mut by_table: Vec<(TableId, Vec<&wattdb_storage::ValidRow>)> = Vec::new();
        for (seq, record) in records {
            if seq.0 <= state.seq {
                continue; // evaluated before a restart
            }
            state.seq = seq.0;
            if !alarms.contains_key(&record.table_id) && self.awaited(record.table_id) {
                // A table an alarm was declared for before it existed.
                state.alarms = None;
                alarms = self.compiled(state);
            }
            if !alarms.contains_key(&record.table_id) && !detections.contains_key(&record.table_id)
            {
                continue;
            }
            match by_table.iter_mut().find(|(t, _)| *t == record.table_id) {
                Some((_, rows)) => rows.extend(record.rows.iter()),
                None => by_table.push((record.table_id, record.rows.iter().collect())),
            }
        }
        for (table, rows) in by_table {
            let Some(def) = catalog.table_by_id(table) else {
                continue;
            };
            let batch = match wattdb_storage::batch::rows_to_batch(&def, rows.iter().copied()) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(table = %def.name, error = %e, "alarm evaluation: rows not readable");
                    continue;
                }
            };
            if let Some(list) = alarms.get(&table) {
                for a in list {
                    self.run_alarm(state, a, &def, &rows, &batch);
                }
            }
            if let Some(d) = detections.get(&table) {
                self.run_detection(state, d, &def, &rows, &batch);
            }
        }
        if !records.is_empty() {
            state.dirty = true;
        }
    }

    /// Feed the rows (in durable order) to their series' appliance detectors; queue
    /// the events for `appliance_events` and prohibited-appliance transitions for
    /// `alarm_events` (and their channels).
    fn run_detection(
        &self,
        state: &mut State,
        d: &CompiledDetection,
        def: &TableDef,
        rows: &[&wattdb_storage::ValidRow],
        batch: &RecordBatch,
    ) {
        let mut transitions = Vec::new();
        let detectors = state.detectors.entry(def.name.clone()).or_default();
        let in_scope = d.in_scope(batch);
        for (i, row) in rows.iter().enumerate() {
            if !in_scope[i] {
                continue;
            }
            let Some(sample) = d.sample(batch, row.ts, i) else {
                continue;
            };
            let detector = detectors.entry(row.tags.clone()).or_default();
            let mut out = ApplianceOutput::default();
            detector.push(sample, &d.config, &mut out);
            for event in out.events {
                state.unwritten_appliances.push(ApplianceRow {
                    table: def.name.clone(),
                    tags: row.tags.clone(),
                    event,
                });
            }
            for a in out.alarms {
                let series = series_text(def, &row.tags);
                let state_name = if a.firing { "firing" } else { "resolved" };
                // One alarm per run: the run (its switch-on) is part of the identity.
                let run = format!("{series}@{}", a.on_ts);
                transitions.push(AlarmEvent {
                    alarm: APPLIANCE_ALARM.to_string(),
                    tags: row.tags.clone(),
                    message: format!(
                        "[{}] {} {state_name}: {series}, on since {}",
                        d.def.severity,
                        a.appliance,
                        format_ts(a.on_ts)
                    ),
                    event_id: event_id(APPLIANCE_ALARM, &run, a.ts, state_name),
                    series,
                    ts: a.ts,
                    state: state_name.into(),
                    severity: d.def.severity.clone(),
                    value: None,
                    channels: d.def.channels.clone(),
                });
            }
        }
        if !transitions.is_empty() || !state.unwritten_appliances.is_empty() {
            state.unwritten.extend(transitions);
            self.wake.notify_one();
        }
    }

    fn run_alarm(
        &self,
        state: &mut State,
        a: &CompiledAlarm,
        def: &TableDef,
        rows: &[&wattdb_storage::ValidRow],
        batch: &RecordBatch,
    ) {
        let e = match a.evaluate(batch) {
            Ok(e) => e,
            Err(err) => {
                tracing::error!(alarm = %a.def.name, error = %err, "alarm evaluation failed");
                return;
            }
        };
        let tri = |b: &arrow::array::BooleanArray, i: usize| (!b.is_null(i)).then(|| b.value(i));
        let series_map = state.series.entry(a.def.name.clone()).or_default();
        let mut events = Vec::new();
        let gap = a.def.kind == "gap";
        let arrival = now_micros();
        // Silenced series still change state and get their rows in alarm_events, but
        // their channels are not notified.
        let silenced = a.silenced(batch, arrival / 1000);
        let channels = |i: usize| {
            if silenced[i] {
                Vec::new()
            } else {
                a.def.channels.clone()
            }
        };
        for (i, row) in rows.iter().enumerate() {
            if tri(&e.in_scope, i) != Some(true) {
                continue;
            }
            if gap {
                // The series is heard from (arrival time counts for silence); a silent
                // one resolves at the row's own timestamp, so a WAL replay of the same
                // row gives the same transition (same event id), not a second one.
                let s = series_entry(series_map, &row.tags);
                s.machine.newest = Some(arrival);
                s.value = None;
                if matches!(s.machine.state, AlarmState::Firing { .. }) {
                    s.machine.state = AlarmState::Ok;
                    s.fired_wall = None;
                    let series = series_text(def, &row.tags);
                    let mut e = gap_event(a, row.tags.clone(), series, row.ts, "resolved");
                    e.channels = channels(i);
                    events.push(e);
                }
                continue;
            }
            let s = series_entry(series_map, &row.tags);
            let value = a.value(batch, i);
            let o = Observation {
                ts: row.ts,
                condition: tri(&e.condition, i),
                clear: tri(&e.clear, i),
            };
            let before = s.machine.newest;
            let durations = wattdb_algorithms::alarm::Durations {
                for_micros: a.def.for_micros,
                keep_firing_for: a.def.keep_firing_for_micros,
            };
            let t = s.machine.observe(durations, o);
            if s.machine.newest != before {
                s.value = value;
            }
            let Some(t) = t else { continue };
            let (ts, label) = match t {
                Transition::Firing { ts } => {
                    s.fired_wall = Some(arrival);
                    s.reminders = 0;
                    (ts, "firing")
                }
                Transition::Resolved { ts } => {
                    s.fired_wall = None;
                    (ts, "resolved")
                }
            };
            let series = series_text(def, &row.tags);
            events.push(AlarmEvent {
                alarm: a.def.name.clone(),
                tags: row.tags.clone(),
                event_id: event_id(&a.def.name, &series, ts, label),
                message: message(a, &series, label, ts, value, Some((batch, i))),
                series,
                ts,
                state: label.to_string(),
                severity: a.def.severity.clone(),
                value,
                channels: channels(i),
            });
        }
        if !events.is_empty() {
            state.unwritten.extend(events);
            self.wake.notify_one();
        }
    }

    /// Gap alarms: fire for every known series of their tables not heard from for their
    /// `silent_for` (arrival time, and never less than that since this process started).
    pub fn check_gaps(&self, now: i64) {
        let Some(catalog) = self.catalog.get() else {
            return;
        };
        let mut state = self.lock();
        let alarms = self.compiled(&mut state);
        let mut events = Vec::new();
        let mut forgot = false;
        for a in alarms.values().flatten().filter(|a| a.def.kind == "gap") {
            let Some(def) = catalog.table(&a.def.table) else {
                continue;
            };
            let Some(series) = state.series.get_mut(&a.def.name) else {
                continue;
            };
            // A series silent beyond forget_after is dropped: no more reminders, not in
            // system.alarm_state; if it reports again it is watched afresh.
            if a.def.forget_micros > 0 {
                let before = series.len();
                series.retain(|_, s| {
                    let heard = s.machine.newest.unwrap_or(self.started).max(self.started);
                    now - heard < a.def.forget_micros
                });
                forgot |= series.len() != before;
            }
            for (tags, s) in series.iter_mut() {
                let heard = s.machine.newest.unwrap_or(self.started).max(self.started);
                if matches!(s.machine.state, AlarmState::Ok) && now - heard >= a.def.silent_micros {
                    s.machine.state = AlarmState::Firing { since: now };
                    s.fired_wall = Some(now);
                    s.reminders = 0;
                    let text = series_text(&def, tags);
                    let mut e = gap_event(a, tags.clone(), text, now, "firing");
                    if series_silenced(a, &def, tags, now) {
                        e.channels.clear();
                    }
                    events.push(e);
                }
            }
        }
        state.dirty |= forgot;
        if !events.is_empty() {
            state.unwritten.extend(events);
            state.dirty = true;
            self.wake.notify_one();
        }
    }

    /// `repeat`: a reminder for every series firing for another `repeat` of wall-clock
    /// time on an alarm with channels. Reminders are notifications, not transitions
    /// (no `alarm_events` row); the k-th reminder of one firing has a fixed event id.
    pub fn due_reminders(&self, now: i64) -> Vec<AlarmEvent> {
        let Some(catalog) = self.catalog.get() else {
            return Vec::new();
        };
        let mut state = self.lock();
        let alarms = self.compiled(&mut state);
        let mut out = Vec::new();
        for a in alarms.values().flatten() {
            if a.def.repeat_micros <= 0 || a.def.channels.is_empty() {
                continue;
            }
            let Some(def) = catalog.table(&a.def.table) else {
                continue;
            };
            let Some(series) = state.series.get_mut(&a.def.name) else {
                continue;
            };
            for (tags, s) in series.iter_mut() {
                let (AlarmState::Firing { since }, Some(fired)) = (s.machine.state, s.fired_wall)
                else {
                    continue;
                };
                let k = (now - fired) / a.def.repeat_micros;
                if k <= i64::from(s.reminders) {
                    continue;
                }
                s.reminders = u32::try_from(k).unwrap_or(u32::MAX);
                if series_silenced(a, &def, tags, now) {
                    continue;
                }
                let text = series_text(&def, tags);
                let mut e = gap_event(a, tags.clone(), text.clone(), now, "firing");
                e.event_id = event_id(&a.def.name, &text, fired, &format!("repeat{k}"));
                e.value = s.value;
                e.message = format!(
                    "[{}] {} still firing: {text} since {} (reminder {k})",
                    a.def.severity,
                    a.def.name,
                    format_ts(since)
                );
                out.push(e);
            }
        }
        if !out.is_empty() {
            state.dirty = true;
        }
        out
    }

    fn snapshot(state: &State) -> StateFile {
        let mut series = Vec::new();
        for (alarm, m) in &state.series {
            for (tags, s) in m {
                let (label, since) = match s.machine.state {
                    AlarmState::Ok => ("ok", 0),
                    AlarmState::Pending { since } => ("pending", since),
                    AlarmState::Firing { since } => ("firing", since),
                };
                series.push(SeriesEntry {
                    alarm: alarm.clone(),
                    tags: tags.clone(),
                    state: label.into(),
                    since,
                    newest: s.machine.newest,
                    value: s.value,
                    fired_wall: s.fired_wall,
                    reminders: s.reminders,
                    clearing_since: s.machine.clearing_since,
                });
            }
        }
        series.sort_by(|a, b| (&a.alarm, &a.tags).cmp(&(&b.alarm, &b.tags)));
        let mut detectors: Vec<DetectorEntry> = state
            .detectors
            .iter()
            .flat_map(|(table, m)| {
                m.iter().map(|(tags, d)| DetectorEntry {
                    table: table.clone(),
                    tags: tags.clone(),
                    detector: d.clone(),
                })
            })
            .collect();
        detectors.sort_by(|a, b| (&a.table, &a.tags).cmp(&(&b.table, &b.tags)));
        StateFile {
            seq: state.seq,
            series,
            unwritten: state.unwritten.clone(),
            detectors,
            unwritten_appliances: state.unwritten_appliances.clone(),
        }
    }

    /// Write the state file if anything changed.
    pub fn store(&self) -> Result<(), RuleError> {
        // One consistent snapshot taken under the lock, written outside it (the WAL
        // thread evaluates meanwhile; a newer state is stored next time).
        let snapshot = {
            let mut state = self.lock();
            if !state.dirty {
                return Ok(());
            }
            state.dirty = false;
            Self::snapshot(&state)
        };
        if let Err(e) = state_file::store(&self.path, &snapshot) {
            self.lock().dirty = true;
            return Err(e);
        }
        let mut state = self.lock();
        state.stored_seq = state.stored_seq.max(snapshot.seq);
        Ok(())
    }

    /// Every (alarm, series) that is pending or firing, by alarm and series.
    pub fn active(&self) -> Vec<ActiveAlarm> {
        let state = self.lock();
        let mut out = Vec::new();
        for (alarm, m) in &state.series {
            for (tags, s) in m {
                let (label, since) = match s.machine.state {
                    AlarmState::Ok => continue,
                    AlarmState::Pending { since } => ("pending", since),
                    AlarmState::Firing { since } => ("firing", since),
                };
                out.push(ActiveAlarm {
                    alarm: alarm.clone(),
                    tags: tags.clone(),
                    state: label,
                    since,
                    newest: s.machine.newest,
                    value: s.value,
                });
            }
        }
        out.sort_by(|a, b| (&a.alarm, &a.tags).cmp(&(&b.alarm, &b.tags)));
        out
    }

    /// Write queued transitions to `alarm_events` until `shutdown`; the state file is
    /// stored every few seconds when something changed, and once more at the end.
    pub fn spawn_writer(
        self: &Arc<Self>,
        storage: Storage,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let rt = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = rt.wake.notified() => {}
                    _ = tick.tick() => {
                        rt.check_gaps(now_micros());
                        let reminders = rt.due_reminders(now_micros());
                        if !reminders.is_empty() {
                            let rt2 = rt.clone();
                            let now = chrono::Utc::now().timestamp_millis();
                            match tokio::task::spawn_blocking(move || rt2.outbox.enqueue(&reminders, now)).await {
                                Ok(Ok(_)) => rt.delivery_wake.notify_one(),
                                Ok(Err(e)) => tracing::error!(error = %e, "queueing alarm reminders"),
                                Err(e) => tracing::error!(error = %e, "queueing alarm reminders"),
                            }
                        }
                        let rt2 = rt.clone();
                        match tokio::task::spawn_blocking(move || rt2.store()).await {
                            Ok(Err(e)) => tracing::error!(error = %e, "storing the alarm state"),
                            Err(e) => tracing::error!(error = %e, "storing the alarm state"),
                            Ok(Ok(())) => {}
                        }
                    }
                    _ = shutdown.changed() => {}
                }
                if let Err(e) = rt.write_events(&storage).await {
                    tracing::warn!(error = %e, "writing alarm events; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    rt.wake.notify_one();
                }
                if *shutdown.borrow() {
                    break;
                }
            }
            let rt2 = rt.clone();
            if let Ok(Err(e)) = tokio::task::spawn_blocking(move || rt2.store()).await {
                tracing::error!(error = %e, "storing the alarm state at shutdown");
            }
        })
    }

    /// Write the queued transitions (they stay queued until the write is durable), then
    /// queue their notifications in the outbox.
    pub async fn write_events(self: &Arc<Self>, storage: &Storage) -> Result<usize, RuleError> {
        let appliance_rows = self.write_appliance_events(storage).await?;
        let events: Vec<AlarmEvent> = self.lock().unwritten.clone();
        if events.is_empty() {
            return Ok(appliance_rows);
        }
        create_events_table(storage).await?;
        let rows = events
            .iter()
            .map(|e| {
                let mut fields = vec![
                    ("state".to_string(), FieldValue::Text(e.state.clone())),
                    ("severity".to_string(), FieldValue::Text(e.severity.clone())),
                    ("message".to_string(), FieldValue::Text(e.message.clone())),
                    ("event_id".to_string(), FieldValue::Text(e.event_id.clone())),
                ];
                if let Some(v) = e.value {
                    fields.push(("value".to_string(), FieldValue::Float(v)));
                }
                Row {
                    ts: e.ts,
                    tags: vec![
                        ("alarm".to_string(), e.alarm.clone()),
                        ("series".to_string(), e.series.clone()),
                    ],
                    fields,
                }
            })
            .collect();
        storage
            .write(
                WriteBatch {
                    table: EVENTS_TABLE.to_string(),
                    rows,
                },
                WriteMode::AllOrNothing,
                true,
            )
            .await?;
        // Durable in alarm_events: now the notifications (kept if already queued).
        if events.iter().any(|e| !e.channels.is_empty()) {
            let rt = self.clone();
            let queued = events.clone();
            let now = chrono::Utc::now().timestamp_millis();
            tokio::task::spawn_blocking(move || rt.outbox.enqueue(&queued, now))
                .await
                .map_err(|e| RuleError::State {
                    path: self.path.clone(),
                    reason: e.to_string(),
                })??;
            self.delivery_wake.notify_one();
        }
        let written: Vec<String> = events.into_iter().map(|e| e.event_id).collect();
        let mut state = self.lock();
        state.unwritten.retain(|e| !written.contains(&e.event_id));
        state.dirty = true;
        Ok(written.len())
    }
}

impl AlarmRuntime {
    /// Write the queued appliance events to `appliance_events` (through the WAL: durable
    /// once written): the switch-on is `ts`, the source table's tags are the tags, the
    /// newest version of each run wins.
    async fn write_appliance_events(&self, storage: &Storage) -> Result<usize, RuleError> {
        let pending: Vec<ApplianceRow> = self.lock().unwritten_appliances.clone();
        if pending.is_empty() {
            return Ok(0);
        }
        let mut newest: HashMap<(&str, &[String], i64), &ApplianceRow> = HashMap::new();
        for r in &pending {
            newest.insert((r.table.as_str(), r.tags.as_slice(), r.event.on_ts), r);
        }
        let mut rows = Vec::with_capacity(newest.len());
        for r in newest.into_values() {
            let Some(def) = storage.table(&r.table) else {
                continue; // the source table was dropped meanwhile
            };
            let e = &r.event;
            let mut fields = vec![
                (
                    "appliance".to_string(),
                    FieldValue::Text(e.appliance.clone()),
                ),
                ("delta_p".to_string(), FieldValue::Float(e.delta_p)),
                ("confidence".to_string(), FieldValue::Float(e.confidence)),
                ("prohibited".to_string(), FieldValue::Boolean(e.prohibited)),
                (
                    "cycles".to_string(),
                    FieldValue::Integer(i64::from(e.cycles)),
                ),
                (
                    "stages".to_string(),
                    FieldValue::Integer(i64::from(e.stages)),
                ),
            ];
            if let Some(off) = e.off_ts {
                fields.push(("off_ts".to_string(), FieldValue::Timestamp(off)));
            }
            if let Some(q) = e.delta_q {
                fields.push(("delta_q".to_string(), FieldValue::Float(q)));
            }
            if let Some(pf) = e.pf {
                fields.push(("pf".to_string(), FieldValue::Float(pf)));
            }
            rows.push(Row {
                ts: e.on_ts,
                tags: def
                    .tags
                    .iter()
                    .cloned()
                    .zip(r.tags.iter().cloned())
                    .collect(),
                fields,
            });
        }
        if !rows.is_empty() {
            storage
                .write(
                    WriteBatch {
                        table: APPLIANCE_EVENTS_TABLE.to_string(),
                        rows,
                    },
                    WriteMode::AllOrNothing,
                    true,
                )
                .await?;
        }
        let mut state = self.lock();
        state.unwritten_appliances.drain(..pending.len());
        state.dirty = true;
        Ok(pending.len())
    }
}

impl DurableObserver for AlarmRuntime {
    fn on_durable(&self, seq: WalSeq, record: &WalRecord) {
        self.on_durable_group(&[(seq, record)]);
    }

    fn on_durable_group(&self, records: &[(WalSeq, &WalRecord)]) {
        let mut state = self.lock();
        self.evaluate(&mut state, records);
    }
}

impl WalReleaseGuard for AlarmRuntime {
    /// The states must include every record the WAL is about to release.
    fn before_wal_release(&self) -> wattdb_storage::Result<()> {
        self.store().map_err(|e| wattdb_storage::Error::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e.to_string()),
        })
    }
}
