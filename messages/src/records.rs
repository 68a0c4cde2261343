//! Typed DynamoDB records of the handoff protocol and their two encodings.
//!
//! Each record ([`GroupState`], [`Operation`], [`Handoff`], [`JournalStep`],
//! [`HistoryEntry`], [`Heartbeat`]) converts to and from a DynamoDB attribute map
//! ([`Record::to_item`], [`Record::from_item`]) and to and from camelCase JSON (serde).
//!
//! # Timestamps
//!
//! * **In DynamoDB** every timestamp is a number (`N`) of **milliseconds since the Unix
//!   epoch**, and nothing else. The one exception is the heartbeat's `expiresAt`, the table's
//!   TTL attribute, which DynamoDB requires in **seconds** since the Unix epoch. Inside sort
//!   keys the same milliseconds are written as 13 zero-padded digits (see [`crate::keys`]).
//! * **In JSON** timestamps are RFC 3339 strings (`2026-11-26T10:00:00.5Z`), like the SQS
//!   envelope and the custom resources.
//!
//! Values are truncated to whole milliseconds when they are encoded, so a record read back
//! equals the record written only if its timestamps were whole milliseconds; the store
//! always truncates its clock readings ([`truncate_to_millis`]).
//!
//! # Decoding untrusted items
//!
//! [`Record::from_item`] never panics. A missing attribute, an attribute of the wrong
//! DynamoDB type or a value that does not parse gives a [`DecodeError`] naming the record,
//! its key and the attribute. Unknown extra attributes are ignored, so records can grow.
//! A `NULL` attribute counts as absent.
//!
//! This module holds [`Item`], the attribute names ([`attr`]) and the [`Record`] trait; each
//! record lives in a submodule of its own, the encoding helpers in `encode` and `decode`,
//! all re-exported here.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

mod decode;
mod encode;
mod enums;
mod group_state;
mod handoff;
mod heartbeat;
mod inbox_route;
mod journal;
mod operation;

pub use decode::{DecodeError, Problem};
pub use encode::{av_bool, av_ms, av_n, av_s, replicas_to_av, timings_to_av};
pub use enums::{HandoffState, Mode, Phase, StepStatus};
pub use group_state::{GroupState, KnownReplicas, Lease};
pub use handoff::{
    FailureMark, HANDOFF_ATTRIBUTES, Handoff, HandoffView, Mark, handoff_attributes,
};
pub use heartbeat::{AutoArmed, Heartbeat};
pub use inbox_route::InboxRoute;
pub use journal::{JournalStage, JournalStep, flatten_journal};
pub use operation::{HistoryEntry, Operation, Timings};

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// Attribute names, as stored in the table.
pub mod attr {
    #![allow(missing_docs)]
    pub const PK: &str = crate::keys::PK;
    pub const SK: &str = crate::keys::SK;
    pub const GSI1PK: &str = crate::keys::GSI1PK;
    pub const GSI1SK: &str = crate::keys::GSI1SK;

    pub const GROUP: &str = "group";
    pub const ACTIVE_CLUSTER: &str = "activeCluster";
    pub const EPOCH: &str = "epoch";
    pub const OP_ID: &str = "opId";
    pub const PROMOTION_CLAIMED_BY: &str = "promotionClaimedBy";
    pub const LEASE_HOLDER: &str = "leaseHolder";
    pub const LEASE_EXPIRES_AT: &str = "leaseExpiresAt";
    pub const SUSPENDED: &str = "suspended";
    pub const VERSION: &str = "version";
    pub const LAST_OP_ID: &str = "lastOpId";
    pub const UPDATED_AT: &str = "updatedAt";

    pub const MODE: &str = "mode";
    pub const SOURCE: &str = "source";
    pub const TARGET: &str = "target";
    pub const FORCE: &str = "force";
    pub const REASON: &str = "reason";
    pub const REQUESTED_BY: &str = "requestedBy";
    pub const PHASE: &str = "phase";
    pub const REQUESTED_AT: &str = "requestedAt";
    pub const PROMOTION_STARTED_AT: &str = "promotionStartedAt";
    pub const ABORT_REQUESTED_AT: &str = "abortRequestedAt";
    pub const DUAL_ACTIVE_STARTED_AT: &str = "dualActiveStartedAt";
    pub const DUAL_ACTIVE_ENDED_AT: &str = "dualActiveEndedAt";
    pub const FINISHED_AT: &str = "finishedAt";
    pub const TIMINGS: &str = "timings";
    pub const TOTAL_MS: &str = "totalMs";
    pub const DOWNTIME_MS: &str = "downtimeMs";
    pub const STAGES_MS: &str = "stagesMs";
    pub const ORIGINAL_REPLICAS: &str = "originalReplicas";
    pub const KNOWN_REPLICAS: &str = "knownReplicas";
    pub const QUEUE_URL: &str = "queueUrl";
    pub const REGION: &str = "region";
    pub const ENDPOINT: &str = "endpoint";
    pub const MESSAGE: &str = "message";
    pub const GROUP_READY_AT: &str = "groupReadyAt";
    pub const FAILED_AT: &str = "failedAt";
    pub const FAILED_BY: &str = "failedBy";
    pub const FAILURE_MESSAGE: &str = "failureMessage";

    pub const VOLUME: &str = "volume";
    pub const STATE: &str = "state";
    pub const WRITER: &str = "writer";
    pub const READY_AT: &str = "readyAt";
    pub const PROMOTED_AT: &str = "promotedAt";
    pub const READY: &str = "ready";
    pub const PROMOTED: &str = "promoted";
    pub const AT: &str = "at";
    pub const OP_TARGET: &str = "opTarget";
    pub const OP_MODE: &str = "opMode";
    pub const OP_FORCE: &str = "opForce";

    pub const CLUSTER: &str = "cluster";
    pub const STAGE: &str = "stage";
    pub const TASK: &str = "task";
    pub const STATUS: &str = "status";
    pub const ATTEMPTS: &str = "attempts";
    pub const STARTED_AT: &str = "startedAt";
    pub const FIRST_STARTED_AT: &str = "firstStartedAt";
    pub const STEPS: &str = "steps";
    pub const PUBLISHED_AT: &str = "publishedAt";

    pub const AGENT_VERSION: &str = "agentVersion";
    pub const LAST_SEEN: &str = "lastSeen";
    pub const EXPIRES_AT: &str = crate::keys::TTL_ATTRIBUTE;
    pub const SOURCE_IS_DOWN: &str = "sourceIsDown";
    pub const LEASE_DURATION_MS: &str = "leaseDurationMs";
    pub const KEEP_SERVING: &str = "keepServing";
    /// Heartbeat: the groups armed for automatic failover in this (standby) cluster.
    pub const AUTO_ARMED: &str = "autoArmed";
}

/// Drops everything below the millisecond, the precision records are stored with.
pub fn truncate_to_millis(at: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

/// A record of the table: its key and its attribute-map encoding.
pub trait Record: Sized {
    /// Human name of the record kind, used in errors (`group state`, `operation`, …).
    const KIND: &'static str;

    /// `(PK, SK)` of this record.
    fn key(&self) -> (String, String);

    /// The full item, keys and index attributes included.
    fn to_item(&self) -> Item;

    /// Decodes an item read from the table. Never panics.
    fn from_item(item: &Item) -> Result<Self, DecodeError>;
}

#[cfg(test)]
mod tests;
