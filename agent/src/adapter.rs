//! The seed's `ManagerAdapter` / `ProcessFailover`: the agent's entry that turns an
//! operation record into this cluster's running workflow and its outcome.
//!
//! [`ManagerAdapter::process_failover`]:
//!
//! 1. **Role.** This cluster's role in the operation (source or target); a cluster that
//!    takes no part gets [`AdapterError::NotInvolved`].
//! 2. **Read.** The `FailoverGroup` named by the operation, from this cluster's own API
//!    server (never another cluster's).
//! 3. **Plan.** [`Factory::build`] for (mode, role, spec, force): pure.
//! 4. **Bind.** Every step to a real task with [`ClusterTasks`].
//! 5. **Run.** The [`Engine`] journaling in this cluster's `Failover` object
//!    ([`FailoverJournal`]: each intent after a consistent read of the group state, each
//!    stage published to DynamoDB once), while this cluster's SQS
//!    inbox is long-polled next to it (when the adapter has an inbox), so waits for the other
//!    cluster wake up on its notifications and otherwise re-read on their timer.
//! 6. **Report.** The engine's [`RunReport`], or an error naming the stage, task, object and
//!    cluster.
//!
//! Throughout, the operation's `Failover` object in this cluster shows this side live. The
//! adapter opens its [`FailoverReporter`] once, at the start, and from then on only feeds
//! the run's progress stream: the engine's stage and task events, then (from the adapter)
//! the operation as stored after the run and how this side ended
//! ([`ProgressEvent::Recorded`], [`ProgressEvent::SideFinished`]). The reporter folds the
//! stream into the object's status (see [`crate::failover_object`]); nothing comes back.
//!
//! Running it again for the same operation (after a crash, or when a wake-up arrives for an
//! operation already handled) resumes from the journal: steps journaled `DONE` are skipped,
//! an interrupted step runs again knowing it was interrupted, and the promotion is never
//! redone blindly (see [`crate::tasks`]).

use std::sync::Arc;

use failover_messages::crd::FailoverGroup;
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::Inbox;
use failover_messages::records::Operation;
use failover_messages::store::{Clock, Outcome, Store, SystemClock};
use kube::api::Api;

use crate::boxed::boxed;
use crate::errors::{error_chain, error_chain_without_repeats};
use crate::failover_object::failover_journal::FailoverJournal;
use crate::failover_object::failover_reporter::FailoverReporter;
use crate::metrics::Metrics;
use crate::seam::Sender;
use crate::tasks::concerns::Concerns;
use crate::tasks::{
    ClaimHeld, ClusterTasks, GroupRead, RecordedReplicas, TasksConfig, ValidatedState, Wakeups,
    pump_inbox,
};
use crate::workflow::{
    ContextError, Engine, EngineError, Factory, FactoryError, Progress, ProgressEvent, Role,
    RunReport, SideResult, TaskContext, WorkflowContext,
};

/// Which workflow a run of an operation carries out on this cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// This cluster's side of the failover ([`Factory::build`]).
    Forward,
    /// The source's rollback after a granted abort ([`Factory::rollback`]).
    Rollback,
}

impl std::fmt::Display for RunKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Forward => "forward",
            Self::Rollback => "rollback",
        })
    }
}

/// What became of a failure [`ManagerAdapter`] tried to record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recorded {
    /// The operation is `Failed`.
    Failed,
    /// The group state holds a claim: nothing recorded, the operation only goes forward.
    Claimed,
    /// Not recorded (an abort came first, the epoch moved, the write failed).
    Not,
}

