//! What is wrong with a `FailoverGroup` spec, each problem naming its field. One validator:
//! the workflow factory refuses to plan a spec with problems, and the agent's FailoverGroup
//! status reports them in its `SpecValid` condition, so the two always agree.

use std::collections::BTreeMap;
use std::fmt;

use crate::crd::{CoordinationLoss, DurationError, FailoverGroupSpec, WorkloadKind};
use crate::keys;

use super::names::{flux_kind_name, network_kind_name, workload_kind_name};

/// The most volumes a group may have: the claim names every volume in the condition of one
/// `UpdateItem` (DynamoDB allows 4 KB of expression), and the group state item carries each
/// volume's marks.
pub const MAX_VOLUMES: usize = 98;

/// One thing wrong with a group spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    /// Path of the offending field, e.g. `spec.volumeReplications[1].workload`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for SpecProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl From<DurationError> for SpecProblem {
    fn from(e: DurationError) -> Self {
        Self {
            message: format!("invalid duration {:?}: {}", e.value, e.reason),
            field: e.field,
        }
    }
}

fn duplicates(field: &str, keys: impl Iterator<Item = String>, out: &mut Vec<SpecProblem>) {
    let mut first: BTreeMap<String, usize> = BTreeMap::new();
    for (i, key) in keys.enumerate() {
        if let Some(j) = first.get(&key) {
            out.push(SpecProblem {
                field: format!("{field}[{i}]"),
                message: format!("lists {key} again (already at {field}[{j}])"),
            });
        } else {
            first.insert(key, i);
        }
    }
}

/// Everything that keeps a failover of `spec` from being planned: durations that do not
/// parse or are zero, an object listed twice, more volumes than one handoff holds, a volume
/// whose `workload` is not in the group (its pods would not be stopped before the volume is
/// demoted), automatic failover together with `onCoordinationLoss: KeepServing` (a lost
/// active side that keeps serving makes an unattended forced failover unsafe), and an
/// `autoFailover.targets` entry that is no cluster name or is listed twice. Empty when the
/// spec is valid.
pub fn problems(spec: &FailoverGroupSpec) -> Vec<SpecProblem> {
    let mut out = Vec::new();
    if let Err(errors) = spec.validate() {
        out.extend(errors.into_iter().map(SpecProblem::from));
    }
    duplicates(
        "spec.workloads",
        spec.workloads
            .iter()
            .map(|w| format!("{}/{}", workload_kind_name(w.kind), w.name)),
        &mut out,
    );
    duplicates(
        "spec.volumeReplications",
        spec.volume_replications
            .iter()
            .map(|v| format!("VolumeReplication/{}", v.name)),
        &mut out,
    );
    duplicates(
        "spec.network",
        spec.network
            .iter()
            .map(|n| format!("{}/{}", network_kind_name(n.kind), n.name)),
        &mut out,
    );
    duplicates(
        "spec.flux",
        spec.flux
            .iter()
            .map(|f| format!("{}/{}/{}", flux_kind_name(f.kind), f.namespace, f.name)),
        &mut out,
    );
    for (i, w) in spec.workloads.iter().enumerate() {
        if w.kind == WorkloadKind::CronJob && w.replicas.is_some() {
            out.push(SpecProblem {
                field: format!("spec.workloads[{i}].replicas"),
                message: format!(
                    "CronJob/{} is suspended and resumed, never scaled; remove the field",
                    w.name
                ),
            });
        }
    }
    if spec.volume_replications.len() > MAX_VOLUMES {
        out.push(SpecProblem {
            field: "spec.volumeReplications".to_owned(),
            message: format!(
                "has {} entries; at most {MAX_VOLUMES} can be handed off together",
                spec.volume_replications.len()
            ),
        });
    }
    for (i, v) in spec.volume_replications.iter().enumerate() {
        if let Some(w) = &v.workload
            && !spec.workloads.iter().any(|x| &x.name == w)
        {
            out.push(SpecProblem {
                field: format!("spec.volumeReplications[{i}].workload"),
                message: format!(
                    "names no workload of the group (VolumeReplication/{} names {w:?}, which is \
                     not in spec.workloads; its pods would not be stopped before the volume is \
                     demoted)",
                    v.name
                ),
            });
        }
    }
    if spec.auto_failover.enabled && spec.on_coordination_loss == CoordinationLoss::KeepServing {
        out.push(SpecProblem {
            field: "spec.autoFailover.enabled".to_owned(),
            message: "cannot be true with spec.onCoordinationLoss: KeepServing (a lost active \
                      cluster would keep serving while a standby takes over); use Fence, or \
                      fail over by hand with --source-is-down"
                .to_owned(),
        });
    }
    for (i, t) in spec.auto_failover.targets.iter().enumerate() {
        if let Err(e) = keys::validate_cluster(t) {
            out.push(SpecProblem {
                field: format!("spec.autoFailover.targets[{i}]"),
                message: format!("{t:?} is not a cluster name: {}", e.problem),
            });
        }
    }
    duplicates(
        "spec.autoFailover.targets",
        spec.auto_failover.targets.iter().cloned(),
        &mut out,
    );
    out
}

/// The problems as one message (`; `-separated), for a condition, an event or an error.
pub fn problems_message(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{VolumeReplicationRef, WorkloadRef};

    fn spec() -> FailoverGroupSpec {
        FailoverGroupSpec {
            workloads: vec![WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
                replicas: Some(1),
            }],
            volume_replications: vec![VolumeReplicationRef {
                name: "db-data".into(),
                workload: Some("db".into()),
            }],
            ..FailoverGroupSpec::default()
        }
    }

    #[test]
    fn a_valid_spec_has_no_problems() {
        assert_eq!(problems(&spec()), []);
    }

    #[test]
    fn each_problem_names_its_field() {
        let mut s = spec();
        s.workloads.push(s.workloads[0].clone());
        s.workloads.push(WorkloadRef {
            kind: WorkloadKind::CronJob,
            name: "report".into(),
            replicas: Some(2),
        });
        s.volume_replications[0].workload = Some("nope".into());
        s.auto_failover.enabled = true;
        s.on_coordination_loss = CoordinationLoss::KeepServing;
        s.auto_failover.targets = vec!["west".into(), "West!".into(), "west".into()];
        let fields: Vec<String> = problems(&s).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.workloads[1]",
                "spec.workloads[2].replicas",
                "spec.volumeReplications[0].workload",
                "spec.autoFailover.enabled",
                "spec.autoFailover.targets[1]",
                "spec.autoFailover.targets[2]"
            ]
        );
        let text = problems_message(&problems(&s));
        assert!(
            text.contains("VolumeReplication/db-data names \"nope\""),
            "{text}"
        );
        assert!(text.contains("onCoordinationLoss: KeepServing"), "{text}");
    }

    #[test]
    fn automatic_failover_with_fence_is_valid() {
        let mut s = spec();
        s.auto_failover.enabled = true;
        s.auto_failover.targets = vec!["west".into(), "north".into()];
        assert_eq!(problems(&s), []);
    }
}
