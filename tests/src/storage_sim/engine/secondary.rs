//! The engine's part of the pod checks: when a volume gets a check, what its answer
//! records (`PodsOnSecondary` opened, widened or closed, `Unknown`), and what a failing watch
//! records.

use jiff::Timestamp;
use tracing::warn;

use super::{AbortOnDrop, Engine, Key, Msg, Vol};
use crate::storage_sim::model::format_ms;
use crate::storage_sim::pods::{Checked, PodSignal, check_secondary};
use crate::storage_sim::violations::{Recorder, Violation, ms};

/// The pod check of one (cluster, volume).
#[derive(Default)]
pub(crate) struct PodCheck {
    /// The check task in flight and its id.
    running: Option<(u64, AbortOnDrop)>,
    /// Asked for again while one ran: run once more when it answers.
    again: bool,
    /// Index of the open `PodsOnSecondary` interval.
    open: Option<usize>,
    /// An `Unknown` was recorded and no check has succeeded since.
    unknown: bool,
}

impl PodCheck {
    /// Ends the open interval (if any) at `at` and stops a running check: the object is
    /// gone or replaced.
    pub(super) fn close(&mut self, recorder: &Recorder, at: Timestamp) {
        if let Some(idx) = self.open.take() {
            recorder.end_interval(idx, at);
        }
        self.running = None;
        self.again = false;
    }
}

/// Whether a volume needs a check: `Secondary` at rest, or an interval to close.
fn wants_check(vol: &Vol) -> bool {
    vol.view.is_secondary_at_rest() || vol.check.open.is_some()
}

impl Engine {
    /// After a new copy of (`c`, `key`) was cached: a volume `Secondary` at rest gets a
    /// check; one that left that state ends its open interval at `at`.
    pub(super) fn secondary_changed(&mut self, c: usize, key: &Key, at: Timestamp) {
        let Some(vol) = self.vols.get_mut(&(c, key.clone())) else {
            return;
        };
        if vol.view.is_secondary_at_rest() {
            self.request_check(c, key);
        } else if let Some(idx) = vol.check.open.take() {
            warn!(cluster = %self.clusters[c].name, volume = %vol.view.key(), end = %format_ms(at), "storage-sim VIOLATION: PodsOnSecondary ended (volume left Secondary)");
            self.recorder.end_interval(idx, at);
        }
    }

