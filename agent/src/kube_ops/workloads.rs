//! Workloads: scale Deployments and StatefulSets to 0 and back, wait until their pods are
//! gone or they are ready; suspend and resume CronJobs and wait for their running Jobs.
//!
//! * **Scale down** ([`scale_down`]) sets `spec.replicas = 0` and records the count it had
//!   in the annotation [`ANNOTATION_ORIGINAL_REPLICAS`], in one merge patch with a
//!   `resourceVersion` precondition (a concurrent change makes it re-read and re-decide).
//!   The count to record is decided by [`plan_scale_down`]: the live `spec.replicas` when
//!   it is above 0, else the count already recorded. So a second run, which finds 0
//!   replicas, keeps the recorded count instead of overwriting it with 0; and a workload
//!   that was scaled back up since an earlier failover records its current count, not a
//!   stale one. [`record_replicas`] records without scaling.
//! * **Restore** ([`restore_replicas`]) scales to a given count or, without one, to the
//!   recorded annotation ([`plan_restore`]). The annotation stays (a restore can run
//!   twice).
//! * **Pods gone** ([`wait_pods_gone`]) watches the pods matching the workload's selector
//!   (for a CronJob: the pods of the Jobs it owns) until none is left that is not finished
//!   (phase `Succeeded`/`Failed` counts as gone; terminating pods do not), reporting the
//!   remaining pods to a progress callback whenever they change.
//! * **Ready** ([`wait_ready`], decided by [`is_ready`]): `status.observedGeneration >=
//!   metadata.generation`, `readyReplicas == spec.replicas` and `updatedReplicas ==
//!   spec.replicas`.
//! * **CronJobs**: [`suspend_cronjob`] / [`resume_cronjob`] set `spec.suspend`;
//!   [`wait_jobs_finished`] waits until the CronJob's `status.active` list is empty and,
//!   at the deadline, names the Jobs still running.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::pin;
use std::time::Duration;

use failover_messages::crd::WorkloadKind;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch};
use kube::core::Selector;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::{Value, json};

use super::wait::{self, Verdict};
use super::{
    ANNOTATION_ORIGINAL_REPLICAS, Cause, Change, ClusterClient, KubeOpsError, Stamp, patch_params,
    stamped_patch,
};

/// The label the Job controller puts on a Job's pods (Kubernetes ≥ 1.27).
pub const LABEL_JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

/// How often a patch is re-decided after a `409 Conflict` before giving up.
const CONFLICT_RETRIES: usize = 5;

/// The kind's name, as errors show it.
pub fn kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::CronJob => "CronJob",
    }
}

// ---- pure: Deployments and StatefulSets ---------------------------------------------------

