//! The handles through which Kubernetes steps reach the actors of their concerns
//! ([`Concerns`], a task-context handle of [`AsyncSender`]s) and the job they hand over
//! ([`ConcernJob`]: the step's work, a plain future). Which step belongs to which concern is
//! [`KubeStep::concern`](crate::workflow::KubeStep::concern); the actors themselves are the
//! runtime's (`runtime/concerns.rs`). Without a [`Concerns`] handle in the task context
//! (in-process tests), steps run directly in the operation's task.

use std::fmt;

use futures::future::BoxFuture;

use crate::seam::AsyncSender;
use crate::workflow::{Concern, TaskError};

/// One step's work on a concern's objects.
pub struct ConcernJob {
    /// The operation it is for.
    pub operation: String,
    /// The object it touches (for errors and logs).
    pub object: String,
    /// The work.
    pub work: BoxFuture<'static, Result<(), TaskError>>,
}

impl fmt::Debug for ConcernJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConcernJob")
            .field("operation", &self.operation)
            .field("object", &self.object)
            .finish_non_exhaustive()
    }
}

/// A concern actor's handle.
pub type ConcernHandle = AsyncSender<ConcernJob, Result<(), TaskError>>;

/// The four concern handles, as a task-context handle.
#[derive(Clone)]
pub struct Concerns {
    handles: Vec<(Concern, ConcernHandle)>,
}

impl fmt::Debug for Concerns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.handles.iter().map(|(c, _)| c))
            .finish()
    }
}

impl Concerns {
    /// Handles for every concern (tests may pass channel-backed ones).
    pub fn new(handles: Vec<(Concern, ConcernHandle)>) -> Self {
        Self { handles }
    }

    /// Hands `job` to `concern`'s actor and waits for its result.
    pub async fn run(&self, concern: Concern, job: ConcernJob) -> Result<(), TaskError> {
        let Some((_, handle)) = self.handles.iter().find(|(c, _)| *c == concern) else {
            return Err(TaskError::MissingDependency {
                what: "a concern actor for this step",
            });
        };
        let object = job.object.clone();
        handle.ask(job).await.map_err(|e| {
            TaskError::failed(format!(
                "the {concern} actor did not answer for {object}: {e}"
            ))
        })?
    }
}

/// The `outcome` label of a finished job.
pub fn job_outcome(r: &Result<(), TaskError>) -> &'static str {
    match r {
        Ok(()) => "done",
        Err(TaskError::GaveUp { .. }) => "gave_up",
        Err(_) => "failed",
    }
}
