//! This cluster's role in a `FailoverGroup` (`Primary` / `Standby` / `Transitioning`) from
//! the group's DynamoDB state, and the summary of its last operation (`status.lastOperation`).
//! Pure; the group status and the `UpdateGroupStatus` task use the same rules.

use failover_messages::crd::{FailoverPhase, GroupRole, LastOperation};
use failover_messages::records::{GroupState, Operation};

use crate::conditions::whole_seconds;

/// This cluster's role from the group state and the operation in flight (`op`, when
/// `state.op_id` names one and it could be read):
/// * `Transitioning` while an operation involving this cluster is in flight (an operation
///   whose record cannot be read counts as involving it);
/// * `Primary` when nothing is in flight and this cluster is entitled (it holds the claimed
///   promotion, or none is claimed and it is the active cluster);
/// * `Standby` otherwise.
pub fn role(state: &GroupState, op: Option<&Operation>, cluster: &str) -> GroupRole {
    if let Some(op_id) = &state.op_id {
        let involved = match op.filter(|o| &o.id == op_id) {
            Some(o) => o.source == cluster || o.target == cluster,
            None => true,
        };
        return if involved {
            GroupRole::Transitioning
        } else {
            GroupRole::Standby
        };
    }
    if state.entitled_cluster() == cluster {
        GroupRole::Primary
    } else {
        GroupRole::Standby
    }
}

/// The summary of `op` for `status.lastOperation`.
pub fn last_operation(op: &Operation) -> LastOperation {
    LastOperation {
        id: op.id.clone(),
        phase: Some(FailoverPhase::from(op.phase)),
        mode: Some(op.mode.into()),
        source_cluster: Some(op.source.clone()),
        target_cluster: Some(op.target.clone()),
        started_at: Some(whole_seconds(op.requested_at)),
        finished_at: op.finished_at.map(whole_seconds),
    }
}
