//! The agent's real tasks: [`ClusterTasks`], the [`TaskBuilder`] that turns every
//! [`Step`] of a workflow into work on this cluster's Kubernetes API ([`crate::kube_ops`]),
//! the DynamoDB [`Store`](failover_messages::store::Store) and the SQS
//! [`Inbox`].
//!
//! | steps | done with |
//! |---|---|
//! | traffic, Flux, workloads, CronJobs, volumes | [`crate::kube_ops`], stamped with the operation's epoch and id; objects in the group's namespace, Flux objects in their own |
//! | `ValidateOperation`, `RenewLease`, `RecordReplicas`, `MarkAllReady`, `ClaimPromotion`, `MarkPromoted`, `RecordDualActive`, `CompleteOperation` | the store's conditional writes (each conditioned on the group's epoch) |
//! | `Notify` | an [`Envelope`] sent to the peer cluster's inbox (a hint; a send failure is logged, not fatal) |
//! | `WaitAllReady`, `WaitPeer`, `WaitOperationClosed` | [`wake::wait_until`]: an SQS wake-up or the re-read timer, then a consistent read |
//! | `UpdateGroupStatus` | the `FailoverGroup` status subresource in this cluster |
//!
//! What a task needs comes from its [`TaskContext`]: `kube()`, `store()`, and the handles
//! [`Inbox`] (for `Notify`) and [`Wakeups`] (optional: without it waits re-read on the timer
//! alone). A lost conditional write becomes [`TaskError::StaleEpoch`] /
//! [`TaskError::AbortRequested`], which stops the engine; nothing is retried.
//!
//! # Replica counts
//!
//! `RecordReplicas` (source, before any scale-down) writes each workload's count as the
//! `failover.io/original-replicas` annotation and then the whole map on the operation
//! (`originalReplicas`, keyed `<Kind>/<name>`; the first map written wins). `ScaleUp`
//! (target) reads the operation and scales to the recorded count, falling back to the
//! object's own annotation only when the operation has none for it.
//!
//! # Promotion safety
//!
//! `Promote` re-reads the group state before every promotion and refuses to act unless the
//! promotion is claimed by this cluster at the operation's epoch. This is the protocol's
//! "never redo a promote blindly": after an interrupted attempt (or any attempt) the claim,
//! not the journal, decides.

pub mod wake;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use failover_messages::crd::{FailoverGroup, FailoverMode, FailoverPhase, GroupRole, WorkloadKind};
use failover_messages::envelope::Envelope;
use failover_messages::inbox::Inbox;
use failover_messages::records::{HandoffState, Phase, StepStatus, Timings};
use failover_messages::store::{DualActiveMark, Outcome, Stale, StoreError};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::concerns::{Concern, ConcernJob, Concerns};
use crate::kube_ops::error::Cause as KubeCause;
use crate::kube_ops::traffic::{self, TrafficConfig, TrafficState};
use crate::kube_ops::volumes::{self, ReplicationState, VolumeState};
use crate::kube_ops::{ClusterClient, FIELD_MANAGER, KubeOpsError, Stamp, flux, workloads};
use crate::workflow::definition::workload_kind_name;
use crate::workflow::{
    BoxedTask, DualActiveEnd, Role, Step, TaskBuilder, TaskContext, TaskError, WorkflowTask, boxed,
};

pub use self::wake::{Check, DEFAULT_REREAD_INTERVAL, Wakeups, pump_inbox, wait_until};

/// How the tasks behave.
#[derive(Clone, Debug)]
pub struct TasksConfig {
    /// The external-dns annotation that switches traffic.
    pub traffic: TrafficConfig,
    /// How often a wait for the other cluster re-reads the records when no wake-up comes.
    pub reread_interval: Duration,
    /// How long a renewed lease lasts.
    pub lease_ttl: Duration,
}

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            traffic: TrafficConfig::default(),
            reread_interval: DEFAULT_REREAD_INTERVAL,
            lease_ttl: Duration::from_secs(120),
        }
    }
}

/// The [`TaskBuilder`] of the agent: every [`Step`] becomes a [`StepTask`] doing real work.
#[derive(Clone, Debug, Default)]
pub struct ClusterTasks {
    config: Arc<TasksConfig>,
}

impl ClusterTasks {
    /// Tasks behaving as `config` says.
    pub fn new(config: TasksConfig) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &TasksConfig {
        &self.config
    }
}

