//! The `FailoverGroup` status this cluster's agent keeps current: role, active cluster,
//! epoch, last operation, per-resource state and the `SpecValid` / `Ready` conditions.
//!
//! * Pure part: [`validate_spec`] (everything the factory would refuse, each problem naming
//!   its field path, e.g. `spec.volumeReplications[1].workload`), [`role`] (Primary /
//!   Standby / Transitioning from the DynamoDB group state), [`last_operation`],
//!   [`resource_states`] (what each referenced object looks like in this cluster) and
//!   [`compute_status`], which puts them together with the current status so an unchanged
//!   input yields an identical status (condition transition times are kept).
//! * I/O part: [`observe`] reads the referenced objects of this cluster, and [`refresh`]
//!   reads the group state and operation, computes the status and merge-patches the status
//!   subresource only when it differs.
//!
//! Ownership of the fields:
//! * `Fenced` is set by the fencing code. While the current role is `Fenced` and no
//!   `Fenced` condition says `False`, the role is left as it is; conditions other than
//!   `SpecValid` and `Ready` are kept as they are.
//! * A group that is not registered in this agent's table (another table may own it, e.g.
//!   two installations sharing a cluster) keeps its role, active cluster, epoch and last
//!   operation; only `SpecValid`, the resources and, when no `Ready` condition exists yet,
//!   `Ready=False` (`NotRegistered`) are written.

use std::collections::BTreeMap;
use std::fmt;

