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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::keys::{self, GroupRef};

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
    pub const MESSAGE: &str = "message";
    pub const GROUP_READY_AT: &str = "groupReadyAt";

    pub const VOLUME: &str = "volume";
    pub const STATE: &str = "state";
    pub const WRITER: &str = "writer";
    pub const READY_AT: &str = "readyAt";
    pub const PROMOTED_AT: &str = "promotedAt";

    pub const CLUSTER: &str = "cluster";
    pub const STAGE: &str = "stage";
    pub const TASK: &str = "task";
    pub const STATUS: &str = "status";
    pub const ATTEMPTS: &str = "attempts";
    pub const STARTED_AT: &str = "startedAt";

    pub const AGENT_VERSION: &str = "agentVersion";
    pub const LAST_SEEN: &str = "lastSeen";
    pub const EXPIRES_AT: &str = crate::keys::TTL_ATTRIBUTE;
}

/// Drops everything below the millisecond, the precision records are stored with.
pub fn truncate_to_millis(at: Timestamp) -> Timestamp {
    Timestamp::from_millisecond(at.as_millisecond()).unwrap_or(at)
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident = $wire:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* #[serde(rename = $wire)] $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire,)+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    _ => Err(format!(
                        concat!("unknown ", $what, " {:?}, expected one of {}"),
                        s,
                        [$($wire),+].join(", ")
                    )),
                }
            }
        }
    };
}

wire_enum! {
    /// How a failover orders the two sides.
    Mode, "mode" {
        /// Source down and demoted before the target promotes.
        Consistency = "CONSISTENCY",
        /// Target promoted and serving before the source shuts down.
        Uptime = "UPTIME",
    }
}

wire_enum! {
    /// Phase of an operation. The names match the `Failover` custom resource's phases.
    Phase, "phase" {
        /// Started, no agent has picked it up yet.
        Pending = "Pending",
        /// An agent is working on it.
        Running = "Running",
        /// The lease expired while it ran; a new operation may take over.
        Stalled = "Stalled",
        /// An abort was requested and granted; the source is reactivating.
        Aborting = "Aborting",
        /// Closed: the target owns the group.
        Succeeded = "Succeeded",
        /// Closed with an error.
        Failed = "Failed",
        /// Closed by an abort before promotion; the source still owns the group.
        Aborted = "Aborted",
        /// Closed after a rollback; the source still owns the group.
        RolledBack = "RolledBack",
    }
}

impl Phase {
    /// True for phases after which the operation never changes again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::RolledBack
        )
    }
}

wire_enum! {
    /// State of one volume's handoff record.
    HandoffState, "handoff state" {
        /// The source demoted the volume; the target may promote it.
        ReadyForPromotion = "READY_FOR_PROMOTION",
        /// The target promoted the volume.
        Promoted = "PROMOTED",
    }
}

wire_enum! {
    /// Status of a journal step.
    StepStatus, "step status" {
        /// The intent was written; the outcome is unknown (maybe the agent died).
        Started = "STARTED",
        /// The step finished.
        Done = "DONE",
        /// The step failed.
        Failed = "FAILED",
    }
}

// ---------------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------------

/// The lease on a group while an operation runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    /// Who renews it (a cluster name or the coordinator's identity).
    pub holder: String,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
}

/// Group state `GROUP#<ns>/<name>` / `STATE`: who owns the group and what runs on it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupState {
    /// The group.
    pub group: GroupRef,
    /// The cluster whose side is active.
    pub active_cluster: String,
    /// Grows by one with every operation started; every agent write is conditioned on it.
    pub epoch: u64,
    /// The operation in flight, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<String>,
    /// The cluster whose promotion was claimed and not yet completed. While it is set, only
    /// that cluster may have an active side, and only a forced operation may start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_claimed_by: Option<String>,
    /// The lease of the operation in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// A suspended group refuses new operations.
    pub suspended: bool,
    /// Grows by one with every write of this record.
    pub version: u64,
    /// The last operation closed on this group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_op_id: Option<String>,
    /// When this record was last written.
    pub updated_at: Timestamp,
}

impl GroupState {
    /// True when an operation is in flight and its lease has not expired at `now`.
    pub fn lease_is_live(&self, now: Timestamp) -> bool {
        self.op_id.is_some() && self.lease.as_ref().is_some_and(|l| l.expires_at >= now)
    }

    /// The one cluster entitled to an active side: the claimer of a promotion in flight,
    /// else the active cluster. Any other cluster whose side is active must fence itself.
    pub fn entitled_cluster(&self) -> &str {
        self.promotion_claimed_by
            .as_deref()
            .unwrap_or(&self.active_cluster)
    }

    /// True when `cluster` may have an active side ([`GroupState::entitled_cluster`]).
    pub fn is_entitled(&self, cluster: &str) -> bool {
        self.entitled_cluster() == cluster
    }
}