impl TaskBuilder for ClusterTasks {
    fn task_for(&self, step: &Step) -> BoxedTask {
        boxed(StepTask {
            step: step.clone(),
            config: Arc::clone(&self.config),
        })
    }
}

/// One step carried out for real (see the module docs).
#[derive(Debug)]
pub struct StepTask {
    step: Step,
    config: Arc<TasksConfig>,
}

impl WorkflowTask for StepTask {
    fn name(&self) -> &str {
        self.step.name()
    }

    fn description(&self) -> String {
        self.step.description()
    }

    async fn execute(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        // Kubernetes work goes to its concern's actor when the agent runs them.
        if let Some(concern) = Concern::of(&self.step)
            && let Ok(concerns) = ctx.handle::<Concerns>()
        {
            let (step, config, task_ctx) =
                (self.step.clone(), Arc::clone(&self.config), ctx.clone());
            let job = ConcernJob {
                operation: ctx.workflow().operation_id.clone(),
                object: step.object().unwrap_or_default(),
                work: Box::pin(async move { run(&step, &config, &task_ctx).await }),
            };
            return concerns.run(concern, job).await;
        }
        run(&self.step, &self.config, ctx).await
    }
}

// ---- helpers ----------------------------------------------------------------------------------

fn cluster_client(ctx: &TaskContext) -> Result<ClusterClient, TaskError> {
    Ok(ClusterClient::new(ctx.kube()?.clone(), ctx.cluster()))
}

fn stamp(ctx: &TaskContext) -> Stamp {
    let wf = ctx.workflow();
    Stamp::new(wf.epoch, wf.operation_id.clone())
}

fn namespace(ctx: &TaskContext) -> &str {
    &ctx.workflow().group.namespace
}

/// The time a Kubernetes wait may take: the step's deadline, a little less so the wait's own
/// (more descriptive) timeout fires before the engine's.
fn wait_deadline(ctx: &TaskContext) -> Duration {
    let d = ctx.step().map_or(Duration::from_secs(600), |s| s.deadline);
    if d > Duration::from_secs(2) {
        d - Duration::from_millis(500)
    } else {
        d
    }
}

fn kube_err(e: KubeOpsError) -> TaskError {
    let object = e.object().to_string();
    match e.cause() {
        // The wait used up the step's time, or the volume will not get there: final.
        KubeCause::Timeout { .. } | KubeCause::Degraded { .. } => TaskError::GaveUp {
            object: Some(object),
            message: "Kubernetes wait gave up".to_owned(),
            source: Some(Box::new(e)),
        },
        _ => TaskError::caused_by("Kubernetes operation failed", e).on(object),
    }
}

fn store_err(e: StoreError) -> TaskError {
    TaskError::caused_by("DynamoDB call failed", e)
}

/// A conditional write's answer as a task result: lost races stop the engine.
fn outcome<T: std::fmt::Debug>(what: &str, o: Outcome<T>) -> Result<T, TaskError> {
    match o {
        Outcome::Done(t) => Ok(t),
        Outcome::StaleEpoch(s) => Err(TaskError::StaleEpoch(s)),
        Outcome::AbortRequested { at } => Err(TaskError::AbortRequested { at }),
        other => Err(TaskError::failed(format!("{what} was refused: {other:?}"))),
    }
}

fn workload_key(kind: WorkloadKind, name: &str) -> String {
    format!("{}/{name}", workload_kind_name(kind))
}

// ---- dispatch ---------------------------------------------------------------------------------

