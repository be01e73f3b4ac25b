//! `system.alarms` (the alarm rules), `system.alarm_state` (every pending or firing
//! (alarm, series)), `system.channels`, `system.notifications` (the outbox),
//! `system.appliance_detection` (the tables detected and their settings) and
//! `system.appliances` (built-in and own signatures), registered with storage as system
//! views.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use wattdb_storage::{ExtensionView, Storage};

use super::alarm_rule::AlarmDef;
use super::alarm_runtime::{ALARM_KIND, AlarmRuntime, series_text};
use super::appliance_rule::{APPLIANCE_KIND, ApplianceDef, DETECTION_KIND, DetectionDef};
use super::channel::{CHANNEL_KIND, ChannelDef};
use super::stored::definitions;

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn batch(fields: Vec<Field>, cols: Vec<ArrayRef>) -> wattdb_storage::Result<RecordBatch> {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)
        .map_err(|e| wattdb_storage::Error::Task(format!("building a system view: {e}")))
}

struct Alarms(Storage);

impl ExtensionView for Alarms {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let defs: Vec<AlarmDef> = definitions(self.0.rules(ALARM_KIND));
        let s = |f: &dyn Fn(&AlarmDef) -> String| -> ArrayRef {
            Arc::new(StringArray::from(defs.iter().map(f).collect::<Vec<_>>()))
        };
        let o = |f: &dyn Fn(&AlarmDef) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(defs.iter().map(f).collect::<Vec<_>>()))
        };
        batch(
            vec![
                Field::new("alarm", DataType::Utf8, false),
                Field::new("table_name", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("condition", DataType::Utf8, false),
                Field::new("clear", DataType::Utf8, true),
                Field::new("for_seconds", DataType::Int64, false),
                Field::new("silent_for_seconds", DataType::Int64, false),
                Field::new("severity", DataType::Utf8, false),
                Field::new("channels", DataType::Utf8, false),
                Field::new("repeat_seconds", DataType::Int64, false),
                Field::new("scope", DataType::Utf8, true),
                Field::new("silences", DataType::Utf8, false),
                Field::new("enabled", DataType::Boolean, false),
            ],
            vec![
                s(&|d| d.name.clone()),
                s(&|d| d.table.clone()),
                s(&|d| d.kind.clone()),
                s(&|d| d.condition.clone()),
                o(&|d| d.clear.clone()),
                Arc::new(Int64Array::from(
                    defs.iter()
                        .map(|d| d.for_micros / 1_000_000)
                        .collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    defs.iter()
                        .map(|d| d.silent_micros / 1_000_000)
                        .collect::<Vec<_>>(),
                )),
                s(&|d| d.severity.clone()),
                s(&|d| d.channels.join(",")),
                Arc::new(Int64Array::from(
                    defs.iter()
                        .map(|d| d.repeat_micros / 1_000_000)
                        .collect::<Vec<_>>(),
                )),
                o(&|d| d.scope.clone()),
                s(&|d| {
                    let now = chrono::Utc::now().timestamp_millis();
                    d.silences
                        .iter()
                        .filter(|x| x.until_ms > now)
                        .map(|x| {
                            let until = chrono::DateTime::from_timestamp_millis(x.until_ms)
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                                .unwrap_or_default();
                            format!("{} until {until}", x.scope)
                        })
                        .collect::<Vec<_>>()
                        .join("; ")
                }),
                Arc::new(BooleanArray::from(
                    defs.iter().map(|d| d.enabled).collect::<Vec<_>>(),
                )),
            ],
        )
    }
}

struct AlarmStates {
    storage: Storage,
    runtime: Arc<AlarmRuntime>,
}

