//! The run checker: after a scenario, one verdict on everything that must hold, from every
//! source of truth at once — the storage simulators' violations, the agents' records in
//! DynamoDB (group state, operations, history) and both clusters' final state
//! (VolumeReplication states, workload replicas).
//!
//! [`judge`] is the pure part: given the [`RunFacts`], it lists every [`Problem`]:
//! - a `DualPrimary` interval not inside the dual-active window recorded on an UPTIME
//!   operation of a group in its namespace (within [`CheckOptions::observation_slack`] at
//!   the start: the agents record the window when they observe it, the simulator when it
//!   writes), or still open;
//! - every `DemotedWithPods`, `PodsOnSecondary` and `Unknown` the simulators recorded;
//! - an operation not terminal (terminal: `Succeeded`, `Aborted`, `Superseded`,
//!   `RolledBack`, and `Failed` with a message saying why);
//! - a group state left holding something with no operation in flight: a lease or a
//!   promotion claim without an operation, an operation that is closed (a `Failed` one may
//!   stay named, waiting for an abort, but never with a claim), or one that does not exist;
//! - a group state that disagrees with the clusters: every volume of the group settled
//!   `Primary` in the active cluster and `Secondary` in the others, and the others'
//!   Deployments and StatefulSets at 0 replicas, their CronJobs suspended; a group that was
//!   never registered, or whose `FailoverGroup` is in no cluster.
//!
//! [`check_run`] is the thin I/O part: it reads those facts for a [`Stack`] and its groups
//! and judges them.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Context, Result};
use failover_messages::crd::{FailoverGroup, FailoverGroupSpec, WorkloadKind};
use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, Mode, Operation, Phase};
use failover_messages::store::Store;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use kube::api::Api;

use crate::agents::Stack;
use crate::kube::{Cluster, TestEnv};
use crate::storage_sim::{
    STATE_PRIMARY, STATE_SECONDARY, Violation, VrView, format_ms, volume_replications,
};

/// Everything a verdict is made from.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// What the storage simulators recorded.
    pub violations: Vec<Violation>,
    /// The groups of the run.
    pub groups: Vec<GroupFacts>,
}

/// One group's records and its state in each cluster.
#[derive(Clone, Debug)]
pub struct GroupFacts {
    /// The group.
    pub group: GroupRef,
    /// Its group state (`None`: never registered).
    pub state: Option<GroupState>,
    /// Every operation of the group (consistently read).
    pub operations: Vec<Operation>,
    /// Its `FailoverGroup` spec (`None`: in no cluster).
    pub spec: Option<FailoverGroupSpec>,
    /// Its objects in each cluster.
    pub sides: Vec<Side>,
}

/// A group's objects in one cluster.
#[derive(Clone, Debug)]
pub struct Side {
    /// The cluster.
    pub cluster: String,
    /// Each VolumeReplication of the spec (`None`: missing).
    pub volumes: Vec<(String, Option<VrView>)>,
    /// Each workload of the spec, `<Kind>/<name>` (`None`: missing).
    pub workloads: Vec<(String, Option<Scale>)>,
}

/// How far a workload is scaled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// A Deployment's or StatefulSet's `spec.replicas`.
    Replicas(i32),
    /// A CronJob's `spec.suspend`.
    Suspended(bool),
}

/// How strict the verdict is.
#[derive(Clone, Copy, Debug)]
pub struct CheckOptions {
    /// How much earlier than the recorded window's start a dual Primary may start.
    pub observation_slack: SignedDuration,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            observation_slack: SignedDuration::from_secs(1),
        }
    }
}

