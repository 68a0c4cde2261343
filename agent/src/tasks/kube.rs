//! The tasks of the Kubernetes steps ([`KubeStep`]): traffic, Flux, workloads and volumes
//! through [`crate::kube_ops`], stamped with the operation's epoch and id; objects in the
//! group's namespace, Flux objects in their own. In the running agent each runs on the actor
//! of its concern (see [`super::concerns`]).
//!
//! `ScaleUp` scales to the replica count recorded on the operation (see
//! [`super::record`]), falling back to the group's history and last known counts.
//! `Promote` re-reads the group state before every promotion and refuses to act unless the
//! promotion is claimed by this cluster at the operation's epoch: the claim, not the
//! journal, decides ("never redo a promote blindly"). `Reactivate` acts only while this
//! cluster is entitled and the abort was granted.

use ::kube::Api;
use failover_messages::crd::{FailoverGroup, NetworkKind, WorkloadKind};
use futures::future::BoxFuture;

use crate::kube_ops::traffic::{self, TrafficState};
use crate::kube_ops::volumes::{self, ReplicationState, VolumeState};
use crate::kube_ops::{flux, workloads};
use crate::workflow::{KubeStep, TaskContext, TaskError};

use super::support::{
    ClaimHeld, GroupRead, RecordedReplicas, TasksConfig, cluster_client, current_in, group_state,
    kube_err, namespace, no_state_record, operation, operation_and_state, stamp, store_err,
    wait_deadline, workload_key,
};