/// Why [`ManagerAdapter::process_failover`] did not run the workflow to its end.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// This cluster is neither the source nor the target of the operation.
    #[error(transparent)]
    NotInvolved(#[from] ContextError),
    /// The FailoverGroup could not be read from this cluster.
    #[error("cannot read FailoverGroup {group} in cluster {cluster}")]
    ReadGroup {
        /// `namespace/name`.
        group: String,
        /// This cluster.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The FailoverGroup does not exist in this cluster.
    #[error("FailoverGroup {group} does not exist in cluster {cluster}")]
    GroupNotFound {
        /// `namespace/name`.
        group: String,
        /// This cluster.
        cluster: String,
    },
    /// The group's spec cannot be planned.
    #[error("cannot plan operation {op_id} for FailoverGroup {group} in cluster {cluster}")]
    Plan {
        /// The operation.
        op_id: String,
        /// `namespace/name`.
        group: String,
        /// This cluster.
        cluster: String,
        /// What the factory rejected.
        #[source]
        source: FactoryError,
    },
    /// The workflow stopped (a task failed, a deadline passed, the epoch moved, an abort).
    #[error(transparent)]
    Run(#[from] EngineError),
    /// A failure that would fail the operation, after its promotion was claimed: only
    /// forward, so it is retried (on the runner's next tick) and reported, never recorded as
    /// `Failed`.
    #[error("the promotion of operation {op_id} is claimed, so it only goes forward: retrying")]
    Forward {
        /// The operation.
        op_id: String,
        /// What failed.
        #[source]
        source: Box<AdapterError>,
    },
}

impl AdapterError {
    /// True when the operation is no longer this agent's to work on.
    pub fn must_stop_working(&self) -> bool {
        matches!(self, Self::Run(e) if e.must_stop_working())
    }

    /// True when running again cannot help, so the operation is recorded as `Failed`: a
    /// deadline ran out (the engine's, or a wait's inside a task), a volume is Degraded, or
    /// the group's spec cannot be planned. Other errors (an API call
    /// that failed, a journal write that did not get through) are retried from the journal.
    pub fn fails_operation(&self) -> bool {
        match self {
            Self::Run(EngineError::DeadlineExceeded { .. }) | Self::Plan { .. } => true,
            Self::Run(EngineError::TaskFailed { source, .. }) => source.is_final(),
            _ => false,
        }
    }
}

/// One cluster's entry point for failovers (the seed's `ManagerAdapter`). Cheap to clone.
#[derive(Clone)]
pub struct ManagerAdapter {
    cluster: String,
    kube: kube::Client,
    store: Store,
    inbox: Option<Inbox>,
    wakeups: Wakeups,
    pump_inbox: bool,
    tasks: ClusterTasks,
    progress: Sender<Progress>,
    clock: Arc<dyn Clock>,
    metrics: Option<Metrics>,
    concerns: Option<Concerns>,
}

impl std::fmt::Debug for ManagerAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagerAdapter")
            .field("cluster", &self.cluster)
            .field("store", &self.store)
            .field("inbox", &self.inbox.as_ref().map(Inbox::queue_name))
            .field("pump_inbox", &self.pump_inbox)
            .finish_non_exhaustive()
    }
}

impl ManagerAdapter {
    /// The adapter of cluster `cluster`, talking to its own API server through `kube` and
    /// to DynamoDB through `store`. Without an inbox, notifications are not sent and waits
    /// re-read on their timer alone.
    pub fn new(cluster: impl Into<String>, kube: kube::Client, store: Store) -> Self {
        Self {
            cluster: cluster.into(),
            kube,
            store,
            inbox: None,
            wakeups: Wakeups::new(),
            pump_inbox: true,
            tasks: ClusterTasks::default(),
            progress: Sender::noop(),
            clock: Arc::new(SystemClock),
            metrics: None,
            concerns: None,
        }
    }

    /// Hands every Kubernetes step to its concern's actor (through `concerns`, see
    /// [`crate::tasks::concerns`]) instead of running it in the operation's task.
    pub fn with_concerns(mut self, concerns: Concerns) -> Self {
        self.concerns = Some(concerns);
        self
    }

    /// Reports the handoff latency (target) and the UPTIME dual-active window (source) of
    /// each finished side to `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Sends notifications through `inbox` and, while a workflow runs, long-polls this
    /// cluster's queue of it for wake-ups.
    pub fn with_inbox(mut self, inbox: Inbox) -> Self {
        self.inbox = Some(inbox);
        self
    }

    /// Uses `wakeups` as the wake-up signal and leaves reading the inbox to whoever raises
    /// it (the agent's inbox actor), instead of long-polling it during each run.
    pub fn with_external_wakeups(mut self, wakeups: Wakeups) -> Self {
        self.wakeups = wakeups;
        self.pump_inbox = false;
        self
    }

    /// Configures the tasks (traffic annotation key, re-read interval, lease TTL).
    pub fn with_tasks_config(mut self, config: TasksConfig) -> Self {
        self.tasks = ClusterTasks::new(config);
        self
    }

