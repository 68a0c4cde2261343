//! The running simulator: one watcher per cluster feeding one engine task, which keeps the
//! latest copy of every VolumeReplication, tracks which clusters show `Primary` for each
//! volume, and runs at most one transition task per (cluster, volume).
//!
//! A transition task writes `InProgress`, sleeps the latency, then writes the final status
//! with a merge patch on `/status` carrying the `resourceVersion` it last saw: a conflict
//! makes it re-read the object and retry if the generation and desired state are unchanged
//! (otherwise the engine, which sees the new generation through its watch, has already
//! started a new task for it), a 404 ends it. Every status it writes goes back to the engine
//! with the time the API server answered, so `Primary` intervals are measured from the
//! writes themselves; writes by anyone else are seen through the watch.
//!
//! The pod checks ([`secondary`]): whenever a volume is `Secondary` at rest, or a pod of its
//! namespace changes in its cluster (a pod watch per cluster), or that watch relists, one
//! check task per (cluster, volume) asks the API server whether pods of its workload exist
//! ([`super::pods::check_secondary`]); a request while one runs is remembered and served
//! after it. Whatever cannot be read is recorded `Unknown`, once per volume until a read
//! succeeds again.

mod secondary;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::pin::pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::model::{DesiredState, Mode, Phase, Plan, STATE_PRIMARY, VrView, build_status};
use super::pods::{Checked, PodSignal, owning_pods_retrying, relists};
use super::violations::{Recorder, Violation, ms};
use crate::kube::volume_replication_resource;

/// (namespace, name) of a volume.
pub(crate) type Key = (String, String);

/// Aborts the task when dropped (so dropping the engine's state stops its transitions).
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub(crate) enum Msg {
    /// A watch event from cluster `.0`, received at `.2`.
    Watch(usize, Box<Event<DynamicObject>>, Timestamp),
    /// A transition task wrote this status: sent at `sent`, acknowledged at `acked`.
    Wrote {
        cluster: usize,
        obj: Box<DynamicObject>,
        sent: Timestamp,
        acked: Timestamp,
    },
    /// A transition task finished (`ok`: reached the end of its plan).
    Ended {
        cluster: usize,
        key: Key,
        id: u64,
        ok: bool,
    },
    /// The VolumeReplication watch of cluster `.0` failed (`.1`) at `.2`.
    WatchFailed(usize, String, Timestamp),
    /// What the pod watch of cluster `.0` saw at `.2`.
    Pods(usize, PodSignal, Timestamp),
    /// A pod check (`id`) of a volume answered.
    Checked {
        cluster: usize,
        key: Key,
        id: u64,
        result: Checked,
    },
}

pub(crate) struct ClusterCtx {
    pub(crate) name: String,
    pub(crate) client: Client,
}

struct Running {
    id: u64,
    plan: Plan,
    _task: AbortOnDrop,
}

struct Vol {
    obj: DynamicObject,
    view: VrView,
    task: Option<Running>,
    check: secondary::PodCheck,
}

impl Vol {
    fn new(obj: DynamicObject, view: VrView) -> Self {
        Self {
            obj,
            view,
            task: None,
            check: secondary::PodCheck::default(),
        }
    }
}

pub(crate) struct Engine {
    clusters: Vec<ClusterCtx>,
    default_latency: Duration,
    recorder: Recorder,
    tx: mpsc::UnboundedSender<Msg>,
    vols: HashMap<(usize, Key), Vol>,
    /// Keys seen during the current initial listing of each cluster.
    listing: Vec<Option<HashSet<Key>>>,
    /// Clusters that finished their first listing.
    ready: watch::Sender<Vec<bool>>,
    primaries: HashMap<Key, BTreeSet<usize>>,
    open_dual: HashMap<Key, usize>,
    next_id: u64,
    /// Per cluster and watch (`0`: VolumeReplications, `1`: pods): failed and not yet
    /// delivering again (its failure is recorded once per episode).
    blind: Vec<[bool; 2]>,
}

