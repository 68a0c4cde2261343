//! Fixtures of the agent benchmarks: FailoverGroups of any size, modelled on
//! [`crate::fixtures`] but without traffic or Flux objects (they cost the same on every run
//! and are not what these figures are about).
//!
//! A group of shape `{deployments: d, statefulsets: s}` named `g` has workloads `g-d0 …`
//! (Deployments) and `g-s0 …` (StatefulSets), one replica each, and one PVC plus one
//! VolumeReplication `<workload>-data` per workload (annotated with its workload, so the
//! storage simulator checks that no volume is demoted under running pods). Every object
//! exists in both clusters: active in `east` (replicas 1, volumes Primary), passive in `west`
//! (replicas 0, volumes Secondary).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use failover_messages::crd::{
    FailoverGroup, FailoverGroupSpec, StageTimeouts, VolumeReplicationRef, WorkloadKind,
    WorkloadRef,
};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::kube::{Cluster, TestEnv, wait_for};
use crate::storage_sim::{
    ANNOTATION_WORKLOAD, DesiredState, VrView, volume_replication, volume_replications,
};

/// How many objects of each kind a group has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupShape {
    /// Deployments (one replica, one volume each).
    pub deployments: usize,
    /// StatefulSets (one replica, one volume each).
    pub statefulsets: usize,
}

impl GroupShape {
    /// `n` workloads and `n` volumes: Deployments and StatefulSets half and half
    /// (the odd one a Deployment).
    pub fn mixed(n: usize) -> Self {
        Self {
            deployments: n - n / 2,
            statefulsets: n / 2,
        }
    }

    /// Workloads (= volumes) of the group.
    pub fn workloads(&self) -> usize {
        self.deployments + self.statefulsets
    }

    /// `(kind, name)` of every workload of group `group`.
    pub fn workload_names(&self, group: &str) -> Vec<(WorkloadKind, String)> {
        (0..self.deployments)
            .map(|i| (WorkloadKind::Deployment, format!("{group}-d{i}")))
            .chain(
                (0..self.statefulsets)
                    .map(|i| (WorkloadKind::StatefulSet, format!("{group}-s{i}"))),
            )
            .collect()
    }
}

/// How long the starting point may take to settle.
pub const SETTLE: Duration = Duration::from_secs(120);
/// Objects created at once.
const CONCURRENCY: usize = 8;

/// The volume of a workload.
pub fn volume_name(workload: &str) -> String {
    format!("{workload}-data")
}

/// The FailoverGroup spec of a group of `shape` named `group`.
pub fn group_spec(group: &str, shape: GroupShape) -> FailoverGroupSpec {
    let workloads = shape.workload_names(group);
    FailoverGroupSpec {
        volume_replications: workloads
            .iter()
            .map(|(_, w)| VolumeReplicationRef {
                name: volume_name(w),
                workload: Some(w.clone()),
            })
            .collect(),
        workloads: workloads
            .into_iter()
            .map(|(kind, name)| WorkloadRef {
                kind,
                name,
                replicas: None,
            })
            .collect(),
        timeouts: StageTimeouts {
            initialization: Some("60s".into()),
            source_shutdown: Some("120s".into()),
            volume_demotion: Some("120s".into()),
            volume_promotion: Some("180s".into()),
            target_activation: Some("180s".into()),
            completion: Some("60s".into()),
        },
        ..FailoverGroupSpec::default()
    }
}

async fn create<K>(api: Api<K>, obj: serde_json::Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj.clone())?;
    api.create(&PostParams::default(), &o)
        .await
        .with_context(|| format!("creating {obj}"))?;
    Ok(())
}