    /// Starts a check of (`c`, `key`), or asks for one more when one runs.
    fn request_check(&mut self, c: usize, key: &Key) {
        let Some(vol) = self.vols.get_mut(&(c, key.clone())) else {
            return;
        };
        if vol.check.running.is_some() {
            vol.check.again = true;
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let client = self.clusters[c].client.clone();
        let obj = vol.obj.clone();
        let tx = self.tx.clone();
        let key = key.clone();
        let task = tokio::spawn(async move {
            let result = check_secondary(client, obj).await;
            let _ = tx.send(Msg::Checked {
                cluster: c,
                key,
                id,
                result,
            });
        });
        vol.check.running = Some((id, AbortOnDrop(task)));
    }

    /// Records what check `id` of (`c`, `key`) found.
    pub(super) fn checked(&mut self, c: usize, key: Key, id: u64, result: Checked) {
        let recorder = self.recorder.clone();
        let cluster = self.clusters[c].name.clone();
        let Some(vol) = self.vols.get_mut(&(c, key.clone())) else {
            return;
        };
        if vol.check.running.as_ref().is_none_or(|(i, _)| *i != id) {
            return;
        }
        vol.check.running = None;
        let at_rest = vol.view.is_secondary_at_rest();
        let volume = vol.view.key();
        match result {
            Checked::Secondary { pods, from, to } => {
                vol.check.unknown = false;
                match vol.check.open {
                    Some(idx) if pods.is_empty() => {
                        warn!(%cluster, %volume, end = %format_ms(to), "storage-sim VIOLATION: PodsOnSecondary ended (pods gone)");
                        recorder.end_interval(idx, to);
                        vol.check.open = None;
                    }
                    Some(idx) => recorder.add_pods(idx, &pods),
                    None if pods.is_empty() => {}
                    None => {
                        warn!(%cluster, %volume, pods = ?pods, start = %format_ms(from), "storage-sim VIOLATION: PodsOnSecondary started");
                        // Seen after the cache moved on: it held during the list only.
                        let idx = recorder.push(Violation::PodsOnSecondary {
                            cluster,
                            namespace: key.0.clone(),
                            name: key.1.clone(),
                            pods,
                            start: ms(from),
                            end: (!at_rest).then(|| ms(to)),
                        });
                        vol.check.open = at_rest.then_some(idx);
                    }
                }
            }
            Checked::NotSecondary | Checked::Gone => {
                vol.check.unknown = false;
                if let Some(idx) = vol.check.open.take() {
                    recorder.end_interval(idx, Timestamp::now());
                }
            }
            Checked::Changing => vol.check.again |= at_rest,
            Checked::Failed(error) => {
                if !std::mem::replace(&mut vol.check.unknown, true) {
                    let at = Timestamp::now();
                    record_unknown(&recorder, &cluster, &key, "PodsOnSecondary", error, at);
                }
            }
        }
        let again = std::mem::take(&mut vol.check.again) && wants_check(vol);
        if again {
            self.request_check(c, &key);
        }
    }

    /// A signal of cluster `c`'s pod watch: checks for the volumes it may concern, or
    /// `Unknown` for every volume `Secondary` at rest when the watch fails (once until it
    /// delivers again).
    pub(super) fn pods_signal(&mut self, c: usize, signal: PodSignal, at: Timestamp) {
        let ns = match signal {
            PodSignal::Changed(ns) => Some(ns),
            PodSignal::Relisted => None,
            PodSignal::Failed(error) => {
                if !std::mem::replace(&mut self.blind[c][1], true) {
                    self.pod_watch_failed(c, &error, at);
                }
                return;
            }
        };
        self.blind[c][1] = false;
        let keys: Vec<Key> = self
            .vols
            .iter()
            .filter(|((cc, k), v)| {
                *cc == c && ns.as_ref().is_none_or(|n| *n == k.0) && wants_check(v)
            })
            .map(|((_, k), _)| k.clone())
            .collect();
        for k in keys {
            self.request_check(c, &k);
        }
    }

    fn pod_watch_failed(&mut self, c: usize, error: &str, at: Timestamp) {
        let cluster = &self.clusters[c].name;
        for ((cc, key), vol) in &mut self.vols {
            if *cc == c && vol.view.is_secondary_at_rest() && !vol.check.unknown {
                vol.check.unknown = true;
                let error = format!("pod watch: {error}");
                record_unknown(&self.recorder, cluster, key, "PodsOnSecondary", error, at);
            }
        }
    }

    /// Cluster `c`'s VolumeReplication watch failed: whether its volumes are Primary cannot
    /// be told until it delivers again (one `Unknown` per volume per failure).
    pub(super) fn watch_failed(&mut self, c: usize, error: &str, at: Timestamp) {
        if std::mem::replace(&mut self.blind[c][0], true) {
            return;
        }
        let cluster = &self.clusters[c].name;
        for (cc, key) in self.vols.keys() {
            if *cc == c {
                let error = format!("VolumeReplication watch: {error}");
                record_unknown(&self.recorder, cluster, key, "DualPrimary", error, at);
            }
        }
    }
}

fn record_unknown(
    recorder: &Recorder,
    cluster: &str,
    key: &Key,
    check: &str,
    error: String,
    at: Timestamp,
) {
    warn!(%cluster, volume = %format!("{}/{}", key.0, key.1), check, %error, "storage-sim VIOLATION: Unknown");
    recorder.push(Violation::Unknown {
        cluster: cluster.to_owned(),
        namespace: key.0.clone(),
        name: key.1.clone(),
        check: check.to_owned(),
        error,
        at: ms(at),
    });
}
