//! What the step groups' tasks share: how they behave ([`TasksConfig`]), the Kubernetes
//! client and the stamp of the operation from the task context, the mapping of Kubernetes
//! and DynamoDB answers to [`TaskError`]s (a lost conditional write stops the engine), and
//! the guards that the operation is still current (and open) at this run's epoch.

use std::time::Duration;

use failover_messages::protocol::lease::{LeaseTerms, LeaseWatch};

use failover_messages::crd::{FailoverGroup, WorkloadKind};
use failover_messages::records::{GroupState, Handoff, HandoffState, Operation};
use failover_messages::store::{Outcome, Stale, StoreError};

use crate::kube_ops::error::Cause as KubeCause;
use crate::kube_ops::traffic::TrafficConfig;
use crate::kube_ops::{ClusterClient, KubeOpsError, Stamp};
use crate::workflow::{TaskContext, TaskError};
use failover_messages::protocol::names::workload_kind_name;

use super::wake::DEFAULT_REREAD_INTERVAL;

/// How the tasks behave.
#[derive(Clone, Debug)]
pub struct TasksConfig {
    /// The external-dns annotation that switches traffic.
    pub traffic: TrafficConfig,
    /// How often a wait for the other cluster re-reads the records when no wake-up comes.
    pub reread_interval: Duration,
    /// How long a renewed lease lasts.
    pub lease_ttl: Duration,
    /// This agent's serving lease terms (assumed for a cluster with no lease record).
    pub lease: LeaseTerms,
    /// This process's reads of other clusters' lease records ([`LeaseSightings`]).
    pub sightings: LeaseSightings,
}

/// Every read this agent process made of other clusters' lease records, each version timed
/// from its first read, shared by whatever reads them (the forced target's wait, the
/// automatic failover watch): a version first read by either was read by this process on
/// its monotonic clock, which is all the observer's rule asks. Only reads are ever added,
/// never forgotten (forgetting would only lengthen a wait).
pub type LeaseSightings = std::sync::Arc<std::sync::Mutex<LeaseWatch>>;

impl Default for TasksConfig {
    fn default() -> Self {
        Self {
            traffic: TrafficConfig::default(),
            reread_interval: DEFAULT_REREAD_INTERVAL,
            lease_ttl: Duration::from_secs(120),
            lease: LeaseTerms::default(),
            sightings: std::sync::Arc::new(std::sync::Mutex::new(LeaseWatch::new(
                LeaseTerms::default(),
            ))),
        }
    }
}

pub(super) fn cluster_client(ctx: &TaskContext) -> Result<ClusterClient, TaskError> {
    Ok(ClusterClient::new(ctx.kube()?.clone(), ctx.cluster()))
}

pub(super) fn stamp(ctx: &TaskContext) -> Stamp {
    let wf = ctx.workflow();
    Stamp::new(wf.epoch, wf.operation_id.clone())
}

pub(super) fn namespace(ctx: &TaskContext) -> &str {
    &ctx.workflow().group.namespace
}

/// The time a Kubernetes wait may take: the step's deadline, a little less so the wait's own
/// (more descriptive) timeout fires before the engine's.
pub(super) fn wait_deadline(ctx: &TaskContext) -> Duration {
    let d = ctx.step().map_or(Duration::from_secs(600), |s| s.deadline);
    if d > Duration::from_secs(2) {
        d - Duration::from_millis(500)
    } else {
        d
    }
}

/// A Kubernetes operation's error as a task's: final ([`TaskError::GaveUp`], the operation
/// fails at once) when a wait used up the step's time, the volume will not get there, or
/// the API server refused in a way that repeats ([`KubeCause::is_permanent`]: not found,
/// forbidden, invalid); otherwise a failure the runner retries from the journal.
pub(super) fn kube_err(e: KubeOpsError) -> TaskError {
    // `Kind namespace/name`: the engine's error names the cluster itself.
    let o = e.object();
    let object = format!("{} {}/{}", o.kind, o.namespace, o.name);
    let message = match e.cause() {
        KubeCause::Timeout { .. } | KubeCause::Degraded { .. } => "Kubernetes wait gave up",
        cause if cause.is_permanent() => {
            "Kubernetes operation failed, and running it again would fail the same way"
        }
        _ => return TaskError::caused_by("Kubernetes operation failed", e).on(object),
    };
    TaskError::GaveUp {
        object: Some(object),
        message: message.to_owned(),
        source: Some(Box::new(e)),
    }
}

