//! The steps that wait for the other cluster ([`WaitStep`]): each carries its own limit
//! (`within`), the sum of the limits of the peer's stages it waits through, and neither
//! counts against nor is bounded by its stage's limit. They run in the operation's own
//! task, woken by SQS or a re-read timer.

use std::time::Duration;

use crate::workflow::stages::{Role, StageId};

/// A step of the other cluster's workflow, by its journal keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerStep {
    /// The peer's role.
    pub role: Role,
    /// The stage of the step.
    pub stage: StageId,
    /// The step's journal key ([`Step::key`](super::Step::key)).
    pub task: String,
}

/// What shows that the source of a forced operation released its side: the same signal as
/// a graceful handoff.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Release {
    /// Every volume's `READY_FOR_PROMOTION` (or `PROMOTED`) record at this epoch.
    Volumes(Vec<String>),
    /// A group without volumes: the source's journaled handoff step at this epoch.
    Step(PeerStep),
}

/// A wait for the other cluster (see [`Step`](super::Step)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WaitStep {
    // --- the handoff -------------------------------------------------------------------------
    /// Wait until every volume of the group has a `READY_FOR_PROMOTION` (or `PROMOTED`)
    /// record at this epoch (atomic promotion).
    WaitAllReady {
        /// Every volume of the group.
        volumes: Vec<String>,
        /// How long the source may take to get there.
        within: Duration,
    },

    /// Forced operation (target, before the claim): wait until the source released its side
    /// ([`Release`]: an alive, connected source shuts down and hands off as in a graceful
    /// failover) or until every other cluster that may serve the group has certainly lost
    /// its serving lease (`protocol::lease`). Skipped at once when the requester vouched the
    /// source down.
    WaitSourceReleased {
        /// What shows the release.
        release: Release,
        /// How long the source may take to release.
        within: Duration,
    },

    // --- the other cluster -------------------------------------------------------------------
    /// Wait until the peer's journal shows a step `DONE` at this epoch.
    WaitPeer {
        /// The awaited step.
        peer: PeerStep,
        /// How long the peer may take to get there.
        within: Duration,
    },
    /// Wait until the operation is closed (by the target's completion, an abort, or a
    /// failure).
    WaitOperationClosed {
        /// How long the target may take to get there.
        within: Duration,
    },
}

impl WaitStep {
    /// The task's name, e.g. `WaitPeer`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::WaitAllReady { .. } => "WaitAllReady",
            Self::WaitSourceReleased { .. } => "WaitSourceReleased",
            Self::WaitPeer { .. } => "WaitPeer",
            Self::WaitOperationClosed { .. } => "WaitOperationClosed",
        }
    }

    /// What distinguishes the step in its journal key besides its name (the awaited step).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::WaitPeer { peer, .. } => {
                Some(format!("{}:{}:{}", peer.role, peer.stage.key(), peer.task))
            }
            Self::WaitAllReady { .. }
            | Self::WaitSourceReleased { .. }
            | Self::WaitOperationClosed { .. } => None,
        }
    }

    /// How long the other cluster may take: the step's own limit.
    pub fn within(&self) -> Duration {
        match self {
            Self::WaitAllReady { within, .. }
            | Self::WaitSourceReleased { within, .. }
            | Self::WaitPeer { within, .. }
            | Self::WaitOperationClosed { within } => *within,
        }
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        match self {
            Self::WaitAllReady { volumes, within } => format!(
                "Wait up to {} until all {} volume(s) are READY_FOR_PROMOTION at this epoch",
                humanize(*within),
                volumes.len()
            ),
            Self::WaitSourceReleased { within, .. } => format!(
                "Wait up to {} until the source has released its side or its serving lease is \
                 certainly over",
                humanize(*within)
            ),
            Self::WaitPeer { peer, within } => format!(
                "Wait up to {} until the {} cluster's journal shows {}/{} done at this epoch",
                humanize(*within),
                peer.role,
                peer.stage.key(),
                peer.task
            ),
            Self::WaitOperationClosed { within } => {
                format!(
                    "Wait up to {} until the operation is closed",
                    humanize(*within)
                )
            }
        }
    }
}

/// `d` as the spec writes durations: `10m`, `2h`, `90s`, `1500ms`.
pub(super) fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_millis() != 0 || secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