/// Carries out `step` on this cluster's Kubernetes API.
///
/// Each step's future is boxed on its own, so polling one holds only its own state: in a
/// debug build a `match` of awaits reserves stack for every arm.
pub(super) fn run<'a>(
    step: &'a KubeStep,
    config: &'a TasksConfig,
    ctx: &'a TaskContext,
) -> BoxFuture<'a, Result<(), TaskError>> {
    let cc = || cluster_client(ctx);
    match step {
        KubeStep::TrafficOff { kind, name } => {
            Box::pin(set_traffic(ctx, config, *kind, name, TrafficState::Off))
        }
        KubeStep::TrafficOn { kind, name } => {
            Box::pin(set_traffic(ctx, config, *kind, name, TrafficState::On))
        }
        KubeStep::SuspendFlux {
            kind,
            namespace,
            name,
        } => Box::pin(async move {
            flux::suspend_flux(&cc()?, *kind, namespace, name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::ResumeFlux {
            kind,
            namespace,
            name,
        } => Box::pin(async move {
            flux::resume_flux(&cc()?, *kind, namespace, name, &stamp(ctx), ctx.now())
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::ScaleDown { kind, name } => Box::pin(async move {
            workloads::scale_down(&cc()?, *kind, namespace(ctx), name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::ScaleUp { kind, name } => Box::pin(scale_up(ctx, *kind, name)),
        KubeStep::SuspendCronJob { name } => Box::pin(async move {
            workloads::suspend_cronjob(&cc()?, namespace(ctx), name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::ResumeCronJob { name } => Box::pin(async move {
            workloads::resume_cronjob(&cc()?, namespace(ctx), name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::WaitPodsGone { kind, name } => Box::pin(async move {
            let deadline = wait_deadline(ctx);
            workloads::wait_pods_gone(&cc()?, *kind, namespace(ctx), name, deadline, |_| {})
                .await
                .map_err(kube_err)
        }),
        KubeStep::WaitReady { kind, name } => Box::pin(async move {
            workloads::wait_ready(&cc()?, *kind, namespace(ctx), name, wait_deadline(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::Demote { volume } => {
            Box::pin(set_volume(ctx, volume, ReplicationState::Secondary))
        }
        KubeStep::Resync { volume } => Box::pin(set_volume(ctx, volume, ReplicationState::Resync)),
        KubeStep::Promote { volume } => Box::pin(promote(ctx, volume)),
        KubeStep::Reactivate { volume } => Box::pin(reactivate(ctx, volume)),
        KubeStep::WaitSecondary { volume } => {
            Box::pin(wait_volume(ctx, volume, VolumeState::Secondary))
        }
        KubeStep::WaitPrimary { volume } => {
            Box::pin(wait_volume(ctx, volume, VolumeState::Primary))
        }
        KubeStep::WaitResynced { volume } => Box::pin(async move {
            volumes::wait_resynced(&cc()?, namespace(ctx), volume, wait_deadline(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }),
        KubeStep::VerifyData { volume } => Box::pin(async move {
            volumes::verify(&cc()?, namespace(ctx), volume)
                .await
                .map_err(kube_err)
                .map(drop)
        }),
    }
}

// ---- traffic ----------------------------------------------------------------------------------

async fn set_traffic(
    ctx: &TaskContext,
    config: &TasksConfig,
    kind: NetworkKind,
    name: &str,
    state: TrafficState,
) -> Result<(), TaskError> {
    traffic::set_traffic(
        &cluster_client(ctx)?,
        &config.traffic,
        kind,
        namespace(ctx),
        name,
        state,
        &stamp(ctx),
    )
    .await
    .map_err(kube_err)
    .map(drop)
}

// ---- workloads --------------------------------------------------------------------------------

/// Pods run only on Primary volumes: before a workload is scaled up, every volume of the
/// group that names it must be Primary here. A side fenced after a lost lease, whose run then
/// resumed past its promotion, promotes such a volume again when this cluster holds the
/// group's claimed promotion at the operation's epoch (only forward), and otherwise stops
/// here instead of starting pods on Secondary volumes.
async fn ensure_volumes_primary(
    ctx: &TaskContext,
    kind: WorkloadKind,
    name: &str,
) -> Result<(), TaskError> {
    let cc = cluster_client(ctx)?;
    let ns = namespace(ctx);
    let fg = match ctx.handle::<GroupRead>() {
        Ok(memo) => memo.get(ctx).await?,
        Err(_) => GroupRead::default().get(ctx).await?,
    };
    for v in fg
        .spec
        .volume_replications
        .iter()
        .filter(|v| v.workload.as_deref() == Some(name))
    {
        let seen = volumes::observe(&cc, ns, &v.name).await.map_err(kube_err)?;
        if seen.state.as_deref() != Some("Primary") && holds_claim(ctx).await? {
            tracing::warn!(volume = %v.name, cluster = %cc.cluster, state = ?seen.state, "a promoted volume is no longer Primary (fenced after a lost lease?); this cluster holds the claim: promoting it again");
            volumes::set_replication_state(
                &cc,
                ns,
                &v.name,
                ReplicationState::Primary,
                &stamp(ctx),
            )
            .await
            .map_err(kube_err)?;
            volumes::wait_state(&cc, ns, &v.name, VolumeState::Primary, wait_deadline(ctx))
                .await
                .map_err(kube_err)?;
            continue;
        }
        if seen.state.as_deref() != Some("Primary") {
            return Err(TaskError::failed(format!(
                "not scaling up {} in cluster {}: its VolumeReplication {ns}/{} is {} \
                 here, not Primary (fenced after a lost lease?); pods run only on Primary \
                 volumes",
                workload_key(kind, name),
                cc.cluster,
                v.name,
                seen.state.as_deref().unwrap_or("unknown")
            )));
        }
    }
    Ok(())
}

/// True when the group state (read consistently) names this cluster as the holder of the
/// claimed promotion of this very operation at its epoch.
async fn holds_claim(ctx: &TaskContext) -> Result<bool, TaskError> {
    let wf = ctx.workflow();
    let state = group_state(ctx).await?;
    Ok(state.epoch == wf.epoch
        && state.op_id.as_deref() == Some(wf.operation_id.as_str())
        && state.promotion_claimed_by.as_deref() == Some(ctx.cluster()))
}

async fn scale_up(ctx: &TaskContext, kind: WorkloadKind, name: &str) -> Result<(), TaskError> {
    ensure_volumes_primary(ctx, kind, name).await?;
    let wf = ctx.workflow();
    let original = match ctx.handle::<RecordedReplicas>() {
        Ok(memo) => memo.get(ctx).await?,
        Err(_) => operation(ctx).await?.original_replicas,
    };
    let key = workload_key(kind, name);
    let mut recorded = original.get(&key).copied();
    if recorded.is_none() {
        // A forced operation whose source never ran records nothing: the last operation of
        // the group that recorded the workload is the best knowledge there is.
        recorded = ctx
            .store()?
            .history(&wf.group, Some(20))
            .await
            .map_err(store_err)?
            .iter()
            .find_map(|h| h.operation.original_replicas.get(&key).copied());
        if recorded.is_none() {
            // Then what the active side's agent last saw while the group was idle.
            recorded = ctx
                .store()?
                .get_known_replicas(&wf.group)
                .await
                .map_err(store_err)?
                .and_then(|k| k.replicas.get(&key).copied());
        }
        match recorded {
            Some(n) => {
                tracing::warn!(workload = %key, replicas = n, "the operation recorded no replica count; using the group's last known one");
            }
            None => {
                tracing::warn!(workload = %key, "no replica count recorded for the group; using the object's failover.io/original-replicas annotation, else the FailoverGroup's declared count");
            }
        }
    }
    let declared = match recorded {
        Some(_) => None,
        None => declared_replicas(ctx, kind, name).await?,
    };
    workloads::restore_replicas(
        &cluster_client(ctx)?,
        kind,
        namespace(ctx),
        name,
        recorded,
        declared,
        &stamp(ctx),
    )
    .await
    .map_err(kube_err)
    .map(drop)
}

/// The replica count this cluster's FailoverGroup declares for a workload (`replicas` in its
/// entry of `spec.workloads`), the scale-up's last fallback.
async fn declared_replicas(
    ctx: &TaskContext,
    kind: WorkloadKind,
    name: &str,
) -> Result<Option<u32>, TaskError> {
    let group = &ctx.workflow().group;
    let fg = Api::<FailoverGroup>::namespaced(ctx.kube()?.clone(), &group.namespace)
        .get_opt(&group.name)
        .await
        .map_err(|e| {
            TaskError::caused_by("reading the FailoverGroup for its declared replicas", e)
                .on(format!("FailoverGroup/{}", group.name))
        })?;
    Ok(fg.and_then(|fg| {
        fg.spec
            .workloads
            .iter()
            .find(|w| w.kind == kind && w.name == name)
            .and_then(|w| w.replicas)
    }))
}

// ---- volumes ----------------------------------------------------------------------------------

async fn set_volume(
    ctx: &TaskContext,
    volume: &str,
    state: ReplicationState,
) -> Result<(), TaskError> {
    volumes::set_replication_state(
        &cluster_client(ctx)?,
        namespace(ctx),
        volume,
        state,
        &stamp(ctx),
    )
    .await
    .map_err(kube_err)
    .map(drop)
}

async fn wait_volume(ctx: &TaskContext, volume: &str, state: VolumeState) -> Result<(), TaskError> {
    volumes::wait_state(
        &cluster_client(ctx)?,
        namespace(ctx),
        volume,
        state,
        wait_deadline(ctx),
    )
    .await
    .map_err(kube_err)
    .map(drop)
}

/// Promotes only while the promotion is claimed by this cluster at our epoch (consistent
/// read, once per run: [`ClaimHeld`]); setting `primary` is itself idempotent.
async fn promote(ctx: &TaskContext, volume: &str) -> Result<(), TaskError> {
    match ctx.handle::<ClaimHeld>() {
        Ok(memo) => memo.confirm(ctx).await?,
        Err(_) => ClaimHeld::default().confirm(ctx).await?,
    }
    if ctx.attempt().interrupted() {
        let obs = volumes::observe(&cluster_client(ctx)?, namespace(ctx), volume)
            .await
            .map_err(kube_err)?;
        tracing::warn!(%volume, seen = %obs.describe(), "resuming an interrupted promotion; the claim is ours, so setting primary again is safe");
    }
    set_volume(ctx, volume, ReplicationState::Primary).await
}

/// Rollback: the volume back to primary, only while this cluster is the one entitled to an
/// active side (no promotion claimed, this cluster active) and the abort was granted.
async fn reactivate(ctx: &TaskContext, volume: &str) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let (op, state) = operation_and_state(ctx).await?;
    current_in(ctx, state.as_ref())?;
    let Some(state) = state else {
        return Err(no_state_record(ctx));
    };
    if !state.is_entitled(ctx.cluster()) {
        return Err(TaskError::failed(format!(
            "refusing to reactivate {volume}: cluster {} is entitled to group {}, not {}",
            state.entitled_cluster(),
            wf.group,
            ctx.cluster()
        )));
    }
    if op.abort_requested_at.is_none() || op.promotion_started_at.is_some() {
        return Err(TaskError::failed(format!(
            "refusing to reactivate {volume}: operation {} has no granted abort",
            wf.operation_id
        )));
    }
    set_volume(ctx, volume, ReplicationState::Primary).await
}
