//! What scenarios read off a running agent from outside: the counters on its `/metrics`
//! ([`crate::agents::Stack::metrics`]), the version of its serving lease's record in
//! DynamoDB, a snapshot of what a change to one cluster's side would move, and the Events
//! an agent published on the group.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use failover_messages::store::Store;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};

use crate::fixtures::{
    GROUP, TRAFFIC_KEY, VOLUMES, helm_release_resource, virtual_service_resource,
};
use crate::kube::{Cluster, volume_replication_resource};

/// The value of the counter `family` (its `_total` series) whose labels contain every one
/// of `labels` (`key="value"`), summed.
pub fn counter(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            let rest = l
                .strip_prefix(family)
                .and_then(|r| r.strip_prefix("_total"));
            rest.is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The version (`lastSeen`) of `cluster`'s serving lease record (its heartbeat), as
/// DynamoDB has it; an error as text, for [`crate::kube::wait_for`].
pub async fn lease_version(store: &Store, cluster: &str) -> Result<Timestamp, String> {
    store
        .get_heartbeat(cluster)
        .await
        .map_err(|e| e.to_string())?
        .map(|h| h.heartbeat.last_seen)
        .ok_or_else(|| format!("no lease record for {cluster}"))
}

/// What a change to one cluster's side would move: each object's `metadata.generation`
/// (its spec changed: a scale, a Flux suspend, a volume's desired state) and the traffic
/// annotations (a traffic switch), keyed by object.
pub async fn side_snapshot(
    c: &Cluster,
    ns: &str,
    flux_ns: &str,
) -> Result<BTreeMap<String, String>> {
    let dynamic =
        |ns: &str, r: ApiResource| Api::<DynamicObject>::namespaced_with(c.client.clone(), ns, &r);
    let mut objects = vec![
        (
            "Deployment/api",
            dynamic(ns, ApiResource::erase::<Deployment>(&())),
        ),
        (
            "StatefulSet/db",
            dynamic(ns, ApiResource::erase::<StatefulSet>(&())),
        ),
        ("HelmRelease/api", dynamic(flux_ns, helm_release_resource())),
        (
            "VirtualService/api",
            dynamic(ns, virtual_service_resource()),
        ),
        (
            "Ingress/api",
            dynamic(ns, ApiResource::erase::<Ingress>(&())),
        ),
    ];
    for (volume, _, _) in VOLUMES {
        objects.push((volume, dynamic(ns, volume_replication_resource())));
    }
    let mut snapshot = BTreeMap::new();
    for (key, api) in objects {
        let name = key.rsplit('/').next().unwrap_or(key);
        let o = api
            .get(name)
            .await
            .with_context(|| format!("{key} in {}", c.name))?;
        let traffic = o
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(TRAFFIC_KEY).cloned());
        snapshot.insert(
            key.to_owned(),
            format!(
                "generation {:?}, traffic {traffic:?}",
                o.metadata.generation
            ),
        );
    }
    Ok(snapshot)
}

/// The Events with `reason` on FailoverGroup [`GROUP`] in namespace `ns` of cluster `c`.
pub async fn group_events(c: &Cluster, ns: &str, reason: &str) -> Result<Vec<Event>> {
    let events = Api::<Event>::namespaced(c.client.clone(), ns)
        .list(&ListParams::default())
        .await?;
    Ok(events
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("FailoverGroup") && r.name.as_deref() == Some(GROUP)
                })
        })
        .collect())
}
