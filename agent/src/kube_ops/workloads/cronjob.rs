//! CronJobs: suspend and resume them, find the Jobs they own, and wait until their running
//! Jobs have finished.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, Patch};
use serde_json::{Value, json};

use crate::kube_ops::wait::{self, Verdict};
use crate::kube_ops::{Change, ClusterClient, KubeOpsError, Stamp, patch_params, stamped_patch};

/// The label the Job controller puts on a Job's pods (Kubernetes ≥ 1.27).
pub const LABEL_JOB_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";

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
