//! The Kubernetes Events on a `FailoverGroup` in this cluster: a Warning when its spec is
//! invalid (naming the field) and when this cluster fenced its side. Pure; published through
//! [`crate::kube_events`].

use crate::kube_events::EventSpec;

use super::group_spec::{REASON_INVALID_SPEC, SpecProblem, problems_message};

/// The Warning on a FailoverGroup whose spec is invalid.
pub fn invalid_spec_event(problems: &[SpecProblem], cluster: &str) -> EventSpec {
    EventSpec::new(
        true,
        REASON_INVALID_SPEC,
        "ValidateSpec",
        format!(
            "cluster {cluster} cannot fail this group over: {}",
            problems_message(problems)
        ),
    )
}

/// The Warning on a FailoverGroup whose side this cluster fenced.
pub fn fenced_event(cluster: &str, entitled: &str, epoch: u64, seen: &str) -> EventSpec {
    EventSpec::new(
        true,
        "Fenced",
        "Fence",
        format!(
            "cluster {cluster} is not entitled to this group ({entitled} is, epoch {epoch}) but its side was active ({seen}): traffic off, workloads scaled to 0, volumes demoted"
        ),
    )
}

/// This cluster's serving lease ran out and its side of the group was active (`seen`).
pub fn lease_expired_event(cluster: &str, seen: &str) -> EventSpec {
    EventSpec::new(
        true,
        "LeaseExpired",
        "Fence",
        format!(
            "cluster {cluster} lost its serving lease (DynamoDB unreachable) while its side was active ({seen}): traffic off, workloads scaled to 0, volumes demoted (onCoordinationLoss: Fence); only an operation brings it back"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invalid_spec_names_the_field() {
        let ev = invalid_spec_event(
            &[SpecProblem {
                field: "spec.volumeReplications[1].workload".into(),
                message: "names no workload of the group".into(),
            }],
            "east",
        );
        assert!(ev.warning && ev.note.contains("spec.volumeReplications[1].workload"));
    }
}
