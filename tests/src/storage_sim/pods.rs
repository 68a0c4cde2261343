//! Which pods use a volume, read from the API server: the rule both pod checks share
//! ([`owning_pods`]), the pod watch that tells the engine when to look again, and the check
//! that a `Secondary` volume has no pods ([`check_secondary`]).
//!
//! A check is a read, not a cache: it lists the pods (a consistent list) between two reads
//! of the VolumeReplication and trusts the answer only when the object did not change in
//! between, so pods it reports existed while the volume was `Secondary` and at rest.

use std::pin::pin;
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::engine::{ClusterCtx, Msg};
use super::model::{ANNOTATION_WORKLOAD, VrView};
use crate::kube::volume_replication_resource;

/// Attempts of one read before the check reports that it cannot tell.
const READ_ATTEMPTS: u32 = 3;
/// Rounds of list-then-reread before a check gives up on an object that keeps changing.
const CHECK_ROUNDS: u32 = 5;

/// Pods in the volume's cluster that use it and are not finished: those of the workload
/// named by the `storage-sim.failover.io/workload` annotation (matched by its
/// `spec.selector`), else those mounting the PVC named by `spec.dataSource`.
pub async fn owning_pods(client: &Client, view: &VrView) -> Result<Vec<String>> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), &view.namespace);
    if let Some(workload) = view.annotations.get(ANNOTATION_WORKLOAD)
        && let Some(selector) = workload_selector(client, &view.namespace, workload).await?
    {
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        return Ok(live_pod_names(list.items.iter()));
    }
    let Some(ds) = &view.data_source else {
        return Ok(Vec::new());
    };
    if !(ds.kind.is_empty() || ds.kind == "PersistentVolumeClaim") || ds.name.is_empty() {
        return Ok(Vec::new());
    }
    let list = pods.list(&ListParams::default()).await?;
    Ok(live_pod_names(list.items.iter().filter(|p| {
        p.spec.as_ref().is_some_and(|s| {
            s.volumes.iter().flatten().any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == ds.name)
            })
        })
    })))
}

/// [`owning_pods`], tried [`READ_ATTEMPTS`] times; the last error, rendered, when every
/// attempt failed.
pub(crate) async fn owning_pods_retrying(
    client: &Client,
    view: &VrView,
) -> Result<Vec<String>, String> {
    retrying(|| owning_pods(client, view)).await
}

async fn retrying<T, F, Fut>(mut read: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match read().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= READ_ATTEMPTS => return Err(format!("{e:#}")),
            Err(e) => {
                debug!("storage-sim: read failed (attempt {attempt}), retrying: {e:#}");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

fn live_pod_names<'a>(pods: impl Iterator<Item = &'a Pod>) -> Vec<String> {
    let mut names: Vec<String> = pods
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    names
}

/// The label selector (as a query string) of `Kind/name`, or `None` when the annotation is
/// malformed or the workload does not exist (then the PVC rule applies).
async fn workload_selector(client: &Client, ns: &str, workload: &str) -> Result<Option<String>> {
    let Some((kind, name)) = workload.trim().split_once('/') else {
        warn!(annotation = %workload, "storage-sim: workload annotation is not Kind/name");
        return Ok(None);
    };
    let selector = match kind {
        "Deployment" => Api::<Deployment>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .and_then(|d| d.spec)
            .map(|s| s.selector),
        "StatefulSet" => Api::<StatefulSet>::namespaced(client.clone(), ns)
            .get_opt(name)
            .await?
            .and_then(|s| s.spec)
            .map(|s| s.selector),
        other => {
            warn!(kind = %other, "storage-sim: workload kind not supported (Deployment|StatefulSet)");
            None
        }
    };
    Ok(selector.map(|s| selector_string(&s)))
}

/// Renders a LabelSelector in the list-query syntax.
fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in s.match_expressions.iter().flatten() {
        let values = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            _ => continue,
        });
    }
    parts.join(",")
}

/// What the pod watch of a cluster tells the engine.
#[derive(Debug)]
pub(crate) enum PodSignal {
    /// A pod of this namespace was created, changed or deleted.
    Changed(String),
    /// The watch (re)listed every pod: whatever it missed before is in the past.
    Relisted,
    /// The watch failed; until it delivers again pods may come and go unseen.
    Failed(String),
}

/// True for a watch error after which the watcher lists everything again (`410 Gone`),
/// so nothing is lost: the relist is followed by [`PodSignal::Relisted`].
pub(crate) fn relists(e: &watcher::Error) -> bool {
    matches!(e, watcher::Error::WatchError(s) if s.code == 410)
}