/// Creates one workload with its PVC and VolumeReplication in cluster `c`.
async fn create_workload(
    c: &Cluster,
    ns: &str,
    kind: WorkloadKind,
    name: &str,
    active: bool,
) -> Result<()> {
    let client = c.client.clone();
    let replicas = i32::from(active);
    let template = json!({"metadata": {"labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}});
    let kind_name = match kind {
        WorkloadKind::Deployment => {
            create::<Deployment>(
                Api::namespaced(client.clone(), ns),
                json!({"metadata": {"name": name}, "spec": {"replicas": replicas,
                    "selector": {"matchLabels": {"app": name}}, "template": template}}),
            )
            .await?;
            "Deployment"
        }
        WorkloadKind::StatefulSet => {
            create::<StatefulSet>(
                Api::namespaced(client.clone(), ns),
                json!({"metadata": {"name": name}, "spec": {"replicas": replicas,
                    "serviceName": name, "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": {"app": name}}, "template": template}}),
            )
            .await?;
            "StatefulSet"
        }
        other => anyhow::bail!("the benchmark fixture has no {other:?}"),
    };
    let volume = volume_name(name);
    let pvc = format!("{volume}-pvc");
    create::<PersistentVolumeClaim>(
        Api::namespaced(client.clone(), ns),
        json!({"metadata": {"name": pvc}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await?;
    let state = if active {
        DesiredState::Primary
    } else {
        DesiredState::Secondary
    };
    let mut vr = volume_replication(&volume, state, &pvc);
    vr.metadata.annotations = Some(BTreeMap::from([(
        ANNOTATION_WORKLOAD.to_owned(),
        format!("{kind_name}/{name}"),
    )]));
    volume_replications(&client, ns)
        .create(&PostParams::default(), &vr)
        .await
        .with_context(|| format!("creating VolumeReplication {volume} in {}", c.name))?;
    Ok(())
}

/// Creates groups `groups` of `shape` in namespace `ns` of both clusters (active in east).
/// Does not wait for anything; see [`wait_settled`].
pub async fn create_groups(
    env: &TestEnv,
    ns: &str,
    groups: &[String],
    shape: GroupShape,
) -> Result<()> {
    let mut jobs = Vec::new();
    for c in env.clusters() {
        for g in groups {
            for (kind, name) in shape.workload_names(g) {
                jobs.push((c, kind, name, c.name == "east"));
            }
        }
    }
    futures::stream::iter(jobs)
        .map(|(c, kind, name, active)| async move {
            create_workload(c, ns, kind, &name, active).await
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    for c in env.clusters() {
        futures::stream::iter(groups)
            .map(|g| async move {
                let mut fg = FailoverGroup::new(g, group_spec(g, shape));
                fg.metadata.namespace = Some(ns.to_owned());
                Api::<FailoverGroup>::namespaced(c.client.clone(), ns)
                    .create(&PostParams::default(), &fg)
                    .await
                    .with_context(|| format!("creating FailoverGroup {g} in {}", c.name))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
    }
    Ok(())
}

/// Waits until every VolumeReplication of `ns` is settled (Primary in `active`, Secondary
/// in the other cluster) and every workload in `active` has its one replica ready.
pub async fn wait_settled(env: &TestEnv, ns: &str, active: &str, volumes: usize) -> Result<()> {
    for c in env.clusters() {
        let want = if c.name == active {
            "Primary"
        } else {
            "Secondary"
        };
        let api = volume_replications(&c.client, ns);
        wait_for(
            &format!("{volumes} volumes {want} in {}/{ns}", c.name),
            SETTLE,
            || {
                let api = api.clone();
                async move {
                    let list = api
                        .list(&ListParams::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    let settled = list
                        .items
                        .iter()
                        .filter(|o| VrView::from_object(o).is_settled(want))
                        .count();
                    if settled == volumes && list.items.len() == volumes {
                        Ok(Some(()))
                    } else {
                        Err(format!("{settled} of {} settled", list.items.len()))
                    }
                }
            },
        )
        .await?;
    }
    let c = env
        .clusters()
        .into_iter()
        .find(|c| c.name == active)
        .context("no such cluster")?;
    wait_for(
        &format!("every workload ready in {}/{ns}", c.name),
        SETTLE,
        || async {
            let lp = ListParams::default();
            let deps = Api::<Deployment>::namespaced(c.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?;
            let sts = Api::<StatefulSet>::namespaced(c.client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| e.to_string())?;
            let not_ready = deps
                .items
                .iter()
                .filter(|d| {
                    d.status
                        .as_ref()
                        .and_then(|s| s.ready_replicas)
                        .unwrap_or(0)
                        < 1
                })
                .count()
                + sts
                    .items
                    .iter()
                    .filter(|s| {
                        s.status
                            .as_ref()
                            .and_then(|s| s.ready_replicas)
                            .unwrap_or(0)
                            < 1
                    })
                    .count();
            if not_ready == 0 {
                Ok(Some(()))
            } else {
                Err(format!("{not_ready} workloads not ready"))
            }
        },
    )
    .await
}
