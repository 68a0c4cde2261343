//! Validation of a `FailoverGroup` spec as this cluster's agent sees it: everything the
//! workflow factory would refuse, each problem naming its field path (e.g.
//! `spec.volumeReplications[1].workload`), so the status (`SpecValid`) and a Warning Event
//! can say what to fix before a failover is attempted. Pure.

use std::collections::BTreeMap;
use std::fmt;

use failover_messages::crd::FailoverGroupSpec;
use failover_messages::store::MAX_TRANSACTION_ITEMS;

use crate::kube_ops::{flux, traffic, workloads};

/// Reason of `SpecValid=False` (and of `Ready=False` for an invalid spec).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// The most volumes a group may have (one handoff transaction, next to two condition items);
/// the same limit as the factory's.
pub const MAX_VOLUMES: usize = MAX_TRANSACTION_ITEMS - 2;

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

/// Everything that keeps the factory from planning a failover of `spec` (the checks of
/// `workflow::Factory` plus the duration checks of [`FailoverGroupSpec::validate`]), each
/// naming its field path. Empty when the spec is valid.
pub fn validate_spec(spec: &FailoverGroupSpec) -> Vec<SpecProblem> {
    let mut out = Vec::new();
    if let Err(errors) = spec.validate() {
        out.extend(errors.into_iter().map(|e| SpecProblem {
            field: e.field.clone(),
            message: format!("invalid duration {:?}: {}", e.value, e.reason),
        }));
    }
    duplicates(
        "spec.workloads",
        spec.workloads
            .iter()
            .map(|w| format!("{}/{}", workloads::kind_name(w.kind), w.name)),
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
            .map(|n| format!("{}/{}", traffic::kind_name(n.kind), n.name)),
        &mut out,
    );
    duplicates(
        "spec.flux",
        spec.flux
            .iter()
            .map(|f| format!("{}/{}/{}", flux::kind_name(f.kind), f.namespace, f.name)),
        &mut out,
    );
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
                    "names no workload of the group ({w:?} is not in spec.workloads; its pods would not be stopped before the volume is demoted)"
                ),
            });
        }
    }
    out
}

/// The problems as one message (`; `-separated), for a condition or an event.
pub fn problems_message(problems: &[SpecProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