/// Durations an operation measured, in milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Timings {
    /// Start to completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    /// How long the application served nowhere (CONSISTENCY) or nothing was lost (UPTIME: 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
    /// Per stage (or per `<cluster>/<stage>`), as the agents report it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stages_ms: BTreeMap<String, u64>,
}

impl Timings {
    /// True when nothing was measured.
    pub fn is_empty(&self) -> bool {
        self.total_ms.is_none() && self.downtime_ms.is_none() && self.stages_ms.is_empty()
    }
}

/// Operation `OP#<id>` / `OP`: one failover of one group.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    /// Operation id.
    pub id: String,
    /// The group it moves.
    pub group: GroupRef,
    /// The group's epoch this operation runs at.
    pub epoch: u64,
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// Cluster the group moves away from.
    pub source: String,
    /// Cluster the group moves to.
    pub target: String,
    /// Started without the `activeCluster = source` condition (source unreachable).
    pub force: bool,
    /// Why (free text from the requester).
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Where it is.
    pub phase: Phase,
    /// When it was started.
    pub requested_at: Timestamp,
    /// When the target claimed the promotion (excludes an abort from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promotion_started_at: Option<Timestamp>,
    /// When an abort was requested (excludes a promotion from then on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_requested_at: Option<Timestamp>,
    /// UPTIME: when the first target volume became Primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_active_started_at: Option<Timestamp>,
    /// UPTIME: when the last source volume became Secondary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_active_ended_at: Option<Timestamp>,
    /// When it was closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// What was measured.
    #[serde(default, skip_serializing_if = "Timings::is_empty")]
    pub timings: Timings,
    /// Replica counts of the source's workloads before scale-down, keyed `<Kind>/<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub original_replicas: BTreeMap<String, u32>,
    /// Last error or note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Operation {
    /// The dual-active window (UPTIME), once both ends are recorded.
    pub fn dual_active_window(&self) -> Option<SignedDuration> {
        Some(
            self.dual_active_ended_at?
                .duration_since(self.dual_active_started_at?),
        )
    }
}

/// Handoff record `OP#<id>` / `VOL#<volume>`: one volume's way from source to target.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// Operation id.
    pub op_id: String,
    /// VolumeReplication name.
    pub volume: String,
    /// READY_FOR_PROMOTION or PROMOTED.
    pub state: HandoffState,
    /// Epoch the record was written at.
    pub epoch: u64,
    /// Cluster that wrote READY_FOR_PROMOTION (the target for a forced promotion).
    pub writer: String,
    /// When the source marked it ready (absent for a forced promotion).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_at: Option<Timestamp>,
    /// When the target marked it promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_at: Option<Timestamp>,
}

/// Journal step `OP#<id>` / `JOURNAL#<cluster>#<stage>#<task>`: intent and outcome of one task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JournalStep {
    /// Operation id.
    pub op_id: String,
    /// Cluster whose agent ran the task.
    pub cluster: String,
    /// Workflow stage.
    pub stage: String,
    /// Task name.
    pub task: String,
    /// Epoch of the operation.
    pub epoch: u64,
    /// STARTED, DONE or FAILED.
    pub status: StepStatus,
    /// How many intents were written (more than one after a restart).
    pub attempts: u32,
    /// When the last intent was written.
    pub started_at: Timestamp,
    /// When the outcome was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Error or note from the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// History record `GROUP#<ns>/<name>` / `HIST#<finishedAt>#<id>`: a copy of a closed operation.
///
/// Invariant: `operation.finished_at == Some(finished_at)` ([`HistoryEntry::new`] keeps it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// When the operation was closed.
    pub finished_at: Timestamp,
    /// The closed operation.
    pub operation: Operation,
}

impl HistoryEntry {
    /// A history entry for `operation` closed at `finished_at`.
    pub fn new(mut operation: Operation, finished_at: Timestamp) -> Self {
        operation.finished_at = Some(finished_at);
        Self {
            finished_at,
            operation,
        }
    }
}

/// Cluster heartbeat `CLUSTERS` / `CLUSTER#<name>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    /// Cluster name.
    pub cluster: String,
    /// Version of the agent that wrote it.
    pub agent_version: String,
    /// When it was written.
    pub last_seen: Timestamp,
    /// When it goes stale (whole seconds: the TTL attribute).
    pub expires_at: Timestamp,
}

/// The replica counts of a group's Deployments and StatefulSets as last seen on its active
/// side (`GROUP#<ns>/<name>` / `REPLICAS`), written by the active cluster's agent while no
/// operation is in flight. A target that finds no count on its operation (a forced failover
/// whose source never ran) scales up to these.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnownReplicas {
    /// The group.
    pub group: GroupRef,
    /// The active cluster that saw them.
    pub cluster: String,
    /// The group's epoch when they were seen.
    pub epoch: u64,
    /// `<Kind>/<name>` → replicas (only counts above 0).
    pub replicas: BTreeMap<String, u32>,
    /// When they were written.
    pub updated_at: Timestamp,
}

