//! Safety violations the simulator observed, kept in memory and mirrored to a JSON file.
//!
//! The file holds a JSON array of violations, each tagged by `kind`
//! (`DualPrimary` / `DemotedWithPods` / `PodsOnSecondary` / `Unknown`), timestamps in RFC
//! 3339 UTC with milliseconds. It is rewritten atomically (temporary file + rename) on every
//! change, so a reader never sees a half-written file. A write that fails is kept as the
//! recorder's failure ([`Recorder::failure`]): the file no longer tells the truth, so the
//! process running the simulator must stop with an error.

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
    /// Pods of the volume's workload (`pods`: every one seen in the interval) existed in
    /// `cluster` while its VolumeReplication there was `Secondary` with the transition
    /// completed, from `start` until `end` (`None`: still the case).
    PodsOnSecondary {
        cluster: String,
        namespace: String,
        name: String,
        pods: Vec<String>,
        #[serde(with = "ts_ms")]
        start: Timestamp,
        #[serde(with = "ts_ms_opt", default)]
        end: Option<Timestamp>,
    },
    /// The simulator could not tell whether the check `check` (`DemotedWithPods`,
    /// `PodsOnSecondary`, `DualPrimary`) passed for the volume in `cluster`: `error` says
    /// why.
    Unknown {
        cluster: String,
        namespace: String,
        name: String,
        check: String,
        error: String,
        #[serde(with = "ts_ms")]
        at: Timestamp,
    },
}

impl Violation {
    /// Namespace of the volume.
    pub fn namespace(&self) -> &str {
        match self {
            Self::DualPrimary { namespace, .. }
            | Self::DemotedWithPods { namespace, .. }
            | Self::PodsOnSecondary { namespace, .. }
            | Self::Unknown { namespace, .. } => namespace,
        }
    }

    /// Name of the volume.
    pub fn name(&self) -> &str {
        match self {
            Self::DualPrimary { name, .. }
            | Self::DemotedWithPods { name, .. }
            | Self::PodsOnSecondary { name, .. }
            | Self::Unknown { name, .. } => name,
        }
    }

