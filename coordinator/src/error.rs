//! Why a `failoverctl` command failed: one enum for the command layer, each variant naming
//! the group, cluster, queue or table involved, with the lower layer's error as its source.
//!
//! [`CommandError::exit_status`] sorts each error into a category ([`ExitStatus`]);
//! [`report`] renders an error with its cause chain the way `failoverctl` prints it on
//! stderr. A refusal that the protocol expects (the group is active elsewhere) is an error
//! here only because it ends the command with a non-zero exit code; the store reports it as
//! an outcome.

use std::error::Error as StdError;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use failover_messages::inbox::InboxError;
use failover_messages::keys::GroupRef;
use failover_messages::setup::SetupError;
use failover_messages::store::{Cause, StoreError};

use crate::exit::ExitStatus;

/// A command that failed, or was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Neither `--region`, `AWS_REGION` nor the AWS profile names a region.
    #[error(
        "no AWS region is configured: pass --region, set AWS_REGION, or set a region in the AWS profile"
    )]
    NoRegion,
    /// Flags that contradict each other.
    #[error("{0}")]
    Usage(String),
    /// Creating or verifying the table failed.
    #[error("setting up table {table}")]
    SetupTable {
        /// The table.
        table: String,
        /// What failed.
        #[source]
        source: SetupError,
    },
    /// Creating or verifying a cluster's inbox and dead-letter queue failed.
    #[error("setting up the SQS queues of cluster {cluster}")]
    SetupQueues {
        /// The cluster.
        cluster: String,
        /// What failed.
        #[source]
        source: InboxError,
    },
    /// Looking up a cluster's queue failed (other than the queue missing).
    #[error("looking up SQS queue {queue} of cluster {cluster}")]
    LookUpQueue {
        /// The cluster.
        cluster: String,
        /// The queue.
        queue: String,
        /// The SQS error.
        #[source]
        source: Box<SdkError<GetQueueUrlError>>,
    },
    /// The cluster has no inbox queue, so no agent can run for it.
    #[error(
        "unknown cluster {cluster}: its inbox queue {queue} does not exist (set it up with `failoverctl setup --cluster {cluster}`, or check --queue-prefix)"
    )]
    UnknownCluster {
        /// The cluster.
        cluster: String,
        /// The queue looked for.
        queue: String,
    },
    /// The group is registered with another active cluster.
    #[error(
        "group {group} is already registered in table {table} with active cluster {active}; refusing to make {requested} active (moving a group takes a failover)"
    )]
    ActiveElsewhere {
        /// The group.
        group: GroupRef,
        /// The table.
        table: String,
        /// The cluster that is active.
        active: String,
        /// The cluster asked for.
        requested: String,
    },
    /// The group has no state record.
    #[error(
        "group {group} is not registered in table {table} (register it with `failoverctl register {group} --active <cluster>`)"
    )]
    GroupNotFound {
        /// The group.
        group: GroupRef,
        /// The table.
        table: String,
    },
    /// DynamoDB says the table does not exist.
    #[error(
        "table {table} does not exist (create it with `failoverctl setup --table {table} --cluster <name>`, or check --table, --region and --endpoint-url)"
    )]
    TableNotFound {
        /// The table.
        table: String,
        /// The store call that found out.
        #[source]
        source: StoreError,
    },
    /// The store refused to start an operation on a group (another operation holds it, the
    /// group is active elsewhere, suspended, or a promotion is claimed).
    #[error("refusing to fail over group {group}: {why}")]
    StartRefused {
        /// The group.
        group: GroupRef,
        /// Why, naming the holder or the active cluster.
        why: String,
    },
    /// No operation record with this id.
    #[error("operation {op_id} does not exist in table {table} (check the id and --table)")]
    OperationNotFound {
        /// The operation id.
        op_id: String,
        /// The table.
        table: String,
    },
    /// An abort was refused by the protocol (promotion claimed, operation closed).
    #[error("refusing to abort operation {op_id}: {why}")]
    AbortRefused {
        /// The operation id.
        op_id: String,
        /// Why.
        why: String,
    },
    /// Writing an output file failed.
    #[error("writing {}", path.display())]
    WriteFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A store call failed.
    #[error(transparent)]
    Store(StoreError),
}

impl CommandError {
    /// A store error, as [`CommandError::TableNotFound`] when DynamoDB said the table is
    /// missing.
    pub fn from_store(table: &str, error: StoreError) -> Self {
        match error.cause() {
            Cause::Aws(aws) if aws.is_resource_not_found() => Self::TableNotFound {
                table: table.to_owned(),
                source: error,
            },
            _ => Self::Store(error),
        }
    }