impl Record for KnownReplicas {
    const KIND: &'static str = "known replicas";

    fn key(&self) -> (String, String) {
        keys::known_replicas_key(&self.group)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::GROUP, self.group.to_string())
            .s(attr::CLUSTER, &self.cluster)
            .n(attr::EPOCH, self.epoch)
            .raw(attr::ORIGINAL_REPLICAS, replicas_to_av(&self.replicas))
            .ms(attr::UPDATED_AT, self.updated_at)
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            group: r.group(attr::GROUP)?,
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            epoch: r.u64(attr::EPOCH)?,
            replicas: decode_replicas(&r)?,
            updated_at: r.millis(attr::UPDATED_AT)?,
        })
    }
}

impl Heartbeat {
    /// True when the heartbeat has expired at `now`. DynamoDB deletes expired items late
    /// (moto never does), so readers must check this.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        self.expires_at <= now
    }
}

// ---------------------------------------------------------------------------------------------
// Decode errors
// ---------------------------------------------------------------------------------------------

/// What is wrong with one attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The attribute is absent.
    Missing,
    /// The attribute has another DynamoDB type.
    WrongType {
        /// Type the record needs (`S`, `N`, `BOOL`, `M`).
        expected: &'static str,
        /// Type found.
        found: &'static str,
    },
    /// The value does not parse or is out of range.
    BadValue(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("is missing"),
            Problem::WrongType { expected, found } => {
                write!(f, "has type {found}, expected {expected}")
            }
            Problem::BadValue(why) => write!(f, "has a bad value: {why}"),
        }
    }
}

/// An item from the table that is not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record} record {key}: attribute `{attribute}` {problem}")]
pub struct DecodeError {
    /// Kind of record (`group state`, `operation`, …).
    pub record: &'static str,
    /// `PK/SK` of the item, or `(no key)`.
    pub key: String,
    /// Attribute name (a dotted path inside maps).
    pub attribute: String,
    /// What is wrong.
    pub problem: Problem,
}

