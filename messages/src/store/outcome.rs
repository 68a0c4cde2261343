//! What a store operation can answer besides an error: typed outcomes of conditional writes,
//! and the small request types.
//!
//! A conditional write that loses (the epoch moved, an abort was requested first, another
//! coordinator won the race) is an expected answer, not a failure, so it comes back as an
//! [`Outcome`] variant (or a [`StartOutcome`] / [`RegisterOutcome`] variant) for the caller
//! to act on. The protocol's rule is that the caller never retries a lost conditional write:
//! an agent that gets [`Outcome::StaleEpoch`] stops working on that operation at once.

use std::time::Duration;

use jiff::Timestamp;

use crate::keys::GroupRef;
use crate::protocol::start::{Blocker, Refusal};
use crate::records::{GroupState, Heartbeat, JournalStep, Mode, Operation, Phase};

/// The operation an agent works on, at the epoch it runs at. Every agent write is
/// conditioned on this epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRef {
    /// Operation id.
    pub id: String,
    /// The group it moves.
    pub group: GroupRef,
    /// The group's epoch of this operation.
    pub epoch: u64,
}

impl From<&Operation> for OpRef {
    fn from(op: &Operation) -> Self {
        Self {
            id: op.id.clone(),
            group: op.group.clone(),
            epoch: op.epoch,
        }
    }
}

/// Where the group state stood when a write conditioned on the epoch lost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    /// The epoch the writer acted at.
    pub expected_epoch: u64,
    /// The group's epoch now (`None`: the group state is gone).
    pub current_epoch: Option<u64>,
    /// The operation in flight now, if any.
    pub current_op: Option<String>,
}

/// The answer of a conditional write an agent (or the coordinator's abort) makes.
///
/// Each store method documents which variants it can return; `Done` carries its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome<T> {
    /// The write committed.
    Done(T),
    /// The group's epoch moved (or the operation is no longer in flight): stop working on it.
    StaleEpoch(Stale),
    /// An abort was requested on the operation first; no promotion may happen.
    AbortRequested {
        /// When the abort was requested.
        at: Timestamp,
    },
    /// A promotion was claimed first; only forward (or a forced operation) is possible.
    PromotionClaimed {
        /// When this operation's promotion was claimed (`None`: the claim is on the group
        /// state only, kept from an earlier operation through a forced start).
        at: Option<Timestamp>,
        /// The claiming cluster, when known (`promotionClaimedBy` on the group state).
        by: Option<String>,
    },
    /// The promotion has not been claimed, so this step may not happen yet.
    NotClaimed,
    /// Some volumes have no `READY_FOR_PROMOTION` record at the operation's epoch.
    NotReady {
        /// The volumes without one.
        missing: Vec<String>,
    },
    /// A volume's handoff record is already `PROMOTED`; it cannot go back to ready.
    AlreadyPromoted {
        /// The volume.
        volume: String,
    },
    /// The journal step already finished (`DONE`): do not run it again.
    AlreadyDone(Box<JournalStep>),
    /// The operation is closed.
    AlreadyFinished {
        /// Its final phase.
        phase: Phase,
    },
    /// No abort was requested on the operation.
    NotRequested,
    /// The operation record does not exist.
    OperationNotFound {
        /// The id looked for.
        op_id: String,
    },
}

impl<T> Outcome<T> {
    /// True for [`Outcome::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, Self::Done(_))
    }

    /// True for [`Outcome::StaleEpoch`].
    pub fn is_stale(&self) -> bool {
        matches!(self, Self::StaleEpoch(_))
    }

    /// The result of a committed write.
    pub fn done(self) -> Option<T> {
        match self {
            Self::Done(t) => Some(t),
            _ => None,
        }
    }

    /// Maps the result of a committed write.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Outcome<U> {
        match self {
            Self::Done(t) => Outcome::Done(f(t)),
            Self::StaleEpoch(s) => Outcome::StaleEpoch(s),
            Self::AbortRequested { at } => Outcome::AbortRequested { at },
            Self::PromotionClaimed { at, by } => Outcome::PromotionClaimed { at, by },
            Self::NotClaimed => Outcome::NotClaimed,
            Self::NotReady { missing } => Outcome::NotReady { missing },
            Self::AlreadyPromoted { volume } => Outcome::AlreadyPromoted { volume },
            Self::AlreadyDone(step) => Outcome::AlreadyDone(step),
            Self::AlreadyFinished { phase } => Outcome::AlreadyFinished { phase },
            Self::NotRequested => Outcome::NotRequested,
            Self::OperationNotFound { op_id } => Outcome::OperationNotFound { op_id },
        }
    }
}

/// What the coordinator asks for when it starts an operation (protocol step 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartRequest {
    /// The group to move.
    pub group: GroupRef,
    /// The cluster it moves away from (must be the active one unless `force`).
    pub source: String,
    /// The cluster it moves to.
    pub target: String,
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// Drop the `activeCluster = source` condition (source unreachable).
    pub force: bool,
    /// Forced, and the requester vouches that the source is down (the target then promotes
    /// without waiting for the source's release or lease).
    pub source_is_down: bool,
    /// Why, for the record.
    pub reason: String,
    /// Who asks; also the first lease holder.
    pub requested_by: String,
    /// How long the lease lasts unless renewed.
    pub lease_ttl: Duration,
    /// The operation id to use; a fresh UUID when `None`. Giving the same id again makes a
    /// repeated start idempotent.
    pub op_id: Option<String>,
}