pub(super) fn store_err(e: StoreError) -> TaskError {
    TaskError::caused_by("DynamoDB call failed", e)
}

/// A conditional write's answer as a task result: lost races stop the engine.
pub(super) fn outcome<T: std::fmt::Debug>(what: &str, o: Outcome<T>) -> Result<T, TaskError> {
    match o {
        Outcome::Done(t) => Ok(t),
        Outcome::StaleEpoch(s) => Err(TaskError::StaleEpoch(s)),
        Outcome::AbortRequested { at } => Err(TaskError::AbortRequested { at }),
        other => Err(TaskError::failed(format!("{what} was refused: {other:?}"))),
    }
}

pub(super) fn workload_key(kind: WorkloadKind, name: &str) -> String {
    format!("{}/{name}", workload_kind_name(kind))
}

// ---- reads and guards -------------------------------------------------------------------------

/// The operation's record (a consistent read); an error when it does not exist.
pub(super) async fn operation(ctx: &TaskContext) -> Result<Operation, TaskError> {
    let wf = ctx.workflow();
    ctx.store()?
        .get_operation_of(&wf.group, &wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| TaskError::failed(format!("operation {} does not exist", wf.operation_id)))
}

/// The group's state record (a consistent read); an error when it has none.
pub(super) async fn group_state(ctx: &TaskContext) -> Result<GroupState, TaskError> {
    let wf = ctx.workflow();
    ctx.store()?
        .get_group_state(&wf.group)
        .await
        .map_err(store_err)?
        .ok_or_else(|| no_state_record(ctx))
}

/// The error for a group without a state record.
pub(super) fn no_state_record(ctx: &TaskContext) -> TaskError {
    TaskError::failed(format!(
        "group {} has no state record",
        ctx.workflow().group
    ))
}

/// The operation's record and the group's state, from one consistent `BatchGetItem`; an
/// error when the operation does not exist.
pub(super) async fn operation_and_state(
    ctx: &TaskContext,
) -> Result<(Operation, Option<GroupState>), TaskError> {
    let wf = ctx.workflow();
    ctx.store()?
        .get_operation_and_state_of(&wf.group, &wf.operation_id)
        .await
        .map_err(store_err)?
        .ok_or_else(|| TaskError::failed(format!("operation {} does not exist", wf.operation_id)))
}

/// The operation is still in flight at our epoch, on the group state `state` as just read.
pub(super) fn current_in(ctx: &TaskContext, state: Option<&GroupState>) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let current =
        state.is_some_and(|s| s.epoch == wf.epoch && s.op_id.as_deref() == Some(&wf.operation_id));
    if current {
        Ok(())
    } else {
        Err(TaskError::StaleEpoch(Stale {
            expected_epoch: wf.epoch,
            current_epoch: state.map(|s| s.epoch),
            current_op: state.and_then(|s| s.op_id.clone()),
        }))
    }
}

/// The operation still in flight at our epoch ([`current_in`]), neither aborted nor
/// failed: a wait for the other cluster stops as soon as the operation cannot go on. One
/// read of the group state: while it names the operation, it carries the abort and the
/// failure mark, which decide (the operation item's phase is their copy, written after).
pub(super) async fn ensure_open(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let read = ctx
        .store()?
        .get_group_state_and_handoff(&wf.group)
        .await
        .map_err(store_err)?;
    current_in(ctx, read.as_ref().map(|(state, _)| state))?;
    let Some((_, view)) = read else {
        return Err(no_state_record(ctx));
    };
    if let Some(at) = view.abort_requested_at {
        return Err(TaskError::AbortRequested { at });
    }
    if let Some(failure) = view.failure {
        return Err(TaskError::failed(format!(
            "operation {} failed: {}",
            wf.operation_id,
            failure.message.as_deref().unwrap_or("no message recorded")
        )));
    }
    Ok(())
}

/// The volumes of `volumes` without a `READY_FOR_PROMOTION` (or `PROMOTED`) record at `epoch`
/// among `handoffs`.
pub(super) fn not_ready<'a>(
    volumes: &'a [String],
    handoffs: &[Handoff],
    epoch: u64,
) -> Vec<&'a str> {
    volumes
        .iter()
        .filter(|v| {
            !handoffs.iter().any(|h| {
                &h.volume == *v
                    && h.epoch == epoch
                    && matches!(
                        h.state,
                        HandoffState::ReadyForPromotion | HandoffState::Promoted
                    )
            })
        })
        .map(String::as_str)
        .collect()
}

