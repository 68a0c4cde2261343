//! The names components agree on: the annotations and labels agents put on the Kubernetes
//! objects they change or create, and the kind names used in messages, journal keys and spec
//! problems. A name that crosses a component boundary is defined here once.

use crate::crd::{FluxKind, NetworkKind, WorkloadKind};

/// Annotation with the group epoch of the last change an agent made to an object.
pub const ANNOTATION_EPOCH: &str = "failover.io/epoch";
/// Annotation with the operation id of the last change an agent made to an object; on a
/// `Failover` object it marks the object as agent-created (not a trigger).
pub const ANNOTATION_OPERATION: &str = "failover.io/operation";
/// Annotation with a workload's replica count before the failover scaled it to 0.
pub const ANNOTATION_ORIGINAL_REPLICAS: &str = "failover.io/original-replicas";
/// Label with the operation id on the `Failover` objects agents create.
pub const LABEL_OPERATION: &str = "failover.io/operation";
/// Label with the FailoverGroup's name (in a label-safe form) on the `Failover` objects agents
/// create.
pub const LABEL_GROUP: &str = "failover.io/group";

/// `Deployment`, `StatefulSet` or `CronJob`.
pub fn workload_kind_name(kind: WorkloadKind) -> &'static str {
    match kind {
        WorkloadKind::Deployment => "Deployment",
        WorkloadKind::StatefulSet => "StatefulSet",
        WorkloadKind::CronJob => "CronJob",
    }
}

/// `VirtualService` or `Ingress`.
pub fn network_kind_name(kind: NetworkKind) -> &'static str {
    match kind {
        NetworkKind::VirtualService => "VirtualService",
        NetworkKind::Ingress => "Ingress",
    }
}

/// `HelmRelease` or `Kustomization`.
pub fn flux_kind_name(kind: FluxKind) -> &'static str {
    match kind {
        FluxKind::HelmRelease => "HelmRelease",
        FluxKind::Kustomization => "Kustomization",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_the_kubernetes_kinds() {
        assert_eq!(workload_kind_name(WorkloadKind::StatefulSet), "StatefulSet");
        assert_eq!(
            network_kind_name(NetworkKind::VirtualService),
            "VirtualService"
        );
        assert_eq!(flux_kind_name(FluxKind::Kustomization), "Kustomization");
    }
}