    /// The category, and so the exit code.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            Self::NoRegion | Self::Usage(_) => ExitStatus::Usage,
            Self::SetupTable { source, .. } => match source {
                SetupError::NotActive { .. } => ExitStatus::TimedOut,
                SetupError::WrongSchema { .. } | SetupError::GlobalTable { .. } => {
                    ExitStatus::Refused
                }
                _ => ExitStatus::Failed,
            },
            Self::SetupQueues { source, .. } => match source {
                InboxError::InvalidQueueName { .. } | InboxError::InvalidOptions { .. } => {
                    ExitStatus::Usage
                }
                _ => ExitStatus::Failed,
            },
            Self::LookUpQueue { .. } => ExitStatus::Failed,
            Self::UnknownCluster { .. } | Self::GroupNotFound { .. } => ExitStatus::NotFound,
            Self::TableNotFound { .. } => ExitStatus::NotFound,
            Self::ActiveElsewhere { .. } => ExitStatus::Refused,
            Self::StartRefused { .. } | Self::AbortRefused { .. } => ExitStatus::Refused,
            Self::OperationNotFound { .. } => ExitStatus::NotFound,
            Self::WriteFile { .. } => ExitStatus::Failed,
            Self::Store(e) => match e.cause() {
                Cause::Contention { .. } => ExitStatus::Refused,
                Cause::InvalidName(_) | Cause::Invalid(_) => ExitStatus::Usage,
                Cause::Aws(aws) if aws.is_resource_not_found() => ExitStatus::NotFound,
                _ => ExitStatus::Failed,
            },
        }
    }
}

/// An error and its causes, as printed on stderr:
///
/// ```text
/// error: listing groups in table failover
///   caused by: DynamoDB Query failed after 5 attempt(s): could not send the request
///   caused by: dispatch failure
/// ```
///
/// A cause whose message repeats the one before it is left out.
pub fn report(error: &(dyn StdError + 'static)) -> String {
    let mut out = format!("error: {error}\n");
    let mut last = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && text != last {
            out.push_str("  caused by: ");
            out.push_str(&text);
            out.push('\n');
        }
        last = text;
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{msg}")]
    struct Chain {
        msg: &'static str,
        #[source]
        source: Option<Box<Chain>>,
    }

    fn chain(msgs: &[&'static str]) -> Chain {
        let mut error: Option<Box<Chain>> = None;
        for msg in msgs.iter().rev() {
            error = Some(Box::new(Chain { msg, source: error }));
        }
        *error.unwrap()
    }

    #[test]
    fn report_prints_the_cause_chain_without_repeats() {
        let e = chain(&[
            "listing groups in table t",
            "io error",
            "io error",
            "refused",
        ]);
        assert_eq!(
            report(&e),
            "error: listing groups in table t\n  caused by: io error\n  caused by: refused\n"
        );
    }

    #[test]
    fn refusals_and_unknown_names_have_their_own_exit_codes() {
        let group: GroupRef = "shop/orders".parse().unwrap();
        let refused = CommandError::ActiveElsewhere {
            group: group.clone(),
            table: "t".into(),
            active: "east".into(),
            requested: "west".into(),
        };
        assert_eq!(refused.exit_status(), ExitStatus::Refused);
        let msg = refused.to_string();
        assert!(msg.contains("shop/orders") && msg.contains("east") && msg.contains("table t"));
        let missing = CommandError::GroupNotFound {
            group,
            table: "t".into(),
        };
        assert_eq!(missing.exit_status(), ExitStatus::NotFound);
        assert!(missing.to_string().contains("shop/orders"));
        let cluster = CommandError::UnknownCluster {
            cluster: "north".into(),
            queue: "failover-north".into(),
        };
        assert_eq!(cluster.exit_status(), ExitStatus::NotFound);
        assert!(cluster.to_string().contains("north"));
        assert_eq!(CommandError::NoRegion.exit_status(), ExitStatus::Usage);
    }

    #[test]
    fn setup_errors_are_sorted_by_what_went_wrong() {
        let timed_out = CommandError::SetupTable {
            table: "t".into(),
            source: SetupError::NotActive {
                table: "t".into(),
                status: "CREATING".into(),
                waited: std::time::Duration::from_secs(300),
            },
        };
        assert_eq!(timed_out.exit_status(), ExitStatus::TimedOut);
        let conflict = CommandError::SetupTable {
            table: "t".into(),
            source: SetupError::WrongSchema {
                table: "t".into(),
                problem: "no index".into(),
            },
        };
        assert_eq!(conflict.exit_status(), ExitStatus::Refused);
        assert!(report(&conflict).contains("caused by: table t exists but"));
    }
}
