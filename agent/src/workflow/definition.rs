//! The plain-data workflow definition the [`Factory`](super::Factory) builds: a
//! [`Workflow`] is a list of [`Stage`]s, each a list of [`Step`]s. A step says what to do
//! to which object; it does nothing by itself (a [`TaskBuilder`](super::TaskBuilder) turns
//! it into a task).
//!
//! # Stages
//!
//! The stages are the seed's CONSISTENCY stages 1–6, split by role, plus one stage of its
//! own for UPTIME's resync. Their numbers give the order in which the whole operation
//! (both clusters) passes through them, so they differ by mode:
//!
//! | stage | runs on | CONSISTENCY | UPTIME | time limit (`spec.timeouts`) |
//! |---|---|---|---|---|
//! | Initialization | both | 1 | 1 | `initialization` |
//! | Source Cluster Shutdown | source | 2 | 4 | `sourceShutdown` |
//! | Volume Transition (Source) | source | 3 | 5 | `volumeDemotion` |
//! | Volume Transition (Target) | target | 4 | 2 | `volumePromotion` |
//! | Target Cluster Activation | target | 5 | 3 | `targetActivation` |
//! | Volume Resync (Source) | source | – | 6 | `volumeDemotion` (no field of its own yet) |
//! | Completion | both | 6 | 7 | `completion` |
//!
//! # Journal keys
//!
//! A stage's journal key is [`StageId::key`] (e.g. `SourceShutdown`); a step's is
//! [`Step::key`]: its name and object (e.g. `ScaleDown:Deployment/orders-api`), unique within
//! its stage, at most 128 characters (longer ones are cut and end in a hash), without `#` or
//! whitespace, as the journal's sort key requires.
//!
//! # Deadlines
//!
//! A step that does this cluster's own work may run at most its stage's time limit, and the
//! stage's own work together also at most that limit. A step that waits for the other
//! cluster ([`Step::WaitAllReady`], [`Step::WaitPeer`], [`Step::WaitOperationClosed`]) carries
//! its own limit (`within`), the sum of the limits of the peer's stages it waits through, and
//! does not count against its stage's limit.

use std::fmt;
use std::time::Duration;

use failover_messages::crd::{FluxKind, NetworkKind, TimeoutStage, WorkloadKind};
use failover_messages::envelope::EnvelopeKind;
use failover_messages::keys::MAX_STEP_NAME_LEN;
use failover_messages::records::Mode;

use super::context::Role;

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

/// Which end of the UPTIME dual-active window a step records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DualActiveEnd {
    /// The first target volume became Primary (recorded by the target).
    Started,
    /// The last source volume became Secondary (recorded by the source).
    Ended,
}

/// A step of the other cluster's workflow, by its journal keys.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PeerStep {
    /// The peer's role.
    pub role: Role,
    /// The stage of the step.
    pub stage: StageId,
    /// The step's journal key ([`Step::key`]).
    pub task: String,
}