    /// Reports the engine's progress to `progress`.
    pub fn with_progress(mut self, progress: Sender<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// Uses `clock` for task and journal times.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// This cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The wake-up signal waits listen to.
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// This cluster's role in `op`, if it takes part.
    pub fn role_in(&self, op: &Operation) -> Option<Role> {
        if op.source == op.target {
            None
        } else if op.source == self.cluster {
            Some(Role::Source)
        } else if op.target == self.cluster {
            Some(Role::Target)
        } else {
            None
        }
    }

    /// The seed's `ProcessFailover`: runs (or resumes) this cluster's side of `op`. See the
    /// module docs.
    ///
    /// Keeps the operation's `Failover` in this cluster current (see the module docs):
    /// created at the start, its status patched as stages and tasks start and finish, and its
    /// final phase written at the end. A status write that fails never fails the workflow.
    ///
    /// When the run fails in a way running again cannot mend
    /// ([`AdapterError::fails_operation`]: a deadline ran out), the operation is recorded as
    /// `Failed` with the error as its message ([`Store::fail_operation`]: the failure mark
    /// on the group state, which only lands while no promotion is claimed, then the
    /// operation item) and the other cluster is woken, so its waits end too. The group stays
    /// with the operation: `failoverctl abort` then rolls the source back, see
    /// [`Self::process_abort`]. When the group state holds a claim (this operation's, or an
    /// earlier one a forced start kept) nothing is recorded: the operation only goes forward
    /// and the run ends as [`AdapterError::Forward`], to be run again.
    pub async fn process_failover(&self, op: &Operation) -> Result<RunReport, AdapterError> {
        boxed(|| self.process(op, RunKind::Forward)).await
    }

    /// Rolls the source back after an abort granted before any promotion ([`Factory::rollback`]):
    /// volumes Primary again, workloads, CronJobs, Flux and traffic back on, then the
    /// operation closed as `Aborted`. Resumable like [`Self::process_failover`].
    pub async fn process_abort(&self, op: &Operation) -> Result<RunReport, AdapterError> {
        boxed(|| self.process(op, RunKind::Rollback)).await
    }

    /// Runs `kind` for `op`; see [`Self::process_failover`].
    pub async fn process(&self, op: &Operation, kind: RunKind) -> Result<RunReport, AdapterError> {
        let ctx = self.task_context(op)?;
        // The operation's `Failover` in this cluster follows the run's progress: its reporter
        // subscribes here and learns everything else from the stream.
        let (to_reporter, from_run) = crate::seam::channel::<Progress>();
        let reporter = FailoverReporter::open(self.kube.clone(), &self.cluster, op).await;
        // The engine journals in the same object the reporter keeps.
        let writer = reporter.writer();
        let journal = FailoverJournal::new(
            self.store.clone(),
            Arc::clone(&writer),
            &op.group.namespace,
            &self.cluster,
        );
        let outer = self.progress.clone();
        // Folded into the status here, before the engine's next step: its next journal write
        // carries it.
        let progress = Sender::from_fn(move |p: Progress| {
            writer.fold(&p);
            let _ = outer.send(p.clone());
            let _ = to_reporter.send(p);
        });
        // This side, then a failure running again cannot mend recorded (unless the promotion
        // is claimed: then it is retried forward), then the end of the stream: the operation
        // as stored (after a forward run that succeeded) and how the side ended. The stream
        // closes with it, and the reporter, having written the final status, returns too.
        let run = boxed(move || async move {
            let result = boxed(|| self.run_side(op, kind, &ctx, journal, progress.clone())).await;
            let result = match result {
                Err(e)
                    if kind == RunKind::Forward
                        && e.fails_operation()
                        && self.record_failure(op, &ctx, &e).await == Recorded::Claimed =>
                {
                    tracing::error!(
                        op = %op.id, cluster = %self.cluster, error = %error_chain(&e),
                        "a step failed after the promotion was claimed; the operation only goes forward: retrying on the next re-read"
                    );
                    Err(AdapterError::Forward {
                        op_id: op.id.clone(),
                        source: Box::new(e),
                    })
                }
                other => other,
            };
            if kind == RunKind::Forward
                && result.is_ok()
                && let Some(stored) = self.observe_finished(op, ctx.role()).await
            {
                self.report(&progress, op, ProgressEvent::Recorded(Box::new(stored)));
            }
            let side = match (kind, &result) {
                (RunKind::Rollback, Ok(_)) => SideResult::Aborted {
                    message: format!(
                        "operation {} aborted; cluster {} reactivated its side",
                        op.id, self.cluster
                    ),
                },
                _ => side_result(&result),
            };
            self.report(&progress, op, ProgressEvent::SideFinished(side));
            result
        });
        let follow = boxed(|| reporter.follow(from_run));
        let (result, ()) = tokio::join!(run, follow);
        result
    }

    /// The context this cluster's tasks get for `op`.
    fn task_context(&self, op: &Operation) -> Result<TaskContext, ContextError> {
        let workflow_ctx = WorkflowContext::from_operation(op, None, self.clock.now());
        let mut ctx = TaskContext::new(workflow_ctx, &self.cluster)?
            .with_clock(Arc::clone(&self.clock))
            .with_kube(self.kube.clone())
            .with_store(self.store.clone())
            .with_handle(self.wakeups.clone())
            .with_handle(RecordedReplicas::default())
            .with_handle(GroupRead::default())
            .with_handle(ClaimHeld::default())
            .with_handle(ValidatedState::default());
        if let Some(inbox) = &self.inbox {
            ctx = ctx.with_handle(inbox.clone());
        }
        if let Some(concerns) = &self.concerns {
            ctx = ctx.with_handle(concerns.clone());
        }
        Ok(ctx)
    }

    /// Sends `event` of `op` on this run's `progress` (best effort, as the engine's).
    fn report(&self, progress: &Sender<Progress>, op: &Operation, event: ProgressEvent) {
        let _ = progress.send(Progress {
            operation_id: op.id.clone(),
            cluster: self.cluster.clone(),
            at: self.clock.now(),
            event,
        });
    }

    /// Reads the finished operation back (returned, for the `Failover` status's timings)
    /// and reports its handoff latency (target) or its dual-active window (source of an
    /// UPTIME operation). Best effort.
    async fn observe_finished(&self, op: &Operation, role: Role) -> Option<Operation> {
        let stored = match self.store.get_operation_of(&op.group, &op.id).await {
            Ok(Some(o)) => o,
            _ => return None,
        };
        let Some(metrics) = &self.metrics else {
            return Some(stored);
        };
        match role {
            Role::Target => {
                if let Ok(handoffs) = self.store.list_handoffs_of(&op.group, &op.id).await
                    && let Some(latency) = stored.handoff_latency(&handoffs)
                {
                    metrics.handoff_latency(latency);
                }
            }
            Role::Source => {
                if let Some(window) = dual_active_window(&stored) {
                    metrics.dual_active_window(window);
                }
            }
        }
        Some(stored)
    }

    /// Records `error` on the operation as `Failed` ([`Store::fail_operation`]) and wakes
    /// the other cluster. The group state decides: with a claim on it the failure is not
    /// recorded ([`Recorded::Claimed`]: only forward). Otherwise best effort: when the write
    /// is refused (an abort came first, the epoch moved) or fails, that is logged and the
    /// run's error stands.
    async fn record_failure(
        &self,
        op: &Operation,
        ctx: &TaskContext,
        error: &AdapterError,
    ) -> Recorded {
        let message = error_chain(error);
        match self
            .store
            .fail_operation(&ctx.op_ref(), &self.cluster, &message)
            .await
        {
            Ok(Outcome::Done(())) => {
                tracing::warn!(op = %op.id, group = %op.group, cluster = %self.cluster, %message, "operation failed");
            }
            Ok(Outcome::PromotionClaimed { .. }) => return Recorded::Claimed,
            Ok(other) => {
                tracing::info!(op = %op.id, cluster = %self.cluster, answer = ?other, "the operation's failure was not recorded");
                return Recorded::Not;
            }
            Err(e) => {
                tracing::warn!(op = %op.id, cluster = %self.cluster, error = %error_chain(&e), "recording the operation's failure failed");
                return Recorded::Not;
            }
        }
        self.wake_peer_about_failure(op).await;
        Recorded::Failed
    }

    /// Wakes the other cluster of `op` after its failure was recorded (bounded, best effort).
    async fn wake_peer_about_failure(&self, op: &Operation) {
        let Some(inbox) = &self.inbox else { return };
        let peer = if op.source == self.cluster {
            &op.target
        } else {
            &op.source
        };
        let envelope = Envelope::for_operation(
            EnvelopeKind::Wake,
            &op.id,
            &op.group,
            op.epoch,
            &self.cluster,
            self.clock.now(),
        );
        let bound = failover_messages::inbox::NOTIFY_BOUND;
        match tokio::time::timeout(bound, inbox.send(peer, &envelope)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(op = %op.id, %peer, error = %error_chain(&e), "could not wake the other cluster about the failure");
            }
            Err(_) => {
                tracing::warn!(op = %op.id, %peer, ?bound, "waking the other cluster about the failure got no answer in time");
            }
        }
    }