impl Engine {
    pub(crate) fn new(
        clusters: Vec<ClusterCtx>,
        default_latency: Duration,
        recorder: Recorder,
        tx: mpsc::UnboundedSender<Msg>,
        ready: watch::Sender<Vec<bool>>,
    ) -> Self {
        let n = clusters.len();
        Self {
            clusters,
            default_latency,
            recorder,
            tx,
            vols: HashMap::new(),
            listing: vec![None; n],
            ready,
            primaries: HashMap::new(),
            open_dual: HashMap::new(),
            next_id: 0,
            blind: vec![[false; 2]; n],
        }
    }

    pub(crate) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        while let Some(msg) = rx.recv().await {
            self.handle(msg);
        }
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Watch(c, event, at) => {
                self.blind[c][0] = false;
                self.watched(c, *event, at);
            }
            Msg::WatchFailed(c, error, at) => self.watch_failed(c, &error, at),
            Msg::Pods(c, signal, at) => self.pods_signal(c, signal, at),
            Msg::Checked {
                cluster,
                key,
                id,
                result,
            } => self.checked(cluster, key, id, result),
            Msg::Wrote {
                cluster,
                obj,
                sent,
                acked,
            } => self.observe(
                cluster,
                *obj,
                Span {
                    earliest: sent,
                    latest: acked,
                },
                true,
            ),
            Msg::Ended {
                cluster,
                key,
                id,
                ok,
            } => {
                let k = (cluster, key);
                let Some(vol) = self.vols.get_mut(&k) else {
                    return;
                };
                if vol.task.as_ref().is_some_and(|t| t.id == id) {
                    vol.task = None;
                    if ok {
                        self.reconcile(k.0, k.1);
                    }
                }
            }
        }
    }

    fn watched(&mut self, c: usize, event: Event<DynamicObject>, at: Timestamp) {
        match event {
            Event::Init => self.listing[c] = Some(HashSet::new()),
            Event::InitApply(obj) => {
                if let Some(seen) = &mut self.listing[c] {
                    seen.insert(key_of(&obj));
                }
                self.observe(c, obj, Span::at(at), false);
            }
            Event::InitDone => {
                let seen = self.listing[c].take().unwrap_or_default();
                let gone: Vec<Key> = self
                    .vols
                    .keys()
                    .filter(|(cc, k)| *cc == c && !seen.contains(k))
                    .map(|(_, k)| k.clone())
                    .collect();
                for k in gone {
                    self.forget(c, k, at);
                }
                self.ready.send_modify(|r| r[c] = true);
            }
            Event::Apply(obj) => self.observe(c, obj, Span::at(at), false),
            Event::Delete(obj) => self.forget(c, key_of(&obj), at),
        }
    }

    /// Takes a newer copy of an object into the cache, then updates the Primary bookkeeping
    /// and reconciles it. Older copies (a watch event behind our own write) are ignored.
    /// The change took effect within `at`.
    fn observe(&mut self, c: usize, obj: DynamicObject, at: Span, from_write: bool) {
        let key = key_of(&obj);
        let view = VrView::from_object(&obj);
        let k = (c, key.clone());
        match self.vols.get_mut(&k) {
            Some(vol) if vol.view.uid == view.uid => {
                if !is_newer(
                    view.resource_version.as_deref(),
                    vol.view.resource_version.as_deref(),
                ) {
                    return;
                }
                vol.obj = obj;
                vol.view = view;
            }
            Some(vol) => {
                // Same name, new object: whatever ran for the old one is void.
                if from_write {
                    return;
                }
                vol.check.close(&self.recorder, at.earliest);
                *vol = Vol::new(obj, view);
            }
            None if from_write => return, // deleted while the task was writing
            None => {
                self.vols.insert(k.clone(), Vol::new(obj, view));
            }
        }
        let primary = self.vols[&k].view.state() == STATE_PRIMARY;
        self.set_primary(&key, c, primary, at);
        self.secondary_changed(c, &key, at.latest);
        self.reconcile(c, key);
    }

    fn forget(&mut self, c: usize, key: Key, at: Timestamp) {
        if let Some(mut vol) = self.vols.remove(&(c, key.clone())) {
            vol.check.close(&self.recorder, at);
            debug!(cluster = %self.clusters[c].name, volume = %format!("{}/{}", key.0, key.1), "storage-sim: volume deleted");
        }
        self.set_primary(&key, c, false, Span::at(at));
    }

    /// Records whether cluster `c` shows Primary for `key`, the change having taken effect
    /// within `at`. Intervals are measured conservatively: a dual Primary starts at the
    /// earliest and ends at the latest moment the change can have happened.
    fn set_primary(&mut self, key: &Key, c: usize, primary: bool, at: Span) {
        let set = self.primaries.entry(key.clone()).or_default();
        if primary {
            set.insert(c);
        } else {
            set.remove(&c);
        }
        let names: Vec<&str> = set
            .iter()
            .map(|i| self.clusters[*i].name.as_str())
            .collect();
        let dual = set.len() >= 2;
        if set.is_empty() {
            self.primaries.remove(key);
        }
        match (dual, self.open_dual.get(key).copied()) {
            (true, None) => {
                warn!(
                    volume = %format!("{}/{}", key.0, key.1),
                    clusters = ?names,
                    start = %super::model::format_ms(at.earliest),
                    "storage-sim VIOLATION: DualPrimary started"
                );
                let idx = self.recorder.push(Violation::DualPrimary {
                    namespace: key.0.clone(),
                    name: key.1.clone(),
                    start: ms(at.earliest),
                    end: None,
                });
                self.open_dual.insert(key.clone(), idx);
            }
            (false, Some(idx)) => {
                warn!(
                    volume = %format!("{}/{}", key.0, key.1),
                    end = %super::model::format_ms(at.latest),
                    "storage-sim VIOLATION: DualPrimary ended"
                );
                self.recorder.end_interval(idx, at.latest);
                self.open_dual.remove(key);
            }
            _ => {}
        }
    }

    /// Starts (or restarts) the transition the object needs, if any.
    fn reconcile(&mut self, c: usize, key: Key) {
        let k = (c, key);
        let Some(vol) = self.vols.get_mut(&k) else {
            return;
        };
        let Some(plan) = Plan::for_view(&vol.view, self.default_latency) else {
            if vol.task.take().is_some() || vol.view.desired_raw.is_some() {
                debug!(volume = %vol.view.key(), desired = ?vol.view.desired_raw, "storage-sim: no valid replicationState; ignored");
            }
            return;
        };
        if plan.is_reflected_by(&vol.view) {
            if vol.task.as_ref().is_some_and(|t| t.plan != plan) {
                vol.task = None;
            }
            return;
        }
        if vol.task.as_ref().is_some_and(|t| t.plan == plan) {
            return;
        }
        self.next_id += 1;
        let id = self.next_id;
        let cluster = &self.clusters[c];
        let task = Transition {
            cluster: c,
            cluster_name: cluster.name.clone(),
            client: cluster.client.clone(),
            api: Api::namespaced_with(
                cluster.client.clone(),
                &k.1.0,
                &volume_replication_resource(),
            ),
            plan,
            cur: vol.obj.clone(),
            tx: self.tx.clone(),
            recorder: self.recorder.clone(),
        };
        let tx = self.tx.clone();
        let key = k.1.clone();
        // Replacing the old `Running` aborts its task.
        vol.task = Some(Running {
            id,
            plan,
            _task: AbortOnDrop(tokio::spawn(async move {
                let ok = task.run().await;
                let _ = tx.send(Msg::Ended {
                    cluster: c,
                    key,
                    id,
                    ok,
                });
            })),
        });
    }
}