/// The group state `ValidateOperation` read, handed to the `RenewLease` step right after it,
/// which decides from it whether the lease needs renewing instead of reading the state again
/// (taken once; a run that resumes after the validation reads it itself). One per run.
#[derive(Debug, Default)]
pub struct ValidatedState(std::sync::Mutex<Option<GroupState>>);

impl ValidatedState {
    /// Keeps `state` for the next step.
    pub(super) fn keep(&self, state: GroupState) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(state);
    }

    /// The state kept, once.
    pub(super) fn take(&self) -> Option<GroupState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// That this cluster holds the claimed promotion of the run's operation at its epoch, kept
/// for the rest of one run once a consistent read of the group state showed it: within one
/// operation and epoch a claim is never taken back (no abort or failure mark is accepted
/// after it), and a forced operation that takes the group over promotes only after this
/// cluster's serving lease is gone (this side fences first). One per run (the adapter adds
/// it to each run's context); the lock is held across the read, so the promotions of one
/// batch share one read instead of each reading the group state.
#[derive(Debug, Default)]
pub struct ClaimHeld(tokio::sync::Mutex<bool>);

impl ClaimHeld {
    /// `Ok(())` once the group state shows the claim held by this cluster; the error says
    /// what it showed instead.
    pub(super) async fn confirm(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        let mut held = self.0.lock().await;
        if *held {
            return Ok(());
        }
        let wf = ctx.workflow();
        let state = group_state(ctx).await?;
        current_in(ctx, Some(&state))?;
        if state.promotion_claimed_by.as_deref() != Some(ctx.cluster()) {
            return Err(TaskError::failed(format!(
                "refusing to promote: the promotion of operation {} is claimed by {}",
                wf.operation_id,
                state.promotion_claimed_by.as_deref().unwrap_or("nobody")
            )));
        }
        *held = true;
        Ok(())
    }
}

/// The replica counts the operation recorded (`originalReplicas`), kept for the rest of one
/// run once read: the first map recorded wins and never changes, so the target reads the
/// operation once for all its workloads instead of once per workload. One per run (the
/// adapter adds it to each run's context). The lock is held across the read, so the
/// workloads of one batch, scaled up side by side, wait for the first one's read instead of
/// each reading the operation too.
#[derive(Debug, Default)]
pub struct RecordedReplicas(tokio::sync::Mutex<Option<std::collections::BTreeMap<String, u32>>>);

impl RecordedReplicas {
    /// The counts, read from the operation the first time a non-empty map is there.
    pub(super) async fn get(
        &self,
        ctx: &TaskContext,
    ) -> Result<std::collections::BTreeMap<String, u32>, TaskError> {
        let mut known = self.0.lock().await;
        if let Some(known) = known.as_ref() {
            return Ok(known.clone());
        }
        let recorded = operation(ctx).await?.original_replicas;
        if !recorded.is_empty() {
            *known = Some(recorded.clone());
        }
        Ok(recorded)
    }
}

/// The run's `FailoverGroup` as first read, kept for the rest of one run: the workloads'
/// scale-ups (side by side, one batch) each look up the volumes that name them, and one read
/// serves them all instead of one each. The plan was made from the same spec. One per run
/// (the adapter adds it to each run's context); the others wait for the first read.
#[derive(Debug, Default)]
pub struct GroupRead(tokio::sync::OnceCell<FailoverGroup>);

impl GroupRead {
    /// The group, read from this cluster the first time.
    pub(super) async fn get(&self, ctx: &TaskContext) -> Result<FailoverGroup, TaskError> {
        self.0
            .get_or_try_init(|| async {
                let cc = cluster_client(ctx)?;
                let ns = namespace(ctx);
                let group = &ctx.workflow().group.name;
                kube::Api::<FailoverGroup>::namespaced(cc.client.clone(), ns)
                    .get(group)
                    .await
                    .map_err(|e| {
                        TaskError::failed(format!(
                            "cannot read FailoverGroup {ns}/{group} in cluster {}: {e}",
                            cc.cluster
                        ))
                    })
            })
            .await
            .cloned()
    }
}
