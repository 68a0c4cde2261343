//! The operation record `OP#<id>` / `OP` with its timings, and the history record that
//! copies a closed operation into the group partition.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::decode::{Reader, decode_replicas, decode_timings};
use super::encode::{Builder, replicas_to_av, timings_to_av};
use super::{DecodeError, Item, Mode, Phase, Record, attr};
use crate::keys::{self, GroupRef};

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
    /// Forced, and the requester vouched that the source is down: the target promotes
    /// without waiting for the source's release or the end of its lease.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_is_down: bool,
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
    /// UPTIME: when the target was about to promote its first volume (the dual-active
    /// window cannot start earlier).
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
    /// From the last `READY_FOR_PROMOTION` record written to the promotion claimed (`None`
    /// without handoff records at this epoch or without a claim: forced and UPTIME
    /// operations hand nothing off). What the target agent's
    /// `failover_handoff_latency_seconds` observes.
    pub fn handoff_latency(&self, handoffs: &[super::Handoff]) -> Option<std::time::Duration> {
        let claimed = self.promotion_started_at?;
        let ready = handoffs
            .iter()
            .filter(|h| h.epoch == self.epoch)
            .filter_map(|h| h.ready_at)
            .max()?;
        claimed
            .duration_since(ready)
            .try_into()
            .ok()
            .or(Some(std::time::Duration::ZERO))
    }

    /// The dual-active window (UPTIME), once both ends are recorded.
    pub fn dual_active_window(&self) -> Option<SignedDuration> {
        Some(
            self.dual_active_ended_at?
                .duration_since(self.dual_active_started_at?),
        )
    }
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
    if op.source_is_down {
        b = b.bool(attr::SOURCE_IS_DOWN, true);
    }
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
        source_is_down: r.opt_bool(attr::SOURCE_IS_DOWN)?.unwrap_or(false),
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
