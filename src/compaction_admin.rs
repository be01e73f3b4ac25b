//! The admin functions of the SQL endpoint served by the compaction crate: rollups
//! (`rebuild_rollups('<table>')`, `set_rollup_intervals('<table>', '15m,1d')`,
//! `set_counters('<table>', 'ep,eq')`), retention (`set_retention('<table>',
//! '4 months' | 'none')`, `run_retention()`), the archive (`restore_partition('<table>',
//! 'YYYY-MM' [, '<hold>'])`) and file compaction (`compact('<table>')`); and those of the
//! ingest crate's alarm runtime (`create_alarm`, `drop_alarm`, `enable_alarm`).

use std::sync::Arc;

use wattdb_compaction::compact::compact_table;
use wattdb_compaction::retention::{hold_until, parse_ttl, retention_setting, run_retention};
use wattdb_compaction::rollup::{RollupMaintainer, check_settings};
use wattdb_query::admin::{AdminCall, AdminError, AdminExtension};
use wattdb_query::pg::sqlstate;
use wattdb_storage::{Month, RollupSettings, Storage};

/// How long a restored month stays before retention archives and drops it again.
const DEFAULT_RESTORE_HOLD: &str = "7 days";

pub struct CompactionAdmin {
    pub storage: Storage,
    pub rollups: Arc<RollupMaintainer>,
    /// Grace period before compacted files are deleted.
    pub compaction: wattdb_compaction::compact::CompactionPolicy,
    pub alarms: Arc<wattdb_ingest::rules::AlarmRuntime>,
}

fn compaction_error(e: wattdb_compaction::Error) -> AdminError {
    match e {
        wattdb_compaction::Error::Storage(e) => e.into(),
        e if e.is_user_error() => AdminError::new(sqlstate::INVALID_PARAMETER_VALUE, e.to_string()),
        e => AdminError::new(sqlstate::INTERNAL_ERROR, e.to_string()),
    }
}

/// `'a, b'` → `["a", "b"]`; `''` and `'none'` → empty.
fn list(text: &str) -> Vec<String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Vec::new();
    }
    text.split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn args<'a>(call: &'a AdminCall, n: usize, usage: &str) -> Result<&'a [String], AdminError> {
    if call.args.len() != n {
        return Err(AdminError::new(
            sqlstate::UNDEFINED_FUNCTION,
            format!("usage: SELECT {usage}"),
        ));
    }
    Ok(&call.args)
}

impl CompactionAdmin {
    /// `restore_partition('<table>', 'YYYY-MM' [, '<hold>'])`.
    async fn restore(&self, a: &[String]) -> Result<String, AdminError> {
        let bad = |m: String| AdminError::new(sqlstate::INVALID_PARAMETER_VALUE, m);
        let month = Month::parse(a[1].trim())
            .ok_or_else(|| bad(format!("invalid month \"{}\" (expected YYYY-MM)", a[1])))?;
        let hold_text = a.get(2).map(String::as_str).unwrap_or(DEFAULT_RESTORE_HOLD);
        let hold = parse_ttl(hold_text)
            .map_err(bad)?
            .ok_or_else(|| bad("a restore hold cannot be 'none'".into()))?;
        let until = hold_until(chrono::Utc::now(), hold);
        let r = self
            .storage
            .restore_partition(&a[0], month, until.timestamp_millis())
            .await?;
        let until = until.format("%Y-%m-%d %H:%M:%S UTC");
        Ok(if r.already_restored {
            format!("{} {month} was already restored; kept until {until}", a[0])
        } else {
            format!(
                "restored {} {month}: {} file(s), {} row(s); kept until {until}",
                a[0], r.files, r.rows
            )
        })
    }

    /// Store new settings for `table`, then recompute its rollups under them.
    async fn change(
        &self,
        table: &str,
        update: impl FnOnce(&mut RollupSettings),
    ) -> Result<String, AdminError> {
        let def = self.storage.table(table).ok_or_else(|| {
            AdminError::from(wattdb_storage::Error::TableNotFound {
                table: table.into(),
            })
        })?;
        let mut settings = def.rollups.clone();
        update(&mut settings);
        check_settings(&def, &settings, self.rollups.timezone())
            .map_err(|m| AdminError::new(sqlstate::INVALID_PARAMETER_VALUE, m))?;
        settings.rebuilding = false;
        let n = self
            .rollups
            .apply_settings(table, settings)
            .await
            .map_err(compaction_error)?;
        Ok(format!(
            "rollups of {table} updated; rebuilt {n} rollup row(s)"
        ))
    }
}