    /// Steps 2–6 of [`Self::process_failover`], the engine reporting to `progress`.
    async fn run_side(
        &self,
        op: &Operation,
        kind: RunKind,
        ctx: &TaskContext,
        journal: FailoverJournal,
        progress: Sender<Progress>,
    ) -> Result<RunReport, AdapterError> {
        let role = ctx.role();
        let group = op.group.to_string();

        let api: Api<FailoverGroup> = Api::namespaced(self.kube.clone(), &op.group.namespace);
        let fg = boxed(|| api.get_opt(&op.group.name))
            .await
            .map_err(|source| AdapterError::ReadGroup {
                group: group.clone(),
                cluster: self.cluster.clone(),
                source,
            })?
            .ok_or_else(|| AdapterError::GroupNotFound {
                group: group.clone(),
                cluster: self.cluster.clone(),
            })?;

        let workflow = match kind {
            RunKind::Forward => Factory::build(op.mode, role, &fg.spec, op.force),
            RunKind::Rollback => Factory::rollback(op.mode, &fg.spec, op.force),
        }
        .map_err(|source| AdapterError::Plan {
            op_id: op.id.clone(),
            group: group.clone(),
            cluster: self.cluster.clone(),
            source,
        })?;
        let bound = workflow.bind(&self.tasks);
        let engine = Engine::new(journal).with_progress(progress);
        tracing::info!(
            op = %op.id, %group, cluster = %self.cluster, %role, mode = %op.mode, %kind,
            steps = workflow.steps().count(), "processing failover"
        );

        let bound = &bound;
        let run = boxed(move || async move { engine.run(bound, ctx).await });
        // The lease is renewed while this side works, so a live operation never looks
        // stalled; the renewal ends with the run.
        let renew = boxed(|| {
            renew_lease_while_running(
                self.store.clone(),
                ctx.op_ref(),
                self.cluster.clone(),
                self.tasks.config().lease_ttl,
            )
        });
        let run = boxed(|| async {
            tokio::select! {
                r = run => r,
                () = renew => unreachable!("the lease renewal never returns"),
            }
        });
        let report = match (&self.inbox, self.pump_inbox) {
            (Some(inbox), true) => {
                let pump = boxed(|| {
                    pump_inbox(
                        inbox.clone(),
                        self.wakeups.clone(),
                        wait_seconds(self.tasks.config()),
                        self.tasks.config().reread_interval,
                    )
                });
                tokio::select! {
                    r = run => r,
                    () = pump => unreachable!("the inbox pump never returns"),
                }
            }
            _ => run.await,
        }?;
        tracing::info!(op = %op.id, %group, cluster = %self.cluster, elapsed = ?report.elapsed, "failover side finished");
        Ok(report)
    }
}