impl ExtensionView for AlarmStates {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let active = self.runtime.active();
        let tables: Vec<(String, String)> = self
            .storage
            .rules(ALARM_KIND)
            .into_iter()
            .filter_map(|r| {
                let d: AlarmDef = serde_json::from_value(r.body).ok()?;
                Some((d.name, d.table))
            })
            .collect();
        let series: Vec<String> = active
            .iter()
            .map(|a| {
                let def = tables
                    .iter()
                    .find(|(name, _)| *name == a.alarm)
                    .and_then(|(_, t)| self.storage.table(t));
                match def {
                    Some(def) => series_text(&def, &a.tags),
                    None => a.tags.join(","),
                }
            })
            .collect();
        batch(
            vec![
                Field::new("alarm", DataType::Utf8, false),
                Field::new("series", DataType::Utf8, false),
                Field::new("state", DataType::Utf8, false),
                Field::new("since", ts_type(), false),
                Field::new("last_ts", ts_type(), true),
                Field::new("last_value", DataType::Float64, true),
            ],
            vec![
                Arc::new(StringArray::from(
                    active.iter().map(|a| a.alarm.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(series)),
                Arc::new(StringArray::from(
                    active.iter().map(|a| a.state).collect::<Vec<_>>(),
                )),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        active.iter().map(|a| a.since).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(
                        active.iter().map(|a| a.newest).collect::<Vec<_>>(),
                    )
                    .with_timezone("UTC"),
                ),
                Arc::new(Float64Array::from(
                    active.iter().map(|a| a.value).collect::<Vec<_>>(),
                )),
            ],
        )
    }
}

struct Channels(Storage);