/// One thing that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Both clusters were Primary outside every recorded UPTIME window (`end: None`: still).
    DualPrimary {
        namespace: String,
        volume: String,
        start: Timestamp,
        end: Option<Timestamp>,
    },
    /// A volume was demoted while pods of its workload existed.
    DemotedWithPods {
        cluster: String,
        namespace: String,
        volume: String,
        pods: Vec<String>,
    },
    /// Pods of its workload existed while a volume was Secondary.
    PodsOnSecondary {
        cluster: String,
        namespace: String,
        volume: String,
        pods: Vec<String>,
    },
    /// The simulator could not tell whether `check` passed.
    Unknown {
        cluster: String,
        namespace: String,
        volume: String,
        check: String,
        error: String,
    },
    /// The group has no group state.
    NotRegistered { group: GroupRef },
    /// No cluster has the group's `FailoverGroup`: its sides cannot be checked.
    NoSpec { group: GroupRef },
    /// An operation of the group did not end.
    NotTerminal {
        group: GroupRef,
        op_id: String,
        phase: Phase,
    },
    /// An operation failed without saying why.
    FailedWithoutReason { group: GroupRef, op_id: String },
    /// The group state holds something with no operation in flight (`what`).
    LeftHeld { group: GroupRef, what: String },
    /// A volume's state in a cluster disagrees with the group state.
    Volume {
        group: GroupRef,
        cluster: String,
        volume: String,
        want: &'static str,
        found: String,
    },
    /// A workload of a cluster that is not active is not scaled down.
    Workload {
        group: GroupRef,
        cluster: String,
        workload: String,
        found: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DualPrimary {
                namespace,
                volume,
                start,
                end,
            } => {
                let until = end.map_or("on (still open)".to_owned(), |e| {
                    format!("to {}", format_ms(e))
                });
                write!(
                    f,
                    "{namespace}/{volume} was Primary in two clusters from {} {until}, outside every recorded UPTIME window",
                    format_ms(*start)
                )
            }
            Self::DemotedWithPods {
                cluster,
                namespace,
                volume,
                pods,
            } => write!(
                f,
                "{namespace}/{volume} was demoted in {cluster} while pods {pods:?} existed"
            ),
            Self::PodsOnSecondary {
                cluster,
                namespace,
                volume,
                pods,
            } => write!(
                f,
                "pods {pods:?} existed in {cluster} while {namespace}/{volume} was Secondary"
            ),
            Self::Unknown {
                cluster,
                namespace,
                volume,
                check,
                error,
            } => write!(
                f,
                "{check} of {namespace}/{volume} in {cluster} could not be checked: {error}"
            ),
            Self::NotRegistered { group } => write!(f, "group {group} has no group state"),
            Self::NoSpec { group } => write!(f, "group {group} has a FailoverGroup in no cluster"),
            Self::NotTerminal {
                group,
                op_id,
                phase,
            } => write!(
                f,
                "operation {op_id} of {group} ended {phase}, not terminal"
            ),
            Self::FailedWithoutReason { group, op_id } => {
                write!(f, "operation {op_id} of {group} failed without a reason")
            }
            Self::LeftHeld { group, what } => write!(f, "group state of {group}: {what}"),
            Self::Volume {
                group,
                cluster,
                volume,
                want,
                found,
            } => write!(
                f,
                "{group}: {volume} in {cluster} should be settled {want}, found {found}"
            ),
            Self::Workload {
                group,
                cluster,
                workload,
                found,
            } => write!(
                f,
                "{group}: {workload} in {cluster} (not active) should be scaled down, found {found}"
            ),
        }
    }
}

/// The problems of a run; clean when there are none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Every problem found, in the order of the checks.
    pub problems: Vec<Problem>,
}

impl Verdict {
    /// True when nothing was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Fails listing every problem unless the verdict is clean.
    pub fn ensure_clean(&self) -> Result<()> {
        anyhow::ensure!(self.is_clean(), "the run checker found problems:\n{self}");
        Ok(())
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return f.write_str("clean");
        }
        for p in &self.problems {
            writeln!(f, "- {p}")?;
        }
        Ok(())
    }
}

/// The verdict on `facts` (see the module docs).
pub fn judge(facts: &RunFacts, options: &CheckOptions) -> Verdict {
    let mut problems = Vec::new();
    for v in &facts.violations {
        problems.extend(violation_problem(v, facts, options));
    }
    for g in &facts.groups {
        operation_problems(g, &mut problems);
        group_state_problems(g, &mut problems);
        side_problems(g, &mut problems);
    }
    Verdict { problems }
}

