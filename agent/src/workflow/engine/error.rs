//! [`EngineError`]: why a workflow stopped, naming the stage, the task, the object and the
//! cluster.

use std::time::Duration;

use failover_messages::store::Stale;
use jiff::Timestamp;

use super::super::journal::JournalError;
use super::super::task_error::TaskError;

/// Why a workflow stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A task failed.
    #[error(
        "task {task} (stage {stage}) failed on {} in cluster {cluster}",
        object.as_deref().unwrap_or("no single object")
    )]
    TaskFailed {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// The object, from the task's error or else from the step.
        object: Option<String>,
        /// This cluster.
        cluster: String,
        /// What the task reported.
        #[source]
        source: TaskError,
    },
    /// A task did not finish in time.
    #[error(
        "task {task} (stage {stage}) on {} in cluster {cluster} did not finish within its limit of {after:?}, counted from its first start{}",
        object.as_deref().unwrap_or("no single object"),
        last_failure.as_deref().map(|m| format!("; its last attempt failed: {m}")).unwrap_or_default()
    )]
    DeadlineExceeded {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// The object the step touches.
        object: Option<String>,
        /// This cluster.
        cluster: String,
        /// The limit that ran out (the stage's, or the step's own), counted from the first
        /// start the journal recorded.
        after: Duration,
        /// The error an earlier attempt of the step was journaled `FAILED` with, if any (what
        /// kept it from finishing).
        last_failure: Option<String>,
    },
    /// A conditional write (the journal's or the task's) was refused: the group's epoch
    /// moved or the operation is no longer in flight. Nothing more was written.
    #[error(
        "operation {op_id} is no longer current (epoch {}, group now at {}, in flight {}); cluster {cluster} stopped at task {task} (stage {stage})",
        stale.expected_epoch,
        stale.current_epoch.map_or("none".to_owned(), |e| e.to_string()),
        stale.current_op.as_deref().unwrap_or("none")
    )]
    StaleEpoch {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// This cluster.
        cluster: String,
        /// The operation.
        op_id: String,
        /// Where the group state stood.
        stale: Stale,
    },
    /// An abort was requested before the task's conditional write.
    #[error(
        "operation {op_id}: an abort was requested at {at}; cluster {cluster} stopped at task {task} (stage {stage})"
    )]
    AbortRequested {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// This cluster.
        cluster: String,
        /// The operation.
        op_id: String,
        /// When the abort was requested.
        at: Timestamp,
    },
    /// The journal could not be written; the step did not run (intent) or its outcome is
    /// unrecorded (it stays `STARTED` and is checked again on resume).
    #[error("journaling the {what} of task {task} (stage {stage}) in cluster {cluster}")]
    Journal {
        /// `intent` or `outcome`.
        what: &'static str,
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// This cluster.
        cluster: String,
        /// The journal's error.
        #[source]
        source: JournalError,
    },
    /// The journal could not be read at the start.
    #[error("reading the journal of cluster {cluster} for operation {op_id}")]
    ReadJournal {
        /// This cluster.
        cluster: String,
        /// The operation.
        op_id: String,
        /// The journal's error.
        #[source]
        source: JournalError,
    },
    /// The journal answered something a journal write cannot answer.
    #[error(
        "the journal answered {answer} to the {what} of task {task} (stage {stage}) in cluster {cluster}"
    )]
    UnexpectedJournalAnswer {
        /// `intent` or `outcome`.
        what: &'static str,
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// This cluster.
        cluster: String,
        /// The answer, rendered.
        answer: String,
    },
}

impl EngineError {
    /// The stage key of the step the workflow stopped at (`None`: before the first).
    pub fn stage(&self) -> Option<&str> {
        match self {
            Self::TaskFailed { stage, .. }
            | Self::DeadlineExceeded { stage, .. }
            | Self::StaleEpoch { stage, .. }
            | Self::AbortRequested { stage, .. }
            | Self::Journal { stage, .. }
            | Self::UnexpectedJournalAnswer { stage, .. } => Some(stage),
            Self::ReadJournal { .. } => None,
        }
    }

    /// The key of the step the workflow stopped at (`None`: before the first).
    pub fn task(&self) -> Option<&str> {
        match self {
            Self::TaskFailed { task, .. }
            | Self::DeadlineExceeded { task, .. }
            | Self::StaleEpoch { task, .. }
            | Self::AbortRequested { task, .. }
            | Self::Journal { task, .. }
            | Self::UnexpectedJournalAnswer { task, .. } => Some(task),
            Self::ReadJournal { .. } => None,
        }
    }

    /// True when the operation is no longer this agent's to work on (stale epoch, closed,
    /// or aborted): the caller must not write anything more for it.
    pub fn must_stop_working(&self) -> bool {
        matches!(self, Self::StaleEpoch { .. } | Self::AbortRequested { .. })
    }
}