async fn run(step: &Step, config: &TasksConfig, ctx: &TaskContext) -> Result<(), TaskError> {
    match step {
        Step::ValidateOperation => validate_operation(ctx).await,
        Step::RenewLease => {
            let o = ctx
                .store()?
                .renew_lease(&ctx.op_ref(), ctx.cluster(), config.lease_ttl)
                .await
                .map_err(store_err)?;
            outcome("renewing the lease", o).map(drop)
        }
        Step::TrafficOff { kind, name } | Step::TrafficOn { kind, name } => {
            let state = if matches!(step, Step::TrafficOn { .. }) {
                TrafficState::On
            } else {
                TrafficState::Off
            };
            traffic::set_traffic(
                &cluster_client(ctx)?,
                &config.traffic,
                *kind,
                namespace(ctx),
                name,
                state,
                &stamp(ctx),
            )
            .await
            .map_err(kube_err)
            .map(drop)
        }
        Step::SuspendFlux {
            kind,
            namespace,
            name,
        } => flux::suspend_flux(&cluster_client(ctx)?, *kind, namespace, name, &stamp(ctx))
            .await
            .map_err(kube_err)
            .map(drop),
        Step::ResumeFlux {
            kind,
            namespace,
            name,
        } => flux::resume_flux(
            &cluster_client(ctx)?,
            *kind,
            namespace,
            name,
            &stamp(ctx),
            ctx.now(),
        )
        .await
        .map_err(kube_err)
        .map(drop),
        Step::RecordReplicas { workloads } => record_replicas(ctx, workloads).await,
        Step::ScaleDown { kind, name } => workloads::scale_down(
            &cluster_client(ctx)?,
            *kind,
            namespace(ctx),
            name,
            &stamp(ctx),
        )
        .await
        .map_err(kube_err)
        .map(drop),
        Step::ScaleUp { kind, name } => scale_up(ctx, *kind, name).await,
        Step::SuspendCronJob { name } => {
            workloads::suspend_cronjob(&cluster_client(ctx)?, namespace(ctx), name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }
        Step::ResumeCronJob { name } => {
            workloads::resume_cronjob(&cluster_client(ctx)?, namespace(ctx), name, &stamp(ctx))
                .await
                .map_err(kube_err)
                .map(drop)
        }
        Step::WaitPodsGone { kind, name } => workloads::wait_pods_gone(
            &cluster_client(ctx)?,
            *kind,
            namespace(ctx),
            name,
            wait_deadline(ctx),
            |_| {},
        )
        .await
        .map_err(kube_err),
        Step::WaitReady { kind, name } => workloads::wait_ready(
            &cluster_client(ctx)?,
            *kind,
            namespace(ctx),
            name,
            wait_deadline(ctx),
        )
        .await
        .map_err(kube_err)
        .map(drop),
        Step::Demote { volume } => set_volume(ctx, volume, ReplicationState::Secondary).await,
        Step::Resync { volume } => set_volume(ctx, volume, ReplicationState::Resync).await,
        Step::Promote { volume } => promote(ctx, volume).await,
        Step::WaitSecondary { volume } => wait_volume(ctx, volume, VolumeState::Secondary).await,
        Step::WaitPrimary { volume } => wait_volume(ctx, volume, VolumeState::Primary).await,
        Step::WaitResynced { volume } => volumes::wait_resynced(
            &cluster_client(ctx)?,
            namespace(ctx),
            volume,
            wait_deadline(ctx),
        )
        .await
        .map_err(kube_err)
        .map(drop),
        Step::VerifyData { volume } => {
            volumes::verify(&cluster_client(ctx)?, namespace(ctx), volume)
                .await
                .map_err(kube_err)
                .map(drop)
        }
        Step::MarkAllReady { volumes } => {
            // With no volumes the operation itself is marked ready: the target's claim
            // without handoff records is accepted only after it.
            if volumes.is_empty() {
                let o = ctx
                    .store()?
                    .mark_group_ready(&ctx.op_ref())
                    .await
                    .map_err(store_err)?;
                return outcome("marking the group READY_FOR_PROMOTION", o);
            }
            let o = ctx
                .store()?
                .mark_all_ready(&ctx.op_ref(), ctx.cluster(), volumes)
                .await
                .map_err(store_err)?;
            outcome("marking the volumes READY_FOR_PROMOTION", o).map(drop)
        }
        Step::WaitAllReady { volumes, .. } => wait_all_ready(ctx, config, volumes).await,
        Step::ClaimPromotion { ready_volumes } => {
            // Repeating a claim is harmless (the store keeps the first), so an interrupted
            // earlier attempt needs no special care here.
            let o = ctx
                .store()?
                .claim_promotion(&ctx.op_ref(), ctx.cluster(), ready_volumes)
                .await
                .map_err(store_err)?;
            outcome("claiming the promotion", o)
        }
        Step::MarkPromoted { volumes } => {
            let o = ctx
                .store()?
                .mark_all_promoted(&ctx.op_ref(), volumes, ctx.cluster())
                .await
                .map_err(store_err)?;
            outcome("marking the volumes PROMOTED", o)
        }
        Step::RecordDualActive { end } => {
            let mark = match end {
                DualActiveEnd::Started => DualActiveMark::Started(ctx.now()),
                DualActiveEnd::Ended => DualActiveMark::Ended(ctx.now()),
            };
            let o = ctx
                .store()?
                .record_dual_active(&ctx.op_ref(), mark)
                .await
                .map_err(store_err)?;
            outcome("recording the dual-active window", o)
        }
        Step::Notify { to, kind } => {
            notify(ctx, *to, *kind).await;
            Ok(())
        }
        Step::WaitPeer { peer, .. } => {
            let store = ctx.store()?;
            let wf = ctx.workflow();
            let peer_cluster: &str = wf.cluster_of(peer.role);
            let stage = peer.stage.key();
            let what = format!("{peer_cluster}: {stage}/{}", peer.task);
            wait_until(
                &what,
                ctx.handle::<Wakeups>().ok(),
                config.reread_interval,
                move || async move {
                    ensure_open(ctx).await?;
                    let steps = store
                        .journal(&wf.operation_id, peer_cluster)
                        .await
                        .map_err(store_err)?;
                    let found = steps
                        .iter()
                        .find(|s| s.stage == stage && s.task == peer.task && s.epoch == wf.epoch);
                    Ok(match found {
                        Some(s) if s.status == StepStatus::Done => Check::Done(()),
                        Some(s) => Check::Pending(format!("{} is {}", peer.task, s.status)),
                        None => Check::Pending(format!("{} not started", peer.task)),
                    })
                },
            )
            .await
        }
        Step::WaitOperationClosed { .. } => wait_operation_closed(ctx, config).await,
        Step::CompleteOperation => complete(ctx).await,
        Step::UpdateGroupStatus => update_group_status(ctx).await,
        Step::Reactivate { volume } => reactivate(ctx, volume).await,
        Step::FinishAbort => finish_abort(ctx).await,
    }
}

// ---- records ----------------------------------------------------------------------------------

/// The operation is still in flight at our epoch (consistent read of the group state).
async fn ensure_current(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let state = ctx
        .store()?
        .get_group_state(&wf.group)
        .await
        .map_err(store_err)?;
    let current = state
        .as_ref()
        .is_some_and(|s| s.epoch == wf.epoch && s.op_id.as_deref() == Some(&wf.operation_id));
    if current {
        Ok(())
    } else {
        Err(TaskError::StaleEpoch(Stale {
            expected_epoch: wf.epoch,
            current_epoch: state.as_ref().map(|s| s.epoch),
            current_op: state.and_then(|s| s.op_id),
        }))
    }
}

/// [`ensure_current`], and the operation neither aborted nor failed: a wait for the other
/// cluster stops as soon as the operation cannot go on.
async fn ensure_open(ctx: &TaskContext) -> Result<(), TaskError> {
    ensure_current(ctx).await?;
    let wf = ctx.workflow();
    let op = ctx
        .store()?
        .get_operation(&wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            TaskError::failed(format!("operation {} does not exist", wf.operation_id))
        })?;
    if let Some(at) = op.abort_requested_at {
        return Err(TaskError::AbortRequested { at });
    }
    if op.phase == Phase::Failed {
        return Err(TaskError::failed(format!(
            "operation {} failed: {}",
            wf.operation_id,
            op.message.as_deref().unwrap_or("no message recorded")
        )));
    }
    Ok(())
}