fn type_name(v: &AttributeValue) -> &'static str {
    match v {
        AttributeValue::S(_) => "S",
        AttributeValue::N(_) => "N",
        AttributeValue::B(_) => "B",
        AttributeValue::Bool(_) => "BOOL",
        AttributeValue::Null(_) => "NULL",
        AttributeValue::M(_) => "M",
        AttributeValue::L(_) => "L",
        AttributeValue::Ss(_) => "SS",
        AttributeValue::Ns(_) => "NS",
        AttributeValue::Bs(_) => "BS",
        _ => "unknown",
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 80 {
        let cut: String = s.chars().take(80).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

/// Typed reads from one item, producing [`DecodeError`]s that name the record.
struct Reader<'a> {
    record: &'static str,
    key: String,
    prefix: String,
    item: &'a Item,
}

impl<'a> Reader<'a> {
    fn new(record: &'static str, item: &'a Item) -> Self {
        let key = match (item.get(keys::PK), item.get(keys::SK)) {
            (Some(AttributeValue::S(pk)), Some(AttributeValue::S(sk))) => {
                let mut k = format!("{pk}/{sk}");
                if k.len() > 200 {
                    k = shorten(&k);
                }
                k
            }
            _ => "(no key)".to_owned(),
        };
        Self {
            record,
            key,
            prefix: String::new(),
            item,
        }
    }

    fn nested(&self, attribute: &str, item: &'a Item) -> Reader<'a> {
        Reader {
            record: self.record,
            key: self.key.clone(),
            prefix: format!("{}{attribute}.", self.prefix),
            item,
        }
    }

    fn err(&self, attribute: &str, problem: Problem) -> DecodeError {
        DecodeError {
            record: self.record,
            key: self.key.clone(),
            attribute: format!("{}{attribute}", self.prefix),
            problem,
        }
    }

    fn get(&self, attribute: &str) -> Option<&'a AttributeValue> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => None,
            Some(v) => Some(v),
        }
    }

    fn wrong(
        &self,
        attribute: &str,
        expected: &'static str,
        found: &AttributeValue,
    ) -> DecodeError {
        self.err(
            attribute,
            Problem::WrongType {
                expected,
                found: type_name(found),
            },
        )
    }

    fn opt_s(&self, attribute: &str) -> Result<Option<&'a str>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::S(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(attribute, "S", v)),
        }
    }

    fn s(&self, attribute: &str) -> Result<&'a str, DecodeError> {
        self.opt_s(attribute)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    fn opt_string(&self, attribute: &str) -> Result<Option<String>, DecodeError> {
        Ok(self.opt_s(attribute)?.map(str::to_owned))
    }

    /// A string that must be non-empty and satisfy `check`.
    fn checked(
        &self,
        attribute: &str,
        check: impl Fn(&str) -> Result<(), keys::KeyError>,
    ) -> Result<String, DecodeError> {
        let s = self.s(attribute)?;
        check(s).map_err(|e| self.err(attribute, Problem::BadValue(e.to_string())))?;
        Ok(s.to_owned())
    }

    fn parsed<T: FromStr>(&self, attribute: &str) -> Result<T, DecodeError>
    where
        T::Err: fmt::Display,
    {
        let s = self.s(attribute)?;
        s.parse()
            .map_err(|e: T::Err| self.err(attribute, Problem::BadValue(e.to_string())))
    }

    fn opt_number<T: FromStr>(
        &self,
        attribute: &str,
        what: &str,
    ) -> Result<Option<T>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::N(n)) => n.parse().map(Some).map_err(|_| {
                self.err(
                    attribute,
                    Problem::BadValue(format!("{} is not {what}", shorten(n))),
                )
            }),
            Some(v) => Err(self.wrong(attribute, "N", v)),
        }
    }

    fn number<T: FromStr>(&self, attribute: &str, what: &str) -> Result<T, DecodeError> {
        self.opt_number(attribute, what)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    fn u64(&self, attribute: &str) -> Result<u64, DecodeError> {
        self.number(attribute, "an unsigned 64-bit integer")
    }

    fn opt_u64(&self, attribute: &str) -> Result<Option<u64>, DecodeError> {
        self.opt_number(attribute, "an unsigned 64-bit integer")
    }

    fn opt_bool(&self, attribute: &str) -> Result<Option<bool>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(attribute, "BOOL", v)),
        }
    }

    fn opt_millis(&self, attribute: &str) -> Result<Option<Timestamp>, DecodeError> {
        let Some(ms) = self.opt_number::<i64>(attribute, "an integer number of milliseconds")?
        else {
            return Ok(None);
        };
        Timestamp::from_millisecond(ms).map(Some).map_err(|_| {
            self.err(
                attribute,
                Problem::BadValue(format!("{ms} ms since the Unix epoch is out of range")),
            )
        })
    }

    fn millis(&self, attribute: &str) -> Result<Timestamp, DecodeError> {
        self.opt_millis(attribute)?
            .ok_or_else(|| self.err(attribute, Problem::Missing))
    }

    fn seconds(&self, attribute: &str) -> Result<Timestamp, DecodeError> {
        let s: i64 = self.number(attribute, "an integer number of seconds")?;
        Timestamp::from_second(s).map_err(|_| {
            self.err(
                attribute,
                Problem::BadValue(format!("{s} s since the Unix epoch is out of range")),
            )
        })
    }

    fn opt_map(&self, attribute: &str) -> Result<Option<&'a Item>, DecodeError> {
        match self.get(attribute) {
            None => Ok(None),
            Some(AttributeValue::M(m)) => Ok(Some(m)),
            Some(v) => Err(self.wrong(attribute, "M", v)),
        }
    }

    fn group(&self, attribute: &str) -> Result<GroupRef, DecodeError> {
        self.parsed(attribute)
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding helpers
// ---------------------------------------------------------------------------------------------

/// `S` attribute.
pub fn av_s(s: impl Into<String>) -> AttributeValue {
    AttributeValue::S(s.into())
}

/// `N` attribute from an integer.
pub fn av_n(n: impl fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// `N` attribute: milliseconds since the Unix epoch.
pub fn av_ms(at: Timestamp) -> AttributeValue {
    av_n(at.as_millisecond())
}

/// `BOOL` attribute.
pub fn av_bool(b: bool) -> AttributeValue {
    AttributeValue::Bool(b)
}

struct Builder(Item);

impl Builder {
    fn new(key: (String, String)) -> Self {
        let mut item = Item::new();
        item.insert(keys::PK.into(), av_s(key.0));
        item.insert(keys::SK.into(), av_s(key.1));
        Self(item)
    }
    fn s(mut self, attribute: &str, v: impl Into<String>) -> Self {
        self.0.insert(attribute.into(), av_s(v));
        self
    }
    fn opt_s(self, attribute: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.s(attribute, v),
            None => self,
        }
    }
    fn n(mut self, attribute: &str, v: impl fmt::Display) -> Self {
        self.0.insert(attribute.into(), av_n(v));
        self
    }
    fn ms(mut self, attribute: &str, at: Timestamp) -> Self {
        self.0.insert(attribute.into(), av_ms(at));
        self
    }
    fn opt_ms(self, attribute: &str, at: Option<Timestamp>) -> Self {
        match at {
            Some(at) => self.ms(attribute, at),
            None => self,
        }
    }
    fn bool(mut self, attribute: &str, b: bool) -> Self {
        self.0.insert(attribute.into(), av_bool(b));
        self
    }
    fn raw(mut self, attribute: &str, v: AttributeValue) -> Self {
        self.0.insert(attribute.into(), v);
        self
    }
}

/// The `timings` map attribute.
pub fn timings_to_av(t: &Timings) -> AttributeValue {
    let mut m = Item::new();
    if let Some(total) = t.total_ms {
        m.insert(attr::TOTAL_MS.into(), av_n(total));
    }
    if let Some(down) = t.downtime_ms {
        m.insert(attr::DOWNTIME_MS.into(), av_n(down));
    }
    if !t.stages_ms.is_empty() {
        let stages = t
            .stages_ms
            .iter()
            .map(|(k, v)| (k.clone(), av_n(v)))
            .collect();
        m.insert(attr::STAGES_MS.into(), AttributeValue::M(stages));
    }
    AttributeValue::M(m)
}

/// The `originalReplicas` map attribute.
pub fn replicas_to_av(replicas: &BTreeMap<String, u32>) -> AttributeValue {
    AttributeValue::M(replicas.iter().map(|(k, v)| (k.clone(), av_n(v))).collect())
}

fn number_map<T: FromStr>(
    r: &Reader<'_>,
    m: &Item,
    what: &str,
) -> Result<BTreeMap<String, T>, DecodeError> {
    let mut out = BTreeMap::new();
    for k in m.keys() {
        out.insert(k.clone(), r.number(k, what)?);
    }
    Ok(out)
}

fn decode_timings(r: &Reader<'_>) -> Result<Timings, DecodeError> {
    let Some(m) = r.opt_map(attr::TIMINGS)? else {
        return Ok(Timings::default());
    };
    let t = r.nested(attr::TIMINGS, m);
    let stages_ms = match t.opt_map(attr::STAGES_MS)? {
        Some(sm) => {
            let sr = t.nested(attr::STAGES_MS, sm);
            number_map(&sr, sm, "an unsigned 64-bit integer")?
        }
        None => BTreeMap::new(),
    };
    Ok(Timings {
        total_ms: t.opt_u64(attr::TOTAL_MS)?,
        downtime_ms: t.opt_u64(attr::DOWNTIME_MS)?,
        stages_ms,
    })
}

fn decode_replicas(r: &Reader<'_>) -> Result<BTreeMap<String, u32>, DecodeError> {
    match r.opt_map(attr::ORIGINAL_REPLICAS)? {
        Some(m) => {
            let mr = r.nested(attr::ORIGINAL_REPLICAS, m);
            number_map(&mr, m, "an unsigned 32-bit integer")
        }
        None => Ok(BTreeMap::new()),
    }
}

// ---------------------------------------------------------------------------------------------
// Record trait and impls
// ---------------------------------------------------------------------------------------------

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

impl Record for GroupState {
    const KIND: &'static str = "group state";

    fn key(&self) -> (String, String) {
        keys::group_state_key(&self.group)
    }

    fn to_item(&self) -> Item {
        let mut b = Builder::new(self.key())
            .s(attr::GSI1PK, keys::GSI1_GROUPS)
            .s(attr::GSI1SK, keys::group_gsi1sk(&self.group))
            .s(attr::GROUP, self.group.to_string())
            .s(attr::ACTIVE_CLUSTER, &self.active_cluster)
            .n(attr::EPOCH, self.epoch)
            .opt_s(attr::OP_ID, self.op_id.as_deref())
            .opt_s(
                attr::PROMOTION_CLAIMED_BY,
                self.promotion_claimed_by.as_deref(),
            )
            .bool(attr::SUSPENDED, self.suspended)
            .n(attr::VERSION, self.version)
            .opt_s(attr::LAST_OP_ID, self.last_op_id.as_deref())
            .ms(attr::UPDATED_AT, self.updated_at);
        if let Some(lease) = &self.lease {
            b = b
                .s(attr::LEASE_HOLDER, &lease.holder)
                .ms(attr::LEASE_EXPIRES_AT, lease.expires_at);
        }
        b.0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        let holder = r.opt_string(attr::LEASE_HOLDER)?;
        let expires = r.opt_millis(attr::LEASE_EXPIRES_AT)?;
        let lease = match (holder, expires) {
            (Some(holder), Some(expires_at)) => Some(Lease { holder, expires_at }),
            (None, None) => None,
            (Some(_), None) => return Err(r.err(attr::LEASE_EXPIRES_AT, Problem::Missing)),
            (None, Some(_)) => return Err(r.err(attr::LEASE_HOLDER, Problem::Missing)),
        };
        Ok(Self {
            group: r.group(attr::GROUP)?,
            active_cluster: r.checked(attr::ACTIVE_CLUSTER, keys::validate_cluster)?,
            epoch: r.u64(attr::EPOCH)?,
            op_id: r.opt_string(attr::OP_ID)?,
            promotion_claimed_by: match r.opt_s(attr::PROMOTION_CLAIMED_BY)? {
                Some(c) => {
                    keys::validate_cluster(c).map_err(|e| {
                        r.err(attr::PROMOTION_CLAIMED_BY, Problem::BadValue(e.to_string()))
                    })?;
                    Some(c.to_owned())
                }
                None => None,
            },
            lease,
            suspended: r.opt_bool(attr::SUSPENDED)?.unwrap_or(false),
            version: r.opt_u64(attr::VERSION)?.unwrap_or(0),
            last_op_id: r.opt_string(attr::LAST_OP_ID)?,
            updated_at: r.millis(attr::UPDATED_AT)?,
        })
    }
}

/// The operation's attributes without key and index attributes (shared with history).
fn operation_attributes(op: &Operation, key: (String, String)) -> Builder {
    let mut b = Builder::new(key)
        .s(attr::OP_ID, &op.id)
        .s(attr::GROUP, op.group.to_string())
        .n(attr::EPOCH, op.epoch)
        .s(attr::MODE, op.mode.as_str())
        .s(attr::SOURCE, &op.source)
        .s(attr::TARGET, &op.target)
        .bool(attr::FORCE, op.force)
        .s(attr::REASON, &op.reason)
        .s(attr::REQUESTED_BY, &op.requested_by)
        .s(attr::PHASE, op.phase.as_str())
        .ms(attr::REQUESTED_AT, op.requested_at)
        .opt_ms(attr::PROMOTION_STARTED_AT, op.promotion_started_at)
        .opt_ms(attr::ABORT_REQUESTED_AT, op.abort_requested_at)
        .opt_ms(attr::DUAL_ACTIVE_STARTED_AT, op.dual_active_started_at)
        .opt_ms(attr::DUAL_ACTIVE_ENDED_AT, op.dual_active_ended_at)
        .opt_ms(attr::FINISHED_AT, op.finished_at)
        .opt_s(attr::MESSAGE, op.message.as_deref());
    if !op.timings.is_empty() {
        b = b.raw(attr::TIMINGS, timings_to_av(&op.timings));
    }
    if !op.original_replicas.is_empty() {
        b = b.raw(
            attr::ORIGINAL_REPLICAS,
            replicas_to_av(&op.original_replicas),
        );
    }
    b
}

fn decode_operation(r: &Reader<'_>) -> Result<Operation, DecodeError> {
    Ok(Operation {
        id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
        group: r.group(attr::GROUP)?,
        epoch: r.u64(attr::EPOCH)?,
        mode: r.parsed(attr::MODE)?,
        source: r.checked(attr::SOURCE, keys::validate_cluster)?,
        target: r.checked(attr::TARGET, keys::validate_cluster)?,
        force: r.opt_bool(attr::FORCE)?.unwrap_or(false),
        reason: r.opt_string(attr::REASON)?.unwrap_or_default(),
        requested_by: r.opt_string(attr::REQUESTED_BY)?.unwrap_or_default(),
        phase: r.parsed(attr::PHASE)?,
        requested_at: r.millis(attr::REQUESTED_AT)?,
        promotion_started_at: r.opt_millis(attr::PROMOTION_STARTED_AT)?,
        abort_requested_at: r.opt_millis(attr::ABORT_REQUESTED_AT)?,
        dual_active_started_at: r.opt_millis(attr::DUAL_ACTIVE_STARTED_AT)?,
        dual_active_ended_at: r.opt_millis(attr::DUAL_ACTIVE_ENDED_AT)?,
        finished_at: r.opt_millis(attr::FINISHED_AT)?,
        timings: decode_timings(r)?,
        original_replicas: decode_replicas(r)?,
        message: r.opt_string(attr::MESSAGE)?,
    })
}

impl Record for Operation {
    const KIND: &'static str = "operation";

    fn key(&self) -> (String, String) {
        keys::operation_key(&self.id)
    }

    fn to_item(&self) -> Item {
        operation_attributes(self, self.key())
            .s(attr::GSI1PK, keys::GSI1_OPERATIONS)
            .s(
                attr::GSI1SK,
                keys::operation_gsi1sk(self.requested_at, &self.id),
            )
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        decode_operation(&Reader::new(Self::KIND, item))
    }
}

impl Record for Handoff {
    const KIND: &'static str = "handoff";

    fn key(&self) -> (String, String) {
        keys::handoff_key(&self.op_id, &self.volume)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::OP_ID, &self.op_id)
            .s(attr::VOLUME, &self.volume)
            .s(attr::STATE, self.state.as_str())
            .n(attr::EPOCH, self.epoch)
            .s(attr::WRITER, &self.writer)
            .opt_ms(attr::READY_AT, self.ready_at)
            .opt_ms(attr::PROMOTED_AT, self.promoted_at)
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            op_id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
            volume: r.checked(attr::VOLUME, keys::validate_volume)?,
            state: r.parsed(attr::STATE)?,
            epoch: r.u64(attr::EPOCH)?,
            writer: r.checked(attr::WRITER, keys::validate_cluster)?,
            ready_at: r.opt_millis(attr::READY_AT)?,
            promoted_at: r.opt_millis(attr::PROMOTED_AT)?,
        })
    }
}

