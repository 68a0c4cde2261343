//! The steps on the operation's DynamoDB records ([`RecordStep`]): every one a read or a
//! conditional write of the store, conditioned on the group's epoch. They run in the
//! operation's own task.

use failover_messages::crd::WorkloadKind;

/// Which end of the UPTIME dual-active window a step records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DualActiveEnd {
    /// The target is about to promote its first volume (recorded by the target).
    Started,
    /// The last source volume became Secondary (recorded by the source).
    Ended,
}

/// A step on the operation's records (see [`Step`](super::Step)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RecordStep {
    // --- stage 1 -----------------------------------------------------------------------------
    /// Re-read the operation and group state (consistent reads) and check this cluster's
    /// part: the operation is in flight at this epoch, the cluster is its source or target,
    /// the group's spec is valid.
    ValidateOperation {
        /// Whether this side marks a `Pending` operation `Running` here (one side does; the
        /// source's `RecordReplicas` marks it when the source records counts).
        mark_running: bool,
    },
    /// Renew the operation's lease with this cluster as holder.
    RenewLease,

    // --- end of the source's stage 1 ------------------------------------------------------------
    /// Record the replica counts of the group's Deployments and StatefulSets before any
    /// change, in one write on the operation that also marks it `Running` (the first map
    /// recorded wins, so a restarted agent cannot overwrite them with zeros) and as the
    /// `failover.io/original-replicas` annotation on each object.
    RecordReplicas {
        /// The Deployments and StatefulSets, as `(kind, name)`.
        workloads: Vec<(WorkloadKind, String)>,
    },

    // --- the handoff -------------------------------------------------------------------------
    /// Mark every volume of the group `READY_FOR_PROMOTION` in one conditional write of
    /// the group state (protocol step 4). With no volumes the operation itself is marked ready
    /// (`groupReadyAt`): the target waits for this step's `DONE` in the journal, and the
    /// store accepts its claim without handoff records only after the mark.
    MarkAllReady {
        /// Every volume of the group.
        volumes: Vec<String>,
    },
    /// Claim the promotion for this cluster (protocol step 5). From then on this cluster
    /// is the one entitled to an active side, and an abort is refused.
    ClaimPromotion {
        /// The volumes whose handoff records the claim checks: every volume for
        /// CONSISTENCY, none for a forced or UPTIME promotion.
        ready_volumes: Vec<String>,
    },
    /// Mark the volumes `PROMOTED` (one conditional write of the group state).
    MarkPromoted {
        /// The promoted volumes.
        volumes: Vec<String>,
    },
    /// Record one end of the UPTIME dual-active window on the operation.
    RecordDualActive {
        /// Which end.
        end: DualActiveEnd,
    },

    // --- closing the operation ---------------------------------------------------------------
    /// Close the aborted operation (`Aborted`: group released by one conditional write,
    /// then history and the operation item written; active cluster unchanged).
    FinishAbort,
    /// Complete the operation (protocol step 6): one conditional write of the group state
    /// (active cluster := target, lease released), then history and the operation item.
    CompleteOperation,
}

impl RecordStep {
    /// The task's name, e.g. `ClaimPromotion`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ValidateOperation { .. } => "ValidateOperation",
            Self::RenewLease => "RenewLease",
            Self::RecordReplicas { .. } => "RecordReplicas",
            Self::MarkAllReady { .. } => "MarkAllReady",
            Self::ClaimPromotion { .. } => "ClaimPromotion",
            Self::MarkPromoted { .. } => "MarkPromoted",
            Self::RecordDualActive { .. } => "RecordDualActive",
            Self::FinishAbort => "FinishAbort",
            Self::CompleteOperation => "CompleteOperation",
        }
    }

    /// What distinguishes the step in its journal key besides its name (the window's end).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::RecordDualActive { end } => Some(format!("{end:?}")),
            _ => None,
        }
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        match self {
            Self::ValidateOperation { .. } => {
                "Re-read the operation and group state and check this cluster's part at the operation's epoch".to_owned()
            }
            Self::RenewLease => "Renew the operation's lease with this cluster as holder".to_owned(),
            Self::RecordReplicas { workloads } => format!(
                "Record the replica counts of {} workload(s) on the operation and as failover.io/original-replicas",
                workloads.len()
            ),
            Self::MarkAllReady { volumes } => format!(
                "Mark all {} volume(s) READY_FOR_PROMOTION in one conditional write",
                volumes.len()
            ),
            Self::ClaimPromotion { ready_volumes } if ready_volumes.is_empty() => {
                "Claim the promotion for this cluster without handoff records".to_owned()
            }
            Self::ClaimPromotion { ready_volumes } => format!(
                "Claim the promotion for this cluster, checking {} handoff record(s)",
                ready_volumes.len()
            ),
            Self::MarkPromoted { volumes } => {
                format!("Mark {} handoff record(s) PROMOTED", volumes.len())
            }
            Self::RecordDualActive {
                end: DualActiveEnd::Started,
            } => "Record the start of the dual-active window (before the first target volume is promoted)".to_owned(),
            Self::RecordDualActive {
                end: DualActiveEnd::Ended,
            } => "Record the end of the dual-active window (last source volume Secondary)".to_owned(),
            Self::CompleteOperation => {
                "Complete the operation: active cluster := target and lease released in one conditional write, then history written".to_owned()
            }
            Self::FinishAbort => {
                "Close the aborted operation: group released in one conditional write (active cluster unchanged), then history written".to_owned()
            }
        }
    }
}
