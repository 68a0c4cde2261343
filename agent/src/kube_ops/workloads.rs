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
//!
//! The pod waits live in `pods`, the CronJob operations in `cronjob`; everything public is
//! re-exported here.

use std::collections::BTreeMap;
use std::time::Duration;

use failover_messages::crd::WorkloadKind;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, Patch};
use serde_json::{Value, json};

use super::wait::{self, Verdict};
use super::{
    ANNOTATION_ORIGINAL_REPLICAS, Cause, Change, ClusterClient, KubeOpsError, Stamp, patch_params,
    stamped_patch,
};

mod cronjob;
mod pods;

pub use cronjob::{
    LABEL_JOB_CONTROLLER_UID, active_jobs, cronjob_suspend_patch, job_pods_query, owned_job_uids,
    resume_cronjob, suspend_cronjob, wait_jobs_finished,
};
pub use pods::{PodTracker, pod_is_live, selector_query, wait_pods_gone};

/// How often a patch is re-decided after a `409 Conflict` before giving up.
const CONFLICT_RETRIES: usize = 5;

pub use failover_messages::protocol::names::workload_kind_name as kind_name;

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

/// Scale to `replicas`, or without it to the recorded count, or without that to the count
/// the FailoverGroup declares (`declared`); an error when none is known. No patch when the
/// workload already has that many replicas.
pub fn plan_restore(
    view: &WorkloadView,
    replicas: Option<u32>,
    declared: Option<u32>,
    stamp: &Stamp,
) -> Result<ScalePlan, Cause> {
    let target = replicas
        .or_else(|| view.recorded_replicas())
        .or(declared)
        .ok_or_else(|| {
            Cause::Invalid(format!(
                "no replica count recorded for it (by this operation or an earlier one of the group), no {ANNOTATION_ORIGINAL_REPLICAS} annotation on it and no `replicas` in its entry of the FailoverGroup's spec.workloads; annotate the standby object with {ANNOTATION_ORIGINAL_REPLICAS}=<count> or declare the count"
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
/// in [`ANNOTATION_ORIGINAL_REPLICAS`], or without that to `declared` (the FailoverGroup's),
/// and returns the count.
pub async fn restore_replicas(
    cc: &ClusterClient,
    kind: WorkloadKind,
    namespace: &str,
    name: &str,
    replicas: Option<u32>,
    declared: Option<u32>,
    stamp: &Stamp,
) -> Result<Scaled, KubeOpsError> {
    let s = read_decide_patch(cc, kind, namespace, name, |v| {
        plan_restore(v, replicas, declared, stamp)
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

#[cfg(test)]
mod tests;