/// One step of a workflow and the object it touches. Plain data: the factory builds these,
/// a [`TaskBuilder`](super::TaskBuilder) turns them into tasks. Every step's task must be
/// idempotent (see [`WorkflowTask`](super::WorkflowTask)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    // --- stage 1 -------------------------------------------------------------------------
    /// Re-read the operation and group state (consistent reads) and check this cluster's
    /// part: the operation is in flight at this epoch, the cluster is its source or target,
    /// the group's spec is valid.
    ValidateOperation,
    /// Renew the operation's lease with this cluster as holder.
    RenewLease,

    // --- traffic --------------------------------------------------------------------------
    /// Make a traffic object passive: external-dns controller annotation `ignore`.
    TrafficOff {
        /// VirtualService or Ingress.
        kind: NetworkKind,
        /// Its name in the group's namespace.
        name: String,
    },
    /// Make a traffic object active: external-dns controller annotation `dns-controller`.
    TrafficOn {
        /// VirtualService or Ingress.
        kind: NetworkKind,
        /// Its name in the group's namespace.
        name: String,
    },

    // --- Flux -----------------------------------------------------------------------------
    /// Suspend a Flux object (`spec.suspend = true`), so that no reconcile undoes what the
    /// following steps change.
    SuspendFlux {
        /// HelmRelease or Kustomization.
        kind: FluxKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// Resume a Flux object: `spec.suspend = false` and `reconcile.fluxcd.io/requestedAt`
    /// set to now, so Flux reconciles at once.
    ResumeFlux {
        /// HelmRelease or Kustomization.
        kind: FluxKind,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },

    // --- workloads ------------------------------------------------------------------------
    /// Record the replica counts of the group's Deployments and StatefulSets before any is
    /// scaled down, in one write on the operation (the first map recorded wins, so a
    /// restarted agent cannot overwrite them with zeros) and as the
    /// `failover.io/original-replicas` annotation on each object.
    RecordReplicas {
        /// The Deployments and StatefulSets, as `(kind, name)`.
        workloads: Vec<(WorkloadKind, String)>,
    },
    /// Scale a Deployment or StatefulSet to 0 (its original count is kept by
    /// [`Step::RecordReplicas`] and in the annotation).
    ScaleDown {
        /// Deployment or StatefulSet.
        kind: WorkloadKind,
        /// Its name.
        name: String,
    },
    /// Suspend a CronJob (`spec.suspend = true`).
    SuspendCronJob {
        /// Its name.
        name: String,
    },
    /// Wait until no pod of the workload is left (for a CronJob: of its Jobs).
    WaitPodsGone {
        /// The workload's kind.
        kind: WorkloadKind,
        /// Its name.
        name: String,
    },
    /// Scale a Deployment or StatefulSet up to its recorded replica count (from the
    /// operation, else the object's `failover.io/original-replicas` annotation).
    ScaleUp {
        /// Deployment or StatefulSet.
        kind: WorkloadKind,
        /// Its name.
        name: String,
    },
    /// Resume a CronJob (`spec.suspend = false`).
    ResumeCronJob {
        /// Its name.
        name: String,
    },
    /// Wait until a Deployment or StatefulSet has all its replicas ready.
    WaitReady {
        /// Deployment or StatefulSet.
        kind: WorkloadKind,
        /// Its name.
        name: String,
    },

    // --- volumes, source ------------------------------------------------------------------
    /// Set a VolumeReplication's `spec.replicationState` to `secondary`.
    Demote {
        /// The VolumeReplication.
        volume: String,
    },
    /// Wait until the VolumeReplication reports `status.state = Secondary` with
    /// `Completed=True`, at its current `metadata.generation` (`status.observedGeneration`).
    WaitSecondary {
        /// The VolumeReplication.
        volume: String,
    },
    /// Put a `READY_FOR_PROMOTION` record for every volume of the group in one transaction
    /// (protocol step 4). With no volumes the operation itself is marked ready
    /// (`groupReadyAt`): the target waits for this step's `DONE` in the journal, and the
    /// store accepts its claim without handoff records only after the mark.
    MarkAllReady {
        /// Every volume of the group.
        volumes: Vec<String>,
    },
    /// Set a VolumeReplication's `spec.replicationState` to `resync` (UPTIME, after the
    /// target became Primary).
    Resync {
        /// The VolumeReplication.
        volume: String,
    },
    /// Wait until the VolumeReplication has resynced (`Resyncing` no longer true,
    /// `Completed=True`, state `Secondary`).
    WaitResynced {
        /// The VolumeReplication.
        volume: String,
    },

    // --- volumes, target ------------------------------------------------------------------
    /// Wait until every volume of the group has a `READY_FOR_PROMOTION` (or `PROMOTED`)
    /// record at this epoch (atomic promotion).
    WaitAllReady {
        /// Every volume of the group.
        volumes: Vec<String>,
        /// How long the source may take to get there.
        within: Duration,
    },
    /// Claim the promotion for this cluster (protocol step 5). From then on this cluster
    /// is the one entitled to an active side, and an abort is refused.
    ClaimPromotion {
        /// The volumes whose handoff records the claim checks: every volume for
        /// CONSISTENCY, none for a forced or UPTIME promotion.
        ready_volumes: Vec<String>,
    },
    /// Set a VolumeReplication's `spec.replicationState` to `primary`. When the journal
    /// shows an interrupted earlier attempt, the task first reads the volume and the claim.
    Promote {
        /// The VolumeReplication.
        volume: String,
    },
    /// Wait until the VolumeReplication reports `status.state = Primary` with
    /// `Completed=True`, at its current generation.
    WaitPrimary {
        /// The VolumeReplication.
        volume: String,
    },
    /// Verify the data is usable: the VolumeReplication is Primary and not `Degraded`, its
    /// PersistentVolumeClaim is `Bound`.
    VerifyData {
        /// The VolumeReplication.
        volume: String,
    },
    /// Mark the handoff records `PROMOTED` (one transaction).
    MarkPromoted {
        /// The promoted volumes.
        volumes: Vec<String>,
    },
    /// Record one end of the UPTIME dual-active window on the operation.
    RecordDualActive {
        /// Which end.
        end: DualActiveEnd,
    },

    // --- the other cluster ----------------------------------------------------------------
    /// Send the peer a wake-up envelope (a hint; the peer re-reads the records).
    Notify {
        /// Who is woken.
        to: Role,
        /// What happened.
        kind: EnvelopeKind,
    },
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

    // --- rollback (source, after an abort) ---------------------------------------------------
    /// Set a VolumeReplication back to `primary` on the source after an abort. Refuses
    /// unless the group state shows this cluster entitled (no promotion claimed, this cluster
    /// active) and the operation's abort granted.
    Reactivate {
        /// The VolumeReplication.
        volume: String,
    },
    /// Close the aborted operation in one transaction (`Aborted`, group released, history
    /// written, active cluster unchanged).
    FinishAbort,

    // --- completion -----------------------------------------------------------------------
    /// Complete the operation in one transaction (protocol step 6): active cluster :=
    /// target, operation closed, history written, lease released.
    CompleteOperation,
    /// Update the FailoverGroup's status in this cluster (role, active cluster, epoch, last
    /// operation, per-resource state).
    UpdateGroupStatus,
}

