//! The storage simulator: plays the csi-addons VolumeReplication driver in every cluster of
//! the test environment, and records every moment the storage would have been unsafe.
//!
//! [`StorageSim::start`] watches VolumeReplications (`replication.storage.openshift.io/
//! v1alpha1`) in each cluster, in one namespace or all. For each object whose desired state
//! (`spec.replicationState` at `metadata.generation`) its status does not yet reflect, it
//! writes `Completed=False` (reason `InProgress`), waits the latency and then drives the
//! status like the real driver:
//!
//! | `spec.replicationState` | final status |
//! |---|---|
//! | `primary` | `state: Primary`, `Completed=True` (`Promoted`) — also when the peer is Primary |
//! | `secondary` | `state: Secondary`, `Completed=True` (`Demoted`) |
//! | `resync` | first `Resyncing=True`, `Completed=False`, `state: Secondary`; one more latency later `Completed=True` (`Resynced`), `Resyncing=False` |
//!
//! with `Degraded=False`/`Resyncing=False` and `observedGeneration` (top level and on every
//! condition) set to the generation it acted on. A new generation arriving mid-transition
//! restarts the transition toward the new desired state. Status goes through a merge patch
//! on the `/status` subresource, never touching spec.
//!
//! Test controls are annotations on the VolumeReplication (helpers in this module patch
//! them): [`ANNOTATION_STUCK`] (never completes, reason `Stuck`), [`ANNOTATION_DEGRADED`]
//! (`Degraded=True`, never completes), [`ANNOTATION_LATENCY`] (per-volume latency) and
//! [`ANNOTATION_WORKLOAD`] (`Deployment/<name>` or `StatefulSet/<name>`: whose pods use the
//! volume).
//!
//! Violations ([`Violation`]) are kept in memory and, with
//! [`SimOptions::violations_file`], mirrored to a JSON file rewritten atomically on every
//! change:
//! - `DualPrimary`: the same namespace/name shows `status.state = Primary` in two clusters
//!   at once (whoever wrote it), from `start` to `end`;
//! - `DemotedWithPods`: the simulator completed a demotion (`secondary`, or `resync` of a
//!   Primary volume) while pods of the owning workload still existed in that cluster — the
//!   workload of the annotation, else pods mounting the PVC of `spec.dataSource`. Pods in
//!   phase `Succeeded`/`Failed` do not count; terminating ones do. The demotion happens
//!   anyway: the simulator reports, it does not protect;
//! - `PodsOnSecondary`: at any time, not only at a demotion, pods of the owning workload
//!   (same rule) existed in a cluster whose VolumeReplication there was `Secondary` at rest
//!   (`status.state = Secondary`, `Completed=True`, the spec not asking for `primary`;
//!   [`VrView::is_secondary_at_rest`]), from `start` to `end`, with every pod seen. The
//!   simulator watches pods (per cluster, its namespaces) as well as VolumeReplications and
//!   checks a volume whenever it comes to rest in `Secondary` and whenever a pod of its
//!   namespace changes; a check lists the pods between two reads of the object and counts
//!   only if the object did not change in between. A correct failover never shows one: a
//!   source scales down, waits until the pods are gone, then demotes; a target promotes,
//!   waits for `Primary`, then scales up; a fresh group's standby side is `Secondary` with
//!   its workloads at 0;
//! - `Unknown`: a check could not be made — the pods of a volume could not be listed (after
//!   a few attempts), a VolumeReplication could not be read again, or a watch failed (other
//!   than the `410 Gone` after which it lists again) — naming the cluster, the volume, the
//!   check (`DemotedWithPods`, `PodsOnSecondary`, `DualPrimary`) and the error. The
//!   simulator fails closed: what it cannot tell is reported, not passed. One `Unknown` per
//!   volume and check until a read succeeds again.
//!
//! A write of the violations file that fails is fatal ([`SimHandle::failed`]): the file no
//! longer tells the truth. The binary `failover-storage-sim` runs the same simulator as a
//! process and exits non-zero, naming the file, when that happens or when the simulator
//! stops on any other error.

