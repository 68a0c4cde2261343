//! Pods of a workload: which count as still running ([`pod_is_live`], [`PodTracker`]), how
//! to select them, and the wait until none is left ([`wait_pods_gone`]).

use std::collections::BTreeSet;
use std::pin::pin;
use std::time::Duration;

use failover_messages::crd::WorkloadKind;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::cronjob::{job_pods_query, owned_job_uids};
use super::{kind_name, read_view};
use crate::kube_ops::{Cause, ClusterClient, KubeOpsError};

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
        // One list before the watch: pods usually go while the other workloads are scaled
        // down, and a list answers at once where a freshly opened watch waits for the
        // apiserver's cache (see `kube_ops::wait`).
        match api.list(&ListParams::default().labels(&query)).await {
            Ok(pods) if !pods.items.iter().any(pod_is_live) => {
                tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, pods_left = 0, "no pods left");
                progress(&[]);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => last_error = Some(e.to_string()),
        }
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
        Err(Cause::WatchEnded("the pod watch ended".into()))
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
