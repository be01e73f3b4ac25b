//! The alarm runtime's durable state: every (alarm, series) state, the WAL sequence the
//! states include, and the transitions not yet written to `alarm_events`. Written whole
//! (temporary file, fsync, rename, fsync of the directory) before the WAL may release
//! records the states depend on; read at startup, after which WAL replay evaluates only
//! newer records. Format: a header line `wattdb-alarm-state <version> <crc32 of the
//! body, hex>` and a JSON body. A file that is damaged or of an unknown version stops
//! the server from starting (nothing is guessed).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::RuleError;

const MAGIC: &str = "wattdb-alarm-state";
pub const FORMAT_VERSION: u32 = 1;
pub const FILE_NAME: &str = "alarm_state.json";

/// A state of one (alarm, series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesEntry {
    pub alarm: String,
    pub tags: Vec<String>,
    /// `pending` or `firing`.
    pub state: String,
    pub since: i64,
    pub newest: Option<i64>,
    pub value: Option<f64>,
    /// Wall-clock time it fired (µs) and reminders sent since, for `repeat`.
    #[serde(default)]
    pub fired_wall: Option<i64>,
    #[serde(default)]
    pub reminders: u32,
    /// While firing: since when the clear condition has held (`keep_firing_for`).
    #[serde(default)]
    pub clearing_since: Option<i64>,
}

/// One transition, as `alarm_events` stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmEvent {
    pub alarm: String,
    /// The series' tag values, in the table's tag order.
    pub tags: Vec<String>,
    /// The series as text, e.g. `pid=meter-3`.
    pub series: String,
    pub ts: i64,
    /// `firing` or `resolved`.
    pub state: String,
    pub severity: String,
    pub value: Option<f64>,
    pub message: String,
    pub event_id: String,
    /// Channels to notify.
    #[serde(default)]
    pub channels: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// The newest WAL sequence whose records the states include.
    pub seq: u64,
    pub series: Vec<SeriesEntry>,
    pub unwritten: Vec<AlarmEvent>,
    /// Appliance detectors, one per (table, series).
    #[serde(default)]
    pub detectors: Vec<DetectorEntry>,
    /// Appliance events not yet written to `appliance_events`, oldest first.
    #[serde(default)]
    pub unwritten_appliances: Vec<ApplianceRow>,
}

/// The appliance detector of one series of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectorEntry {
    pub table: String,
    pub tags: Vec<String>,
    pub detector: wattdb_algorithms::appliance::SeriesDetector,
}

/// One appliance event of a series, as `appliance_events` stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplianceRow {
    pub table: String,
    pub tags: Vec<String>,
    pub event: wattdb_algorithms::appliance::ApplianceEvent,
}

pub fn path_in(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

fn damaged(path: &Path, reason: impl Into<String>) -> RuleError {
    RuleError::State {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Read the state file; a missing file is an empty state.
pub fn load(path: &Path) -> Result<StateFile, RuleError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StateFile::default()),
        Err(e) => return Err(damaged(path, e.to_string())),
    };
    let split = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| damaged(path, "no header line"))?;
    let header = std::str::from_utf8(&bytes[..split]).map_err(|_| damaged(path, "bad header"))?;
    let body = &bytes[split + 1..];
    let parts: Vec<&str> = header.split(' ').collect();
    let [magic, version, crc] = parts.as_slice() else {
        return Err(damaged(path, format!("bad header \"{header}\"")));
    };
    if *magic != MAGIC {
        return Err(damaged(
            path,
            format!("not an alarm state file (\"{header}\")"),
        ));
    }
    if version.parse::<u32>().ok() != Some(FORMAT_VERSION) {
        return Err(damaged(
            path,
            format!(
                "format version {version} is not {FORMAT_VERSION} (written by another wattdb version?)"
            ),
        ));
    }
    let want = u32::from_str_radix(crc, 16).map_err(|_| damaged(path, "bad checksum field"))?;
    if crc32fast::hash(body) != want {
        return Err(damaged(path, "checksum mismatch: the file is damaged"));
    }
    serde_json::from_slice(body).map_err(|e| damaged(path, e.to_string()))
}

/// Replace the state file with `state`, durably.
pub fn store(path: &Path, state: &StateFile) -> Result<(), RuleError> {
    let body = serde_json::to_vec(state).map_err(|e| damaged(path, e.to_string()))?;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| damaged(path, e.to_string());
    {
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        writeln!(f, "{MAGIC} {FORMAT_VERSION} {:08x}", crc32fast::hash(&body)).map_err(io)?;
        f.write_all(&body).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        assert_eq!(load(&path).unwrap(), StateFile::default());
        let state = StateFile {
            seq: 42,
            series: vec![SeriesEntry {
                alarm: "hot".into(),
                tags: vec!["m1".into()],
                state: "firing".into(),
                since: 5,
                newest: Some(7),
                value: Some(1.5),
                fired_wall: Some(9),
                reminders: 2,
                clearing_since: None,
            }],
            unwritten: vec![],
            detectors: vec![DetectorEntry {
                table: "room_power".into(),
                tags: vec!["301".into()],
                detector: Default::default(),
            }],
            unwritten_appliances: vec![],
        };
        store(&path, &state).unwrap();
        assert_eq!(load(&path).unwrap(), state);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
        std::fs::write(&path, b"something else\n{}").unwrap();
        assert!(load(&path).is_err());
    }

    /// A state file written before appliance detection existed still loads (the new
    /// parts default to empty).
    #[test]
    fn a_file_without_detectors_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_in(dir.path());
        let old = StateFile {
            seq: 3,
            ..Default::default()
        };
        store(&path, &old).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, body) = text.split_once('\n').unwrap();
        let mut json: serde_json::Value = serde_json::from_str(body).unwrap();
        let obj = json.as_object_mut().unwrap();
        obj.remove("detectors");
        obj.remove("unwritten_appliances");
        let body = serde_json::to_string(&json).unwrap();
        let crc = crc32fast::hash(body.as_bytes());
        let header = header.rsplit_once(' ').unwrap().0;
        std::fs::write(&path, format!("{header} {crc:08x}\n{body}")).unwrap();
        assert_eq!(load(&path).unwrap(), old);
    }
}