mod engine;
mod model;
mod pods;
mod violations;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use model::{
    ANNOTATION_DEGRADED, ANNOTATION_LATENCY, ANNOTATION_STUCK, ANNOTATION_WORKLOAD, COND_COMPLETED,
    COND_DEGRADED, COND_RESYNCING, DataSource, DesiredState, STATE_PRIMARY, STATE_SECONDARY,
    VrCondition, VrStatus, VrView, format_ms,
};
pub use pods::owning_pods;
pub use violations::{Violation, read_violations_file, write_violations_file};

use crate::kube::volume_replication_resource;

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Time from a desired-state change to its completion (resync takes twice this).
    pub latency: Duration,
    /// Where to mirror the violations (JSON array), if anywhere.
    pub violations_file: Option<PathBuf>,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(200),
            violations_file: None,
            namespace: None,
        }
    }
}

/// Entry point; see the module docs.
#[derive(Debug)]
pub struct StorageSim;

impl StorageSim {
    /// Starts watching every cluster and returns once each has delivered its initial list
    /// of VolumeReplications (so objects created afterwards are certainly handled). Writes
    /// the (empty) violations file before returning.
    pub async fn start(clusters: Vec<(String, Client)>, options: SimOptions) -> Result<SimHandle> {
        anyhow::ensure!(
            !clusters.is_empty(),
            "storage simulator needs at least one cluster"
        );
        let names: Vec<String> = clusters.iter().map(|(n, _)| n.clone()).collect();
        let recorder = violations::Recorder::new(options.violations_file.clone());
        recorder
            .flush()
            .context("writing the initial violations file")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = watch::channel(vec![false; clusters.len()]);
        let ctxs: Vec<engine::ClusterCtx> = clusters
            .iter()
            .map(|(name, client)| engine::ClusterCtx {
                name: name.clone(),
                client: client.clone(),
            })
            .collect();
        let ns = options.namespace.as_deref();
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        for (i, c) in ctxs.iter().enumerate() {
            tasks.push(engine::spawn_watcher(i, c, ns, tx.clone()));
            tasks.push(pods::spawn_pod_watcher(i, c, ns, tx.clone()));
        }
        let eng = engine::Engine::new(ctxs, options.latency, recorder.clone(), tx, ready_tx);
        let rec = recorder.clone();
        tasks.push(tokio::spawn(async move {
            let run = std::panic::AssertUnwindSafe(eng.run(rx));
            let why = match futures::FutureExt::catch_unwind(run).await {
                Ok(()) => "the storage simulator's engine stopped".to_owned(),
                Err(_) => "the storage simulator's engine panicked".to_owned(),
            };
            rec.fail(why);
        }));
        let handle = SimHandle {
            clusters,
            recorder,
            tasks: tasks.into_iter().map(engine::AbortOnDrop).collect(),
            namespace: options.namespace,
        };
        engine::wait_ready(ready_rx, &names, Duration::from_secs(30)).await?;
        tracing::info!(clusters = ?names, namespace = ?handle.namespace, latency = ?options.latency, "storage-sim: started");
        Ok(handle)
    }
}

/// A running simulator. Dropping it stops it (as [`SimHandle::shutdown`] does).
pub struct SimHandle {
    clusters: Vec<(String, Client)>,
    recorder: violations::Recorder,
    tasks: Vec<engine::AbortOnDrop>,
    namespace: Option<String>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.clusters.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SimHandle")
            .field("clusters", &names)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl SimHandle {
    /// Every violation recorded so far (open `DualPrimary` intervals have `end: None`).
    pub fn violations(&self) -> Vec<Violation> {
        self.recorder.snapshot()
    }

    /// The violations of volumes in `namespace`.
    pub fn violations_in(&self, namespace: &str) -> Vec<Violation> {
        self.violations()
            .into_iter()
            .filter(|v| v.namespace() == namespace)
            .collect()
    }

    /// Waits (on change notifications, no polling) until a recorded violation satisfies
    /// `pred`, and returns it.
    pub async fn wait_for_violation(
        &self,
        deadline: Duration,
        pred: impl Fn(&Violation) -> bool,
    ) -> Result<Violation> {
        let mut rx = self.recorder.subscribe();
        let fut = async {
            loop {
                if let Some(v) = self.violations().into_iter().find(|v| pred(v)) {
                    return Ok(v);
                }
                if rx.changed().await.is_err() {
                    anyhow::bail!("storage simulator stopped");
                }
            }
        };
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r,
            Err(_) => anyhow::bail!(
                "no matching violation after {deadline:?}; recorded: {:?}",
                self.violations()
            ),
        }
    }