/// What the operations read of a Deployment or StatefulSet.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadView {
    /// `metadata.generation`.
    pub generation: i64,
    /// `metadata.resourceVersion` (a precondition of our patches).
    pub resource_version: Option<String>,
    /// `spec.replicas` (absent reads as 1, the API default).
    pub replicas: u32,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.replicas`.
    pub status_replicas: u32,
    /// `status.readyReplicas`.
    pub ready_replicas: u32,
    /// `status.updatedReplicas`.
    pub updated_replicas: u32,
    /// `spec.selector`.
    pub selector: Option<LabelSelector>,
}

fn count(v: Option<i32>) -> u32 {
    v.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

impl WorkloadView {
    /// The view of a Deployment.
    pub fn from_deployment(d: &Deployment) -> Self {
        let spec = d.spec.as_ref();
        let status = d.status.as_ref();
        Self {
            generation: d.metadata.generation.unwrap_or(0),
            resource_version: d.metadata.resource_version.clone(),
            replicas: spec.map_or(1, |s| s.replicas.map_or(1, |r| count(Some(r)))),
            annotations: d.metadata.annotations.clone().unwrap_or_default(),
            observed_generation: status.and_then(|s| s.observed_generation),
            status_replicas: count(status.and_then(|s| s.replicas)),
            ready_replicas: count(status.and_then(|s| s.ready_replicas)),
            updated_replicas: count(status.and_then(|s| s.updated_replicas)),
            selector: spec.map(|s| s.selector.clone()),
        }
    }

    /// The view of a StatefulSet.
    pub fn from_stateful_set(s: &StatefulSet) -> Self {
        let spec = s.spec.as_ref();
        let status = s.status.as_ref();
        Self {
            generation: s.metadata.generation.unwrap_or(0),
            resource_version: s.metadata.resource_version.clone(),
            replicas: spec.map_or(1, |s| s.replicas.map_or(1, |r| count(Some(r)))),
            annotations: s.metadata.annotations.clone().unwrap_or_default(),
            observed_generation: status.and_then(|s| s.observed_generation),
            status_replicas: status.map_or(0, |s| count(Some(s.replicas))),
            ready_replicas: count(status.and_then(|s| s.ready_replicas)),
            updated_replicas: count(status.and_then(|s| s.updated_replicas)),
            selector: spec.map(|s| s.selector.clone()),
        }
    }

    /// The count in [`ANNOTATION_ORIGINAL_REPLICAS`], if it parses.
    pub fn recorded_replicas(&self) -> Option<u32> {
        self.annotations
            .get(ANNOTATION_ORIGINAL_REPLICAS)
            .and_then(|v| v.trim().parse().ok())
    }

    /// One line for logs and timeout messages.
    pub fn describe(&self) -> String {
        format!(
            "generation {} (observed {}), spec.replicas {}, status.replicas {}, ready {}, updated {}",
            self.generation,
            self.observed_generation
                .map_or_else(|| "none".to_string(), |g| g.to_string()),
            self.replicas,
            self.status_replicas,
            self.ready_replicas,
            self.updated_replicas
        )
    }
}

/// What a scale decision came to: the replica count it is about (recorded or target) and
/// the merge patch, `None` when the object already is as wanted.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalePlan {
    /// Scale-down/record: the original count; restore: the target count.
    pub replicas: u32,
    /// The patch to apply, if any.
    pub patch: Option<Value>,
}

/// The replica count to record for a workload about to be scaled down: its live
/// `spec.replicas` when above 0, else the count already recorded (else 0).
pub fn original_replicas(view: &WorkloadView) -> u32 {
    if view.replicas > 0 {
        view.replicas
    } else {
        view.recorded_replicas().unwrap_or(0)
    }
}

fn with_precondition(mut patch: Value, view: &WorkloadView) -> Value {
    if let (Some(rv), Some(meta)) = (&view.resource_version, patch.get_mut("metadata"))
        && let Some(m) = meta.as_object_mut()
    {
        m.insert("resourceVersion".into(), Value::String(rv.clone()));
    }
    patch
}

/// Scale to 0 and record the original count ([`original_replicas`]); no patch when the
/// workload already is at 0 with that count recorded.
pub fn plan_scale_down(view: &WorkloadView, stamp: &Stamp) -> ScalePlan {
    let original = original_replicas(view);
    let needed = view.replicas != 0 || view.recorded_replicas() != Some(original);
    ScalePlan {
        replicas: original,
        patch: needed.then(|| {
            with_precondition(
                stamped_patch(
                    stamp,
                    &[(ANNOTATION_ORIGINAL_REPLICAS, Some(original.to_string()))],
                    json!({"spec": {"replicas": 0}}),
                ),
                view,
            )
        }),
    }
}

/// Record the original count without scaling; no patch when it is recorded already.
pub fn plan_record(view: &WorkloadView, stamp: &Stamp) -> ScalePlan {
    let original = original_replicas(view);
    ScalePlan {
        replicas: original,
        patch: (view.recorded_replicas() != Some(original)).then(|| {
            with_precondition(
                stamped_patch(
                    stamp,
                    &[(ANNOTATION_ORIGINAL_REPLICAS, Some(original.to_string()))],
                    json!({}),
                ),
                view,
            )
        }),
    }
}

/// Scale to `replicas`, or without it to the recorded count; an error when neither is
/// known. No patch when the workload already has that many replicas.
pub fn plan_restore(
    view: &WorkloadView,
    replicas: Option<u32>,
    stamp: &Stamp,
) -> Result<ScalePlan, Cause> {
    let target = replicas
        .or_else(|| view.recorded_replicas())
        .ok_or_else(|| {
            Cause::Invalid(format!(
                "no replica count recorded for it (by this operation or an earlier one of the group) and no {ANNOTATION_ORIGINAL_REPLICAS} annotation on it; annotate the standby object with {ANNOTATION_ORIGINAL_REPLICAS}=<count>"
            ))
        })?;
    Ok(ScalePlan {
        replicas: target,
        patch: (view.replicas != target).then(|| {
            with_precondition(
                stamped_patch(stamp, &[], json!({"spec": {"replicas": target}})),
                view,
            )
        }),
    })
}

/// Ready: the controller has seen the current generation, and every wanted replica is
/// ready and up to date.
pub fn is_ready(view: &WorkloadView) -> bool {
    view.observed_generation
        .is_some_and(|g| g >= view.generation)
        && view.ready_replicas == view.replicas
        && view.updated_replicas == view.replicas
}

// ---- pure: pods, Jobs, CronJobs -----------------------------------------------------------

/// A pod counts until it is gone or finished (`Succeeded`/`Failed`); a terminating pod
/// still counts.
pub fn pod_is_live(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

/// The pods still live, as far as a pod watch has told: follows [`Event`]s, buffering a
/// (re)list until it is complete.
#[derive(Clone, Debug, Default)]
pub struct PodTracker {
    live: BTreeSet<String>,
    relist: Option<BTreeSet<String>>,
    synced: bool,
}

impl PodTracker {
    /// Applies one watch event; true when the set of live pods changed (or was first
    /// known).
    pub fn apply(&mut self, event: &Event<Pod>) -> bool {
        match event {
            Event::Init => {
                self.relist = Some(BTreeSet::new());
                false
            }
            Event::InitApply(p) => {
                if pod_is_live(p) {
                    self.relist
                        .get_or_insert_with(BTreeSet::new)
                        .insert(p.name_any());
                }
                false
            }
            Event::InitDone => {
                let fresh = self.relist.take().unwrap_or_default();
                let changed = !self.synced || fresh != self.live;
                self.live = fresh;
                self.synced = true;
                changed
            }
            Event::Apply(p) => {
                if pod_is_live(p) {
                    self.live.insert(p.name_any())
                } else {
                    self.live.remove(&p.name_any())
                }
            }
            Event::Delete(p) => self.live.remove(&p.name_any()),
        }
    }

    /// True once a complete list has been seen.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Names of the live pods, sorted.
    pub fn remaining(&self) -> Vec<String> {
        self.live.iter().cloned().collect()
    }

    /// Synced and no live pod left.
    pub fn all_gone(&self) -> bool {
        self.synced && self.live.is_empty()
    }
}

/// A label selector in list-query syntax; an error for a selector that selects every pod
/// (waiting on it would wait on the whole namespace).
pub fn selector_query(selector: &LabelSelector) -> Result<String, Cause> {
    let s = Selector::try_from(selector.clone())
        .map_err(|e| Cause::Invalid(format!("invalid spec.selector: {e}")))?;
    if s.selects_all() {
        return Err(Cause::Invalid(
            "spec.selector is empty (it would select every pod)".into(),
        ));
    }
    Ok(s.to_string())
}

/// UIDs of the Jobs in `jobs` whose controller is the CronJob with uid `cronjob_uid`.
pub fn owned_job_uids(cronjob_uid: &str, jobs: &[Job]) -> Vec<String> {
    jobs.iter()
        .filter(|j| {
            j.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.uid == cronjob_uid && o.kind == "CronJob" && o.controller == Some(true))
        })
        .filter_map(|j| j.metadata.uid.clone())
        .collect()
}

/// The pod selector of a CronJob's Jobs, `None` when it owns no Job.
pub fn job_pods_query(job_uids: &[String]) -> Option<String> {
    (!job_uids.is_empty())
        .then(|| format!("{LABEL_JOB_CONTROLLER_UID} in ({})", job_uids.join(",")))
}

/// The `spec.suspend` merge patch for a CronJob, or `None` when it already has that value.
pub fn cronjob_suspend_patch(cj: &CronJob, suspend: bool, stamp: &Stamp) -> Option<Value> {
    let current = cj.spec.suspend.unwrap_or(false);
    (current != suspend).then(|| stamped_patch(stamp, &[], json!({"spec": {"suspend": suspend}})))
}

/// Names of the Jobs in the CronJob's `status.active`, sorted.
pub fn active_jobs(cj: &CronJob) -> Vec<String> {
    let mut names: Vec<String> = cj
        .status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|r| r.name.clone())
        .collect();
    names.sort();
    names
}

// ---- I/O -----------------------------------------------------------------------------------

/// A scale operation's result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scaled {
    /// Scale-down and record: the original count recorded; restore: the count scaled to.
    pub replicas: u32,
    /// Whether a patch was needed.
    pub change: Change,
}

fn scalable(kind: WorkloadKind) -> Result<(), Cause> {
    match kind {
        WorkloadKind::Deployment | WorkloadKind::StatefulSet => Ok(()),
        WorkloadKind::CronJob => Err(Cause::Invalid(
            "a CronJob is not scaled; suspend or resume it".into(),
        )),
    }
}

async fn read_view(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<WorkloadView, Cause> {
    scalable(kind)?;
    let client = cc.client.clone();
    Ok(match kind {
        WorkloadKind::StatefulSet => WorkloadView::from_stateful_set(
            &Api::<StatefulSet>::namespaced(client, namespace)
                .get(name)
                .await?,
        ),
        _ => WorkloadView::from_deployment(
            &Api::<Deployment>::namespaced(client, namespace)
                .get(name)
                .await?,
        ),
    })
}

async fn patch_workload(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    patch: &Value,
) -> Result<(), kube::Error> {
    let client = cc.client.clone();
    let pp = patch_params();
    match kind {
        WorkloadKind::StatefulSet => {
            Api::<StatefulSet>::namespaced(client, namespace)
                .patch(name, &pp, &Patch::Merge(patch))
                .await?;
        }
        _ => {
            Api::<Deployment>::namespaced(client, namespace)
                .patch(name, &pp, &Patch::Merge(patch))
                .await?;
        }
    }
    Ok(())
}

/// Read → decide with `plan` → patch, re-deciding after a conflict.
async fn read_decide_patch(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    plan: impl Fn(&WorkloadView) -> Result<ScalePlan, Cause>,
) -> Result<Scaled, Cause> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let view = read_view(cc, kind, namespace, name).await?;
        let plan = plan(&view)?;
        let Some(patch) = plan.patch else {
            return Ok(Scaled {
                replicas: plan.replicas,
                change: Change::Unchanged,
            });
        };
        match patch_workload(cc, kind, namespace, name, &patch).await {
            Ok(()) => {
                return Ok(Scaled {
                    replicas: plan.replicas,
                    change: Change::Applied,
                });
            }
            Err(kube::Error::Api(s)) if s.is_conflict() && attempt < CONFLICT_RETRIES => {
                tracing::debug!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, "conflict, re-reading");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads a Deployment or StatefulSet.
pub async fn get_workload(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<WorkloadView, KubeOpsError> {
    read_view(cc, kind, namespace, name)
        .await
        .map_err(|source| KubeOpsError::ReadWorkload {
            object: cc.object(kind_name(kind), namespace, name),
            source,
        })
}

/// Records the replica count of a Deployment or StatefulSet in
/// [`ANNOTATION_ORIGINAL_REPLICAS`] without scaling it, and returns the count.
pub async fn record_replicas(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
) -> Result<Scaled, KubeOpsError> {
    let s = read_decide_patch(cc, kind, namespace, name, |v| Ok(plan_record(v, stamp)))
        .await
        .map_err(|source| KubeOpsError::RecordReplicas {
            object: cc.object(kind_name(kind), namespace, name),
            source,
        })?;
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, original = s.replicas, change = ?s.change, %stamp, "replicas recorded");
    Ok(s)
}

/// Scales a Deployment or StatefulSet to 0, recording its original count (see the module
/// docs), and returns the original count.
pub async fn scale_down(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
) -> Result<Scaled, KubeOpsError> {
    let s = read_decide_patch(cc, kind, namespace, name, |v| Ok(plan_scale_down(v, stamp)))
        .await
        .map_err(|source| KubeOpsError::ScaleWorkload {
            object: cc.object(kind_name(kind), namespace, name),
            to: "0 replicas".into(),
            source,
        })?;
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, original = s.replicas, change = ?s.change, %stamp, "scaled to 0");
    Ok(s)
}

/// Scales a Deployment or StatefulSet to `replicas`, or without it to the count recorded
/// in [`ANNOTATION_ORIGINAL_REPLICAS`], and returns the count.
pub async fn restore_replicas(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    replicas: Option<u32>,
    stamp: &Stamp,
) -> Result<Scaled, KubeOpsError> {
    let s = read_decide_patch(cc, kind, namespace, name, |v| {
        plan_restore(v, replicas, stamp)
    })
    .await
    .map_err(|source| KubeOpsError::ScaleWorkload {
        object: cc.object(kind_name(kind), namespace, name),
        to: replicas.map_or_else(
            || "the recorded replicas".to_string(),
            |r| format!("{r} replicas"),
        ),
        source,
    })?;
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, replicas = s.replicas, change = ?s.change, %stamp, "replicas restored");
    Ok(s)
}

/// The pod selector of a workload: its `spec.selector`, or for a CronJob the pods of the
/// Jobs it owns (`None`: it owns none).
async fn pods_query(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
) -> Result<Option<String>, Cause> {
    if kind == WorkloadKind::CronJob {
        let cj = Api::<CronJob>::namespaced(cc.client.clone(), namespace)
            .get(name)
            .await?;
        let uid = cj.metadata.uid.unwrap_or_default();
        let jobs = Api::<Job>::namespaced(cc.client.clone(), namespace)
            .list(&ListParams::default())
            .await?;
        return Ok(job_pods_query(&owned_job_uids(&uid, &jobs.items)));
    }
    let view = read_view(cc, kind, namespace, name).await?;
    let selector = view
        .selector
        .ok_or_else(|| Cause::Invalid("the workload has no spec.selector".into()))?;
    selector_query(&selector).map(Some)
}

/// Waits until no live pod of the workload is left (module docs), calling `progress` with
/// the remaining pod names whenever they change; fails at `deadline` naming them.
pub async fn wait_pods_gone(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    deadline: Duration,
    mut progress: impl FnMut(&[String]) + Send,
) -> Result<(), KubeOpsError> {
    let err = |source| KubeOpsError::WaitPodsGone {
        object: cc.object(kind_name(kind), namespace, name),
        source,
    };
    let started = tokio::time::Instant::now();
    let Some(query) = pods_query(cc, kind, namespace, name).await.map_err(err)? else {
        progress(&[]);
        return Ok(());
    };
    let api = Api::<Pod>::namespaced(cc.client.clone(), namespace);
    let mut tracker = PodTracker::default();
    let mut last_error: Option<String> = None;
    let watch = async {
        let mut stream = pin!(
            watcher::watcher(api, watcher::Config::default().labels(&query)).default_backoff()
        );
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    last_error = None;
                    if tracker.apply(&event) {
                        let left = tracker.remaining();
                        tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, pods_left = left.len(), pods = ?left, "waiting for pods to go");
                        progress(&left);
                    }
                    if tracker.all_gone() {
                        return Ok(());
                    }
                }
                Err(e) => {
                    tracing::warn!(cluster = %cc.cluster, %namespace, %name, "pod watch failed, retrying: {e}");
                    last_error = Some(e.to_string());
                }
            }
        }
        Err(Cause::Invalid("the pod watch ended".into()))
    };
    let remaining = deadline.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, watch).await {
        Ok(r) => r.map_err(err),
        Err(_) => {
            let mut last = if tracker.synced() {
                format!("pods left: {}", tracker.remaining().join(", "))
            } else {
                "the pod list never arrived".to_string()
            };
            if let Some(e) = last_error {
                last.push_str(&format!("; then the watch failed: {e}"));
            }
            Err(err(Cause::Timeout {
                after: deadline,
                expected: format!("no pods matching {query}"),
                last,
            }))
        }
    }
}

/// Waits until a Deployment or StatefulSet is ready ([`is_ready`]); returns what it saw.
pub async fn wait_ready(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<WorkloadView, KubeOpsError> {
    let object = cc.object(kind_name(kind), namespace, name);
    let what = object.to_string();
    let expected = "observedGeneration >= generation and ready = updated = spec.replicas";
    let judge = |v: WorkloadView| {
        if is_ready(&v) {
            Verdict::Done(v)
        } else {
            Verdict::Pending(v.describe())
        }
    };
    let res = match scalable(kind) {
        Err(c) => Err(c),
        Ok(()) if kind == WorkloadKind::StatefulSet => {
            let api = Api::<StatefulSet>::namespaced(cc.client.clone(), namespace);
            wait::until(api, name, &what, expected, deadline, |s| {
                judge(WorkloadView::from_stateful_set(s))
            })
            .await
        }
        Ok(()) => {
            let api = Api::<Deployment>::namespaced(cc.client.clone(), namespace);
            wait::until(api, name, &what, expected, deadline, |d| {
                judge(WorkloadView::from_deployment(d))
            })
            .await
        }
    };
    let view = res.map_err(|source| KubeOpsError::WaitWorkloadReady { object, source })?;
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, state = %view.describe(), "ready");
    Ok(view)
}

async fn set_cronjob_suspend(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    suspend: bool,
    stamp: &Stamp,
) -> Result<Change, kube::Error> {
    let api = Api::<CronJob>::namespaced(cc.client.clone(), namespace);
    let cj = api.get(name).await?;
    let change = match cronjob_suspend_patch(&cj, suspend, stamp) {
        None => Change::Unchanged,
        Some(p) => {
            api.patch(name, &patch_params(), &Patch::Merge(&p)).await?;
            Change::Applied
        }
    };
    tracing::info!(cluster = %cc.cluster, %namespace, %name, suspend, ?change, %stamp, "cronjob suspend set");
    Ok(change)
}

/// Suspends a CronJob (`spec.suspend = true`): no new Jobs start; running ones go on.
pub async fn suspend_cronjob(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
) -> Result<Change, KubeOpsError> {
    set_cronjob_suspend(cc, namespace, name, true, stamp)
        .await
        .map_err(|e| KubeOpsError::SuspendCronJob {
            object: cc.object("CronJob", namespace, name),
            source: e.into(),
        })
}

/// Resumes a CronJob (`spec.suspend = false`).
pub async fn resume_cronjob(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
) -> Result<Change, KubeOpsError> {
    set_cronjob_suspend(cc, namespace, name, false, stamp)
        .await
        .map_err(|e| KubeOpsError::ResumeCronJob {
            object: cc.object("CronJob", namespace, name),
            source: e.into(),
        })
}

/// Waits until the CronJob's `status.active` list is empty, calling `progress` with the
/// running Jobs whenever they change; at `deadline` fails naming the Jobs still running.
pub async fn wait_jobs_finished(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    deadline: Duration,
    mut progress: impl FnMut(&[String]) + Send,
) -> Result<(), KubeOpsError> {
    let object = cc.object("CronJob", namespace, name);
    let what = object.to_string();
    let api = Api::<CronJob>::namespaced(cc.client.clone(), namespace);
    let mut reported: Option<Vec<String>> = None;
    wait::until(api, name, &what, "no active Jobs", deadline, |cj| {
        let active = active_jobs(cj);
        if reported.as_ref() != Some(&active) {
            progress(&active);
            reported = Some(active.clone());
        }
        if active.is_empty() {
            Verdict::Done(())
        } else {
            Verdict::Pending(format!("active Jobs: {}", active.join(", ")))
        }
    })
    .await
    .map_err(|source| KubeOpsError::WaitJobsFinished { object, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(v: Value) -> WorkloadView {
        WorkloadView::from_deployment(&serde_json::from_value(v).unwrap())
    }

    fn sts(v: Value) -> WorkloadView {
        WorkloadView::from_stateful_set(&serde_json::from_value(v).unwrap())
    }

    fn dep(replicas: i32, annotations: Value) -> WorkloadView {
        deployment(json!({
            "metadata": {"name": "api", "namespace": "shop", "generation": 2,
                         "resourceVersion": "41", "annotations": annotations},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                     "template": {"metadata": {"labels": {"app": "api"}}}},
        }))
    }

    #[test]
    fn scale_down_records_the_live_count_and_zeroes_replicas() {
        let s = Stamp::new(5, "op");
        let plan = plan_scale_down(&dep(3, json!({})), &s);
        assert_eq!(plan.replicas, 3);
        assert_eq!(
            plan.patch,
            Some(json!({
                "metadata": {"resourceVersion": "41", "annotations": {
                    "failover.io/original-replicas": "3",
                    "failover.io/epoch": "5", "failover.io/operation": "op"}},
                "spec": {"replicas": 0}
            }))
        );
    }

    #[test]
    fn second_scale_down_keeps_the_recorded_count() {
        let s = Stamp::new(5, "op");
        let done = dep(0, json!({"failover.io/original-replicas": "3"}));
        let plan = plan_scale_down(&done, &s);
        assert_eq!(plan.replicas, 3);
        assert_eq!(plan.patch, None);
    }

    #[test]
    fn scale_down_of_a_workload_already_at_zero_records_zero_once() {
        let s = Stamp::new(5, "op");
        let plan = plan_scale_down(&dep(0, json!({})), &s);
        assert_eq!(plan.replicas, 0);
        assert_eq!(
            plan.patch.unwrap()["metadata"]["annotations"]["failover.io/original-replicas"],
            "0"
        );
        let plan = plan_scale_down(&dep(0, json!({"failover.io/original-replicas": "0"})), &s);
        assert_eq!((plan.replicas, plan.patch), (0, None));
    }

    #[test]
    fn a_workload_scaled_up_since_records_its_current_count() {
        let s = Stamp::new(6, "op2");
        let plan = plan_scale_down(&dep(5, json!({"failover.io/original-replicas": "3"})), &s);
        assert_eq!(plan.replicas, 5);
        assert_eq!(
            plan.patch.unwrap()["metadata"]["annotations"]["failover.io/original-replicas"],
            "5"
        );
    }

    #[test]
    fn garbage_in_the_annotation_is_not_a_count() {
        let v = dep(0, json!({"failover.io/original-replicas": "three"}));
        assert_eq!(v.recorded_replicas(), None);
        assert_eq!(plan_scale_down(&v, &Stamp::new(1, "o")).replicas, 0);
    }

    #[test]
    fn record_writes_only_a_missing_or_different_count() {
        let s = Stamp::new(1, "o");
        let p = plan_record(&dep(2, json!({})), &s);
        assert_eq!(p.replicas, 2);
        let patch = p.patch.unwrap();
        assert!(patch.get("spec").is_none());
        assert_eq!(
            patch["metadata"]["annotations"]["failover.io/original-replicas"],
            "2"
        );
        assert_eq!(
            plan_record(&dep(2, json!({"failover.io/original-replicas": "2"})), &s).patch,
            None
        );
    }

    #[test]
    fn restore_uses_the_given_count_else_the_annotation() {
        let s = Stamp::new(7, "op");
        let down = dep(0, json!({"failover.io/original-replicas": "3"}));
        let p = plan_restore(&down, None, &s).unwrap();
        assert_eq!(p.replicas, 3);
        assert_eq!(p.patch.unwrap()["spec"]["replicas"], 3);
        let p = plan_restore(&down, Some(4), &s).unwrap();
        assert_eq!(p.replicas, 4);
        assert_eq!(
            plan_restore(
                &dep(3, json!({"failover.io/original-replicas": "3"})),
                None,
                &s
            )
            .unwrap()
            .patch,
            None
        );
        let e = plan_restore(&dep(0, json!({})), None, &s).unwrap_err();
        assert!(
            e.to_string().contains("failover.io/original-replicas"),
            "{e}"
        );
    }

    #[test]
    fn deployment_readiness() {
        let base = |status: Value| {
            deployment(json!({
                "metadata": {"name": "api", "generation": 3},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                         "template": {}},
                "status": status
            }))
        };
        assert!(is_ready(&base(
            json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
        )));
        assert!(!is_ready(&base(
            json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
        )));
        assert!(!is_ready(&base(
            json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 2})
        )));
        assert!(!is_ready(&base(
            json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1})
        )));
        assert!(!is_ready(&base(json!({}))));
        let d = base(json!({"observedGeneration": 3, "readyReplicas": 1}));
        assert_eq!(
            d.describe(),
            "generation 3 (observed 3), spec.replicas 2, status.replicas 0, ready 1, updated 0"
        );
    }

    #[test]
    fn zero_replicas_are_ready_once_observed() {
        let v = deployment(json!({
            "metadata": {"name": "api", "generation": 4},
            "spec": {"replicas": 0, "selector": {}, "template": {}},
            "status": {"observedGeneration": 4}
        }));
        assert!(is_ready(&v));
    }

    #[test]
    fn statefulset_readiness_and_default_replicas() {
        let v = sts(json!({
            "metadata": {"name": "db", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db", "template": {}},
            "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
        }));
        assert_eq!(v.replicas, 1);
        assert!(is_ready(&v));
    }

    fn pod(name: &str, phase: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "status": phase.map(|p| json!({"phase": p})).unwrap_or(json!({}))
        }))
        .unwrap()
    }

    #[test]
    fn finished_pods_do_not_count() {
        assert!(pod_is_live(&pod("a", Some("Running"))));
        assert!(pod_is_live(&pod("a", Some("Pending"))));
        assert!(pod_is_live(&pod("a", None)));
        assert!(!pod_is_live(&pod("a", Some("Succeeded"))));
        assert!(!pod_is_live(&pod("a", Some("Failed"))));
    }

    #[test]
    fn tracker_follows_list_and_watch_events() {
        let mut t = PodTracker::default();
        assert!(!t.all_gone());
        assert!(!t.apply(&Event::Init));
        assert!(!t.apply(&Event::InitApply(pod("a", Some("Running")))));
        assert!(!t.apply(&Event::InitApply(pod("b", Some("Succeeded")))));
        assert!(t.apply(&Event::InitDone));
        assert_eq!(t.remaining(), vec!["a"]);
        assert!(t.apply(&Event::Apply(pod("c", Some("Running")))));
        assert!(!t.apply(&Event::Apply(pod("c", Some("Running")))));
        assert!(t.apply(&Event::Delete(pod("a", Some("Running")))));
        assert!(t.apply(&Event::Apply(pod("c", Some("Failed")))));
        assert!(t.all_gone());
        // A relist replaces what was known.
        t.apply(&Event::Apply(pod("d", Some("Running"))));
        t.apply(&Event::Init);
        assert!(t.apply(&Event::InitDone));
        assert!(t.all_gone());
    }

    #[test]
    fn an_empty_initial_list_is_all_gone() {
        let mut t = PodTracker::default();
        t.apply(&Event::Init);
        assert!(t.apply(&Event::InitDone));
        assert!(t.all_gone());
    }

    #[test]
    fn selectors_render_and_empty_ones_are_refused() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "db"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]
        }))
        .unwrap();
        let q = selector_query(&s).unwrap();
        assert!(q.contains("app=db"), "{q}");
        assert!(q.contains("tier in (a)"), "{q}");
        assert!(selector_query(&LabelSelector::default()).is_err());
    }

    #[test]
    fn cronjob_jobs_and_suspension() {
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "report", "uid": "cj-1"},
            "spec": {"schedule": "0 0 1 1 *", "suspend": false, "jobTemplate": {}},
            "status": {"active": [{"name": "report-2", "kind": "Job"}, {"name": "report-1", "kind": "Job"}]}
        }))
        .unwrap();
        assert_eq!(active_jobs(&cj), vec!["report-1", "report-2"]);
        let s = Stamp::new(1, "o");
        assert_eq!(cronjob_suspend_patch(&cj, false, &s), None);
        assert_eq!(
            cronjob_suspend_patch(&cj, true, &s).unwrap()["spec"]["suspend"],
            true
        );

        let job = |uid: &str, owner: &str, controller: bool| -> Job {
            serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid, "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": owner, "controller": controller}
            ]}}))
            .unwrap()
        };
        let jobs = vec![
            job("j1", "cj-1", true),
            job("j2", "cj-2", true),
            job("j3", "cj-1", false),
        ];
        let uids = owned_job_uids("cj-1", &jobs);
        assert_eq!(uids, vec!["j1"]);
        assert_eq!(
            job_pods_query(&uids).unwrap(),
            "batch.kubernetes.io/controller-uid in (j1)"
        );
        assert_eq!(job_pods_query(&[]), None);
    }

    #[test]
    fn cronjobs_are_not_scaled() {
        assert!(scalable(WorkloadKind::CronJob).is_err());
        assert!(scalable(WorkloadKind::Deployment).is_ok());
    }
}
