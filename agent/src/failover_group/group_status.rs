//! The `FailoverGroup` status this cluster's agent keeps current: role, active cluster,
//! epoch, last operation, per-resource state and the `SpecValid` / `Ready` conditions.
//!
//! * Pure part: [`compute_status`] puts together the spec's problems
//!   ([`validate_spec`]), this cluster's role and the last
//!   operation ([`super::group_role`]) and the state of the referenced objects
//!   ([`resource_states`]) with the current
//!   status, so an unchanged input yields an identical status (condition transition times
//!   are kept).
//! * I/O part: [`refresh`] reads the group state and operation, observes the referenced
//!   objects of this cluster ([`observe`]), computes the
//!   status and merge-patches the status subresource only when it differs.
//!
//! Ownership of the fields:
//! * `Fenced` is set by the fencing code. While the current role is `Fenced` and no
//!   `Fenced` condition says `False`, the role is left as it is; conditions other than
//!   `SpecValid` and `Ready` are kept as they are.
//! * A group that is not registered in this agent's table (another table may own it, e.g.
//!   two installations sharing a cluster) keeps its role, active cluster, epoch and last
//!   operation; only `SpecValid`, the resources and, when no `Ready` condition exists yet,
//!   `Ready=False` (`NotRegistered`) are written.

use failover_messages::crd::{FailoverGroup, FailoverGroupSpec, FailoverGroupStatus, GroupRole};
use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, Operation};
use failover_messages::store::{Store, StoreError};
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::conditions::set_condition;
use crate::kube_ops::FIELD_MANAGER;

use super::group_resources::{ObservedResource, observe, resource_states};
use super::group_role::{last_operation, role};
use super::group_spec::{REASON_INVALID_SPEC, SpecProblem, problems_message, validate_spec};

/// Condition type: the spec can be planned.
pub const COND_SPEC_VALID: &str = "SpecValid";
/// Condition type: this cluster's side is in the state its role requires.
pub const COND_READY: &str = "Ready";
/// Condition type set by the fencing code (read here only to keep `Fenced`).
pub const COND_FENCED: &str = "Fenced";

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
    /// The resource version the write gave the object, when it was written: the watch
    /// event of that version is this write's echo.
    pub written_version: Option<String>,
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
    let shown = fg
        .status
        .as_ref()
        .and_then(|s| s.last_operation.as_ref())
        .map(|o| o.id.as_str());
    let (state, operation) = read_records(store, &group, shown)
        .await
        .map_err(store_err)?;
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
    let mut patched = fg.status.as_ref() != Some(&status);
    let mut written_version = None;
    if patched {
        match write_status(
            client,
            &ns,
            &name,
            &status,
            fg.metadata.resource_version.as_deref(),
        )
        .await
        {
            Ok(version) => written_version = version,
            // Changed since `fg` was read (e.g. another actor set its condition): the watch
            // brings the newer object, and the refresh it causes writes from that.
            Err(kube::Error::Api(ae)) if ae.code == 409 => patched = false,
            Err(source) => {
                return Err(RefreshError::Patch {
                    group: group.to_string(),
                    cluster: cluster.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(Refreshed {
        status,
        patched,
        written_version,
        problems,
    })
}

/// The operation a group state names: the one in flight, else the last one.
fn named_operation(state: &GroupState) -> Option<&str> {
    state.op_id.as_deref().or(state.last_op_id.as_deref())
}

/// The group state of `group` and the operation it names ([`named_operation`]), all
/// consistent reads. When `shown` (the operation the status shows) is still the one named,
/// one `BatchGetItem` reads both; else the state, then the operation (two calls, three when
/// `shown` was read first for nothing).
async fn read_records(
    store: &Store,
    group: &GroupRef,
    shown: Option<&str>,
) -> Result<(Option<GroupState>, Option<Operation>), StoreError> {
    // A status naming an operation that is not (or no longer) the group's is only a hint:
    // an error reading it falls back to reading the state first.
    let hinted = match shown {
        Some(id) => store
            .get_operation_and_state_of(group, id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let state = match hinted {
        Some((op, state)) => {
            if state.as_ref().and_then(named_operation) == Some(op.id.as_str()) {
                return Ok((state, Some(op)));
            }
            state
        }
        None => store.get_group_state(group).await?,
    };
    let operation = match state.as_ref().and_then(named_operation) {
        Some(id) => store.get_operation_of(group, id).await?,
        None => None,
    };
    Ok((state, operation))
}

/// Merge-patches the status subresource of FailoverGroup `ns/name` with `status` (lists,
/// e.g. conditions, are replaced as a whole; `null`s clear fields no longer set). With
/// `resource_version` (that of the object `status` was computed from), the write is refused
/// (409 Conflict) when the object changed since, so conditions another component set in the
/// meantime are never overwritten with an older list. Returns the object's new resource
/// version.
pub async fn write_status(
    client: &kube::Client,
    ns: &str,
    name: &str,
    status: &FailoverGroupStatus,
    resource_version: Option<&str>,
) -> Result<Option<String>, kube::Error> {
    let api: Api<FailoverGroup> = Api::namespaced(client.clone(), ns);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    let mut patch = json!({
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
    if let Some(rv) = resource_version {
        patch["metadata"] = json!({ "resourceVersion": rv });
    }
    let written = api.patch_status(name, &pp, &Patch::Merge(&patch)).await?;
    Ok(written.metadata.resource_version)
}

#[cfg(test)]
mod tests;