/// The problem a recorded violation is, if any (a dual Primary inside a recorded UPTIME
/// window is none).
fn violation_problem(v: &Violation, facts: &RunFacts, options: &CheckOptions) -> Option<Problem> {
    let (namespace, volume) = (v.namespace().to_owned(), v.name().to_owned());
    Some(match v {
        Violation::DualPrimary { start, end, .. } => {
            if end.is_some_and(|end| in_uptime_window(facts, v, *start, end, options)) {
                return None;
            }
            Problem::DualPrimary {
                namespace,
                volume,
                start: *start,
                end: *end,
            }
        }
        Violation::DemotedWithPods { cluster, pods, .. } => Problem::DemotedWithPods {
            cluster: cluster.clone(),
            namespace,
            volume,
            pods: pods.clone(),
        },
        Violation::PodsOnSecondary { cluster, pods, .. } => Problem::PodsOnSecondary {
            cluster: cluster.clone(),
            namespace,
            volume,
            pods: pods.clone(),
        },
        Violation::Unknown {
            cluster,
            check,
            error,
            ..
        } => Problem::Unknown {
            cluster: cluster.clone(),
            namespace,
            volume,
            check: check.clone(),
            error: error.clone(),
        },
    })
}

/// Whether `[start, end]` of a dual Primary of `v`'s volume lies in the dual-active window
/// of an UPTIME operation of a group of its namespace that has the volume (any group of the
/// namespace when its spec is unknown).
fn in_uptime_window(
    facts: &RunFacts,
    v: &Violation,
    start: Timestamp,
    end: Timestamp,
    options: &CheckOptions,
) -> bool {
    facts
        .groups
        .iter()
        .filter(|g| g.group.namespace == v.namespace())
        .filter(|g| {
            g.spec
                .as_ref()
                .is_none_or(|s| s.volume_replications.iter().any(|r| r.name == v.name()))
        })
        .flat_map(|g| &g.operations)
        .filter(|op| op.mode == Mode::Uptime)
        .any(
            |op| match (op.dual_active_started_at, op.dual_active_ended_at) {
                (Some(s), Some(e)) => start >= s - options.observation_slack && end <= e,
                _ => false,
            },
        )
}

fn operation_problems(g: &GroupFacts, problems: &mut Vec<Problem>) {
    for op in &g.operations {
        if !op.phase.is_terminal() {
            problems.push(Problem::NotTerminal {
                group: g.group.clone(),
                op_id: op.id.clone(),
                phase: op.phase,
            });
        } else if op.phase == Phase::Failed
            && op.message.as_deref().is_none_or(|m| m.trim().is_empty())
        {
            problems.push(Problem::FailedWithoutReason {
                group: g.group.clone(),
                op_id: op.id.clone(),
            });
        }
    }
}

fn group_state_problems(g: &GroupFacts, problems: &mut Vec<Problem>) {
    let Some(state) = &g.state else {
        problems.push(Problem::NotRegistered {
            group: g.group.clone(),
        });
        return;
    };
    let mut held = |what: String| {
        problems.push(Problem::LeftHeld {
            group: g.group.clone(),
            what,
        })
    };
    let claim = state.promotion_claimed_by.as_deref();
    let Some(op_id) = &state.op_id else {
        if let Some(lease) = &state.lease {
            held(format!(
                "lease held by {} (until {}) with no operation",
                lease.holder,
                format_ms(lease.expires_at)
            ));
        }
        if let Some(c) = claim {
            held(format!("promotion claimed by {c} with no operation"));
        }
        return;
    };
    match g.operations.iter().find(|op| op.id == *op_id) {
        None => held(format!("names operation {op_id}, which does not exist")),
        Some(op) if op.phase == Phase::Failed => {
            if let Some(c) = claim {
                held(format!(
                    "promotion claimed by {c} for failed operation {op_id}"
                ));
            }
        }
        Some(op) if op.phase.is_terminal() => {
            held(format!(
                "still names operation {op_id}, closed {}",
                op.phase
            ));
        }
        // Not terminal: reported with the operations.
        Some(_) => {}
    }
}

fn side_problems(g: &GroupFacts, problems: &mut Vec<Problem>) {
    let Some(state) = &g.state else {
        return;
    };
    if g.spec.is_none() {
        problems.push(Problem::NoSpec {
            group: g.group.clone(),
        });
        return;
    }
    for side in &g.sides {
        let active = side.cluster == state.active_cluster;
        let want = if active {
            STATE_PRIMARY
        } else {
            STATE_SECONDARY
        };
        for (volume, view) in &side.volumes {
            let found = match view {
                Some(v) if v.is_settled(want) => continue,
                Some(v) => describe_volume(v),
                None => "no such VolumeReplication".to_owned(),
            };
            problems.push(Problem::Volume {
                group: g.group.clone(),
                cluster: side.cluster.clone(),
                volume: volume.clone(),
                want,
                found,
            });
        }
        if active {
            continue;
        }
        for (workload, scale) in &side.workloads {
            let found = match scale {
                Some(Scale::Replicas(0) | Scale::Suspended(true)) => continue,
                Some(Scale::Replicas(n)) => format!("{n} replicas"),
                Some(Scale::Suspended(false)) => "not suspended".to_owned(),
                None => "no such workload".to_owned(),
            };
            problems.push(Problem::Workload {
                group: g.group.clone(),
                cluster: side.cluster.clone(),
                workload: workload.clone(),
                found,
            });
        }
    }
}

