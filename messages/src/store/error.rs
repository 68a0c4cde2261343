//! Errors of the store: one enum, a variant per failed store operation.
//!
//! Each [`StoreError`] variant is named after the operation that failed and names the group,
//! operation, cluster and table involved; its [`Cause`] (available through
//! `std::error::Error::source`) says what went wrong underneath: a DynamoDB call that failed
//! for good ([`AwsError`]), an item in the table that is not a valid record
//! ([`DecodeError`]), or invalid input.
//!
//! A lost conditional write is **not** an error: it is an [`Outcome`](super::Outcome).

use aws_sdk_dynamodb::error::{BuildError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use super::retry::{self, FailureKind};
use crate::keys::{GroupRef, KeyError};
use crate::records::DecodeError;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A DynamoDB call that failed for good (after the retries the policy allows).
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB {api} failed after {attempts} attempt(s): {detail}")]
pub struct AwsError {
    /// The API called (`TransactWriteItems`, `GetItem`, …).
    pub api: &'static str,
    /// The service error code, when DynamoDB answered.
    pub code: Option<String>,
    /// How the failure was classified.
    pub kind: FailureKind,
    /// Attempts made.
    pub attempts: u32,
    detail: String,
    #[source]
    source: BoxError,
}

impl AwsError {
    /// Wraps an SDK error.
    pub(crate) fn new<E>(
        api: &'static str,
        attempts: u32,
        kind: FailureKind,
        err: SdkError<E>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let code = err.code().map(str::to_owned);
        let detail = match &err {
            SdkError::ServiceError(_) => format!(
                "{}: {}",
                code.as_deref().unwrap_or("unknown error"),
                err.message().unwrap_or("(no message)")
            ),
            SdkError::TimeoutError(_) => "timed out".to_owned(),
            SdkError::DispatchFailure(_) => "could not send the request".to_owned(),
            SdkError::ResponseError(_) => "could not read the response".to_owned(),
            SdkError::ConstructionFailure(_) => "could not build the request".to_owned(),
            _ => DisplayErrorContext(&err).to_string(),
        };
        Self {
            api,
            code,
            kind,
            attempts,
            detail,
            source: Box::new(err),
        }
    }

    /// True when DynamoDB said the table (or index) does not exist.
    pub fn is_resource_not_found(&self) -> bool {
        self.code.as_deref() == Some("ResourceNotFoundException")
    }
}

/// Classifies an SDK error for retrying.
pub(crate) fn failure_kind<E: ProvideErrorMetadata>(err: &SdkError<E>) -> FailureKind {
    match err {
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => FailureKind::Transport,
        SdkError::DispatchFailure(d) if !d.is_user() => FailureKind::Transport,
        SdkError::ServiceError(s) => {
            retry::classify(err.code(), Some(s.raw().status().as_u16()), false)
        }
        _ => FailureKind::Other,
    }
}

/// What went wrong underneath a [`StoreError`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// A DynamoDB call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// An item in the table is not a valid record.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A name given by the caller is not valid in a key.
    #[error(transparent)]
    InvalidName(#[from] KeyError),
    /// The request is invalid.
    #[error("{0}")]
    Invalid(String),
    /// The SDK refused to build the request.
    #[error("building the request: {0}")]
    Build(#[from] BuildError),
    /// The group state kept changing under the start; nothing was written.
    #[error("the group state changed {attempts} times while starting; nothing was started")]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
}

/// A store operation that failed. Lost conditional writes are outcomes, not errors.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // the fields are the names in the messages
pub enum StoreError {
    #[error("registering group {group} in table {table}")]
    RegisterGroup {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("setting suspended on group {group} in table {table}")]
    SetSuspended {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("starting operation {op_id} on group {group} in table {table}")]
    StartOperation {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("renewing the lease of operation {op_id} on group {group} in table {table}")]
    RenewLease {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the state of group {group} from table {table}")]
    GetGroupState {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading operation {op_id} from table {table}")]
    GetOperation {
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("listing the handoff records of operation {op_id} in table {table}")]
    ListHandoffs {
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error(
        "putting the READY_FOR_PROMOTION records of operation {op_id} (group {group}, by {writer}) in table {table}"
    )]
    PutHandoffRecord {
        group: GroupRef,
        op_id: String,
        writer: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("claiming the promotion of operation {op_id} on group {group} in table {table}")]
    ClaimPromotion {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("marking volume {volume} of operation {op_id} PROMOTED in table {table}")]
    MarkPromoted {
        op_id: String,
        volume: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error(
        "publishing stage {stage} of {cluster}'s journal for operation {op_id} in table {table}"
    )]
    PublishStage {
        op_id: String,
        cluster: String,
        stage: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("noting the wait of {cluster}/{stage}/{task} for operation {op_id} in table {table}")]
    JournalNote {
        op_id: String,
        cluster: String,
        stage: String,
        task: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the journal of cluster {cluster} for operation {op_id} from table {table}")]
    ReadJournal {
        op_id: String,
        cluster: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("recording the original replicas of operation {op_id} in table {table}")]
    RecordOriginalReplicas {
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("completing operation {op_id} on group {group} in table {table}")]
    CompleteOperation {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("requesting an abort of operation {op_id} in table {table}")]
    RequestAbort {
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("closing aborted operation {op_id} on group {group} in table {table}")]
    FinishAbort {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("recording the dual-active window of operation {op_id} in table {table}")]
    RecordDualActive {
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("recording the failure of operation {op_id} on group {group} in table {table}")]
    FailOperation {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("setting the phase of operation {op_id} to {phase} in table {table}")]
    SetPhase {
        op_id: String,
        phase: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("writing the heartbeat of cluster {cluster} to table {table}")]
    PutHeartbeat {
        cluster: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("marking group {group} ready for promotion in operation {op_id} (table {table})")]
    MarkGroupReady {
        group: GroupRef,
        op_id: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("recording the known replica counts of group {group} in table {table}")]
    RecordKnownReplicas {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the known replica counts of group {group} from table {table}")]
    GetKnownReplicas {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("writing the inbox route of cluster {cluster} to table {table}")]
    PutInboxRoute {
        cluster: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the inbox route of cluster {cluster} from table {table}")]
    GetInboxRoute {
        cluster: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the heartbeat of cluster {cluster} from table {table}")]
    GetHeartbeat {
        cluster: String,
        table: String,
        #[source]
        source: Cause,
    },
    #[error("listing cluster heartbeats in table {table}")]
    ListHeartbeats {
        table: String,
        #[source]
        source: Cause,
    },
    #[error("listing groups in table {table}")]
    ListGroups {
        table: String,
        #[source]
        source: Cause,
    },
    #[error("listing operations in table {table}")]
    ListOperations {
        table: String,
        #[source]
        source: Cause,
    },
    #[error("reading the history of group {group} from table {table}")]
    ReadHistory {
        group: GroupRef,
        table: String,
        #[source]
        source: Cause,
    },
}

impl StoreError {
    /// What went wrong underneath.
    pub fn cause(&self) -> &Cause {
        match self {
            Self::RegisterGroup { source, .. }
            | Self::SetSuspended { source, .. }
            | Self::StartOperation { source, .. }
            | Self::RenewLease { source, .. }
            | Self::GetGroupState { source, .. }
            | Self::GetOperation { source, .. }
            | Self::ListHandoffs { source, .. }
            | Self::PutHandoffRecord { source, .. }
            | Self::ClaimPromotion { source, .. }
            | Self::MarkPromoted { source, .. }
            | Self::PublishStage { source, .. }
            | Self::JournalNote { source, .. }
            | Self::ReadJournal { source, .. }
            | Self::RecordOriginalReplicas { source, .. }
            | Self::CompleteOperation { source, .. }
            | Self::RequestAbort { source, .. }
            | Self::FinishAbort { source, .. }
            | Self::RecordDualActive { source, .. }
            | Self::FailOperation { source, .. }
            | Self::SetPhase { source, .. }
            | Self::PutHeartbeat { source, .. }
            | Self::GetHeartbeat { source, .. }
            | Self::PutInboxRoute { source, .. }
            | Self::GetInboxRoute { source, .. }
            | Self::RecordKnownReplicas { source, .. }
            | Self::MarkGroupReady { source, .. }
            | Self::GetKnownReplicas { source, .. }
            | Self::ListHeartbeats { source, .. }
            | Self::ListGroups { source, .. }
            | Self::ListOperations { source, .. }
            | Self::ReadHistory { source, .. } => source,
        }
    }

    /// True when the failure was a transient DynamoDB problem (throttling, 5xx, transport)
    /// that outlasted the retry policy; the caller may try again later.
    pub fn is_transient(&self) -> bool {
        matches!(self.cause(), Cause::Aws(a) if a.kind.is_retryable())
    }
}
