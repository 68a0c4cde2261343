//! The two facts of the protocol every part of a workflow names: which side a cluster is on
//! ([`Role`]) and which stage of the failover a step belongs to ([`StageId`]: its number per
//! mode, journal key, title, the role that runs it and the `spec.timeouts` field that limits
//! it). Plain data and pure functions, shared by the factory, the definition and the
//! contexts; the module docs of [`definition`](super::definition) list the stages.

use std::fmt;

use failover_messages::crd::TimeoutStage;
use failover_messages::records::Mode;

/// Which side of an operation this cluster is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The cluster the group moves away from: shuts down and demotes.
    Source,
    /// The cluster the group moves to: promotes and activates.
    Target,
}

impl Role {
    /// Both roles.
    pub const ALL: [Role; 2] = [Role::Source, Role::Target];

    /// The other side.
    pub fn peer(self) -> Role {
        match self {
            Role::Source => Role::Target,
            Role::Target => Role::Source,
        }
    }

    /// `source` / `target`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Target => "target",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stage of the failover, independent of its number (which depends on the mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageId {
    /// Stage 1 (both): validation, lease, consistent view.
    Initialization,
    /// Source: traffic off, Flux suspended, workloads down, pods gone.
    SourceShutdown,
    /// Source: volumes demoted and (CONSISTENCY) handed off.
    VolumeTransitionSource,
    /// Target: handoff awaited (CONSISTENCY), promotion claimed, volumes promoted and verified.
    VolumeTransitionTarget,
    /// Target: workloads up, Flux resumed, ready, traffic on.
    TargetActivation,
    /// Source (UPTIME only): volumes resynced from the new primary.
    VolumeResync,
    /// Both: operation completed (target), statuses updated.
    Completion,
    /// Source, after an abort granted before any promotion: volumes Primary again,
    /// workloads, CronJobs, Flux and traffic back on, the operation closed as `Aborted`.
    /// Not part of either mode's forward order.
    Rollback,
}

impl StageId {
    /// The stages of a CONSISTENCY operation, in order.
    pub const CONSISTENCY: [StageId; 6] = [
        Self::Initialization,
        Self::SourceShutdown,
        Self::VolumeTransitionSource,
        Self::VolumeTransitionTarget,
        Self::TargetActivation,
        Self::Completion,
    ];

    /// The stages of an UPTIME operation, in order.
    pub const UPTIME: [StageId; 7] = [
        Self::Initialization,
        Self::VolumeTransitionTarget,
        Self::TargetActivation,
        Self::SourceShutdown,
        Self::VolumeTransitionSource,
        Self::VolumeResync,
        Self::Completion,
    ];

    /// The stages of an operation in `mode`, in order.
    pub fn order(mode: Mode) -> &'static [StageId] {
        match mode {
            Mode::Consistency => &Self::CONSISTENCY,
            Mode::Uptime => &Self::UPTIME,
        }
    }

    /// The stage's number in `mode` (1-based), `None` if the mode has no such stage.
    pub fn number(self, mode: Mode) -> Option<u8> {
        Self::order(mode)
            .iter()
            .position(|s| *s == self)
            .and_then(|i| u8::try_from(i + 1).ok())
    }

    /// The journal key and `Failover` status value, e.g. `SourceShutdown`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Initialization => "Initialization",
            Self::SourceShutdown => "SourceShutdown",
            Self::VolumeTransitionSource => "VolumeTransitionSource",
            Self::VolumeTransitionTarget => "VolumeTransitionTarget",
            Self::TargetActivation => "TargetActivation",
            Self::VolumeResync => "VolumeResync",
            Self::Completion => "Completion",
            Self::Rollback => "Rollback",
        }
    }

    /// The seed's name for the stage, e.g. `Source Cluster Shutdown`.
    pub fn title(self) -> &'static str {
        match self {
            Self::Initialization => "Initialization",
            Self::SourceShutdown => "Source Cluster Shutdown",
            Self::VolumeTransitionSource => "Volume Transition (Source)",
            Self::VolumeTransitionTarget => "Volume Transition (Target)",
            Self::TargetActivation => "Target Cluster Activation",
            Self::VolumeResync => "Volume Resync (Source)",
            Self::Completion => "Completion",
            Self::Rollback => "Rollback (Source)",
        }
    }

    /// The role that runs the stage (`None`: both).
    pub fn runs_on(self) -> Option<Role> {
        match self {
            Self::Initialization | Self::Completion => None,
            Self::SourceShutdown
            | Self::VolumeTransitionSource
            | Self::VolumeResync
            | Self::Rollback => Some(Role::Source),
            Self::VolumeTransitionTarget | Self::TargetActivation => Some(Role::Target),
        }
    }

    /// The `spec.timeouts` field that limits the stage.
    pub fn timeout_stage(self) -> TimeoutStage {
        match self {
            Self::Initialization => TimeoutStage::Initialization,
            Self::SourceShutdown => TimeoutStage::SourceShutdown,
            Self::VolumeTransitionSource | Self::VolumeResync => TimeoutStage::VolumeDemotion,
            Self::VolumeTransitionTarget => TimeoutStage::VolumePromotion,
            Self::TargetActivation | Self::Rollback => TimeoutStage::TargetActivation,
            Self::Completion => TimeoutStage::Completion,
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_numbers_follow_the_mode() {
        let numbers = |mode| {
            StageId::order(mode)
                .iter()
                .map(|s| s.number(mode).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(numbers(Mode::Consistency), [1, 2, 3, 4, 5, 6]);
        assert_eq!(numbers(Mode::Uptime), [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(StageId::VolumeResync.number(Mode::Consistency), None);
        assert_eq!(StageId::SourceShutdown.number(Mode::Consistency), Some(2));
        assert_eq!(StageId::SourceShutdown.number(Mode::Uptime), Some(4));
        assert_eq!(StageId::SourceShutdown.title(), "Source Cluster Shutdown");
    }
}