    /// Waits until `namespace/name` in `cluster` is settled in `expected_state`
    /// (`Primary`/`Secondary`, `Completed=True`, current `observedGeneration`).
    pub async fn wait_until_settled(
        &self,
        volume: &str,
        cluster: &str,
        expected_state: &str,
        deadline: Duration,
    ) -> Result<VrView> {
        let (ns, name) = volume
            .split_once('/')
            .with_context(|| format!("volume {volume:?} is not namespace/name"))?;
        let client = self.client(cluster)?;
        wait_settled(client, ns, name, expected_state, deadline)
            .await
            .with_context(|| format!("in cluster {cluster}"))
    }

    /// The client of a cluster the simulator runs in.
    pub fn client(&self, cluster: &str) -> Result<&Client> {
        self.clusters
            .iter()
            .find(|(n, _)| n == cluster)
            .map(|(_, c)| c)
            .with_context(|| format!("storage simulator has no cluster named {cluster:?}"))
    }

    /// Rewrites the violations file with the current list (it is also written on every
    /// change).
    pub fn write_violations_file(&self) -> Result<()> {
        self.recorder.flush()
    }

    /// The fatal error the simulator stopped being trustworthy on (a failed write of the
    /// violations file, naming it; the engine stopping), if any.
    pub fn failure(&self) -> Option<String> {
        self.recorder.failure()
    }

    /// Waits until the simulator fails ([`SimHandle::failure`]) and returns the error.
    pub async fn failed(&self) -> anyhow::Error {
        anyhow::anyhow!(self.recorder.wait_failure().await)
    }

    /// Stops the watches and every pending transition. Recorded violations stay readable.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.0.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

// ---- helpers for tests: objects and controls ----

/// The VolumeReplication API of a namespace.
pub fn volume_replications(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &volume_replication_resource())
}

/// The VolumeReplicationClass of the simulator's volumes (the test harness creates it in
/// both clusters).
pub const STORAGE_SIM_CLASS: &str = "storage-sim";

/// A VolumeReplication replicating PVC `pvc` (class [`STORAGE_SIM_CLASS`]).
pub fn volume_replication(name: &str, state: DesiredState, pvc: &str) -> DynamicObject {
    let ar = volume_replication_resource();
    let mut obj = DynamicObject::new(name, &ar);
    obj.data = json!({
        "spec": {
            "volumeReplicationClass": STORAGE_SIM_CLASS,
            "replicationState": state.as_spec(),
            "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": pvc},
        }
    });
    obj
}

/// Creates [`volume_replication`] in `namespace`.
pub async fn create_volume_replication(
    client: &Client,
    namespace: &str,
    name: &str,
    state: DesiredState,
    pvc: &str,
) -> Result<DynamicObject> {
    volume_replications(client, namespace)
        .create(
            &PostParams::default(),
            &volume_replication(name, state, pvc),
        )
        .await
        .with_context(|| format!("creating VolumeReplication {namespace}/{name}"))
}

/// Reads a VolumeReplication.
pub async fn get_volume(client: &Client, namespace: &str, name: &str) -> Result<VrView> {
    let obj = volume_replications(client, namespace)
        .get(name)
        .await
        .with_context(|| format!("reading VolumeReplication {namespace}/{name}"))?;
    Ok(VrView::from_object(&obj))
}

/// Sets `spec.replicationState` (a new generation).
pub async fn set_replication_state(
    client: &Client,
    namespace: &str,
    name: &str,
    state: DesiredState,
) -> Result<VrView> {
    let patch = json!({"spec": {"replicationState": state.as_spec()}});
    let obj = volume_replications(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting {namespace}/{name} to {state}"))?;
    Ok(VrView::from_object(&obj))
}

/// Sets (`Some`) or removes (`None`) an annotation on a VolumeReplication.
pub async fn annotate_volume(
    client: &Client,
    namespace: &str,
    name: &str,
    key: &str,
    value: Option<&str>,
) -> Result<VrView> {
    let patch = json!({"metadata": {"annotations": {key: value}}});
    let obj = volume_replications(client, namespace)
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("annotating {namespace}/{name} with {key}={value:?}"))?;
    Ok(VrView::from_object(&obj))
}

