//! The checks a cluster makes before anything changes ([`CheckStep`]): the preflight of the
//! Initialization stage. A check reads (this cluster's Kubernetes API, the operation's
//! DynamoDB records) and changes nothing; it runs in the operation's own task.

use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};

use crate::workflow::stages::Role;

/// What one cluster's preflight looks for in its own cluster: every object the group names,
/// and what the target needs to know to scale up.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Preflight {
    /// Deployments, StatefulSets and CronJobs, as `(kind, name)`.
    pub workloads: Vec<(WorkloadKind, String)>,
    /// VirtualServices and Ingresses, as `(kind, name)`.
    pub network: Vec<(NetworkKind, String)>,
    /// HelmReleases and Kustomizations, as `(kind, namespace, name)`.
    pub flux: Vec<(FluxKind, String, String)>,
    /// VolumeReplications (each with its PersistentVolumeClaim and, if named, its
    /// VolumeReplicationClass).
    pub volumes: Vec<String>,
    /// Target only: the Deployments and StatefulSets it scales up, as `(kind, name, the
    /// spec's declared replica count)`; each needs a known count.
    pub scale_up: Vec<(WorkloadKind, String, Option<u32>)>,
}

impl Preflight {
    /// How many objects it looks at.
    pub fn len(&self) -> usize {
        self.workloads.len() + self.network.len() + self.flux.len() + self.volumes.len()
    }

    /// True when the group names nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A check before anything changes (see [`Step`](super::Step)).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CheckStep {
    /// Check, in this cluster and before any change in either cluster, what can be known up
    /// front: every object the group names exists, each VolumeReplication's
    /// PersistentVolumeClaim (`spec.dataSource`) and VolumeReplicationClass exist, and
    /// (target) every workload it scales up has a known replica count. Every problem is
    /// reported, each naming the object, its kind and the cluster; any problem fails the
    /// operation.
    Preflight {
        /// This cluster's role.
        role: Role,
        /// What it looks for.
        checks: Box<Preflight>,
    },
}

impl CheckStep {
    /// The task's name, e.g. `Preflight`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Preflight { .. } => "Preflight",
        }
    }

    /// What distinguishes the step in its journal key besides its name (nothing).
    pub fn detail(&self) -> Option<String> {
        None
    }

    /// One sentence for humans.
    pub fn description(&self) -> String {
        match self {
            Self::Preflight { role, checks } => {
                let scale = match role {
                    Role::Target => format!(
                        ", and that the replica counts of {} workload(s) to scale up are known",
                        checks.scale_up.len()
                    ),
                    Role::Source => String::new(),
                };
                format!(
                    "Check, before any change, that the {} object(s) the group names exist in this cluster, with each volume's PersistentVolumeClaim and VolumeReplicationClass{scale}",
                    checks.len()
                )
            }
        }
    }
}
