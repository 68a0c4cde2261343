//! The steps that tell others what happened ([`NotifyStep`]): a wake-up envelope to the
//! other cluster's inbox, and this cluster's `FailoverGroup` status. Both may run after the
//! operation is closed, so neither is journaled; both are idempotent.

use failover_messages::envelope::EnvelopeKind;

use crate::workflow::stages::Role;

/// A step that tells others what happened (see [`Step`](super::Step)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum NotifyStep {
    // --- the other cluster -------------------------------------------------------------------
    /// Send the peer a wake-up envelope (a hint; the peer re-reads the records).
    Notify {
        /// Who is woken.
        to: Role,
        /// What happened.
        kind: EnvelopeKind,
    },

    // --- this cluster's FailoverGroup --------------------------------------------------------
    /// Update the FailoverGroup's status in this cluster (role, active cluster, epoch, last
    /// operation, per-resource state).
    UpdateGroupStatus,
}

impl NotifyStep {
    /// The task's name, e.g. `Notify`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Notify { .. } => "Notify",
            Self::UpdateGroupStatus => "UpdateGroupStatus",
        }
    }

    /// What distinguishes the step in its journal key besides its name (who is woken, why).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Notify { to, kind } => Some(format!("{to}:{}", kind.as_str())),
            Self::UpdateGroupStatus => None,
        }
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        match self {
            Self::Notify { to, kind } => format!("Notify the {to} cluster: {}", kind.as_str()),
            Self::UpdateGroupStatus => {
                "Update the FailoverGroup's status in this cluster".to_owned()
            }
        }
    }
}