/// Makes the volume never complete (`true`) or lifts that (`false`).
pub async fn set_stuck(
    client: &Client,
    namespace: &str,
    name: &str,
    stuck: bool,
) -> Result<VrView> {
    annotate_volume(
        client,
        namespace,
        name,
        ANNOTATION_STUCK,
        stuck.then_some("true"),
    )
    .await
}

/// Makes the volume report `Degraded=True` and never complete (`true`), or lifts that.
pub async fn set_degraded(
    client: &Client,
    namespace: &str,
    name: &str,
    degraded: bool,
) -> Result<VrView> {
    annotate_volume(
        client,
        namespace,
        name,
        ANNOTATION_DEGRADED,
        degraded.then_some("true"),
    )
    .await
}

/// Overrides the simulator's latency for this volume (`None`: back to the default).
pub async fn set_latency(
    client: &Client,
    namespace: &str,
    name: &str,
    latency: Option<Duration>,
) -> Result<VrView> {
    let value = latency.map(|d| humantime::format_duration(d).to_string());
    annotate_volume(
        client,
        namespace,
        name,
        ANNOTATION_LATENCY,
        value.as_deref(),
    )
    .await
}

/// Names the workload (`kind` `Deployment`/`StatefulSet`) whose pods use the volume, or
/// removes the annotation.
pub async fn set_workload(
    client: &Client,
    namespace: &str,
    name: &str,
    workload: Option<(&str, &str)>,
) -> Result<VrView> {
    let value = workload.map(|(kind, w)| format!("{kind}/{w}"));
    annotate_volume(
        client,
        namespace,
        name,
        ANNOTATION_WORKLOAD,
        value.as_deref(),
    )
    .await
}

/// Waits (with a watch) until the volume is settled in `expected_state`: `status.state`,
/// `Completed=True` and the current generation observed. Fails after `deadline` with the
/// last status seen.
pub async fn wait_settled(
    client: &Client,
    namespace: &str,
    name: &str,
    expected_state: &str,
    deadline: Duration,
) -> Result<VrView> {
    let expected = expected_state.to_string();
    wait_volume(
        client,
        namespace,
        name,
        &format!("state {expected_state}, Completed=True"),
        deadline,
        move |v| v.is_settled(&expected),
    )
    .await
}

/// Waits (with a watch) until `check` holds for the volume; fails after `deadline` naming
/// `what` and the last status seen.
pub async fn wait_volume(
    client: &Client,
    namespace: &str,
    name: &str,
    what: &str,
    deadline: Duration,
    check: impl Fn(&VrView) -> bool + Send + 'static,
) -> Result<VrView> {
    let api = volume_replications(client, namespace);
    let cond = move |o: Option<&DynamicObject>| o.is_some_and(|o| check(&VrView::from_object(o)));
    match tokio::time::timeout(
        deadline,
        kube::runtime::wait::await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(Some(obj))) => Ok(VrView::from_object(&obj)),
        Ok(Ok(None)) => anyhow::bail!(
            "VolumeReplication {namespace}/{name} was deleted while waiting for {what}"
        ),
        Ok(Err(e)) => Err(e).with_context(|| format!("watching {namespace}/{name} for {what}")),
        Err(_) => {
            let last = match api.get_opt(name).await {
                Ok(Some(o)) => {
                    let v = VrView::from_object(&o);
                    format!(
                        "generation {} spec {:?} status {}",
                        v.generation,
                        v.desired_raw,
                        serde_json::to_string(&v.status).unwrap_or_default()
                    )
                }
                Ok(None) => "object not found".into(),
                Err(e) => format!("read failed: {e}"),
            };
            anyhow::bail!(
                "timed out after {deadline:?} waiting for {namespace}/{name}: {what}; last: {last}"
            )
        }
    }
}
