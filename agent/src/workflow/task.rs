//! [`WorkflowTask`], the seed's task interface (`Execute`, `GetName`, `GetDescription`);
//! what a task returns when it cannot finish is a [`TaskError`]
//! ([`task_error`](super::task_error)).
//!
//! Tasks are written with `async fn execute`; the engine holds them as [`BoxedTask`]
//! (`Arc<dyn DynWorkflowTask>`), so one stage can hold tasks of different types. Every type
//! implementing [`WorkflowTask`] is a [`DynWorkflowTask`] automatically.
//!
//! A [`TaskBuilder`] turns the plain-data [`Step`]s of a workflow into tasks (the seed's
//! injector `GetBaseTask`); the Kubernetes and AWS implementations come with the agent's
//! tasks, tests use fakes.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use super::context::TaskContext;
use super::definition::Step;
use super::task_error::TaskError;

/// One unit of work of a workflow.
///
/// # Contract
///
/// * **Idempotent.** `execute` may run any number of times for the same operation: after a
///   restart the engine re-runs every step whose journal entry is not `DONE`, and a step that
///   was interrupted (`STARTED`) may or may not have taken effect. So a task reads the
///   current state first and only changes what still differs ("set replicas to 0", never
///   "subtract 3"), and it converges to the same result however often it runs.
/// * **Look before acting after an interruption.** When [`TaskContext::attempt`] reports
///   an interrupted earlier attempt, the task must establish the current state before
///   changing anything. For a promotion this is the protocol's rule "never redo a promote
///   blindly": the task reads the VolumeReplication (and the operation's claim) and only
///   promotes if the handoff still allows it.
/// * **Bounded.** Waiting tasks wait for an event or poll with backoff; the engine cancels
///   them at their deadline (the future is dropped), so they hold no state that a drop could
///   leave half-written.
/// * **Honest errors.** A lost conditional write is reported as [`TaskError::StaleEpoch`]
///   or [`TaskError::AbortRequested`], never retried; anything else as
///   [`TaskError::Failed`] naming the object.
pub trait WorkflowTask: Send + Sync + 'static {
    /// Short name, e.g. `ScaleDown` (seed: `GetName`).
    fn name(&self) -> &str;

    /// One sentence for humans, naming the object (seed: `GetDescription`).
    fn description(&self) -> String;

    /// Does the work (seed: `Execute`). See the trait docs for the contract.
    fn execute(&self, ctx: &TaskContext) -> impl Future<Output = Result<(), TaskError>> + Send;
}

/// The object-safe form of [`WorkflowTask`], implemented for every task.
pub trait DynWorkflowTask: Send + Sync + 'static {
    /// See [`WorkflowTask::name`].
    fn name(&self) -> &str;
    /// See [`WorkflowTask::description`].
    fn description(&self) -> String;
    /// See [`WorkflowTask::execute`].
    fn execute<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<(), TaskError>>;
}

impl<T: WorkflowTask> DynWorkflowTask for T {
    fn name(&self) -> &str {
        WorkflowTask::name(self)
    }

    fn description(&self) -> String {
        WorkflowTask::description(self)
    }

    fn execute<'a>(&'a self, ctx: &'a TaskContext) -> BoxFuture<'a, Result<(), TaskError>> {
        Box::pin(WorkflowTask::execute(self, ctx))
    }
}

/// A task as the engine holds it.
pub type BoxedTask = Arc<dyn DynWorkflowTask>;

/// Boxes a task.
pub fn boxed(task: impl WorkflowTask) -> BoxedTask {
    Arc::new(task)
}

/// A task made of a name and a closure over an owned [`TaskContext`] (contexts are cheap
/// to clone). Handy for small tasks and for tests.
pub struct FnTask<F> {
    name: String,
    description: String,
    f: F,
}

impl<F> fmt::Debug for FnTask<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnTask").field("name", &self.name).finish()
    }
}

impl<F, Fut> FnTask<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    /// A task named `name` running `f`.
    pub fn new(name: impl Into<String>, description: impl Into<String>, f: F) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            f,
        }
    }
}

impl<F, Fut> WorkflowTask for FnTask<F>
where
    F: Fn(TaskContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> String {
        self.description.clone()
    }

    fn execute(&self, ctx: &TaskContext) -> impl Future<Output = Result<(), TaskError>> + Send {
        (self.f)(ctx.clone())
    }
}

/// Turns a workflow's [`Step`]s into tasks (the seed's injector `GetBaseTask`). Building
/// is infallible: a task that lacks a handle fails when it runs, naming the handle.
pub trait TaskBuilder: Send + Sync {
    /// The task that carries out `step`.
    fn task_for(&self, step: &Step) -> BoxedTask;
}

impl<F> TaskBuilder for F
where
    F: Fn(&Step) -> BoxedTask + Send + Sync,
{
    fn task_for(&self, step: &Step) -> BoxedTask {
        self(step)
    }
}
