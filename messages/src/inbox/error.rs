//! [`InboxError`]: a failed SQS operation of the inbox, each variant naming the queue.

use std::error::Error as StdError;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::create_queue::CreateQueueError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::operation::get_queue_attributes::GetQueueAttributesError;
use aws_sdk_sqs::operation::get_queue_url::GetQueueUrlError;
use aws_sdk_sqs::operation::receive_message::ReceiveMessageError;
use aws_sdk_sqs::operation::send_message::SendMessageError;
use aws_sdk_sqs::operation::set_queue_attributes::SetQueueAttributesError;

use crate::envelope::{DecodeError, EnvelopeKind};

type Sdk<E> = Box<SdkError<E>>;
type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// A failed SQS operation; every variant names the queue.
#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    /// The queue does not exist.
    #[error(
        "SQS queue `{queue}` does not exist; create it with `ensure_queues` (the queue setup in deploy/)"
    )]
    QueueDoesNotExist {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: BoxError,
    },
    /// The prefix and cluster do not make a valid SQS queue name.
    #[error("`{queue}` is not a valid SQS queue name: {reason}")]
    InvalidQueueName {
        /// Queue name.
        queue: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The options cannot be turned into queue attributes.
    #[error("invalid options for SQS queue `{queue}`: {reason}")]
    InvalidOptions {
        /// Queue name.
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// CreateQueue failed.
    #[error("CreateQueue `{queue}` failed")]
    CreateQueue {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<CreateQueueError>,
    },
    /// GetQueueUrl failed (other than the queue missing).
    #[error("GetQueueUrl `{queue}` failed")]
    GetQueueUrl {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<GetQueueUrlError>,
    },
    /// GetQueueAttributes failed.
    #[error("GetQueueAttributes `{queue}` failed")]
    GetQueueAttributes {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<GetQueueAttributesError>,
    },
    /// SetQueueAttributes failed.
    #[error("SetQueueAttributes `{queue}` failed")]
    SetQueueAttributes {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<SetQueueAttributesError>,
    },
    /// The queue's attributes read back differ from what was set.
    #[error("SQS queue `{queue}` is not set up as expected: {reason}")]
    VerifyQueue {
        /// Queue name.
        queue: String,
        /// What differs.
        reason: String,
    },
    /// The envelope to send fails the receiver's checks.
    #[error("refusing to send an invalid envelope to SQS queue `{queue}`")]
    InvalidEnvelope {
        /// Queue name.
        queue: String,
        /// What the receiver would reject.
        #[source]
        source: DecodeError,
    },
    /// SendMessage got no answer in time (the queue's region or endpoint unreachable).
    #[error("SendMessage ({kind}) to `{queue}` got no answer within {after:?}")]
    SendTimedOut {
        /// Queue name.
        queue: String,
        /// Kind of the envelope.
        kind: EnvelopeKind,
        /// How long it waited.
        after: std::time::Duration,
    },
    /// SendMessage failed.
    #[error("SendMessage ({kind}) to `{queue}` failed")]
    SendMessage {
        /// Queue name.
        queue: String,
        /// Kind of the envelope.
        kind: EnvelopeKind,
        /// The SQS error.
        #[source]
        source: Sdk<SendMessageError>,
    },
    /// ReceiveMessage failed.
    #[error("ReceiveMessage from `{queue}` failed")]
    ReceiveMessage {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<ReceiveMessageError>,
    },
    /// DeleteMessage failed.
    #[error("DeleteMessage from `{queue}` failed")]
    DeleteMessage {
        /// Queue name.
        queue: String,
        /// The SQS error.
        #[source]
        source: Sdk<DeleteMessageError>,
    },
}

impl InboxError {
    /// The queue the failed operation was about.
    pub fn queue(&self) -> &str {
        match self {
            Self::QueueDoesNotExist { queue, .. }
            | Self::InvalidQueueName { queue, .. }
            | Self::InvalidOptions { queue, .. }
            | Self::CreateQueue { queue, .. }
            | Self::GetQueueUrl { queue, .. }
            | Self::GetQueueAttributes { queue, .. }
            | Self::SetQueueAttributes { queue, .. }
            | Self::VerifyQueue { queue, .. }
            | Self::InvalidEnvelope { queue, .. }
            | Self::SendMessage { queue, .. }
            | Self::SendTimedOut { queue, .. }
            | Self::ReceiveMessage { queue, .. }
            | Self::DeleteMessage { queue, .. } => queue,
        }
    }
}