/// Spawns the pod watch of cluster `c` (all namespaces or one): metadata only, since it
/// only says where to look again.
pub(crate) fn spawn_pod_watcher(
    c: usize,
    cluster: &ClusterCtx,
    namespace: Option<&str>,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    let api: Api<PartialObjectMeta<Pod>> = match namespace {
        Some(ns) => Api::namespaced(cluster.client.clone(), ns),
        None => Api::all(cluster.client.clone()),
    };
    let name = cluster.name.clone();
    tokio::spawn(async move {
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = pin!(stream);
        while let Some(item) = stream.next().await {
            let signal = match item {
                Ok(Event::Apply(p) | Event::Delete(p)) => {
                    PodSignal::Changed(p.metadata.namespace.unwrap_or_default())
                }
                Ok(Event::InitDone) => PodSignal::Relisted,
                Ok(Event::Init | Event::InitApply(_)) => continue,
                Err(e) if relists(&e) => continue,
                Err(e) => {
                    warn!(cluster = %name, "storage-sim: pod watch error (retrying): {e}");
                    PodSignal::Failed(e.to_string())
                }
            };
            if tx.send(Msg::Pods(c, signal, Timestamp::now())).is_err() {
                return;
            }
        }
    })
}

/// The answer of [`check_secondary`].
#[derive(Debug)]
pub(crate) enum Checked {
    /// The object stayed `Secondary` at rest, unchanged at `resource_version`, while a list
    /// sent at `from` and answered by `to` found `pods` of its workload.
    Secondary {
        pods: Vec<String>,
        from: Timestamp,
        to: Timestamp,
    },
    /// It is not `Secondary` at rest (any more).
    NotSecondary,
    /// It was deleted or replaced.
    Gone,
    /// It changed during every round; its next watch event brings a new check.
    Changing,
    /// A read failed every attempt: whether pods exist cannot be told.
    Failed(String),
}

/// Whether pods of the volume `obj` (as the engine last saw it) exist while it is
/// `Secondary` at rest: lists them, then reads the object again; an unchanged
/// resourceVersion proves the state held throughout the list, otherwise it starts over with
/// the fresh object.
pub(crate) async fn check_secondary(client: Client, mut obj: DynamicObject) -> Checked {
    let view = VrView::from_object(&obj);
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &view.namespace,
        &volume_replication_resource(),
    );
    for _ in 0..CHECK_ROUNDS {
        let view = VrView::from_object(&obj);
        if !view.is_secondary_at_rest() {
            return Checked::NotSecondary;
        }
        let from = Timestamp::now();
        let pods = match owning_pods_retrying(&client, &view).await {
            Ok(p) => p,
            Err(e) => return Checked::Failed(format!("listing the volume's pods: {e}")),
        };
        let to = Timestamp::now();
        let after = match retrying(|| async { Ok(api.get_opt(&view.name).await?) }).await {
            Ok(Some(o)) => o,
            Ok(None) => return Checked::Gone,
            Err(e) => return Checked::Failed(format!("reading the VolumeReplication: {e}")),
        };
        if after.metadata.uid != view.uid {
            return Checked::Gone;
        }
        if after.metadata.resource_version == view.resource_version {
            return Checked::Secondary { pods, from, to };
        }
        obj = after;
    }
    Checked::Changing
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_rendering() {
        let s: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "db"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["a", "b"]},
                {"key": "x", "operator": "DoesNotExist"}
            ]
        }))
        .unwrap();
        assert_eq!(selector_string(&s), "app=db,tier in (a,b),!x");
    }

    #[test]
    fn finished_pods_do_not_count() {
        let pod = |name: &str, phase: Option<&str>| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": phase.map(|p| json!({"phase": p})).unwrap_or(json!({})),
            }))
            .unwrap()
        };
        let pods = [
            pod("b", Some("Running")),
            pod("a", Some("Pending")),
            pod("c", Some("Succeeded")),
            pod("d", Some("Failed")),
            pod("e", None),
        ];
        assert_eq!(live_pod_names(pods.iter()), ["a", "b", "e"]);
    }

    #[test]
    fn only_gone_relists() {
        let mut gone = kube::core::Status::failure("expired", "Expired");
        gone.code = 410;
        assert!(relists(&watcher::Error::WatchError(Box::new(gone))));
        let mut forbidden = kube::core::Status::failure("forbidden", "Forbidden");
        forbidden.code = 403;
        assert!(!relists(&watcher::Error::WatchError(Box::new(forbidden))));
    }
}
