//! Safety violations the simulator observed, kept in memory and mirrored to a JSON file.
//!
//! The file holds a JSON array of violations, each tagged by `kind`
//! (`DualPrimary` / `DemotedWithPods`), timestamps in RFC 3339 UTC with milliseconds. It is
//! rewritten atomically (temporary file + rename) on every change, so a reader never sees a
//! half-written file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// Something the storage layer must never see.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Violation {
    /// The VolumeReplication `namespace/name` had `status.state = Primary` in two clusters at
    /// once from `start` until `end` (`None`: still the case).
    DualPrimary {
        namespace: String,
        name: String,
        #[serde(with = "ts_ms")]
        start: Timestamp,
        #[serde(with = "ts_ms_opt", default)]
        end: Option<Timestamp>,
    },
    /// The volume was demoted in `cluster` while pods of its workload still existed there.
    DemotedWithPods {
        cluster: String,
        namespace: String,
        name: String,
        pods: Vec<String>,
        #[serde(with = "ts_ms")]
        at: Timestamp,
    },
}

impl Violation {
    /// Namespace of the volume.
    pub fn namespace(&self) -> &str {
        match self {
            Self::DualPrimary { namespace, .. } | Self::DemotedWithPods { namespace, .. } => {
                namespace
            }
        }
    }

    /// Name of the volume.
    pub fn name(&self) -> &str {
        match self {
            Self::DualPrimary { name, .. } | Self::DemotedWithPods { name, .. } => name,
        }
    }
}

/// Truncates to milliseconds, the precision the file keeps.
pub(crate) fn ms(ts: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(ts.as_millisecond()).unwrap_or(ts)
}

mod ts_ms {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::storage_sim::model::format_ms(*ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

mod ts_ms_opt {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&crate::storage_sim::model::format_ms(*ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// Reads a violations file written by the simulator.
pub fn read_violations_file(path: &Path) -> Result<Vec<Violation>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("parsing violations file {}", path.display()))
}

/// Writes `violations` to `path` atomically: a temporary file next to it, then a rename.
pub fn write_violations_file(path: &Path, violations: &[Violation]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let text = serde_json::to_string_pretty(violations)?;
    std::fs::write(&tmp, text + "\n").with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// The shared violation log: the engine and the transition tasks append to it, the handle
/// reads it. Every change bumps a watch counter and rewrites the file.
#[derive(Clone)]
pub(crate) struct Recorder {
    list: Arc<Mutex<Vec<Violation>>>,
    file: Option<PathBuf>,
    changed: watch::Sender<u64>,
}

impl Recorder {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self {
            list: Arc::default(),
            file,
            changed: watch::Sender::new(0),
        }
    }

    /// Appends a violation; returns its index (to close a `DualPrimary` later).
    pub(crate) fn push(&self, v: Violation) -> usize {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push(v);
        let idx = list.len() - 1;
        self.persist(&list);
        idx
    }

    /// Sets the end of the open `DualPrimary` at `idx`.
    pub(crate) fn end_dual_primary(&self, idx: usize, at: Timestamp) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(Violation::DualPrimary { end, .. }) = list.get_mut(idx) {
            *end = Some(ms(at));
        }
        self.persist(&list);
    }

    pub(crate) fn snapshot(&self) -> Vec<Violation> {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Rewrites the file with the current list (no-op without a file).
    pub(crate) fn flush(&self) -> Result<()> {
        let list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        match &self.file {
            Some(path) => write_violations_file(path, &list),
            None => Ok(()),
        }
    }

    fn persist(&self, list: &[Violation]) {
        if let Some(path) = &self.file
            && let Err(e) = write_violations_file(path, list)
        {
            tracing::error!(file = %path.display(), "storage-sim: cannot write violations file: {e:#}");
        }
        self.changed.send_modify(|n| *n += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_with_ms_timestamps() {
        let dir = std::env::temp_dir().join(format!("storage-sim-unit-{}", std::process::id()));
        let path = dir.join("v.json");
        let rec = Recorder::new(Some(path.clone()));
        let start: Timestamp = "2026-01-02T03:04:05.678901Z".parse().unwrap();
        let idx = rec.push(Violation::DualPrimary {
            namespace: "ns".into(),
            name: "data".into(),
            start: ms(start),
            end: None,
        });
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"start\": \"2026-01-02T03:04:05.678Z\""),
            "{text}"
        );
        assert!(text.contains("\"end\": null"), "{text}");
        rec.end_dual_primary(idx, "2026-01-02T03:04:06Z".parse().unwrap());
        rec.push(Violation::DemotedWithPods {
            cluster: "east".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec!["app-1".into()],
            at: ms(start),
        });
        let read = read_violations_file(&path).unwrap();
        assert_eq!(read, rec.snapshot());
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("\"end\": \"2026-01-02T03:04:06.000Z\"")
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