async fn validate_operation(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let op = ctx
        .store()?
        .get_operation(&wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            TaskError::failed(format!("operation {} does not exist", wf.operation_id))
        })?;
    if op.epoch != wf.epoch
        || op.group != wf.group
        || op.source != wf.source
        || op.target != wf.target
    {
        return Err(TaskError::failed(format!(
            "operation {} changed under the agent: epoch {}, group {}, {} -> {}",
            op.id, op.epoch, op.group, op.source, op.target
        )));
    }
    if let Some(at) = op.abort_requested_at {
        return Err(TaskError::AbortRequested { at });
    }
    if op.phase.is_terminal() {
        return Err(TaskError::failed(format!(
            "operation {} is already closed ({})",
            op.id, op.phase
        )));
    }
    ensure_current(ctx).await?;
    if op.phase == Phase::Pending {
        // The first agent to start marks the operation Running (epoch-conditioned, so a
        // stale agent cannot; repeating it is harmless).
        let o = ctx
            .store()?
            .set_phase(&wf.op_ref(), Phase::Running, None)
            .await
            .map_err(store_err)?;
        match o {
            // The other side may have closed it meanwhile; the engine finds out next step.
            Outcome::Done(()) | Outcome::AlreadyFinished { .. } => {}
            other => outcome("marking the operation Running", other)?,
        }
    }
    Ok(())
}