impl Record for JournalStep {
    const KIND: &'static str = "journal step";

    fn key(&self) -> (String, String) {
        keys::journal_key(&self.op_id, &self.cluster, &self.stage, &self.task)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::OP_ID, &self.op_id)
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::STAGE, &self.stage)
            .s(attr::TASK, &self.task)
            .n(attr::EPOCH, self.epoch)
            .s(attr::STATUS, self.status.as_str())
            .n(attr::ATTEMPTS, self.attempts)
            .ms(attr::STARTED_AT, self.started_at)
            .opt_ms(attr::FINISHED_AT, self.finished_at)
            .opt_s(attr::MESSAGE, self.message.as_deref())
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            op_id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            stage: r.checked(attr::STAGE, |s| keys::validate_step_name("stage", s))?,
            task: r.checked(attr::TASK, |s| keys::validate_step_name("task", s))?,
            epoch: r.u64(attr::EPOCH)?,
            status: r.parsed(attr::STATUS)?,
            attempts: r
                .opt_number(attr::ATTEMPTS, "an unsigned 32-bit integer")?
                .unwrap_or(1),
            started_at: r.millis(attr::STARTED_AT)?,
            finished_at: r.opt_millis(attr::FINISHED_AT)?,
            message: r.opt_string(attr::MESSAGE)?,
        })
    }
}