/// Renews the operation's lease every third of `ttl`, with `holder` as holder, forever
/// (the caller drops it when its run ends). A renewal that is refused (the operation closed
/// or the epoch moved) or fails is logged; the workflow finds out on its own next write.
async fn renew_lease_while_running(
    store: Store,
    op: failover_messages::store::OpRef,
    holder: String,
    ttl: std::time::Duration,
) {
    let every = (ttl / 3).max(std::time::Duration::from_secs(1));
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tick.tick().await;
        match store.renew_lease(&op, &holder, ttl).await {
            Ok(Outcome::Done(lease)) => {
                tracing::debug!(op = %op.id, %holder, expires_at = %lease.expires_at, "lease renewed");
            }
            Ok(other) => {
                tracing::info!(op = %op.id, %holder, answer = ?other, "lease not renewed");
            }
            Err(e) => {
                tracing::warn!(op = %op.id, %holder, error = %error_chain(&e), "renewing the lease failed");
            }
        }
    }
}

/// The recorded UPTIME dual-active window, when both ends are recorded.
pub fn dual_active_window(op: &Operation) -> Option<std::time::Duration> {
    let (start, end) = (op.dual_active_started_at?, op.dual_active_ended_at?);
    end.duration_since(start)
        .try_into()
        .ok()
        .or(Some(std::time::Duration::ZERO))
}

/// Long-poll length: as long as the re-read interval (whole seconds, 1–20), so a dropped
/// receive never holds a message back for long.
fn wait_seconds(config: &TasksConfig) -> u32 {
    u32::try_from(config.reread_interval.as_secs())
        .unwrap_or(20)
        .clamp(1, 20)
}

