//! [`TaskError`]: why a task did not finish. A leaf of the workflow: the contexts (a
//! missing handle), the tasks and the engine all name it, and it names none of them.

use failover_messages::store::Stale;
use jiff::Timestamp;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a task did not finish.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The work failed (a Kubernetes or AWS call, an object in an unexpected state).
    #[error("{message}")]
    Failed {
        /// The object concerned, e.g. `Deployment/orders-api`, when the task knows better
        /// than its step (a step touching several objects).
        object: Option<String>,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// The work cannot finish: a wait passed the step's deadline, the object reports a
    /// state waiting will not mend (a Degraded volume), or the request is refused in a way
    /// that repeats (the object does not exist, the request is forbidden or invalid).
    /// Running the step again would not help, so the operation is failed.
    #[error("{message}")]
    GaveUp {
        /// The object concerned, e.g. `VolumeReplication/orders-db-data`.
        object: Option<String>,
        /// What went wrong.
        message: String,
        /// The underlying error.
        #[source]
        source: Option<BoxError>,
    },
    /// A conditional write was refused because the group's epoch moved or the operation is
    /// no longer in flight: the engine stops at once and writes nothing more.
    #[error(
        "the operation is no longer current (acted at epoch {}, group now at {}, operation in flight {})",
        .0.expected_epoch,
        .0.current_epoch.map_or("none".to_owned(), |e| e.to_string()),
        .0.current_op.as_deref().unwrap_or("none")
    )]
    StaleEpoch(Stale),
    /// An abort was requested before this step's conditional write: no promotion may happen.
    #[error("an abort of the operation was requested at {at}")]
    AbortRequested {
        /// When the abort was requested.
        at: Timestamp,
    },
    /// The task needs a handle the agent did not provide.
    #[error("the task needs {what}, which this agent was not given")]
    MissingDependency {
        /// What is missing (e.g. `a Kubernetes client`).
        what: &'static str,
    },
}

impl TaskError {
    /// A failure described by `message`.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed {
            object: None,
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by `source`, described by `message`.
    pub fn caused_by(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Failed {
            object: None,
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }

    /// Names the object concerned (only for [`TaskError::Failed`]).
    pub fn on(self, object: impl Into<String>) -> Self {
        match self {
            Self::Failed {
                message, source, ..
            } => Self::Failed {
                object: Some(object.into()),
                message,
                source,
            },
            other => other,
        }
    }

    /// The object the task named, if it did.
    pub fn object(&self) -> Option<&str> {
        match self {
            Self::Failed { object, .. } | Self::GaveUp { object, .. } => object.as_deref(),
            _ => None,
        }
    }

    /// True when running the step again cannot help ([`TaskError::GaveUp`]).
    pub fn is_final(&self) -> bool {
        matches!(self, Self::GaveUp { .. })
    }
}