async fn record_replicas(
    ctx: &TaskContext,
    list: &[(WorkloadKind, String)],
) -> Result<(), TaskError> {
    let cc = cluster_client(ctx)?;
    let stamp = stamp(ctx);
    let mut counts = BTreeMap::new();
    for (kind, name) in list {
        let s = workloads::record_replicas(&cc, *kind, namespace(ctx), name, &stamp)
            .await
            .map_err(kube_err)?;
        counts.insert(workload_key(*kind, name), s.replicas);
    }
    let o = ctx
        .store()?
        .record_original_replicas(&ctx.op_ref(), &counts)
        .await
        .map_err(store_err)?;
    outcome("recording the original replicas", o)
}

async fn scale_up(ctx: &TaskContext, kind: WorkloadKind, name: &str) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let op = ctx
        .store()?
        .get_operation(&wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            TaskError::failed(format!("operation {} does not exist", wf.operation_id))
        })?;
    let key = workload_key(kind, name);
    let mut recorded = op.original_replicas.get(&key).copied();
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
                tracing::warn!(workload = %key, "no replica count recorded for the group; using the object's failover.io/original-replicas annotation");
            }
        }
    }
    workloads::restore_replicas(
        &cluster_client(ctx)?,
        kind,
        namespace(ctx),
        name,
        recorded,
        &stamp(ctx),
    )
    .await
    .map_err(kube_err)
    .map(drop)
}

async fn wait_all_ready(
    ctx: &TaskContext,
    config: &TasksConfig,
    volumes: &[String],
) -> Result<(), TaskError> {
    let store = ctx.store()?;
    let wf = ctx.workflow();
    wait_until(
        "every volume READY_FOR_PROMOTION",
        ctx.handle::<Wakeups>().ok(),
        config.reread_interval,
        move || async move {
            let handoffs = store
                .list_handoffs(&wf.operation_id)
                .await
                .map_err(store_err)?;
            let missing: Vec<&str> = volumes
                .iter()
                .filter(|v| {
                    !handoffs.iter().any(|h| {
                        &h.volume == *v
                            && h.epoch == wf.epoch
                            && matches!(
                                h.state,
                                HandoffState::ReadyForPromotion | HandoffState::Promoted
                            )
                    })
                })
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                return Ok(Check::Done(()));
            }
            // Not ready yet: make sure waiting still makes sense.
            ensure_open(ctx).await?;
            Ok(Check::Pending(format!("not ready: {}", missing.join(", "))))
        },
    )
    .await
}

async fn wait_operation_closed(ctx: &TaskContext, config: &TasksConfig) -> Result<(), TaskError> {
    let store = ctx.store()?;
    let wf = ctx.workflow();
    let phase = wait_until(
        "the operation to close",
        ctx.handle::<Wakeups>().ok(),
        config.reread_interval,
        move || async move {
            let op = store
                .get_operation(&wf.operation_id)
                .await
                .map_err(store_err)?
                .ok_or_else(|| {
                    TaskError::failed(format!("operation {} does not exist", wf.operation_id))
                })?;
            Ok(if op.phase.is_terminal() {
                Check::Done(op.phase)
            } else {
                Check::Pending(format!("phase {}", op.phase))
            })
        },
    )
    .await?;
    if phase == Phase::Succeeded {
        Ok(())
    } else {
        Err(TaskError::failed(format!(
            "operation {} closed as {phase}",
            wf.operation_id
        )))
    }
}

async fn complete(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let store = ctx.store()?;
    // Timings from both journals (two reads); without them the operation still completes.
    let timings = match (
        store.journal(&wf.operation_id, &wf.source).await,
        store.journal(&wf.operation_id, &wf.target).await,
    ) {
        (Ok(source), Ok(target)) => crate::timings::from_journals(&source, &target),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %crate::errors::error_chain(&e), "cannot read the journals for the operation's timings");
            Timings::default()
        }
    };
    let o = store
        .complete_operation(&ctx.op_ref(), timings)
        .await
        .map_err(store_err)?;
    closed(o, Phase::Succeeded, "completing the operation")
}