impl Record for HistoryEntry {
    const KIND: &'static str = "history";

    fn key(&self) -> (String, String) {
        keys::history_key(&self.operation.group, self.finished_at, &self.operation.id)
    }

    fn to_item(&self) -> Item {
        operation_attributes(&self.operation, self.key())
            .ms(attr::FINISHED_AT, self.finished_at)
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        let finished_at = r.millis(attr::FINISHED_AT)?;
        let operation = decode_operation(&r)?;
        Ok(Self {
            finished_at,
            operation,
        })
    }
}

impl Record for Heartbeat {
    const KIND: &'static str = "heartbeat";

    fn key(&self) -> (String, String) {
        keys::heartbeat_key(&self.cluster)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::AGENT_VERSION, &self.agent_version)
            .ms(attr::LAST_SEEN, self.last_seen)
            .n(attr::EXPIRES_AT, self.expires_at.as_second())
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            agent_version: r.opt_string(attr::AGENT_VERSION)?.unwrap_or_default(),
            last_seen: r.millis(attr::LAST_SEEN)?,
            expires_at: r.seconds(attr::EXPIRES_AT)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    fn group() -> GroupRef {
        GroupRef::new("shop", "orders").unwrap()
    }

    #[test]
    fn known_replicas_round_trip_under_the_group_partition() {
        let k = KnownReplicas {
            group: group(),
            cluster: "east".into(),
            epoch: 4,
            replicas: BTreeMap::from([("Deployment/api".into(), 3), ("StatefulSet/db".into(), 1)]),
            updated_at: ts(1_700_000_000_123),
        };
        let item = k.to_item();
        assert_eq!(k.key(), ("GROUP#shop/orders".into(), "REPLICAS".into()));
        assert_eq!(KnownReplicas::from_item(&item).unwrap(), k);
    }

