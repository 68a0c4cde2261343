//! The stages of an operation: their order per mode, the role that runs each, their titles,
//! and what each does in words. The workflow factory builds its plans in this order,
//! `failoverctl plan` prints these descriptions, progress output and the `Failover` status use
//! these keys, and the docs quote these titles; nothing else spells a stage.
//!
//! | stage | runs on | CONSISTENCY | UPTIME | time limit (`spec.timeouts`) |
//! |---|---|---|---|---|
//! | Initialization | both | 1 | 1 | `initialization` |
//! | Source Cluster Shutdown | source | 2 | 4 | `sourceShutdown` |
//! | Volume Transition (Source) | source | 3 | 5 | `volumeDemotion` |
//! | Volume Transition (Target) | target | 4 | 2 | `volumePromotion` |
//! | Target Cluster Activation | target | 5 | 3 | `targetActivation` |
//! | Volume Resync (Source) | source | – | 6 | `volumeDemotion` |
//! | Completion | both | 6 | 7 | `completion` |
//!
//! `Rollback` (source, after an abort granted before any promotion) is in neither order.

use std::fmt;

use crate::crd::TimeoutStage;
use crate::records::Mode;

/// Which side of an operation a cluster is on.
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

    /// The stage of a journal key ([`StageId::key`]).
    pub fn from_key(key: &str) -> Option<StageId> {
        Self::UPTIME
            .into_iter()
            .chain([Self::Rollback])
            .find(|s| s.key() == key)
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

    /// `source`, `target` or `both`.
    pub fn runs_on_str(self) -> &'static str {
        self.runs_on().map_or("both", Role::as_str)
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

    /// What the stage does in an operation of `mode` (`force`: the target does not wait for
    /// the graceful handoff, only for the source's release or the end of its lease), in the
    /// order the factory plans the steps.
    pub fn description(self, mode: Mode, force: bool) -> &'static str {
        use Mode::{Consistency, Uptime};
        match (self, mode) {
            (Self::Initialization, Consistency) => {
                "read the operation and group spec, validate, renew the lease"
            }
            (Self::Initialization, Uptime) => {
                "read the operation and group spec, validate, renew the lease; the source \
                 records its replica counts"
            }
            (Self::SourceShutdown, Consistency) => {
                "network off, Flux suspended, replica counts recorded, workloads scaled to 0 \
                 and CronJobs suspended, wait until their pods are gone"
            }
            (Self::SourceShutdown, Uptime) => {
                "wait until the target serves, then network off, Flux suspended, workloads \
                 scaled to 0 and CronJobs suspended, wait until their pods are gone"
            }
            (Self::VolumeTransitionSource, Consistency) => {
                "volumes set secondary, wait Secondary + Completed, mark every volume \
                 READY_FOR_PROMOTION, notify the target"
            }
            (Self::VolumeTransitionSource, Uptime) => {
                "volumes set secondary, wait Secondary + Completed, record the end of the \
                 dual-active window"
            }
            (Self::VolumeTransitionTarget, Consistency) if !force => {
                "wait for every handoff record, claim the promotion, volumes set primary, wait \
                 Primary, verify, mark promoted"
            }
            (Self::VolumeTransitionTarget, Consistency) => {
                "wait until the source released its side (its handoff records) or its serving \
                 lease is certainly over, claim the promotion, volumes set primary, wait \
                 Primary, verify, mark promoted"
            }
            (Self::VolumeTransitionTarget, Uptime) => {
                "claim the promotion without handoff records, volumes set primary, wait \
                 Primary, record the start of the dual-active window, verify, mark promoted"
            }
            (Self::TargetActivation, Consistency) => {
                "scale up to the recorded replicas, CronJobs resumed, Flux resumed, wait \
                 ready, network on"
            }
            (Self::TargetActivation, Uptime) => {
                "wait for the source's replica counts, scale up to them, CronJobs resumed, \
                 Flux resumed, wait ready, network on, notify the source"
            }
            (Self::VolumeResync, _) => {
                "old source volumes set resync, follow the resync to completion, notify the \
                 target"
            }
            (Self::Completion, _) => {
                "active cluster := target, operation closed, history written, lease released"
            }
            (Self::Rollback, _) => {
                "volumes Primary again, workloads scaled up, CronJobs and Flux resumed, \
                 network on, operation closed as Aborted"
            }
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One stage of an operation as a front end shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StageStep {
    /// 1-based position in the mode's order.
    pub number: usize,
    /// The stage.
    pub stage: StageId,
    /// What it does.
    pub description: &'static str,
}

/// The stages of an operation in `mode`, numbered, with their descriptions.
pub fn outline(mode: Mode, force: bool) -> Vec<StageStep> {
    StageId::order(mode)
        .iter()
        .enumerate()
        .map(|(i, stage)| StageStep {
            number: i + 1,
            stage: *stage,
            description: stage.description(mode, force),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_demotes_the_source_before_the_target_promotes() {
        let n = |s: StageId| s.number(Mode::Consistency).unwrap();
        assert!(n(StageId::VolumeTransitionSource) < n(StageId::VolumeTransitionTarget));
        assert_eq!(StageId::VolumeResync.number(Mode::Consistency), None);
    }

    #[test]
    fn uptime_activates_the_target_before_the_source_shuts_down() {
        let n = |s: StageId| s.number(Mode::Uptime).unwrap();
        assert!(n(StageId::TargetActivation) < n(StageId::SourceShutdown));
        assert_eq!(n(StageId::Completion), 7);
    }

    #[test]
    fn every_stage_key_reads_back() {
        for s in StageId::UPTIME.into_iter().chain([StageId::Rollback]) {
            assert_eq!(StageId::from_key(s.key()), Some(s));
        }
        assert_eq!(StageId::from_key("Nope"), None);
    }

    #[test]
    fn the_outline_names_cronjobs_where_the_factory_handles_them() {
        for mode in [Mode::Consistency, Mode::Uptime] {
            let text: Vec<&str> = outline(mode, false).iter().map(|s| s.description).collect();
            let shutdown = StageId::SourceShutdown.description(mode, false);
            let activation = StageId::TargetActivation.description(mode, false);
            assert!(shutdown.contains("CronJobs suspended"), "{text:?}");
            assert!(activation.contains("CronJobs resumed"), "{text:?}");
        }
    }

    #[test]
    fn force_changes_only_the_targets_consistency_promotion() {
        let plain = outline(Mode::Consistency, false);
        let forced = outline(Mode::Consistency, true);
        for (a, b) in plain.iter().zip(&forced) {
            assert_eq!(
                a.description == b.description,
                a.stage != StageId::VolumeTransitionTarget,
                "{a:?} {b:?}"
            );
        }
        assert_eq!(outline(Mode::Uptime, false), outline(Mode::Uptime, true));
    }

    #[test]
    fn stages_run_on_the_documented_side() {
        assert_eq!(StageId::Initialization.runs_on_str(), "both");
        assert_eq!(StageId::SourceShutdown.runs_on_str(), "source");
        assert_eq!(StageId::TargetActivation.runs_on_str(), "target");
    }
}