#[async_trait::async_trait]
impl AdminExtension for CompactionAdmin {
    fn functions(&self) -> Vec<&'static str> {
        let mut names = wattdb_compaction::ADMIN_FUNCTIONS.to_vec();
        names.extend(wattdb_ingest::rules::admin::FUNCTIONS);
        names
    }

    async fn call(&self, call: &AdminCall) -> Option<Result<String, AdminError>> {
        if let Some(r) =
            wattdb_ingest::rules::admin::call(&self.storage, &self.alarms, &call.name, &call.args)
                .await
        {
            return Some(r.map_err(|e| AdminError::new(e.sqlstate(), e.to_string())));
        }
        let result = match call.name.as_str() {
            "rebuild_rollups" => match args(call, 1, "rebuild_rollups('<table>')") {
                Ok(a) => self
                    .rollups
                    .rebuild(&a[0])
                    .await
                    .map(|n| format!("rebuilt {n} rollup row(s) of {}", a[0]))
                    .map_err(compaction_error),
                Err(e) => Err(e),
            },
            "set_rollup_intervals" => {
                match args(
                    call,
                    2,
                    "set_rollup_intervals('<table>', '15m,1d' | 'default')",
                ) {
                    Ok(a) => {
                        let intervals = if a[1].trim().eq_ignore_ascii_case("default") {
                            None
                        } else {
                            Some(list(&a[1]))
                        };
                        self.change(&a[0], |s| s.intervals = intervals).await
                    }
                    Err(e) => Err(e),
                }
            }
            "set_counters" => match args(call, 2, "set_counters('<table>', 'ep,eq' | 'none')") {
                Ok(a) => {
                    let counters = list(&a[1]);
                    self.change(&a[0], |s| s.counters = counters).await
                }
                Err(e) => Err(e),
            },
            "set_retention" => match args(call, 2, "set_retention('<table>', '4 months' | 'none')")
            {
                Ok(a) => match retention_setting(&a[1], chrono::Utc::now()) {
                    Ok((text, keeps_from)) => self
                        .storage
                        .set_retention(&a[0], text.clone(), keeps_from)
                        .await
                        .map(|_| {
                            format!(
                                "retention of {}: {}",
                                a[0],
                                text.as_deref().unwrap_or("none")
                            )
                        })
                        .map_err(AdminError::from),
                    Err(m) => Err(AdminError::new(sqlstate::INVALID_PARAMETER_VALUE, m)),
                },
                Err(e) => Err(e),
            },
            "run_retention" => match args(call, 0, "run_retention()") {
                Ok(_) => {
                    let outcome = run_retention(&self.storage, chrono::Utc::now()).await;
                    let failed: Vec<String> = outcome
                        .iter()
                        .filter_map(|(t, r)| r.as_ref().err().map(|e| format!("{t}: {e}")))
                        .collect();
                    let dropped: Vec<(String, wattdb_storage::ExpireReport)> = outcome
                        .into_iter()
                        .filter_map(|(t, r)| r.ok().map(|r| (t, r)))
                        .collect();
                    let months: usize = dropped.iter().map(|(_, r)| r.months.len()).sum();
                    let files: usize = dropped.iter().map(|(_, r)| r.files).sum();
                    let detail: Vec<String> = dropped
                        .iter()
                        .filter(|(_, r)| !r.months.is_empty())
                        .map(|(t, r)| {
                            let m: Vec<String> = r.months.iter().map(|m| m.to_string()).collect();
                            format!("{t}: {}", m.join(" "))
                        })
                        .collect();
                    let archived: usize = dropped.iter().map(|(_, r)| r.archived).sum();
                    let summary = format!(
                        "dropped {months} month partition(s), {files} file(s), {archived} month(s) archived first{}{}",
                        if detail.is_empty() { "" } else { " — " },
                        detail.join("; ")
                    );
                    if failed.is_empty() {
                        Ok(summary)
                    } else {
                        Err(AdminError::new(
                            sqlstate::IO_ERROR,
                            format!(
                                "retention failed for {} (their months are kept; the next run retries): {}; otherwise {summary}",
                                failed.len(),
                                failed.join("; ")
                            ),
                        ))
                    }
                }
                Err(e) => Err(e),
            },
            "restore_partition" => {
                let usage = "restore_partition('<table>', 'YYYY-MM' [, '<hold, default 7 days>'])";
                if (2..=3).contains(&call.args.len()) {
                    self.restore(&call.args).await
                } else {
                    Err(AdminError::new(
                        sqlstate::UNDEFINED_FUNCTION,
                        format!("usage: SELECT {usage}"),
                    ))
                }
            }
            "compact" => match args(call, 1, "compact('<table>')") {
                Ok(a) => compact_table(&self.storage, &a[0], 2, self.compaction.grace)
                    .await
                    .map(|reports| {
                        let before: usize = reports.iter().map(|r| r.files_before).sum();
                        let rows: u64 = reports.iter().map(|r| r.file.rows).sum();
                        format!(
                            "compacted {} month(s) of {}: {before} file(s) into {}, {rows} row(s)",
                            reports.len(),
                            a[0],
                            reports.len()
                        )
                    })
                    .map_err(AdminError::from),
                Err(e) => Err(e),
            },
            _ => return None,
        };
        Some(result)
    }
}