impl ExtensionView for Channels {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let defs: Vec<ChannelDef> = definitions(self.0.rules(CHANNEL_KIND));
        batch(
            vec![
                Field::new("channel", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("url", DataType::Utf8, false),
                Field::new("rate_per_minute", DataType::Int64, false),
            ],
            vec![
                Arc::new(StringArray::from(
                    defs.iter().map(|d| d.name.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    defs.iter().map(|d| d.kind.clone()).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    defs.iter().map(|d| d.redacted_url()).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    defs.iter()
                        .map(|d| i64::from(d.rate_per_minute))
                        .collect::<Vec<_>>(),
                )),
            ],
        )
    }
}

struct Notifications(Arc<AlarmRuntime>);

impl ExtensionView for Notifications {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let all = self.0.outbox().all();
        let s = |f: &dyn Fn(&super::outbox::Notification) -> String| -> ArrayRef {
            Arc::new(StringArray::from(all.iter().map(f).collect::<Vec<_>>()))
        };
        let ms = |v: Vec<Option<i64>>| -> ArrayRef {
            Arc::new(
                TimestampMicrosecondArray::from(
                    v.into_iter()
                        .map(|m| m.map(|m| m * 1000))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            )
        };
        batch(
            vec![
                Field::new("event_id", DataType::Utf8, false),
                Field::new("alarm", DataType::Utf8, false),
                Field::new("series", DataType::Utf8, false),
                Field::new("state", DataType::Utf8, false),
                Field::new("channel", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("attempts", DataType::Int64, false),
                Field::new("last_error", DataType::Utf8, true),
                Field::new("queued_at", ts_type(), true),
                Field::new("next_attempt_at", ts_type(), true),
                Field::new("sent_at", ts_type(), true),
            ],
            vec![
                s(&|n| n.event.event_id.clone()),
                s(&|n| n.event.alarm.clone()),
                s(&|n| n.event.series.clone()),
                s(&|n| n.event.state.clone()),
                s(&|n| n.channel.clone()),
                s(&|n| n.status.clone()),
                Arc::new(Int64Array::from(
                    all.iter()
                        .map(|n| i64::from(n.attempts))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    all.iter().map(|n| n.last_error.clone()).collect::<Vec<_>>(),
                )),
                ms(all.iter().map(|n| Some(n.created_ms)).collect()),
                ms(all
                    .iter()
                    .map(|n| (n.status == "pending").then_some(n.next_attempt_ms))
                    .collect()),
                ms(all.iter().map(|n| n.sent_ms).collect()),
            ],
        )
    }
}

/// Serve `system.alarms`, `system.alarm_state`, `system.channels` and
/// `system.notifications` from `storage`.
struct Detections(Storage);

impl ExtensionView for Detections {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let defs: Vec<DetectionDef> = definitions(self.0.rules(DETECTION_KIND));
        let s = |f: &dyn Fn(&DetectionDef) -> String| -> ArrayRef {
            Arc::new(StringArray::from(defs.iter().map(f).collect::<Vec<_>>()))
        };
        let o = |f: &dyn Fn(&DetectionDef) -> Option<String>| -> ArrayRef {
            Arc::new(StringArray::from(defs.iter().map(f).collect::<Vec<_>>()))
        };
        batch(
            vec![
                Field::new("table_name", DataType::Utf8, false),
                Field::new("power", DataType::Utf8, false),
                Field::new("reactive", DataType::Utf8, true),
                Field::new("pf", DataType::Utf8, true),
                Field::new("prohibited", DataType::Utf8, false),
                Field::new("delay_seconds", DataType::Int64, false),
                Field::new("channels", DataType::Utf8, false),
                Field::new("severity", DataType::Utf8, false),
                Field::new("scope", DataType::Utf8, true),
            ],
            vec![
                s(&|d| d.table.clone()),
                s(&|d| d.power.clone()),
                o(&|d| d.reactive.clone()),
                o(&|d| d.pf.clone()),
                s(&|d| d.prohibited.join(", ")),
                Arc::new(Int64Array::from(
                    defs.iter()
                        .map(|d| d.delay_micros / 1_000_000)
                        .collect::<Vec<_>>(),
                )),
                s(&|d| d.channels.join(", ")),
                s(&|d| d.severity.clone()),
                o(&|d| d.scope.clone()),
            ],
        )
    }
}

struct Appliances(Storage);

impl ExtensionView for Appliances {
    fn batch(&self) -> wattdb_storage::Result<RecordBatch> {
        let own: Vec<ApplianceDef> = definitions(self.0.rules(APPLIANCE_KIND));
        let mut rows: Vec<(wattdb_algorithms::appliance::Signature, bool)> =
            wattdb_algorithms::appliance::builtin_signatures()
                .into_iter()
                .map(|sig| (sig, true))
                .collect();
        rows.extend(own.iter().map(|a| (a.signature(), false)));
        let f = |g: &dyn Fn(&wattdb_algorithms::appliance::Signature) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from(
                rows.iter().map(|(sig, _)| g(sig)).collect::<Vec<_>>(),
            ))
        };
        let secs = |g: &dyn Fn(&wattdb_algorithms::appliance::Signature) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from(
                rows.iter()
                    .map(|(sig, _)| Some(g(sig)).filter(|v| v.is_finite()))
                    .collect::<Vec<_>>(),
            ))
        };
        let flag =
            |g: &dyn Fn(&wattdb_algorithms::appliance::Signature) -> Option<bool>| -> ArrayRef {
                Arc::new(BooleanArray::from(
                    rows.iter().map(|(sig, _)| g(sig)).collect::<Vec<_>>(),
                ))
            };
        batch(
            vec![
                Field::new("appliance", DataType::Utf8, false),
                Field::new("built_in", DataType::Boolean, false),
                Field::new("watts_min", DataType::Float64, false),
                Field::new("watts_max", DataType::Float64, false),
                Field::new("pf_min", DataType::Float64, false),
                Field::new("pf_max", DataType::Float64, false),
                Field::new("min_duration_seconds", DataType::Float64, true),
                Field::new("max_duration_seconds", DataType::Float64, true),
                Field::new("cycling", DataType::Boolean, true),
                Field::new("varying", DataType::Boolean, true),
            ],
            vec![
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|(sig, _)| sig.name.clone())
                        .collect::<Vec<_>>(),
                )),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|(_, b)| *b).collect::<Vec<_>>(),
                )),
                f(&|sig| sig.watts.0),
                f(&|sig| sig.watts.1),
                f(&|sig| sig.pf.0),
                f(&|sig| sig.pf.1),
                secs(&|sig| sig.min_duration_s),
                secs(&|sig| sig.max_duration_s),
                flag(&|sig| sig.cycling),
                flag(&|sig| sig.varying),
            ],
        )
    }
}

pub fn register(storage: &Storage, runtime: &Arc<AlarmRuntime>) {
    storage.register_view("appliance_detection", Arc::new(Detections(storage.clone())));
    storage.register_view("appliances", Arc::new(Appliances(storage.clone())));
    storage.register_view("channels", Arc::new(Channels(storage.clone())));
    storage.register_view("notifications", Arc::new(Notifications(runtime.clone())));
    storage.register_view("alarms", Arc::new(Alarms(storage.clone())));
    storage.register_view(
        "alarm_state",
        Arc::new(AlarmStates {
            storage: storage.clone(),
            runtime: runtime.clone(),
        }),
    );
}