/// When a change took effect: between `earliest` and `latest`.
#[derive(Clone, Copy, Debug)]
struct Span {
    earliest: Timestamp,
    latest: Timestamp,
}

impl Span {
    fn at(t: Timestamp) -> Self {
        Self {
            earliest: t,
            latest: t,
        }
    }
}

fn key_of(obj: &DynamicObject) -> Key {
    (
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    )
}

/// resourceVersions are opaque, but etcd-backed servers use increasing integers; when both
/// parse we keep the newer, otherwise we take the incoming copy.
fn is_newer(incoming: Option<&str>, cached: Option<&str>) -> bool {
    match (
        incoming.and_then(|s| s.parse::<u64>().ok()),
        cached.and_then(|s| s.parse::<u64>().ok()),
    ) {
        (Some(a), Some(b)) => a > b,
        _ => incoming != cached,
    }
}

/// Why a transition task stopped early.
enum Stop {
    /// The object was deleted.
    Gone,
    /// The spec moved on (new generation or desired state): the engine runs a new task.
    Superseded,
}

struct Transition {
    cluster: usize,
    cluster_name: String,
    client: Client,
    api: Api<DynamicObject>,
    plan: Plan,
    cur: DynamicObject,
    tx: mpsc::UnboundedSender<Msg>,
    recorder: Recorder,
}