    pub(crate) fn sample_operation() -> Operation {
        Operation {
            id: "op-1".into(),
            group: group(),
            epoch: 7,
            mode: Mode::Consistency,
            source: "east".into(),
            target: "west".into(),
            force: false,
            reason: "maintenance".into(),
            requested_by: "alice".into(),
            phase: Phase::Running,
            requested_at: ts(1_764_150_000_000),
            promotion_started_at: None,
            abort_requested_at: None,
            dual_active_started_at: None,
            dual_active_ended_at: None,
            finished_at: None,
            timings: Timings::default(),
            original_replicas: BTreeMap::from([("Deployment/api".into(), 3)]),
            message: None,
        }
    }

    #[test]
    fn operation_item_carries_keys_and_gsi() {
        let item = sample_operation().to_item();
        assert_eq!(item["PK"], av_s("OP#op-1"));
        assert_eq!(item["SK"], av_s("OP"));
        assert_eq!(item["GSI1PK"], av_s("OPS"));
        assert_eq!(item["GSI1SK"], av_s("1764150000000#op-1"));
        assert_eq!(item["requestedAt"], av_n(1_764_150_000_000_i64));
        assert_eq!(Operation::from_item(&item).unwrap(), sample_operation());
    }

    #[test]
    fn history_is_a_copy_without_index_attributes() {
        let entry = HistoryEntry::new(sample_operation(), ts(1_764_150_060_000));
        let item = entry.to_item();
        assert_eq!(item["PK"], av_s("GROUP#shop/orders"));
        assert_eq!(item["SK"], av_s("HIST#1764150060000#op-1"));
        assert!(!item.contains_key("GSI1PK"));
        assert_eq!(HistoryEntry::from_item(&item).unwrap(), entry);
    }