/// `Deployment` / `StatefulSet` / `CronJob`.
pub fn workload_kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::CronJob => "CronJob",
    }
}

/// `VirtualService` / `Ingress`.
pub fn network_kind_name(kind: NetworkKind) -> &'static str {
    match kind {
        NetworkKind::VirtualService => "VirtualService",
        NetworkKind::Ingress => "Ingress",
    }
}

/// `HelmRelease` / `Kustomization`.
pub fn flux_kind_name(kind: FluxKind) -> &'static str {
    match kind {
        FluxKind::HelmRelease => "HelmRelease",
        FluxKind::Kustomization => "Kustomization",
    }
}

fn volume_object(volume: &str) -> String {
    format!("VolumeReplication/{volume}")
}

impl Step {
    /// The task's name, e.g. `ScaleDown`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ValidateOperation => "ValidateOperation",
            Self::RenewLease => "RenewLease",
            Self::TrafficOff { .. } => "TrafficOff",
            Self::TrafficOn { .. } => "TrafficOn",
            Self::SuspendFlux { .. } => "SuspendFlux",
            Self::ResumeFlux { .. } => "ResumeFlux",
            Self::RecordReplicas { .. } => "RecordReplicas",
            Self::ScaleDown { .. } => "ScaleDown",
            Self::SuspendCronJob { .. } => "SuspendCronJob",
            Self::WaitPodsGone { .. } => "WaitPodsGone",
            Self::ScaleUp { .. } => "ScaleUp",
            Self::ResumeCronJob { .. } => "ResumeCronJob",
            Self::WaitReady { .. } => "WaitReady",
            Self::Demote { .. } => "Demote",
            Self::WaitSecondary { .. } => "WaitSecondary",
            Self::MarkAllReady { .. } => "MarkAllReady",
            Self::Resync { .. } => "Resync",
            Self::WaitResynced { .. } => "WaitResynced",
            Self::WaitAllReady { .. } => "WaitAllReady",
            Self::ClaimPromotion { .. } => "ClaimPromotion",
            Self::Promote { .. } => "Promote",
            Self::WaitPrimary { .. } => "WaitPrimary",
            Self::VerifyData { .. } => "VerifyData",
            Self::MarkPromoted { .. } => "MarkPromoted",
            Self::RecordDualActive { .. } => "RecordDualActive",
            Self::Notify { .. } => "Notify",
            Self::WaitPeer { .. } => "WaitPeer",
            Self::WaitOperationClosed { .. } => "WaitOperationClosed",
            Self::CompleteOperation => "CompleteOperation",
            Self::UpdateGroupStatus => "UpdateGroupStatus",
            Self::Reactivate { .. } => "Reactivate",
            Self::FinishAbort => "FinishAbort",
        }
    }

    /// The one object the step touches, e.g. `Deployment/orders-api`, `HelmRelease/flux-system/orders`,
    /// `VolumeReplication/orders-db-data` (`None` for steps on records or on several objects).
    pub fn object(&self) -> Option<String> {
        match self {
            Self::TrafficOff { kind, name } | Self::TrafficOn { kind, name } => {
                Some(format!("{}/{name}", network_kind_name(*kind)))
            }
            Self::SuspendFlux {
                kind,
                namespace,
                name,
            }
            | Self::ResumeFlux {
                kind,
                namespace,
                name,
            } => Some(format!("{}/{namespace}/{name}", flux_kind_name(*kind))),
            Self::ScaleDown { kind, name }
            | Self::WaitPodsGone { kind, name }
            | Self::ScaleUp { kind, name }
            | Self::WaitReady { kind, name } => {
                Some(format!("{}/{name}", workload_kind_name(*kind)))
            }
            Self::SuspendCronJob { name } | Self::ResumeCronJob { name } => {
                Some(format!("CronJob/{name}"))
            }
            Self::Demote { volume }
            | Self::WaitSecondary { volume }
            | Self::Resync { volume }
            | Self::WaitResynced { volume }
            | Self::Promote { volume }
            | Self::WaitPrimary { volume }
            | Self::VerifyData { volume }
            | Self::Reactivate { volume } => Some(volume_object(volume)),
            Self::ValidateOperation
            | Self::RenewLease
            | Self::RecordReplicas { .. }
            | Self::MarkAllReady { .. }
            | Self::WaitAllReady { .. }
            | Self::ClaimPromotion { .. }
            | Self::MarkPromoted { .. }
            | Self::RecordDualActive { .. }
            | Self::Notify { .. }
            | Self::WaitPeer { .. }
            | Self::WaitOperationClosed { .. }
            | Self::CompleteOperation
            | Self::FinishAbort
            | Self::UpdateGroupStatus => None,
        }
    }

    /// The journal key: the name, plus the object or what distinguishes the step, e.g.
    /// `ScaleDown:Deployment/orders-api`, `Notify:target:ReadyForPromotion`. At most 128
    /// characters (longer keys are cut and end in `~<hash>`), never `#` or whitespace.
    pub fn key(&self) -> String {
        let detail = match self {
            Self::RecordDualActive { end } => Some(format!("{end:?}")),
            Self::Notify { to, kind } => Some(format!("{to}:{}", kind.as_str())),
            Self::WaitPeer { peer, .. } => {
                Some(format!("{}:{}:{}", peer.role, peer.stage.key(), peer.task))
            }
            _ => self.object(),
        };
        let key = match detail {
            Some(d) => format!("{}:{d}", self.name()),
            None => self.name().to_owned(),
        };
        bounded_key(key)
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        let object = self.object().unwrap_or_default();
        match self {
            Self::ValidateOperation => {
                "Re-read the operation and group state and check this cluster's part at the operation's epoch".to_owned()
            }
            Self::RenewLease => "Renew the operation's lease with this cluster as holder".to_owned(),
            Self::TrafficOff { .. } => {
                format!("Switch {object} passive (external-dns controller annotation `ignore`)")
            }
            Self::TrafficOn { .. } => format!(
                "Switch {object} active (external-dns controller annotation `dns-controller`)"
            ),
            Self::SuspendFlux { .. } => format!("Suspend {object} (spec.suspend=true)"),
            Self::ResumeFlux { .. } => format!(
                "Resume {object} (spec.suspend=false, reconcile.fluxcd.io/requestedAt=now)"
            ),
            Self::RecordReplicas { workloads } => format!(
                "Record the replica counts of {} workload(s) on the operation and as failover.io/original-replicas",
                workloads.len()
            ),
            Self::ScaleDown { .. } => format!("Scale {object} to 0 replicas"),
            Self::SuspendCronJob { .. } => format!("Suspend {object} (spec.suspend=true)"),
            Self::WaitPodsGone { .. } => format!("Wait until no pod of {object} is left"),
            Self::ScaleUp { .. } => format!("Scale {object} up to its recorded replica count"),
            Self::ResumeCronJob { .. } => format!("Resume {object} (spec.suspend=false)"),
            Self::WaitReady { .. } => format!("Wait until every replica of {object} is ready"),
            Self::Demote { .. } => format!("Set {object} to secondary"),
            Self::WaitSecondary { .. } => format!(
                "Wait until {object} is Secondary with Completed=True at its current generation"
            ),
            Self::MarkAllReady { volumes } => format!(
                "Mark all {} volume(s) READY_FOR_PROMOTION in one transaction",
                volumes.len()
            ),
            Self::Resync { .. } => format!("Set {object} to resync"),
            Self::WaitResynced { .. } => format!("Wait until {object} has resynced"),
            Self::WaitAllReady { volumes, within } => format!(
                "Wait up to {} until all {} volume(s) are READY_FOR_PROMOTION at this epoch",
                humanize(*within),
                volumes.len()
            ),
            Self::ClaimPromotion { ready_volumes } if ready_volumes.is_empty() => {
                "Claim the promotion for this cluster without handoff records".to_owned()
            }
            Self::ClaimPromotion { ready_volumes } => format!(
                "Claim the promotion for this cluster, checking {} handoff record(s)",
                ready_volumes.len()
            ),
            Self::Promote { .. } => {
                format!("Set {object} to primary (after checking its state if an earlier attempt was interrupted)")
            }
            Self::WaitPrimary { .. } => format!(
                "Wait until {object} is Primary with Completed=True at its current generation"
            ),
            Self::VerifyData { .. } => {
                format!("Verify {object} is Primary, not Degraded, and its claim is Bound")
            }
            Self::MarkPromoted { volumes } => {
                format!("Mark {} handoff record(s) PROMOTED", volumes.len())
            }
            Self::RecordDualActive {
                end: DualActiveEnd::Started,
            } => "Record the start of the dual-active window (first target volume Primary)".to_owned(),
            Self::RecordDualActive {
                end: DualActiveEnd::Ended,
            } => "Record the end of the dual-active window (last source volume Secondary)".to_owned(),
            Self::Notify { to, kind } => format!("Notify the {to} cluster: {}", kind.as_str()),
            Self::WaitPeer { peer, within } => format!(
                "Wait up to {} until the {} cluster's journal shows {}/{} done at this epoch",
                humanize(*within),
                peer.role,
                peer.stage.key(),
                peer.task
            ),
            Self::WaitOperationClosed { within } => {
                format!("Wait up to {} until the operation is closed", humanize(*within))
            }
            Self::CompleteOperation => {
                "Complete the operation in one transaction: active cluster := target, history written, lease released".to_owned()
            }
            Self::UpdateGroupStatus => "Update the FailoverGroup's status in this cluster".to_owned(),
            Self::Reactivate { .. } => format!(
                "Set {object} back to primary (abort granted, no promotion claimed, this cluster active)"
            ),
            Self::FinishAbort => {
                "Close the aborted operation in one transaction: group released, active cluster unchanged, history written".to_owned()
            }
        }
    }

    /// Whether the engine journals the step's intent and outcome.
    ///
    /// Every step is, except four that may run after the operation is closed, when every
    /// journal write (conditioned on `opId = id`) is refused: [`Step::CompleteOperation`]
    /// (it closes the operation), [`Step::Notify`], [`Step::WaitOperationClosed`] and
    /// [`Step::UpdateGroupStatus`]. All four are idempotent (a duplicate notification is a
    /// harmless hint, completion is a conditional write that recognises itself) and run
    /// again on a resume.
    pub fn journaled(&self) -> bool {
        !matches!(
            self,
            Self::CompleteOperation
                | Self::FinishAbort
                | Self::Notify { .. }
                | Self::WaitOperationClosed { .. }
                | Self::UpdateGroupStatus
        )
    }

    /// Steps the journal must never redo blindly (a claim or a promotion): when an earlier
    /// attempt is journaled `STARTED`, the task checks the current state first.
    pub fn is_promotion(&self) -> bool {
        matches!(self, Self::ClaimPromotion { .. } | Self::Promote { .. })
    }

    /// The step's own limit, for steps that wait for the other cluster (they neither count
    /// against nor are bounded by their stage's limit).
    pub fn own_deadline(&self) -> Option<Duration> {
        match self {
            Self::WaitAllReady { within, .. }
            | Self::WaitPeer { within, .. }
            | Self::WaitOperationClosed { within } => Some(*within),
            _ => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

fn humanize(d: Duration) -> String {
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

/// `key` if it fits the journal's limit, else its first characters, `~` and a 64-bit FNV-1a
/// hash of the whole (stable across builds, so a resumed agent finds its steps again).
fn bounded_key(key: String) -> String {
    let key: String = key
        .chars()
        .map(|c| {
            if c == '#' || c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if key.len() <= MAX_STEP_NAME_LEN {
        return key;
    }
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut cut = MAX_STEP_NAME_LEN - 17;
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{hash:016x}", &key[..cut])
}

/// One stage of a workflow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Which stage.
    pub id: StageId,
    /// Its number in the operation's mode (1-based; see the module docs).
    pub number: u8,
    /// The seed's name for it, e.g. `Source Cluster Shutdown`.
    pub name: &'static str,
    /// Its time limit (`spec.timeouts`): for each step doing this cluster's own work and for
    /// all of them together.
    pub timeout: Duration,
    /// Its steps, in order.
    pub tasks: Vec<Step>,
}

impl Stage {
    /// The stage's journal key.
    pub fn key(&self) -> &'static str {
        self.id.key()
    }

    /// How long `step` may run: its own limit, or the stage's.
    pub fn deadline_of(&self, step: &Step) -> Duration {
        step.own_deadline().unwrap_or(self.timeout)
    }
}

/// What one cluster does in one operation: its stages in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workflow {
    /// CONSISTENCY or UPTIME.
    pub mode: Mode,
    /// This cluster's role.
    pub role: Role,
    /// Whether the operation is forced.
    pub force: bool,
    /// The stages, in order (stages with nothing to do are left out).
    pub stages: Vec<Stage>,
}

impl Workflow {
    /// Every step with its stage, in order.
    pub fn steps(&self) -> impl Iterator<Item = (&Stage, &Step)> {
        self.stages
            .iter()
            .flat_map(|stage| stage.tasks.iter().map(move |step| (stage, step)))
    }

    /// The step with journal key `task` in stage `stage`.
    pub fn find(&self, stage: StageId, task: &str) -> Option<&Step> {
        self.stages
            .iter()
            .filter(|s| s.id == stage)
            .flat_map(|s| &s.tasks)
            .find(|step| step.key() == task)
    }

    /// The stage `id`, if the workflow has it.
    pub fn stage(&self, id: StageId) -> Option<&Stage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The last journaled step of the stages before `before` (all stages when `None`), as
    /// the other cluster names it in a [`Step::WaitPeer`].
    pub fn last_journaled_before(&self, before: Option<StageId>) -> Option<PeerStep> {
        self.stages
            .iter()
            .take_while(|s| Some(s.id) != before)
            .flat_map(|s| s.tasks.iter().map(move |t| (s.id, t)))
            .filter(|(_, t)| t.journaled())
            .last()
            .map(|(stage, t)| PeerStep {
                role: self.role,
                stage,
                task: t.key(),
            })
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

    #[test]
    fn keys_name_the_object_and_fit_the_journal() {
        let step = Step::ScaleDown {
            kind: WorkloadKind::Deployment,
            name: "orders-api".into(),
        };
        assert_eq!(step.key(), "ScaleDown:Deployment/orders-api");
        assert_eq!(step.object().as_deref(), Some("Deployment/orders-api"));
        let flux = Step::SuspendFlux {
            kind: FluxKind::HelmRelease,
            namespace: "flux-system".into(),
            name: "orders".into(),
        };
        assert_eq!(flux.key(), "SuspendFlux:HelmRelease/flux-system/orders");
        assert_eq!(
            Step::Notify {
                to: Role::Target,
                kind: EnvelopeKind::ReadyForPromotion
            }
            .key(),
            "Notify:target:ReadyForPromotion"
        );
        assert_eq!(
            Step::RecordDualActive {
                end: DualActiveEnd::Ended
            }
            .key(),
            "RecordDualActive:Ended"
        );
        assert_eq!(Step::CompleteOperation.key(), "CompleteOperation");
    }

    #[test]
    fn long_keys_are_cut_stably_and_stay_distinct() {
        let long = |suffix: &str| Step::WaitSecondary {
            volume: format!("{}{suffix}", "v".repeat(240)),
        };
        let (a, b) = (long("a"), long("b"));
        assert!(a.key().len() <= MAX_STEP_NAME_LEN, "{}", a.key().len());
        assert_eq!(a.key(), long("a").key());
        assert_ne!(a.key(), b.key());
        failover_messages::keys::validate_step_name("task", &a.key()).unwrap();
    }

    #[test]
    fn durations_read_like_the_spec() {
        assert_eq!(humanize(Duration::from_secs(600)), "10m");
        assert_eq!(humanize(Duration::from_secs(7200)), "2h");
        assert_eq!(humanize(Duration::from_secs(90)), "90s");
        assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
    }
}
