//! The task of the preflight ([`CheckStep::Preflight`]): reads, in this cluster, every object
//! the group names (with each VolumeReplication's PersistentVolumeClaim and
//! VolumeReplicationClass) and, on the target of a forced operation, what replica count
//! each workload it scales up would get; changes nothing.
//!
//! Every problem found is reported at once, each naming the object, its kind and the
//! cluster, as a [`TaskError::GaveUp`]: the operation fails before anything changed in either
//! cluster (the peer waits for this step before its first change). A read that may pass
//! later (a server error, a broken connection) fails the step so that it runs again.
//!
//! # Replica counts (target)
//!
//! Outside a forced operation the source records the count of every workload before
//! scaling it down, so the target will know it. A forced operation's source may record
//! nothing; the target then scales up to, in order: the counts the operation recorded, the
//! group's last operations', the active side's last known ones (DynamoDB), the standby
//! object's `failover.io/original-replicas` annotation, the count the FailoverGroup
//! declares. The preflight checks that at least one of them is there.

use std::collections::BTreeMap;

use failover_messages::crd::WorkloadKind;
use futures::future::try_join_all;

use crate::kube_ops::ClusterClient;
use crate::kube_ops::preflight::{self as pf, Lookup};
use crate::workflow::{CheckStep, Preflight, Role, TaskContext, TaskError};

use super::support::{cluster_client, kube_err, namespace, operation, store_err, workload_key};

/// Carries out `step`.
pub(super) async fn run(step: &CheckStep, ctx: &TaskContext) -> Result<(), TaskError> {
    match step {
        CheckStep::Preflight { role, checks } => preflight(ctx, *role, checks).await,
    }
}

async fn preflight(ctx: &TaskContext, role: Role, checks: &Preflight) -> Result<(), TaskError> {
    let cc = cluster_client(ctx)?;
    let ns = namespace(ctx).to_owned();
    // Every read at once: a group of twenty objects costs one round trip, not twenty.
    let (cc, ns) = (&cc, ns.as_str());
    let workloads = try_join_all(checks.workloads.iter().map(|(kind, name)| async move {
        let id = pf::workload_id(cc, *kind, ns, name);
        let found = pf::find(cc, &pf::workload_resource(*kind), &id)
            .await
            .map_err(kube_err)?;
        Ok::<_, TaskError>((workload_key(*kind, name), id, found))
    }));
    let network = try_join_all(checks.network.iter().map(|(kind, name)| async move {
        let id = pf::network_id(cc, *kind, ns, name);
        let found = pf::find(cc, &pf::network_resource(*kind), &id)
            .await
            .map_err(kube_err)?;
        Ok::<_, TaskError>(pf::missing_problem(&id, &found))
    }));
    let flux = try_join_all(checks.flux.iter().map(|(kind, flux_ns, name)| async move {
        let id = pf::flux_id(cc, *kind, flux_ns, name);
        let found = pf::find(cc, &pf::flux_resource(*kind), &id)
            .await
            .map_err(kube_err)?;
        Ok::<_, TaskError>(pf::missing_problem(&id, &found))
    }));
    let volumes = try_join_all(checks.volumes.iter().map(|v| volume_problems(cc, ns, v)));
    let (workloads, network, flux, volumes) = tokio::try_join!(workloads, network, flux, volumes)?;
    let mut problems = Vec::new();
    let mut annotated = BTreeMap::new();
    for (key, id, found) in workloads {
        if let Lookup::Found(obj) = &found {
            annotated.insert(key, pf::annotated_replicas(obj));
        }
        problems.extend(pf::missing_problem(&id, &found));
    }
    problems.extend(network.into_iter().flatten());
    problems.extend(flux.into_iter().flatten());
    problems.extend(volumes.into_iter().flatten());
    if role == Role::Target && ctx.workflow().force {
        problems.extend(replica_problems(ctx, cc, ns, &checks.scale_up, &annotated).await?);
    }
    if problems.is_empty() {
        tracing::info!(objects = checks.len(), "preflight passed");
        return Ok(());
    }
    Err(TaskError::GaveUp {
        object: None,
        message: format!(
            "preflight found {} problem(s) in cluster {} before any change: {}",
            problems.len(),
            ctx.cluster(),
            problems.join("; ")
        ),
        source: None,
    })
}

/// The problems of one VolumeReplication: it, its PersistentVolumeClaim, its class.
async fn volume_problems(
    cc: &ClusterClient,
    ns: &str,
    volume: &str,
) -> Result<Vec<String>, TaskError> {
    let id = pf::volume_id(cc, ns, volume);
    let obj = match pf::find(cc, &pf::volume_resource(), &id)
        .await
        .map_err(kube_err)?
    {
        Lookup::Found(obj) => obj,
        other => return Ok(pf::missing_problem(&id, &other).into_iter().collect()),
    };
    let names = pf::volume_names(&obj);
    let pvc = match &names.pvc {
        Ok(Some(pvc)) => {
            let pvc_id = cc.object("PersistentVolumeClaim", ns, pvc);
            let found = pf::find(cc, &pf::pvc_resource(), &pvc_id)
                .await
                .map_err(kube_err)?;
            Some((pvc.as_str(), found))
        }
        _ => None,
    };
    let class = match &names.class {
        Some(class) => {
            let class_id = cc.object("VolumeReplicationClass", "", class);
            let found =
                pf::find_cluster_scoped(cc, &pf::volume_replication_class_resource(), &class_id)
                    .await
                    .map_err(kube_err)?;
            Some((class.as_str(), found))
        }
        None => None,
    };
    Ok(pf::volume_problems(
        &id,
        &names,
        pvc.as_ref().map(|(n, l)| (*n, l)),
        class.as_ref().map(|(n, l)| (*n, l)),
    ))
}

/// The workloads a forced operation's target scales up without any known replica count.
async fn replica_problems(
    ctx: &TaskContext,
    cc: &ClusterClient,
    ns: &str,
    scale_up: &[(WorkloadKind, String, Option<u32>)],
    annotated: &BTreeMap<String, Option<u32>>,
) -> Result<Vec<String>, TaskError> {
    if scale_up.is_empty() {
        return Ok(Vec::new());
    }
    let store = ctx.store()?;
    let group = &ctx.workflow().group;
    let (op, history, known) = tokio::try_join!(
        operation(ctx),
        async { store.history(group, Some(20)).await.map_err(store_err) },
        async { store.get_known_replicas(group).await.map_err(store_err) },
    )?;
    let mut problems = Vec::new();
    for (kind, name, declared) in scale_up {
        let key = workload_key(*kind, name);
        let count = op
            .original_replicas
            .get(&key)
            .copied()
            .or_else(|| {
                history
                    .iter()
                    .find_map(|h| h.operation.original_replicas.get(&key).copied())
            })
            .or_else(|| known.as_ref().and_then(|k| k.replicas.get(&key).copied()))
            .or_else(|| annotated.get(&key).copied().flatten())
            .or(*declared);
        problems.extend(pf::replicas_problem(
            &pf::workload_id(cc, *kind, ns, name),
            count,
        ));
    }
    Ok(problems)
}