/// How this side ended, from the result of a run (a forward run; a rollback that
/// succeeded is `Aborted`, see [`ManagerAdapter::process`]).
pub fn side_result<T>(result: &Result<T, AdapterError>) -> SideResult {
    match result {
        Ok(_) => SideResult::Succeeded,
        Err(e @ AdapterError::Run(EngineError::AbortRequested { .. })) => SideResult::Aborted {
            message: error_chain_without_repeats(e),
        },
        Err(e) => {
            let at = match e {
                AdapterError::Run(run) => run
                    .stage()
                    .zip(run.task())
                    .map(|(s, t)| (s.to_owned(), t.to_owned())),
                _ => None,
            };
            SideResult::Failed {
                at,
                message: error_chain_without_repeats(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use failover_messages::keys::GroupRef;
    use failover_messages::records::{Handoff, HandoffState, Mode, Phase};
    use jiff::{SignedDuration, Timestamp};

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_millis(ms)
    }

    fn op() -> Operation {
        Operation {
            id: "op".into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch: 2,
            mode: Mode::Consistency,
            source: "east".into(),
            target: "west".into(),
            force: false,
            source_is_down: false,
            reason: String::new(),
            requested_by: "test".into(),
            phase: Phase::Succeeded,
            requested_at: at(0),
            promotion_started_at: Some(at(1_040)),
            abort_requested_at: None,
            dual_active_started_at: None,
            dual_active_ended_at: None,
            finished_at: None,
            timings: Default::default(),
            original_replicas: Default::default(),
            message: None,
        }
    }

    fn handoff(volume: &str, epoch: u64, ready_ms: i64) -> Handoff {
        Handoff {
            op_id: "op".into(),
            volume: volume.into(),
            state: HandoffState::Promoted,
            epoch,
            writer: "east".into(),
            ready_at: Some(at(ready_ms)),
            promoted_at: None,
        }
    }

    #[test]
    fn the_handoff_latency_runs_from_the_last_ready_record_to_the_claim() {
        let hs = [
            handoff("a", 2, 1_000),
            handoff("b", 2, 1_010),
            handoff("c", 1, 1_039),
        ];
        assert_eq!(op().handoff_latency(&hs), Some(Duration::from_millis(30)));
        assert_eq!(op().handoff_latency(&[]), None);
        let mut unclaimed = op();
        unclaimed.promotion_started_at = None;
        assert_eq!(unclaimed.handoff_latency(&hs), None);
    }

    #[test]
    fn the_dual_active_window_needs_both_ends() {
        let mut o = op();
        assert_eq!(dual_active_window(&o), None);
        o.dual_active_started_at = Some(at(2_000));
        assert_eq!(dual_active_window(&o), None);
        o.dual_active_ended_at = Some(at(3_500));
        assert_eq!(dual_active_window(&o), Some(Duration::from_millis(1_500)));
    }

    #[test]
    fn adapter_errors_map_to_phases() {
        let abort: Result<(), AdapterError> = Err(AdapterError::Run(EngineError::AbortRequested {
            stage: "SourceShutdown".into(),
            task: "NetworkOff".into(),
            cluster: "east".into(),
            op_id: "op-1".into(),
            at: "2026-11-26T12:00:00Z".parse().unwrap(),
        }));
        assert!(matches!(side_result(&abort), SideResult::Aborted { .. }));
        let timeout: Result<(), AdapterError> =
            Err(AdapterError::Run(EngineError::DeadlineExceeded {
                stage: "VolumeDemotion".into(),
                task: "WaitSecondary".into(),
                object: None,
                cluster: "east".into(),
                after: Duration::from_secs(60),
                last_failure: None,
            }));
        match side_result(&timeout) {
            SideResult::Failed { at, message } => {
                assert_eq!(at, Some(("VolumeDemotion".into(), "WaitSecondary".into())));
                assert!(message.contains("WaitSecondary"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let missing: Result<(), AdapterError> = Err(AdapterError::GroupNotFound {
            group: "shop/orders".into(),
            cluster: "east".into(),
        });
        assert!(matches!(
            side_result(&missing),
            SideResult::Failed { at: None, .. }
        ));
        assert_eq!(
            side_result(&Ok::<(), AdapterError>(())),
            SideResult::Succeeded
        );
    }
}
