//! The agent's real tasks: [`ClusterTasks`], the [`TaskBuilder`] that turns every
//! [`Step`] of a workflow into work on this cluster's Kubernetes API ([`crate::kube_ops`]),
//! the DynamoDB [`Store`](failover_messages::store::Store) and the SQS
//! [`Inbox`](failover_messages::inbox::Inbox). One file per group of steps:
//!
//! | group | file | done with |
//! |---|---|---|
//! | [`Step::Kube`]: traffic, Flux, workloads, CronJobs, volumes | `kube.rs` | [`crate::kube_ops`], stamped with the operation's epoch and id, on the actor of the step's concern ([`concerns`]) |
//! | [`Step::Record`]: `ValidateOperation`, `RenewLease`, `RecordReplicas`, `MarkAllReady`, `ClaimPromotion`, `MarkPromoted`, `RecordDualActive`, `CompleteOperation`, `FinishAbort` | `record.rs` | the store's conditional writes (each conditioned on the group's epoch) |
//! | [`Step::Wait`]: `WaitAllReady`, `WaitPeer`, `WaitOperationClosed`; `WaitSourceReleased` (forced target) | `wait.rs`, `release.rs` | [`wake::wait_until`]: an SQS wake-up or the re-read timer, then a consistent read; the forced wait also times the other clusters' serving leases |
//! | [`Step::Notify`]: `Notify`, `UpdateGroupStatus` | `notify.rs` | an envelope to the peer's inbox (a hint; a send failure is logged, not fatal); the `FailoverGroup` status subresource in this cluster |
//! | [`Step::Check`]: `Preflight` | `check.rs` | reads of this cluster's objects ([`crate::kube_ops::preflight`]) and the group's replica records; changes nothing |
//!
//! What the groups share (the configuration, clients, error mapping, the guards that the
//! operation is still current) is in `support.rs`; the operation's timings, computed when it
//! completes, in [`timings`]. The group files import `support.rs` (and [`wake`],
//! [`timings`]), never this `mod.rs`, which dispatches to them.
//!
//! What a task needs comes from its [`TaskContext`]: `kube()`, `store()`, and the handles
//! `Inbox` (for `Notify`), [`Wakeups`] (optional: without it waits re-read on the timer
//! alone) and [`Concerns`] (optional: without it Kubernetes steps run in the operation's
//! task). A lost conditional write becomes [`TaskError::StaleEpoch`] /
//! [`TaskError::AbortRequested`], which stops the engine; nothing is retried.

mod check;
pub mod concerns;
mod kube;
mod notify;
mod record;
mod release;
mod support;
pub mod timings;
mod wait;
pub mod wake;

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::workflow::{BoxedTask, Step, TaskBuilder, TaskContext, TaskError, WorkflowTask, boxed};

use self::concerns::{ConcernJob, Concerns};
pub use self::support::{
    ClaimHeld, GroupRead, LeaseSightings, RecordedReplicas, TasksConfig, ValidatedState,
};
pub use self::wake::{Check, DEFAULT_REREAD_INTERVAL, Wakeups, pump_inbox, wait_until};

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
        if let Step::Kube(step) = &self.step
            && let Ok(concerns) = ctx.handle::<Concerns>()
        {
            let concern = step.concern();
            let (step, config, task_ctx) = (step.clone(), Arc::clone(&self.config), ctx.clone());
            let job = ConcernJob {
                operation: ctx.workflow().operation_id.clone(),
                object: step.object(),
                work: Box::pin(async move { kube::run(&step, &config, &task_ctx).await }),
            };
            return concerns.run(concern, job).await;
        }
        run(&self.step, &self.config, ctx).await
    }
}

/// Carries out `step`: one arm per group, each group's tasks in a file of its own.
///
/// Each arm's future is boxed on its own: in a debug build an `async` `match` reserves
/// stack for every arm's future at once, on every poll.
fn run<'a>(
    step: &'a Step,
    config: &'a TasksConfig,
    ctx: &'a TaskContext,
) -> BoxFuture<'a, Result<(), TaskError>> {
    match step {
        Step::Kube(s) => kube::run(s, config, ctx),
        Step::Record(s) => record::run(s, config, ctx),
        Step::Wait(s) => wait::run(s, config, ctx),
        Step::Notify(s) => Box::pin(notify::run(s, ctx)),
        Step::Check(s) => Box::pin(check::run(s, ctx)),
    }
}

#[cfg(test)]
mod tests;