/// The answer to [`Store::start_operation`](super::Store::start_operation).
// Returned once per start and matched right away: boxing the operation buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// The operation started (or had started already with this id).
    Started(Operation),
    /// Another operation holds the group and its lease is live; nothing was written.
    LeaseHeld {
        /// Who holds the lease.
        holder: String,
        /// The operation in flight.
        op_id: String,
        /// When the lease expires unless renewed.
        expires: Timestamp,
    },
    /// Another start committed between our read and our write; nothing of ours was written.
    LostRace {
        /// Who holds the lease now.
        holder: String,
        /// The operation that won.
        op_id: String,
        /// When its lease expires unless renewed.
        expires: Timestamp,
    },
    /// A promotion was claimed on the group and not completed: only forward is possible,
    /// or a forced start (`force`). Nothing was written.
    PromotionClaimed {
        /// The group.
        group: GroupRef,
        /// The cluster that claimed it (`promotionClaimedBy`).
        claimed_by: String,
        /// The operation still named in flight, if any.
        op_id: Option<String>,
    },
    /// The source is not the active cluster (and `force` was not given).
    NotActive {
        /// The group.
        group: GroupRef,
        /// The cluster that is active.
        active: String,
    },
    /// The group has no state record: it was never registered.
    NotRegistered {
        /// The group.
        group: GroupRef,
    },
    /// The group is suspended.
    Suspended {
        /// The group.
        group: GroupRef,
    },
    /// Refused for another reason of [`decide_start`](crate::protocol::start::decide_start)
    /// (e.g. the target is already the active cluster).
    Refused(Refusal),
}

impl StartOutcome {
    /// The outcome of a start that [`decide_start`](crate::protocol::start::decide_start)
    /// refused; an operation in flight is a `LostRace` when `lost` (our own conditional
    /// write had just failed), else `LeaseHeld`.
    pub fn refused(refusal: Refusal, lost: bool) -> Self {
        let group = refusal.group.clone();
        match refusal.blocker {
            Blocker::NotRegistered => Self::NotRegistered { group },
            Blocker::Suspended => Self::Suspended { group },
            Blocker::InFlight {
                op_id,
                holder,
                expires,
            }
            | Blocker::LostRace {
                op_id,
                holder,
                expires,
            } if lost => Self::LostRace {
                holder,
                op_id,
                expires,
            },
            Blocker::InFlight {
                op_id,
                holder,
                expires,
            } => Self::LeaseHeld {
                holder,
                op_id,
                expires,
            },
            Blocker::PromotionClaimed { claimed_by, op_id } => Self::PromotionClaimed {
                group,
                claimed_by,
                op_id,
            },
            Blocker::NotActive { active } => Self::NotActive { group, active },
            blocker => Self::Refused(Refusal { blocker, ..refusal }),
        }
    }

    /// Why the start of `group` was refused, for a front end to render; `None` for
    /// `Started`.
    pub fn refusal(&self, group: &GroupRef) -> Option<Refusal> {
        let refusal = |cluster: &str, blocker| Refusal {
            group: group.clone(),
            cluster: cluster.to_owned(),
            blocker,
        };
        Some(match self {
            Self::Started(_) => return None,
            Self::LeaseHeld {
                holder,
                op_id,
                expires,
            } => refusal(
                "",
                Blocker::InFlight {
                    op_id: op_id.clone(),
                    holder: holder.clone(),
                    expires: *expires,
                },
            ),
            Self::LostRace {
                holder,
                op_id,
                expires,
            } => refusal(
                "",
                Blocker::LostRace {
                    op_id: op_id.clone(),
                    holder: holder.clone(),
                    expires: *expires,
                },
            ),
            Self::PromotionClaimed {
                claimed_by, op_id, ..
            } => refusal(
                claimed_by,
                Blocker::PromotionClaimed {
                    claimed_by: claimed_by.clone(),
                    op_id: op_id.clone(),
                },
            ),
            Self::NotActive { active, .. } => refusal(
                active,
                Blocker::NotActive {
                    active: active.clone(),
                },
            ),
            Self::NotRegistered { .. } => refusal("", Blocker::NotRegistered),
            Self::Suspended { .. } => refusal("", Blocker::Suspended),
            Self::Refused(r) => r.clone(),
        })
    }
}

/// The answer to [`Store::register_group`](super::Store::register_group).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// The group state was created (epoch 0).
    Registered(GroupState),
    /// It existed already with the same active cluster.
    AlreadyRegistered(GroupState),
    /// It exists with another active cluster; nothing was changed.
    ActiveElsewhere {
        /// The cluster that is active.
        active: String,
        /// The existing state.
        state: GroupState,
    },
}

/// The answer to [`Store::set_suspended`](super::Store::set_suspended).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuspendOutcome {
    /// The flag was changed; the new state.
    Changed(GroupState),
    /// The flag was already as asked; nothing was written.
    Unchanged(GroupState),
    /// The group has no state record.
    NotRegistered,
}

/// A heartbeat and whether it is stale by the store's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatStatus {
    /// The record.
    pub heartbeat: Heartbeat,
    /// `expiresAt` has passed (the item may linger: DynamoDB deletes late, moto never).
    pub stale: bool,
}

/// One end of the UPTIME dual-active window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DualActiveMark {
    /// The target is about to promote its first volume (the earliest mark is kept).
    Started(Timestamp),
    /// The last source volume became Secondary (the latest mark is kept).
    Ended(Timestamp),
}
