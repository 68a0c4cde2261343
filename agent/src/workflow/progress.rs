//! What a run reports while it runs ([`Progress`], sent through a
//! [`seam::Sender`](crate::seam::Sender)) and what the engine returns when it is done
//! ([`RunReport`]), so the agent can keep the `Failover` status and the metrics current.
//!
//! The engine sends the stage and task events; whoever runs the workflow (the agent's
//! adapter) ends the stream with what only it knows: the operation record as stored after
//! the run ([`ProgressEvent::Recorded`]) and how this cluster's side ended
//! ([`ProgressEvent::SideFinished`]). A subscriber (the `Failover` reporter) needs nothing
//! but the stream.

use std::time::Duration;

use failover_messages::records::{Operation, StepStatus};
use jiff::Timestamp;

/// One progress event of one operation on one cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// The operation.
    pub operation_id: String,
    /// The cluster running it.
    pub cluster: String,
    /// When it happened (injected clock).
    pub at: Timestamp,
    /// What happened.
    pub event: ProgressEvent,
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A stage began.
    StageStarted {
        /// Journal key, e.g. `SourceShutdown`.
        stage: String,
        /// Number in the operation's mode.
        number: u8,
        /// The seed's name, e.g. `Source Cluster Shutdown`.
        title: String,
    },
    /// A stage finished; `elapsed` is its time in this run.
    StageFinished {
        /// Journal key.
        stage: String,
        /// Time spent in this run.
        elapsed: Duration,
    },
    /// A step began.
    TaskStarted {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// The object it touches.
        object: Option<String>,
        /// The journaled status of an earlier attempt (`STARTED`: interrupted).
        previous: Option<StepStatus>,
    },
    /// A step was skipped because the journal shows it `DONE`.
    TaskSkipped {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
    },
    /// A step finished.
    TaskFinished {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// How long it ran.
        elapsed: Duration,
    },
    /// A step failed (or ran out of time); the workflow stops.
    TaskFailed {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// How long it ran.
        elapsed: Duration,
        /// The error, rendered.
        error: String,
    },
    /// The operation record as stored after this cluster's run (sent before
    /// [`ProgressEvent::SideFinished`] when the run succeeded and the record could be read):
    /// what only the record knows, e.g. the downtime and the dual-active window.
    Recorded(Box<Operation>),
    /// This cluster's side ended (the last event of a run).
    SideFinished(SideResult),
}

/// How this cluster's side of an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideResult {
    /// The workflow ran to its end.
    Succeeded,
    /// An abort stopped it.
    Aborted {
        /// What happened, rendered.
        message: String,
    },
    /// It failed (or could not start).
    Failed {
        /// Where it stopped: (stage, task), when it got that far.
        at: Option<(String, String)>,
        /// What happened, rendered (names the failing task).
        message: String,
    },
}

impl ProgressEvent {
    /// A step that ended: its stage, task, outcome (`done` or `failed`) and how long it ran,
    /// for the step-duration metric; `None` for other events.
    pub fn step_outcome(&self) -> Option<(&str, &str, &'static str, Duration)> {
        match self {
            Self::TaskFinished {
                stage,
                task,
                elapsed,
            } => Some((stage, task, "done", *elapsed)),
            Self::TaskFailed {
                stage,
                task,
                elapsed,
                ..
            } => Some((stage, task, "failed", *elapsed)),
            _ => None,
        }
    }
}

/// How one step went in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepReport {
    /// It ran and finished.
    Ran {
        /// Step key.
        task: String,
        /// How long it ran.
        elapsed: Duration,
    },
    /// The journal showed it `DONE`; it did not run.
    Skipped {
        /// Step key.
        task: String,
    },
}

impl StepReport {
    /// The step key.
    pub fn task(&self) -> &str {
        match self {
            Self::Ran { task, .. } | Self::Skipped { task } => task,
        }
    }
}

/// How one stage went in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageReport {
    /// Journal key.
    pub stage: String,
    /// Number in the operation's mode.
    pub number: u8,
    /// Time spent in this run.
    pub elapsed: Duration,
    /// Its steps.
    pub steps: Vec<StepReport>,
}

/// A finished run: every stage's and step's time, for the operation's timings and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// The stages, in order.
    pub stages: Vec<StageReport>,
    /// The whole run.
    pub elapsed: Duration,
}

impl RunReport {
    /// Keys of the steps that ran, in order.
    pub fn ran(&self) -> Vec<&str> {
        self.steps(|s| matches!(s, StepReport::Ran { .. }))
    }

    /// Keys of the steps skipped because they were done, in order.
    pub fn skipped(&self) -> Vec<&str> {
        self.steps(|s| matches!(s, StepReport::Skipped { .. }))
    }

    fn steps(&self, keep: impl Fn(&StepReport) -> bool) -> Vec<&str> {
        self.stages
            .iter()
            .flat_map(|s| &s.steps)
            .filter(|s| keep(s))
            .map(StepReport::task)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_steps_give_the_step_duration_labels_and_other_events_none() {
        let finished = ProgressEvent::TaskFinished {
            stage: "SourceShutdown".into(),
            task: "TrafficOff".into(),
            elapsed: Duration::from_millis(20),
        };
        assert_eq!(
            finished.step_outcome(),
            Some((
                "SourceShutdown",
                "TrafficOff",
                "done",
                Duration::from_millis(20)
            ))
        );
        let failed = ProgressEvent::TaskFailed {
            stage: "S".into(),
            task: "T".into(),
            elapsed: Duration::from_secs(1),
            error: "boom".into(),
        };
        assert_eq!(
            failed.step_outcome(),
            Some(("S", "T", "failed", Duration::from_secs(1)))
        );
        let skipped = ProgressEvent::TaskSkipped {
            stage: "S".into(),
            task: "T".into(),
        };
        assert_eq!(skipped.step_outcome(), None);
    }
}