use failover_messages::crd::{
    FailoverGroup, FailoverGroupSpec, FailoverGroupStatus, FailoverPhase, FluxKind, GroupRole,
    LastOperation, NetworkKind, ResourceState, WorkloadKind,
};
use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, Operation};
use failover_messages::store::{MAX_TRANSACTION_ITEMS, Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use crate::kube_ops::traffic::{self, TrafficState};
use crate::kube_ops::volumes::{self, VolumeObservation};
use crate::kube_ops::{FIELD_MANAGER, flux, workloads};

/// Condition type: the spec can be planned.
pub const COND_SPEC_VALID: &str = "SpecValid";
/// Condition type: this cluster's side is in the state its role requires.
pub const COND_READY: &str = "Ready";
/// Condition type set by the fencing code (read here only to keep `Fenced`).
pub const COND_FENCED: &str = "Fenced";
/// Reason of `SpecValid=False` (and of `Ready=False` for an invalid spec).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";

/// The most volumes a group may have (one handoff transaction, next to two condition items);
/// the same limit as the factory's.
pub const MAX_VOLUMES: usize = MAX_TRANSACTION_ITEMS - 2;

// ---------------------------------------------------------------------------------------------
// Spec validation
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Role and last operation
// ---------------------------------------------------------------------------------------------

/// This cluster's role from the group state and the operation in flight (`op`, when
/// `state.op_id` names one and it could be read):
/// * `Transitioning` while an operation involving this cluster is in flight (an operation
///   whose record cannot be read counts as involving it);
/// * `Primary` when nothing is in flight and this cluster is entitled (it holds the claimed
///   promotion, or none is claimed and it is the active cluster);
/// * `Standby` otherwise.
pub fn role(state: &GroupState, op: Option<&Operation>, cluster: &str) -> GroupRole {
    if let Some(op_id) = &state.op_id {
        let involved = match op.filter(|o| &o.id == op_id) {
            Some(o) => o.source == cluster || o.target == cluster,
            None => true,
        };
        return if involved {
            GroupRole::Transitioning
        } else {
            GroupRole::Standby
        };
    }
    if state.entitled_cluster() == cluster {
        GroupRole::Primary
    } else {
        GroupRole::Standby
    }
}

/// `at` cut to whole seconds, as the API server stores a `Time`: a status computed twice
/// from the same input compares equal to the one read back.
pub fn whole_seconds(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

/// The summary of `op` for `status.lastOperation`.
pub fn last_operation(op: &Operation) -> LastOperation {
    LastOperation {
        id: op.id.clone(),
        phase: Some(FailoverPhase::from(op.phase)),
        mode: Some(op.mode.into()),
        source_cluster: Some(op.source.clone()),
        target_cluster: Some(op.target.clone()),
        started_at: Some(whole_seconds(op.requested_at)),
        finished_at: op.finished_at.map(whole_seconds),
    }
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

/// What one referenced object looks like in this cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A Deployment or StatefulSet.
    Workload {
        /// `spec.replicas`.
        replicas: u32,
        /// `status.readyReplicas`.
        ready: u32,
        /// Ready in the sense of the workflow's waits (generation observed, all ready).
        settled: bool,
    },
    /// A CronJob.
    CronJob {
        /// `spec.suspend`.
        suspended: bool,
    },
    /// A VirtualService or Ingress: the traffic annotation (`None`: absent or unknown).
    Traffic(Option<TrafficState>),
    /// A HelmRelease or Kustomization.
    Flux {
        /// `spec.suspend`.
        suspended: bool,
    },
    /// A VolumeReplication.
    Volume {
        /// `spec.replicationState`.
        desired: Option<String>,
        /// `status.state`.
        state: Option<String>,
        /// `Completed=True` for the current generation.
        completed: bool,
        /// `Degraded=True` for the current generation.
        degraded: bool,
        /// One line describing it.
        detail: String,
    },
    /// The object does not exist.
    Missing,
    /// It could not be read.
    Unreadable(String),
}

/// One referenced object and what it looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedResource {
    /// `Deployment`, `VolumeReplication`, `Ingress`, `HelmRelease`, …
    pub kind: String,
    /// Its name (`namespace/name` for Flux objects).
    pub name: String,
    /// What it looks like.
    pub observed: Observed,
}

impl ObservedResource {
    /// The observation of a VolumeReplication.
    pub fn volume(name: &str, obs: &VolumeObservation) -> Self {
        Self {
            kind: volumes::KIND.to_owned(),
            name: name.to_owned(),
            observed: Observed::Volume {
                desired: obs.desired.clone(),
                state: obs.state.clone(),
                completed: obs.completed,
                degraded: obs.degraded,
                detail: obs.describe(),
            },
        }
    }
}

/// Which side a role wants: `Some(true)` active, `Some(false)` passive, `None` no
/// expectation (an operation is moving it).
fn wants_active(role: Option<GroupRole>) -> Option<bool> {
    match role {
        Some(GroupRole::Primary) => Some(true),
        Some(GroupRole::Standby | GroupRole::Fenced) => Some(false),
        Some(GroupRole::Transitioning) | None => None,
    }
}

/// The `status.resources` entry of `r`, and, when `active` says which side is wanted and
/// the object is not in it, why not.
fn resource_state(r: &ObservedResource, active: Option<bool>) -> (ResourceState, Option<String>) {
    let what = format!("{}/{}", r.kind, r.name);
    let (state, message, ok): (String, Option<String>, Option<bool>) = match &r.observed {
        Observed::Workload {
            replicas,
            ready,
            settled,
        } => {
            let state = if *replicas == 0 {
                "ScaledDown".to_owned()
            } else {
                format!("Running {ready}/{replicas}")
            };
            let ok = active.map(|a| {
                if a {
                    *replicas > 0 && *settled
                } else {
                    *replicas == 0
                }
            });
            (state, None, ok)
        }
        Observed::CronJob { suspended } => (
            if *suspended { "Suspended" } else { "Active" }.to_owned(),
            None,
            active.map(|a| a != *suspended),
        ),
        Observed::Traffic(t) => {
            let state = match t {
                Some(TrafficState::On) => "Active",
                Some(TrafficState::Off) => "Passive",
                None => "Unmanaged",
            };
            let ok = active.map(|a| {
                *t == Some(if a {
                    TrafficState::On
                } else {
                    TrafficState::Off
                })
            });
            (state.to_owned(), None, ok)
        }
        Observed::Flux { suspended } => (
            if *suspended {
                "Suspended"
            } else {
                "Reconciling"
            }
            .to_owned(),
            None,
            active.map(|a| a != *suspended),
        ),
        Observed::Volume {
            desired,
            state,
            completed,
            degraded,
            detail,
        } => {
            let shown = state.clone().unwrap_or_else(|| "Unknown".to_owned());
            let want = |s: &str| {
                state.as_deref() == Some(s)
                    && desired
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case(s))
                    && *completed
                    && !*degraded
            };
            let ok = active.map(|a| want(if a { "Primary" } else { "Secondary" }));
            let message = (*degraded || !*completed || ok == Some(false)).then(|| detail.clone());
            (shown, message, ok)
        }
        Observed::Missing => (
            "Missing".to_owned(),
            Some(format!("{what} does not exist in this cluster")),
            Some(false),
        ),
        Observed::Unreadable(e) => ("Unknown".to_owned(), Some(e.clone()), Some(false)),
    };
    let why = match ok {
        Some(false) => Some(match (&r.observed, active) {
            (Observed::Missing | Observed::Unreadable(_), _) => message
                .clone()
                .unwrap_or_else(|| format!("{what} is {state}")),
            (_, Some(true)) => format!("{what} is {state}, not active"),
            _ => format!("{what} is {state}, not passive"),
        }),
        _ => None,
    };
    (
        ResourceState {
            kind: r.kind.clone(),
            name: r.name.clone(),
            state,
            message,
        },
        why,
    )
}