/// A closing write's answer: done, or closed as `phase` already (a repeated attempt).
fn closed(
    o: Outcome<failover_messages::records::HistoryEntry>,
    phase: Phase,
    what: &str,
) -> Result<(), TaskError> {
    match o {
        Outcome::Done(entry) => {
            tracing::info!(finished_at = %entry.finished_at, %phase, "operation closed");
            Ok(())
        }
        Outcome::AlreadyFinished { phase: p } if p == phase => Ok(()),
        other => outcome(what, other).map(drop),
    }
}

async fn notify(ctx: &TaskContext, to: Role, kind: failover_messages::envelope::EnvelopeKind) {
    let wf = ctx.workflow();
    let peer = wf.cluster_of(to);
    let inbox = match ctx.handle::<Inbox>() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, to = %peer, %kind, "no SQS inbox: the peer learns from its re-read timer");
            return;
        }
    };
    let envelope = Envelope {
        kind,
        operation_id: wf.operation_id.clone(),
        group: wf.group.clone(),
        epoch: wf.epoch,
        sender: ctx.cluster().to_owned(),
        sent_at: ctx.now(),
    };
    // A wake-up is a hint: a lost one costs the peer one re-read interval, never safety.
    if let Err(e) = inbox.send(peer, &envelope).await {
        tracing::warn!(error = %e, to = %peer, %kind, "could not send the wake-up; the peer re-reads on its timer");
    }
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
/// read); setting `primary` is itself idempotent.
async fn promote(ctx: &TaskContext, volume: &str) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let state = ctx
        .store()?
        .get_group_state(&wf.group)
        .await
        .map_err(store_err)?;
    let Some(state) = state else {
        return Err(TaskError::failed(format!(
            "group {} has no state record",
            wf.group
        )));
    };
    if state.epoch != wf.epoch || state.op_id.as_deref() != Some(&wf.operation_id) {
        return Err(TaskError::StaleEpoch(Stale {
            expected_epoch: wf.epoch,
            current_epoch: Some(state.epoch),
            current_op: state.op_id,
        }));
    }
    if state.promotion_claimed_by.as_deref() != Some(ctx.cluster()) {
        return Err(TaskError::failed(format!(
            "refusing to promote: the promotion of operation {} is claimed by {}",
            wf.operation_id,
            state.promotion_claimed_by.as_deref().unwrap_or("nobody")
        )));
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
    let store = ctx.store()?;
    ensure_current(ctx).await?;
    let state = store
        .get_group_state(&wf.group)
        .await
        .map_err(store_err)?
        .ok_or_else(|| TaskError::failed(format!("group {} has no state record", wf.group)))?;
    if !state.is_entitled(ctx.cluster()) {
        return Err(TaskError::failed(format!(
            "refusing to reactivate {volume}: cluster {} is entitled to group {}, not {}",
            state.entitled_cluster(),
            wf.group,
            ctx.cluster()
        )));
    }
    let op = store
        .get_operation(&wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| {
            TaskError::failed(format!("operation {} does not exist", wf.operation_id))
        })?;
    if op.abort_requested_at.is_none() || op.promotion_started_at.is_some() {
        return Err(TaskError::failed(format!(
            "refusing to reactivate {volume}: operation {} has no granted abort",
            wf.operation_id
        )));
    }
    set_volume(ctx, volume, ReplicationState::Primary).await
}

async fn finish_abort(ctx: &TaskContext) -> Result<(), TaskError> {
    let o = ctx
        .store()?
        .finish_abort(&ctx.op_ref(), Timings::default())
        .await
        .map_err(store_err)?;
    closed(o, Phase::Aborted, "closing the aborted operation")
}

// ---- status -----------------------------------------------------------------------------------

