//! The steps on this cluster's Kubernetes objects ([`KubeStep`]): traffic, Flux, workloads
//! and volumes. Each belongs to one [`Concern`], whose actor carries it out in the running
//! agent; every Kubernetes step names the one object it touches.

use std::fmt;

use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};
use failover_messages::protocol::names::{flux_kind_name, network_kind_name, workload_kind_name};

/// A local concern with an actor of its own: which kind of Kubernetes object a step touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Concern {
    /// Deployments, StatefulSets, CronJobs and their pods.
    Workloads,
    /// VirtualServices and Ingresses.
    Traffic,
    /// Flux HelmReleases and Kustomizations.
    GitOps,
    /// VolumeReplications.
    Volumes,
}

impl Concern {
    /// Every concern.
    pub const ALL: [Concern; 4] = [Self::Workloads, Self::Traffic, Self::GitOps, Self::Volumes];

    /// The `concern` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Workloads => "workloads",
            Self::Traffic => "traffic",
            Self::GitOps => "gitops",
            Self::Volumes => "volumes",
        }
    }
}

impl fmt::Display for Concern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step on one Kubernetes object of this cluster (see [`Step`](super::Step)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KubeStep {
    // --- traffic (concern: traffic) ----------------------------------------------------------
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

    // --- Flux (concern: GitOps) --------------------------------------------------------------
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

    // --- workloads (concern: workloads) ------------------------------------------------------
    /// Scale a Deployment or StatefulSet to 0 (its original count is kept by
    /// [`RecordStep::RecordReplicas`](super::RecordStep::RecordReplicas) and in the annotation).
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

    // --- volumes, source (concern: volumes) --------------------------------------------------
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

    // --- volumes, target (concern: volumes) --------------------------------------------------
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

    // --- rollback (source, after an abort; concern: volumes) ---------------------------------
    /// Set a VolumeReplication back to `primary` on the source after an abort. Refuses
    /// unless the group state shows this cluster entitled (no promotion claimed, this cluster
    /// active) and the operation's abort granted.
    Reactivate {
        /// The VolumeReplication.
        volume: String,
    },
}

impl KubeStep {
    /// The concern whose actor carries the step out.
    pub fn concern(&self) -> Concern {
        match self {
            Self::TrafficOff { .. } | Self::TrafficOn { .. } => Concern::Traffic,
            Self::SuspendFlux { .. } | Self::ResumeFlux { .. } => Concern::GitOps,
            Self::ScaleDown { .. }
            | Self::ScaleUp { .. }
            | Self::SuspendCronJob { .. }
            | Self::ResumeCronJob { .. }
            | Self::WaitPodsGone { .. }
            | Self::WaitReady { .. } => Concern::Workloads,
            Self::Demote { .. }
            | Self::WaitSecondary { .. }
            | Self::Resync { .. }
            | Self::WaitResynced { .. }
            | Self::Promote { .. }
            | Self::WaitPrimary { .. }
            | Self::VerifyData { .. }
            | Self::Reactivate { .. } => Concern::Volumes,
        }
    }

    /// Whether the engine reads the group state before it (the first of a run of its kind):
    /// every step that changes something in the cluster, except the promotion and the
    /// reactivation, whose tasks read it themselves (they need the claim too). Waits and the
    /// data check change nothing.
    pub fn checked_by_engine(&self) -> bool {
        !matches!(
            self,
            Self::WaitPodsGone { .. }
                | Self::WaitReady { .. }
                | Self::WaitSecondary { .. }
                | Self::WaitResynced { .. }
                | Self::WaitPrimary { .. }
                | Self::VerifyData { .. }
                | Self::Promote { .. }
                | Self::Reactivate { .. }
        )
    }

    /// The task's name, e.g. `ScaleDown`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::TrafficOff { .. } => "TrafficOff",
            Self::TrafficOn { .. } => "TrafficOn",
            Self::SuspendFlux { .. } => "SuspendFlux",
            Self::ResumeFlux { .. } => "ResumeFlux",
            Self::ScaleDown { .. } => "ScaleDown",
            Self::SuspendCronJob { .. } => "SuspendCronJob",
            Self::WaitPodsGone { .. } => "WaitPodsGone",
            Self::ScaleUp { .. } => "ScaleUp",
            Self::ResumeCronJob { .. } => "ResumeCronJob",
            Self::WaitReady { .. } => "WaitReady",
            Self::Demote { .. } => "Demote",
            Self::WaitSecondary { .. } => "WaitSecondary",
            Self::Resync { .. } => "Resync",
            Self::WaitResynced { .. } => "WaitResynced",
            Self::Promote { .. } => "Promote",
            Self::WaitPrimary { .. } => "WaitPrimary",
            Self::VerifyData { .. } => "VerifyData",
            Self::Reactivate { .. } => "Reactivate",
        }
    }

    /// The object the step touches, e.g. `Deployment/orders-api`,
    /// `HelmRelease/flux-system/orders`, `VolumeReplication/orders-db-data`.
    pub fn object(&self) -> String {
        match self {
            Self::TrafficOff { kind, name } | Self::TrafficOn { kind, name } => {
                format!("{}/{name}", network_kind_name(*kind))
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
            } => format!("{}/{namespace}/{name}", flux_kind_name(*kind)),
            Self::ScaleDown { kind, name }
            | Self::WaitPodsGone { kind, name }
            | Self::ScaleUp { kind, name }
            | Self::WaitReady { kind, name } => format!("{}/{name}", workload_kind_name(*kind)),
            Self::SuspendCronJob { name } | Self::ResumeCronJob { name } => {
                format!("CronJob/{name}")
            }
            Self::Demote { volume }
            | Self::WaitSecondary { volume }
            | Self::Resync { volume }
            | Self::WaitResynced { volume }
            | Self::Promote { volume }
            | Self::WaitPrimary { volume }
            | Self::VerifyData { volume }
            | Self::Reactivate { volume } => format!("VolumeReplication/{volume}"),
        }
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        let object = self.object();
        match self {
            Self::TrafficOff { .. } => {
                format!("Switch {object} passive (external-dns controller annotation `ignore`)")
            }
            Self::TrafficOn { .. } => format!(
                "Switch {object} active (external-dns controller annotation `dns-controller`)"
            ),
            Self::SuspendFlux { .. } => format!("Suspend {object} (spec.suspend=true)"),
            Self::ResumeFlux { .. } => {
                format!("Resume {object} (spec.suspend=false, reconcile.fluxcd.io/requestedAt=now)")
            }
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
            Self::Resync { .. } => format!("Set {object} to resync"),
            Self::WaitResynced { .. } => format!("Wait until {object} has resynced"),
            Self::Promote { .. } => {
                format!(
                    "Set {object} to primary (after checking its state if an earlier attempt was interrupted)"
                )
            }
            Self::WaitPrimary { .. } => format!(
                "Wait until {object} is Primary with Completed=True at its current generation"
            ),
            Self::VerifyData { .. } => {
                format!("Verify {object} is Primary, not Degraded, and its claim is Bound")
            }
            Self::Reactivate { .. } => format!(
                "Set {object} back to primary (abort granted, no promotion claimed, this cluster active)"
            ),
        }
    }
}