/// The `status.resources` entries, and for each object not in the side `role` wants, why.
pub fn resource_states(
    observed: &[ObservedResource],
    role: Option<GroupRole>,
) -> (Vec<ResourceState>, Vec<String>) {
    let active = wants_active(role);
    observed.iter().map(|r| resource_state(r, active)).fold(
        (Vec::new(), Vec::new()),
        |(mut states, mut why), (s, w)| {
            states.push(s);
            why.extend(w);
            (states, why)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// The status
// ---------------------------------------------------------------------------------------------

/// Everything [`compute_status`] needs.
#[derive(Clone, Debug)]
pub struct GroupInputs<'a> {
    /// This cluster's name.
    pub cluster: &'a str,
    /// The group's spec.
    pub spec: &'a FailoverGroupSpec,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The status as it is now.
    pub current: Option<&'a FailoverGroupStatus>,
    /// The group state in DynamoDB (`None`: not registered in this table).
    pub state: Option<&'a GroupState>,
    /// The operation in flight, else the last one closed, if any.
    pub operation: Option<&'a Operation>,
    /// The referenced objects in this cluster.
    pub observed: &'a [ObservedResource],
    /// Now, for condition transition times.
    pub now: Timestamp,
}

/// Sets condition `type_` in `conditions`, keeping its transition time when its status does
/// not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| whole_seconds(now), |c| c.last_transition_time.clone());
    let cond = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
}

fn fenced_kept(current: Option<&FailoverGroupStatus>) -> bool {
    current.is_some_and(|s| {
        s.role == Some(GroupRole::Fenced)
            && !s
                .conditions
                .iter()
                .any(|c| c.type_ == COND_FENCED && c.status == "False")
    })
}

/// The status the group should have (see the module docs for who owns which field).
pub fn compute_status(inputs: &GroupInputs<'_>) -> FailoverGroupStatus {
    let mut status = inputs.current.cloned().unwrap_or_default();
    status.observed_generation = inputs.generation;
    let problems = validate_spec(inputs.spec);

    if let Some(state) = inputs.state {
        let in_flight = inputs
            .operation
            .filter(|o| state.op_id.as_deref() == Some(o.id.as_str()));
        status.role = Some(if fenced_kept(inputs.current) {
            GroupRole::Fenced
        } else {
            role(state, in_flight, inputs.cluster)
        });
        status.active_cluster = Some(state.active_cluster.clone());
        status.epoch = Some(state.epoch);
        if let Some(op) = inputs.operation {
            status.last_operation = Some(last_operation(op));
        }
    }

    let (resources, not_in_place) = resource_states(inputs.observed, status.role);
    status.resources = resources;

    let conditions = &mut status.conditions;
    let (g, now) = (inputs.generation, inputs.now);
    if problems.is_empty() {
        set_condition(
            conditions,
            COND_SPEC_VALID,
            true,
            "Valid",
            "the spec can be planned".to_owned(),
            g,
            now,
        );
    } else {
        set_condition(
            conditions,
            COND_SPEC_VALID,
            false,
            REASON_INVALID_SPEC,
            problems_message(&problems),
            g,
            now,
        );
    }

    let ready = if !problems.is_empty() {
        Some((
            false,
            REASON_INVALID_SPEC,
            "the spec is invalid (see SpecValid)".to_owned(),
        ))
    } else if let Some(state) = inputs.state {
        let role = status.role;
        match role {
            Some(GroupRole::Transitioning) => Some((
                false,
                "OperationInFlight",
                format!(
                    "operation {} is moving the group",
                    state.op_id.as_deref().unwrap_or("?")
                ),
            )),
            Some(GroupRole::Fenced) => {
                Some((false, "Fenced", "this cluster fenced its side".to_owned()))
            }
            _ if !not_in_place.is_empty() => {
                Some((false, "ResourcesNotInPlace", not_in_place.join("; ")))
            }
            Some(GroupRole::Primary) => Some((
                true,
                "Active",
                format!("this cluster serves the group (epoch {})", state.epoch),
            )),
            _ => Some((
                true,
                "Standby",
                format!(
                    "{} serves the group; this cluster's side is down (epoch {})",
                    state.active_cluster, state.epoch
                ),
            )),
        }
    } else if !conditions.iter().any(|c| c.type_ == COND_READY) {
        Some((
            false,
            "NotRegistered",
            "the group is not registered in this agent's table (`failoverctl register`)".to_owned(),
        ))
    } else {
        None
    };
    if let Some((ok, reason, message)) = ready {
        set_condition(conditions, COND_READY, ok, reason, message, g, now);
    }
    status
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

fn unreadable(e: &kube::Error) -> Observed {
    Observed::Unreadable(format!("cannot read it: {e}"))
}

async fn get_opt<K>(api: Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    api.get_opt(name).await
}

/// Reads every object `spec` references in namespace `ns` of this cluster.
pub async fn observe(
    client: &kube::Client,
    ns: &str,
    spec: &FailoverGroupSpec,
    traffic_key: &str,
) -> Vec<ObservedResource> {
    let mut out = Vec::new();
    for w in &spec.workloads {
        let observed = match w.kind {
            WorkloadKind::Deployment => {
                match get_opt(Api::<Deployment>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(d)) => workload(&workloads::WorkloadView::from_deployment(&d)),
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
            WorkloadKind::StatefulSet => {
                match get_opt(Api::<StatefulSet>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(s)) => workload(&workloads::WorkloadView::from_stateful_set(&s)),
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
            WorkloadKind::CronJob => {
                match get_opt(Api::<CronJob>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(c)) => Observed::CronJob {
                        suspended: c.spec.suspend.unwrap_or(false),
                    },
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
        };
        out.push(ObservedResource {
            kind: workloads::kind_name(w.kind).to_owned(),
            name: w.name.clone(),
            observed,
        });
    }
    for v in &spec.volume_replications {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &volumes::volume_replication_resource(),
        );
        match get_opt(api, &v.name).await {
            Ok(Some(obj)) => {
                out.push(ObservedResource::volume(
                    &v.name,
                    &VolumeObservation::from_object(&obj),
                ));
            }
            Ok(None) => out.push(ObservedResource {
                kind: volumes::KIND.to_owned(),
                name: v.name.clone(),
                observed: Observed::Missing,
            }),
            Err(e) => out.push(ObservedResource {
                kind: volumes::KIND.to_owned(),
                name: v.name.clone(),
                observed: unreadable(&e),
            }),
        }
    }
    for n in &spec.network {
        let meta = match n.kind {
            NetworkKind::VirtualService => get_opt(
                Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    ns,
                    &traffic::virtual_service_resource(),
                ),
                &n.name,
            )
            .await
            .map(|o| o.map(|o| o.metadata)),
            NetworkKind::Ingress => {
                get_opt(Api::<Ingress>::namespaced(client.clone(), ns), &n.name)
                    .await
                    .map(|o| o.map(|o| o.metadata))
            }
        };
        let observed = match meta {
            Ok(Some(m)) => Observed::Traffic(traffic::current_state(&m, traffic_key)),
            Ok(None) => Observed::Missing,
            Err(e) => unreadable(&e),
        };
        out.push(ObservedResource {
            kind: traffic::kind_name(n.kind).to_owned(),
            name: n.name.clone(),
            observed,
        });
    }
    for f in &spec.flux {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &f.namespace,
            &flux::resource(f.kind),
        );
        let observed = match get_opt(api, &f.name).await {
            Ok(Some(o)) => Observed::Flux {
                suspended: flux::is_suspended(&o),
            },
            Ok(None) => Observed::Missing,
            Err(e) => unreadable(&e),
        };
        out.push(ObservedResource {
            kind: flux_kind(f.kind).to_owned(),
            name: format!("{}/{}", f.namespace, f.name),
            observed,
        });
    }
    out
}

fn flux_kind(kind: FluxKind) -> &'static str {
    flux::kind_name(kind)
}

fn workload(view: &workloads::WorkloadView) -> Observed {
    Observed::Workload {
        replicas: view.replicas,
        ready: view.ready_replicas,
        settled: workloads::is_ready(view),
    }
}

/// Why a refresh failed.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The group name is not usable as a DynamoDB key.
    #[error("FailoverGroup {namespace}/{name} cannot be a DynamoDB key: {reason}")]
    BadName {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Reading the group state or an operation failed.
    #[error("cannot read the records of FailoverGroup {group}")]
    Store {
        /// The group.
        group: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// The status write failed.
    #[error("cannot patch the status of FailoverGroup {group} in cluster {cluster}")]
    Patch {
        /// The group.
        group: String,
        /// This cluster.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// What a refresh did.
#[derive(Clone, Debug, PartialEq)]
pub struct Refreshed {
    /// The status computed.
    pub status: FailoverGroupStatus,
    /// Whether it was written (it differed from the current one).
    pub patched: bool,
    /// The spec problems found (empty when valid).
    pub problems: Vec<SpecProblem>,
}

/// Reads the DynamoDB records of `fg` (group state, then the operation in flight or the
/// last one), observes its objects in this cluster, computes the status and merge-patches
/// the status subresource when it differs from the current one.
pub async fn refresh(
    client: &kube::Client,
    store: &Store,
    cluster: &str,
    fg: &FailoverGroup,
    traffic_key: &str,
) -> Result<Refreshed, RefreshError> {
    let ns = fg.metadata.namespace.clone().unwrap_or_default();
    let name = fg.metadata.name.clone().unwrap_or_default();
    let group = GroupRef::new(&ns, &name).map_err(|e| RefreshError::BadName {
        namespace: ns.clone(),
        name: name.clone(),
        reason: e.to_string(),
    })?;
    let store_err = |source| RefreshError::Store {
        group: group.to_string(),
        source,
    };
    let state = store.get_group_state(&group).await.map_err(store_err)?;
    let op_id = state
        .as_ref()
        .and_then(|s| s.op_id.clone().or_else(|| s.last_op_id.clone()));
    let operation = match op_id {
        Some(id) => store.get_operation(&id).await.map_err(store_err)?,
        None => None,
    };
    let observed = observe(client, &ns, &fg.spec, traffic_key).await;
    let status = compute_status(&GroupInputs {
        cluster,
        spec: &fg.spec,
        generation: fg.metadata.generation,
        current: fg.status.as_ref(),
        state: state.as_ref(),
        operation: operation.as_ref(),
        observed: &observed,
        now: Timestamp::now(),
    });
    let problems = validate_spec(&fg.spec);
    let patched = fg.status.as_ref() != Some(&status);
    if patched {
        write_status(client, &ns, &name, &status)
            .await
            .map_err(|source| RefreshError::Patch {
                group: group.to_string(),
                cluster: cluster.to_owned(),
                source,
            })?;
    }
    Ok(Refreshed {
        status,
        patched,
        problems,
    })
}

/// Merge-patches the status subresource of FailoverGroup `ns/name` with `status` (lists,
/// e.g. conditions, are replaced as a whole; `null`s clear fields no longer set).
pub async fn write_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &FailoverGroupStatus,
) -> Result<(), kube::Error> {
    let api: Api<FailoverGroup> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let patch = json!({
        "status": {
            "role": status.role,
            "activeCluster": status.active_cluster,
            "epoch": status.epoch,
            "lastOperation": status.last_operation,
            "resources": status.resources,
            "conditions": status.conditions,
            "observedGeneration": status.observed_generation,
        }
    });
    api.patch_status(name, &pp, &Patch::Merge(&patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use failover_messages::crd::{VolumeReplicationRef, WorkloadRef};
    use failover_messages::records::{Mode, Phase};

    use super::*;
    use crate::workflow::{Factory, Role};

    fn spec() -> FailoverGroupSpec {
        FailoverGroupSpec {
            workloads: vec![WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
            }],
            volume_replications: vec![
                VolumeReplicationRef {
                    name: "data".into(),
                    workload: Some("db".into()),
                },
                VolumeReplicationRef {
                    name: "logs".into(),
                    workload: Some("dbx".into()),
                },
            ],
            ..FailoverGroupSpec::default()
        }
    }

    fn state(active: &str) -> GroupState {
        GroupState {
            group: GroupRef::new("shop", "orders").unwrap(),
            active_cluster: active.into(),
            epoch: 2,
            op_id: None,
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn op(id: &str, source: &str, target: &str) -> Operation {
        Operation {
            id: id.into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch: 2,
            mode: Mode::Consistency,
            source: source.into(),
            target: target.into(),
            force: false,
            reason: String::new(),
            requested_by: "t".into(),
            phase: Phase::Running,
            requested_at: "2026-11-26T12:00:00.123Z".parse().unwrap(),
            promotion_started_at: None,
            abort_requested_at: None,
            dual_active_started_at: None,
            dual_active_ended_at: None,
            finished_at: None,
            timings: Default::default(),
            original_replicas: Default::default(),
            message: None,
        }
    }

    fn now() -> Timestamp {
        "2026-11-26T12:00:05.5Z".parse().unwrap()
    }

    #[test]
    fn an_unknown_volume_workload_names_the_field_as_the_factory_refuses_it() {
        let s = spec();
        let problems = validate_spec(&s);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "spec.volumeReplications[1].workload");
        assert!(
            problems[0]
                .to_string()
                .starts_with("spec.volumeReplications[1].workload: names no workload of the group"),
            "{}",
            problems[0]
        );
        assert!(Factory::build(Mode::Consistency, Role::Source, &s, false).is_err());
    }

    #[test]
    fn validation_agrees_with_the_factory() {
        let mut ok = spec();
        ok.volume_replications.pop();
        assert!(validate_spec(&ok).is_empty());
        assert!(Factory::build(Mode::Consistency, Role::Target, &ok, false).is_ok());

        let mut dup = ok.clone();
        dup.workloads.push(dup.workloads[0].clone());
        let p = validate_spec(&dup);
        assert_eq!(p[0].field, "spec.workloads[1]");
        assert!(Factory::build(Mode::Consistency, Role::Target, &dup, false).is_err());

        let mut bad_time = ok.clone();
        bad_time.timeouts.volume_demotion = Some("0s".into());
        let p = validate_spec(&bad_time);
        assert_eq!(p[0].field, "spec.timeouts.volumeDemotion");
        assert!(Factory::build(Mode::Consistency, Role::Source, &bad_time, false).is_err());

        let mut many = ok.clone();
        many.volume_replications = (0..=MAX_VOLUMES)
            .map(|i| VolumeReplicationRef {
                name: format!("v{i}"),
                workload: None,
            })
            .collect();
        assert_eq!(validate_spec(&many)[0].field, "spec.volumeReplications");
        assert!(Factory::build(Mode::Consistency, Role::Source, &many, false).is_err());
    }

    #[test]
    fn the_role_follows_entitlement_and_operations() {
        assert_eq!(role(&state("east"), None, "east"), GroupRole::Primary);
        assert_eq!(role(&state("east"), None, "west"), GroupRole::Standby);
        let mut claimed = state("east");
        claimed.promotion_claimed_by = Some("west".into());
        assert_eq!(role(&claimed, None, "west"), GroupRole::Primary);
        assert_eq!(role(&claimed, None, "east"), GroupRole::Standby);
        let mut busy = state("east");
        busy.op_id = Some("op-1".into());
        let o = op("op-1", "east", "west");
        assert_eq!(role(&busy, Some(&o), "east"), GroupRole::Transitioning);
        assert_eq!(role(&busy, Some(&o), "west"), GroupRole::Transitioning);
        assert_eq!(role(&busy, Some(&o), "south"), GroupRole::Standby);
        assert_eq!(role(&busy, None, "south"), GroupRole::Transitioning);
    }

    fn primary_resources() -> Vec<ObservedResource> {
        vec![
            ObservedResource {
                kind: "StatefulSet".into(),
                name: "db".into(),
                observed: Observed::Workload {
                    replicas: 2,
                    ready: 2,
                    settled: true,
                },
            },
            ObservedResource {
                kind: "Ingress".into(),
                name: "api".into(),
                observed: Observed::Traffic(Some(TrafficState::On)),
            },
            ObservedResource {
                kind: "VolumeReplication".into(),
                name: "data".into(),
                observed: Observed::Volume {
                    desired: Some("primary".into()),
                    state: Some("Primary".into()),
                    completed: true,
                    degraded: false,
                    detail: "d".into(),
                },
            },
        ]
    }

    fn cond<'a>(s: &'a FailoverGroupStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn a_primary_in_place_is_ready_and_recomputing_changes_nothing() {
        let mut s = spec();
        s.volume_replications.pop();
        let st = state("east");
        let last = op("op-0", "west", "east");
        let observed = primary_resources();
        let inputs = GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(3),
            current: None,
            state: Some(&st),
            operation: Some(&last),
            observed: &observed,
            now: now(),
        };
        let status = compute_status(&inputs);
        assert_eq!(status.role, Some(GroupRole::Primary));
        assert_eq!(status.active_cluster.as_deref(), Some("east"));
        assert_eq!(status.epoch, Some(2));
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.last_operation.as_ref().unwrap().id, "op-0");
        assert_eq!(
            status.last_operation.as_ref().unwrap().started_at,
            Some(Time("2026-11-26T12:00:00Z".parse().unwrap())),
            "times are whole seconds, as the API server keeps them"
        );
        assert_eq!(cond(&status, COND_SPEC_VALID).status, "True");
        assert_eq!(cond(&status, COND_READY).status, "True");
        assert_eq!(status.resources[0].state, "Running 2/2");
        assert_eq!(status.resources[1].state, "Active");
        assert_eq!(status.resources[2].state, "Primary");
        let later = GroupInputs {
            current: Some(&status),
            now: "2026-11-26T13:00:00Z".parse().unwrap(),
            ..inputs
        };
        assert_eq!(compute_status(&later), status);
    }

    #[test]
    fn a_standby_with_a_running_workload_is_not_ready_and_says_why() {
        let mut s = spec();
        s.volume_replications.pop();
        let st = state("west");
        let observed = primary_resources();
        let status = compute_status(&GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(1),
            current: None,
            state: Some(&st),
            operation: None,
            observed: &observed,
            now: now(),
        });
        assert_eq!(status.role, Some(GroupRole::Standby));
        let ready = cond(&status, COND_READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "ResourcesNotInPlace")
        );
        assert!(
            ready
                .message
                .contains("StatefulSet/db is Running 2/2, not passive"),
            "{}",
            ready.message
        );
    }

    #[test]
    fn an_invalid_spec_sets_spec_valid_false_naming_the_field() {
        let s = spec();
        let st = state("east");
        let status = compute_status(&GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(1),
            current: None,
            state: Some(&st),
            operation: None,
            observed: &[],
            now: now(),
        });
        let c = cond(&status, COND_SPEC_VALID);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", REASON_INVALID_SPEC)
        );
        assert!(
            c.message.contains("spec.volumeReplications[1].workload"),
            "{}",
            c.message
        );
        assert_eq!(cond(&status, COND_READY).reason, REASON_INVALID_SPEC);
    }

    #[test]
    fn an_operation_in_flight_makes_it_transitioning() {
        let mut s = spec();
        s.volume_replications.pop();
        let mut st = state("east");
        st.op_id = Some("op-1".into());
        let o = op("op-1", "east", "west");
        let status = compute_status(&GroupInputs {
            cluster: "west",
            spec: &s,
            generation: Some(1),
            current: None,
            state: Some(&st),
            operation: Some(&o),
            observed: &[],
            now: now(),
        });
        assert_eq!(status.role, Some(GroupRole::Transitioning));
        assert_eq!(cond(&status, COND_READY).reason, "OperationInFlight");
        assert_eq!(
            status.last_operation.unwrap().phase,
            Some(FailoverPhase::Running)
        );
    }

    #[test]
    fn fenced_and_unregistered_groups_keep_what_others_own() {
        let mut s = spec();
        s.volume_replications.pop();
        let current = FailoverGroupStatus {
            role: Some(GroupRole::Fenced),
            active_cluster: Some("west".into()),
            epoch: Some(7),
            ..FailoverGroupStatus::default()
        };
        let st = state("east");
        let status = compute_status(&GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(1),
            current: Some(&current),
            state: Some(&st),
            operation: None,
            observed: &[],
            now: now(),
        });
        assert_eq!(status.role, Some(GroupRole::Fenced));
        let unregistered = compute_status(&GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(1),
            current: Some(&current),
            state: None,
            operation: None,
            observed: &[],
            now: now(),
        });
        assert_eq!(unregistered.epoch, Some(7));
        assert_eq!(cond(&unregistered, COND_READY).reason, "NotRegistered");
        let mut ready_elsewhere = status.clone();
        ready_elsewhere.role = Some(GroupRole::Primary);
        let again = compute_status(&GroupInputs {
            cluster: "east",
            spec: &s,
            generation: Some(1),
            current: Some(&ready_elsewhere),
            state: None,
            operation: None,
            observed: &[],
            now: now(),
        });
        assert_eq!(
            cond(&again, COND_READY),
            cond(&ready_elsewhere, COND_READY),
            "a Ready condition written by the owner of the group is kept"
        );
    }
}