    #[test]
    fn decode_errors_name_record_key_and_attribute() {
        let mut item = sample_operation().to_item();
        item.remove("mode");
        let e = Operation::from_item(&item).unwrap_err();
        assert_eq!(e.attribute, "mode");
        assert_eq!(e.problem, Problem::Missing);
        assert_eq!(
            e.to_string(),
            "operation record OP#op-1/OP: attribute `mode` is missing"
        );

        item.insert("mode".into(), av_n(3));
        let e = Operation::from_item(&item).unwrap_err();
        assert_eq!(
            e.to_string(),
            "operation record OP#op-1/OP: attribute `mode` has type N, expected S"
        );

        item.insert("mode".into(), av_s("FAST"));
        let e = Operation::from_item(&item).unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown mode \"FAST\", expected one of CONSISTENCY, UPTIME"),
            "{e}"
        );

        let mut item = sample_operation().to_item();
        item.insert("epoch".into(), av_n(-1));
        let e = Operation::from_item(&item).unwrap_err();
        assert!(
            e.to_string()
                .contains("`epoch` has a bad value: \"-1\" is not an unsigned"),
            "{e}"
        );

        let mut item = sample_operation().to_item();
        item.insert(
            "timings".into(),
            AttributeValue::M(Item::from([("totalMs".into(), av_s("x"))])),
        );
        let e = Operation::from_item(&item).unwrap_err();
        assert_eq!(e.attribute, "timings.totalMs");

        let mut item = sample_operation().to_item();
        item.insert("requestedAt".into(), av_n(i64::MAX));
        let e = Operation::from_item(&item).unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn null_attributes_count_as_absent() {
        let mut item = sample_operation().to_item();
        item.insert("message".into(), AttributeValue::Null(true));
        assert_eq!(Operation::from_item(&item).unwrap().message, None);
    }

    #[test]
    fn a_half_lease_is_rejected() {
        let state = GroupState {
            group: group(),
            active_cluster: "east".into(),
            epoch: 1,
            op_id: Some("op-1".into()),
            promotion_claimed_by: None,
            lease: Some(Lease {
                holder: "east".into(),
                expires_at: ts(5),
            }),
            suspended: false,
            version: 2,
            last_op_id: None,
            updated_at: ts(1),
        };
        let mut item = state.to_item();
        assert_eq!(GroupState::from_item(&item).unwrap(), state);
        item.remove("leaseExpiresAt");
        let e = GroupState::from_item(&item).unwrap_err();
        assert_eq!(e.attribute, "leaseExpiresAt");
    }

    #[test]
    fn the_claimer_of_a_promotion_is_entitled_over_the_active_cluster() {
        let mut state = GroupState {
            group: group(),
            active_cluster: "east".into(),
            epoch: 3,
            op_id: Some("op-1".into()),
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: ts(1),
        };
        assert!(state.is_entitled("east"));
        assert!(!state.is_entitled("west"));
        state.promotion_claimed_by = Some("west".into());
        assert_eq!(state.entitled_cluster(), "west");
        assert!(!state.is_entitled("east"));
        let mut item = state.to_item();
        assert_eq!(GroupState::from_item(&item).unwrap(), state);
        item.insert("promotionClaimedBy".into(), av_s("West#1"));
        let e = GroupState::from_item(&item).unwrap_err();
        assert_eq!(e.attribute, "promotionClaimedBy");
    }

    #[test]
    fn heartbeat_expiry_is_stored_in_seconds() {
        let hb = Heartbeat {
            cluster: "east".into(),
            agent_version: "0.1.0".into(),
            last_seen: ts(1_764_150_000_123),
            expires_at: Timestamp::from_second(1_764_150_030).unwrap(),
        };
        let item = hb.to_item();
        assert_eq!(item["expiresAt"], av_n(1_764_150_030_i64));
        assert_eq!(item["lastSeen"], av_n(1_764_150_000_123_i64));
        assert_eq!(Heartbeat::from_item(&item).unwrap(), hb);
        assert!(!hb.is_stale(ts(1_764_150_029_999)));
        assert!(hb.is_stale(ts(1_764_150_030_000)));
    }

    #[test]
    fn enums_parse_their_wire_names() {
        for m in Mode::ALL {
            assert_eq!(m.as_str().parse::<Mode>().unwrap(), *m);
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>().unwrap(), *p);
        }
        for s in HandoffState::ALL {
            assert_eq!(s.as_str().parse::<HandoffState>().unwrap(), *s);
        }
        for s in StepStatus::ALL {
            assert_eq!(s.as_str().parse::<StepStatus>().unwrap(), *s);
        }
        assert!("consistency".parse::<Mode>().is_err());
    }
}