fn describe_volume(v: &VrView) -> String {
    let completed = v
        .condition(crate::storage_sim::COND_COMPLETED)
        .map_or("none".to_owned(), |c| {
            format!("{} ({})", c.status, c.reason())
        });
    format!(
        "state {:?}, Completed {completed}, observedGeneration {:?} of {}",
        v.state(),
        v.status.observed_generation,
        v.generation
    )
}

// ---- the I/O part ------------------------------------------------------------------------------

/// Reads the facts of a run — the violations of `stack`'s storage simulators (which must
/// still run, or have been stopped cleanly), the records of `groups` in its table, and the
/// groups' objects in both clusters of `env` — and judges them with the default options.
pub async fn check_run(env: &TestEnv, stack: &mut Stack, groups: &[GroupRef]) -> Result<Verdict> {
    let violations = stack.violations_so_far()?;
    let mut facts = RunFacts {
        violations,
        groups: Vec::new(),
    };
    for group in groups {
        let g = read_group(env, &stack.store, group)
            .await
            .with_context(|| format!("reading the facts of group {group}"))?;
        facts.groups.push(g);
    }
    Ok(judge(&facts, &CheckOptions::default()))
}

/// One group's records (every operation consistently read) and its objects in each
/// cluster.
pub async fn read_group(env: &TestEnv, store: &Store, group: &GroupRef) -> Result<GroupFacts> {
    let state = store.get_group_state(group).await?;
    let mut ids: BTreeSet<String> = store
        .history(group, None)
        .await?
        .into_iter()
        .map(|h| h.operation.id)
        .collect();
    ids.extend(state.as_ref().and_then(|s| s.op_id.clone()));
    ids.extend(
        store
            .list_operations(None)
            .await?
            .into_iter()
            .filter(|op| op.group == *group)
            .map(|op| op.id),
    );
    let mut operations = Vec::new();
    for id in &ids {
        operations.extend(store.get_operation(id).await?);
    }
    let mut spec = None;
    for c in env.clusters() {
        let api: Api<FailoverGroup> = Api::namespaced(c.client.clone(), &group.namespace);
        if let Some(fg) = api.get_opt(&group.name).await? {
            spec = Some(fg.spec);
            break;
        }
    }
    let mut sides = Vec::new();
    if let Some(spec) = &spec {
        for c in env.clusters() {
            sides.push(read_side(c, &group.namespace, spec).await?);
        }
    }
    Ok(GroupFacts {
        group: group.clone(),
        state,
        operations,
        spec,
        sides,
    })
}

async fn read_side(c: &Cluster, ns: &str, spec: &FailoverGroupSpec) -> Result<Side> {
    let mut volumes = Vec::new();
    for r in &spec.volume_replications {
        let obj = volume_replications(&c.client, ns).get_opt(&r.name).await?;
        volumes.push((r.name.clone(), obj.as_ref().map(VrView::from_object)));
    }
    let mut workloads = Vec::new();
    for w in &spec.workloads {
        let client = c.client.clone();
        let scale = match w.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client, ns)
                .get_opt(&w.name)
                .await?
                .map(|d| Scale::Replicas(d.spec.and_then(|s| s.replicas).unwrap_or(1))),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client, ns)
                .get_opt(&w.name)
                .await?
                .map(|s| Scale::Replicas(s.spec.and_then(|s| s.replicas).unwrap_or(1))),
            WorkloadKind::CronJob => Api::<CronJob>::namespaced(client, ns)
                .get_opt(&w.name)
                .await?
                .map(|j| Scale::Suspended(j.spec.suspend.unwrap_or(false))),
        };
        workloads.push((format!("{:?}/{}", w.kind, w.name), scale));
    }
    Ok(Side {
        cluster: c.name.clone(),
        volumes,
        workloads,
    })
}

#[cfg(test)]
mod tests;