    /// The kind, as the file tags it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DualPrimary { .. } => "DualPrimary",
            Self::DemotedWithPods { .. } => "DemotedWithPods",
            Self::PodsOnSecondary { .. } => "PodsOnSecondary",
            Self::Unknown { .. } => "Unknown",
        }
    }

    /// The cluster it happened in (`None` for `DualPrimary`, which spans clusters).
    pub fn cluster(&self) -> Option<&str> {
        match self {
            Self::DualPrimary { .. } => None,
            Self::DemotedWithPods { cluster, .. }
            | Self::PodsOnSecondary { cluster, .. }
            | Self::Unknown { cluster, .. } => Some(cluster),
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
    /// The first fatal error (a failed write of the file, the engine stopping).
    failure: watch::Sender<Option<String>>,
}

impl Recorder {
    pub(crate) fn new(file: Option<PathBuf>) -> Self {
        Self {
            list: Arc::default(),
            file,
            changed: watch::Sender::new(0),
            failure: watch::Sender::new(None),
        }
    }

    /// Appends a violation; returns its index (to close an interval later).
    pub(crate) fn push(&self, v: Violation) -> usize {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        list.push(v);
        let idx = list.len() - 1;
        self.persist(&list);
        idx
    }

    /// Sets the end of the open `DualPrimary` or `PodsOnSecondary` at `idx`.
    pub(crate) fn end_interval(&self, idx: usize, at: Timestamp) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        match list.get_mut(idx) {
            Some(Violation::DualPrimary { end, .. } | Violation::PodsOnSecondary { end, .. })
                if end.is_none() =>
            {
                *end = Some(ms(at))
            }
            _ => return,
        }
        self.persist(&list);
    }

    /// Adds `pods` to those of the `PodsOnSecondary` at `idx` (sorted, no duplicates).
    pub(crate) fn add_pods(&self, idx: usize, more: &[String]) {
        let mut list = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let Some(Violation::PodsOnSecondary { pods, .. }) = list.get_mut(idx) else {
            return;
        };
        if more.iter().all(|p| pods.contains(p)) {
            return;
        }
        pods.extend(more.iter().cloned());
        pods.sort();
        pods.dedup();
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
            Some(path) => write_violations_file(path, &list)
                .with_context(|| format!("cannot write the violations file {}", path.display())),
            None => Ok(()),
        }
    }

    /// Records a fatal error (only the first is kept).
    pub(crate) fn fail(&self, error: String) {
        self.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            tracing::error!("storage-sim: {error}");
            *f = Some(error);
            true
        });
    }

    /// The first fatal error, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        self.failure.borrow().clone()
    }

    /// Waits for the first fatal error.
    pub(crate) async fn wait_failure(&self) -> String {
        let mut rx = self.failure.subscribe();
        match rx.wait_for(Option::is_some).await {
            Ok(f) => f.clone().unwrap_or_default(),
            // The sender lives in `self`: it cannot be dropped while we wait.
            Err(_) => std::future::pending().await,
        }
    }

    fn persist(&self, list: &[Violation]) {
        if let Some(path) = &self.file
            && let Err(e) = write_violations_file(path, list)
        {
            self.fail(format!(
                "cannot write the violations file {}: {e:#}",
                path.display()
            ));
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
        rec.end_interval(idx, "2026-01-02T03:04:06Z".parse().unwrap());
        rec.push(Violation::DemotedWithPods {
            cluster: "east".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec!["app-1".into()],
            at: ms(start),
        });
        let pods = rec.push(Violation::PodsOnSecondary {
            cluster: "west".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec!["b".into()],
            start: ms(start),
            end: None,
        });
        rec.add_pods(pods, &["a".into(), "b".into()]);
        rec.end_interval(pods, "2026-01-02T03:04:07Z".parse().unwrap());
        // A second end is ignored: an interval closes once.
        rec.end_interval(pods, "2026-01-02T03:04:09Z".parse().unwrap());
        rec.push(Violation::Unknown {
            cluster: "west".into(),
            namespace: "ns".into(),
            name: "data".into(),
            check: "PodsOnSecondary".into(),
            error: "pods is forbidden".into(),
            at: ms(start),
        });
        let read = read_violations_file(&path).unwrap();
        assert_eq!(read, rec.snapshot());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("\"end\": \"2026-01-02T03:04:06.000Z\""),
            "{text}"
        );
        assert!(
            text.contains("\"end\": \"2026-01-02T03:04:07.000Z\""),
            "{text}"
        );
        assert!(text.contains("\"kind\": \"Unknown\""), "{text}");
        let Violation::PodsOnSecondary { pods, .. } = &read[2] else {
            panic!("{read:?}")
        };
        assert_eq!(pods, &["a", "b"]);
        assert_eq!(
            read.iter().map(Violation::kind).collect::<Vec<_>>(),
            [
                "DualPrimary",
                "DemotedWithPods",
                "PodsOnSecondary",
                "Unknown"
            ]
        );
        assert!(rec.failure().is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_failed_write_is_kept_as_the_failure_naming_the_file() {
        let dir = std::env::temp_dir().join(format!("storage-sim-bad-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A regular file where the violations file's folder should be.
        let blocker = dir.join("not-a-dir");
        std::fs::write(&blocker, "").unwrap();
        let path = blocker.join("v.json");
        let rec = Recorder::new(Some(path.clone()));
        assert!(rec.flush().is_err());
        rec.push(Violation::DemotedWithPods {
            cluster: "east".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec![],
            at: Timestamp::UNIX_EPOCH,
        });
        let failure = rec.failure().expect("a failure");
        assert!(failure.contains(&path.display().to_string()), "{failure}");
        rec.fail("later".into());
        assert_eq!(rec.failure(), Some(failure));
        let _ = std::fs::remove_dir_all(dir);
    }
}