impl Transition {
    async fn run(mut self) -> bool {
        match self.drive().await {
            Ok(()) => true,
            Err(Stop::Gone) => {
                debug!(cluster = %self.cluster_name, volume = %self.view().key(), "storage-sim: volume gone; transition dropped");
                false
            }
            Err(Stop::Superseded) => {
                debug!(cluster = %self.cluster_name, volume = %self.view().key(), "storage-sim: spec changed; transition superseded");
                false
            }
        }
    }

    fn view(&self) -> VrView {
        VrView::from_object(&self.cur)
    }

    async fn drive(&mut self) -> Result<(), Stop> {
        let d = self.plan.desired;
        let latency = self.plan.latency;
        let from = self.view().state().to_string();
        match self.plan.mode {
            Mode::Stuck => {
                self.write(Phase::Stuck(d)).await?;
                info!(cluster = %self.cluster_name, volume = %self.view().key(), to = %d, "storage-sim: volume stuck (annotation)");
                return Ok(());
            }
            Mode::Degraded => {
                self.write(Phase::Degraded(d)).await?;
                info!(cluster = %self.cluster_name, volume = %self.view().key(), to = %d, "storage-sim: volume degraded (annotation)");
                return Ok(());
            }
            Mode::Normal => {}
        }
        self.write(Phase::InProgress(d)).await?;
        tokio::time::sleep(latency).await;
        match d {
            DesiredState::Primary => {
                self.write(Phase::Promoted).await?;
            }
            DesiredState::Secondary => self.demote(Phase::Demoted).await?,
            DesiredState::Resync => {
                if from == STATE_PRIMARY {
                    self.demote(Phase::Resyncing).await?;
                } else {
                    self.write(Phase::Resyncing).await?;
                }
                tokio::time::sleep(latency).await;
                self.write(Phase::Resynced).await?;
            }
        }
        let to = self.view().state().to_string();
        info!(
            cluster = %self.cluster_name,
            volume = %self.view().key(),
            transition = %format!("{}→{}", if from.is_empty() { "-" } else { &from }, to),
            desired = %d,
            generation = self.plan.generation,
            latency = %humantime::format_duration(latency),
            "storage-sim transition"
        );
        Ok(())
    }

    /// Writes a demotion, recording `DemotedWithPods` if the owning workload still has pods
    /// in this cluster, or `Unknown` if they cannot be listed (the demotion happens
    /// regardless).
    async fn demote(&mut self, phase: Phase) -> Result<(), Stop> {
        let view = self.view();
        let pods = owning_pods_retrying(&self.client, &view).await;
        let at = self.write(phase).await?;
        let violation = match pods {
            Ok(pods) if pods.is_empty() => return Ok(()),
            Ok(pods) => Violation::DemotedWithPods {
                cluster: self.cluster_name.clone(),
                namespace: view.namespace.clone(),
                name: view.name.clone(),
                pods,
                at: ms(at),
            },
            Err(error) => Violation::Unknown {
                cluster: self.cluster_name.clone(),
                namespace: view.namespace.clone(),
                name: view.name.clone(),
                check: "DemotedWithPods".into(),
                error: format!("listing the volume's pods: {error}"),
                at: ms(at),
            },
        };
        warn!(
            cluster = %self.cluster_name,
            volume = %view.key(),
            at = %super::model::format_ms(at),
            violation = ?violation,
            "storage-sim VIOLATION: {}", violation.kind()
        );
        self.recorder.push(violation);
        Ok(())
    }