async fn update_group_status(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let store = ctx.store()?;
    let state = store
        .get_group_state(&wf.group)
        .await
        .map_err(store_err)?
        .ok_or_else(|| TaskError::failed(format!("group {} has no state record", wf.group)))?;
    let op = store
        .get_operation(&wf.operation_id)
        .await
        .map_err(store_err)?;
    // The same rules as the status the group actor keeps (crate::group_status).
    let role: GroupRole = crate::group_status::role(&state, op.as_ref(), ctx.cluster());
    let phase: Option<FailoverPhase> = op.as_ref().map(|o| o.phase.into());
    let summary = op.as_ref().map(crate::group_status::last_operation);
    let last_operation = json!({
        "id": wf.operation_id,
        "phase": phase,
        "mode": FailoverMode::from(wf.mode),
        "sourceCluster": wf.source,
        "targetCluster": wf.target,
        "startedAt": summary.as_ref().and_then(|s| s.started_at.clone()),
        "finishedAt": summary.and_then(|s| s.finished_at),
    });
    let patch = json!({
        "status": {
            "role": role,
            "activeCluster": state.active_cluster,
            "epoch": state.epoch,
            "lastOperation": last_operation,
        }
    });
    let api: Api<FailoverGroup> = Api::namespaced(ctx.kube()?.clone(), &wf.group.namespace);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(&wf.group.name, &pp, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            TaskError::caused_by(
                format!(
                    "cannot update the status of FailoverGroup {} in cluster {}",
                    wf.group,
                    ctx.cluster()
                ),
                e,
            )
            .on(format!("FailoverGroup/{}", wf.group))
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use failover_messages::envelope::EnvelopeKind;
    use failover_messages::keys::GroupRef;
    use failover_messages::records::Mode;
    use jiff::Timestamp;

    use super::*;
    use crate::workflow::{WorkflowContext, WorkflowTimings};

    /// A context with no Kubernetes client, no store and no inbox.
    fn bare_context(cluster: &str) -> TaskContext {
        let at = Timestamp::from_second(1_780_000_000).unwrap();
        let wf = WorkflowContext {
            operation_id: "op-1".into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            source: "east".into(),
            target: "west".into(),
            mode: Mode::Consistency,
            force: false,
            epoch: 3,
            lease: None,
            timings: WorkflowTimings {
                requested_at: at,
                started_at: at,
            },
        };
        TaskContext::new(wf, cluster).unwrap()
    }

    async fn run_step(step: Step, ctx: &TaskContext) -> Result<(), TaskError> {
        ClusterTasks::default().task_for(&step).execute(ctx).await
    }

    #[tokio::test]
    async fn mark_all_ready_writes_with_or_without_volumes() {
        // No store in the context: a write fails with MissingDependency. Without volumes the
        // step still writes (the group-level mark the target's claim needs).
        let ctx = bare_context("east");
        let err = run_step(Step::MarkAllReady { volumes: vec![] }, &ctx)
            .await
            .unwrap_err();
        assert!(
            matches!(err, TaskError::MissingDependency { .. }),
            "{err:?}"
        );
        let err = run_step(
            Step::MarkAllReady {
                volumes: vec!["data".into()],
            },
            &ctx,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, TaskError::MissingDependency { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_notification_that_cannot_be_sent_is_not_fatal() {
        let ctx = bare_context("west");
        run_step(
            Step::Notify {
                to: Role::Source,
                kind: EnvelopeKind::OperationCompleted,
            },
            &ctx,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn kubernetes_steps_name_the_missing_client() {
        let ctx = bare_context("east");
        let err = run_step(
            Step::ScaleDown {
                kind: WorkloadKind::Deployment,
                name: "api".into(),
            },
            &ctx,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("Kubernetes client"), "{err}");
    }

    #[test]
    fn tasks_carry_the_step_name_and_description() {
        let step = Step::Demote {
            volume: "data".into(),
        };
        let task = ClusterTasks::default().task_for(&step);
        assert_eq!(task.name(), "Demote");
        assert_eq!(task.description(), step.description());
    }

    #[test]
    fn lost_conditional_writes_stop_the_engine() {
        let stale = Stale {
            expected_epoch: 3,
            current_epoch: Some(4),
            current_op: None,
        };
        assert!(matches!(
            outcome::<()>("x", Outcome::StaleEpoch(stale)),
            Err(TaskError::StaleEpoch(_))
        ));
        let at = Timestamp::from_second(1).unwrap();
        assert!(matches!(
            outcome::<()>("x", Outcome::AbortRequested { at }),
            Err(TaskError::AbortRequested { .. })
        ));
        let err = outcome::<()>(
            "claiming",
            Outcome::NotReady {
                missing: vec!["v".into()],
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("claiming"), "{err}");
        assert_eq!(
            workload_key(WorkloadKind::StatefulSet, "db"),
            "StatefulSet/db"
        );
    }
}