    /// Merge-patches `/status` for `phase`, guarded by the last seen resourceVersion.
    /// Returns when the API server accepted it.
    async fn write(&mut self, phase: Phase) -> Result<Timestamp, Stop> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let view = self.view();
            let sent = Timestamp::now();
            let status = build_status(&view, self.plan.generation, phase, sent);
            let patch = json!({
                "metadata": {"resourceVersion": view.resource_version},
                "status": status,
            });
            match self
                .api
                .patch_status(&view.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(obj) => {
                    let acked = Timestamp::now();
                    self.cur = obj.clone();
                    let _ = self.tx.send(Msg::Wrote {
                        cluster: self.cluster,
                        obj: Box::new(obj),
                        sent,
                        acked,
                    });
                    return Ok(acked);
                }
                Err(kube::Error::Api(s)) if s.is_not_found() => return Err(Stop::Gone),
                Err(kube::Error::Api(s)) if s.is_conflict() => {
                    self.refresh().await?;
                }
                Err(e) => {
                    warn!(cluster = %self.cluster_name, volume = %view.key(), "storage-sim: status write failed, retrying in {backoff:?}: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    self.refresh().await?;
                }
            }
        }
    }

    /// Re-reads the object; stops if it is gone or its spec moved past this plan.
    async fn refresh(&mut self) -> Result<(), Stop> {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.api.get_opt(&self.view().name).await {
                Ok(None) => return Err(Stop::Gone),
                Ok(Some(obj)) => {
                    let fresh = VrView::from_object(&obj);
                    if fresh.uid != self.view().uid {
                        return Err(Stop::Gone);
                    }
                    if fresh.generation != self.plan.generation
                        || fresh.desired != Some(self.plan.desired)
                    {
                        return Err(Stop::Superseded);
                    }
                    self.cur = obj;
                    return Ok(());
                }
                Err(e) => {
                    debug!(cluster = %self.cluster_name, "storage-sim: re-read failed, retrying: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }
}

/// Spawns the watcher of cluster `c` (all namespaces or one).
pub(crate) fn spawn_watcher(
    c: usize,
    cluster: &ClusterCtx,
    namespace: Option<&str>,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    let ar = volume_replication_resource();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(cluster.client.clone(), ns, &ar),
        None => Api::all_with(cluster.client.clone(), &ar),
    };
    let name = cluster.name.clone();
    tokio::spawn(async move {
        let mut stream = pin!(watcher::watcher(api, watcher::Config::default()).default_backoff());
        while let Some(item) = stream.next().await {
            match item {
                Ok(ev) => {
                    if tx
                        .send(Msg::Watch(c, Box::new(ev), Timestamp::now()))
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) if relists(&e) => {
                    debug!(cluster = %name, "storage-sim: watch expired, listing again: {e}");
                }
                Err(e) => {
                    warn!(cluster = %name, "storage-sim: watch error (retrying): {e}");
                    if tx
                        .send(Msg::WatchFailed(c, e.to_string(), Timestamp::now()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// Waits until every cluster finished its first listing.
pub(crate) async fn wait_ready(
    mut ready: watch::Receiver<Vec<bool>>,
    names: &[String],
    deadline: Duration,
) -> Result<()> {
    let res = tokio::time::timeout(deadline, ready.wait_for(|r| r.iter().all(|b| *b)))
        .await
        .map(|r| r.map(|_| ()));
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => bail!("storage simulator engine stopped before the watches were ready"),
        Err(_) => {
            let r = ready.borrow().clone();
            let missing: Vec<&str> = names
                .iter()
                .zip(r)
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| n.as_str())
                .collect();
            Err(anyhow::anyhow!(
                "no initial VolumeReplication list from cluster(s) {missing:?}"
            ))
            .context(format!("storage simulator not ready after {deadline:?}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_versions() {
        assert!(is_newer(Some("11"), Some("9")));
        assert!(!is_newer(Some("9"), Some("11")));
        assert!(!is_newer(Some("9"), Some("9")));
        assert!(is_newer(Some("x"), Some("9")));
        assert!(!is_newer(Some("x"), Some("x")));
    }
}
