//! A `Failover` a user creates in this cluster is a trigger: the agent submits it as an
//! operation exactly as `failoverctl failover` would (one conditional start per group in
//! `spec.groups`, target `spec.targetCluster`, source = the group's active cluster, then a
//! wake-up to the source and target inboxes) and records the answer in the object's status.
//!
//! **Which objects.** Agents create a `Failover` per operation too; those carry the
//! `failover.io/operation` annotation (and label) set by [`crate::failover_object::failover_status::desired_failover`]
//! and are never triggers. A user object is submitted while it has no
//! `status.operationId`, unless it was refused for good (`Accepted=False` for any reason
//! but [`REASON_NOT_REGISTERED`]: a group registered later, or registered in the table of
//! another agent sharing the cluster, is picked up on a later re-read).
//!
//! **Exactly once.** The operation id is derived from the object's UID ([`operation_ids`]:
//! the UID for a single group, `<uid>-<index>` for several), and before starting, the
//! operation record is looked up: a retry after a crash between the start and the status
//! write finds it and only records it. The store's start is itself idempotent for an id
//! whose operation is in flight.
//!
//! **Status.** Accepted: `status.operationId` (several ids `,`-separated), one entry per group
//! in `status.groups`, `Accepted=True`. Refused: `Accepted=False` whose message names each
//! group and why, phase `Failed` when nothing started. For a single group submitted here the
//! agent then keeps its progress on this same object rather than creating a second one
//! (see [`crate::failover_object::failover_status`]); the peer cluster creates its own object, named after the
//! operation id. Events: `Accepted` (Normal) or `Refused` (Warning) on the object.
//!
//! Pure part: [`is_agent_created`], [`needs_submission`], [`operation_ids`], [`plan`],
//! [`decide`], [`trigger_status`]. I/O part: [`Trigger::reconcile`].

use std::time::Duration;

use failover_messages::crd::{
    Failover, FailoverMode, FailoverPhase, FailoverStatus, GroupProgress,
};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::Inbox;
use failover_messages::keys::{self, GroupRef};
use failover_messages::records::{GroupState, Mode, Operation};
use failover_messages::store::{StartOutcome, StartRequest, Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::failover_group::group_status::set_condition;
use crate::failover_object::failover_status::LABEL_OPERATION;
use crate::kube_events::{EventSpec, Events};
use crate::kube_ops::{ANNOTATION_OPERATION, FIELD_MANAGER};

/// Prefix of `requestedBy` for operations submitted from a `Failover` object.
pub const REQUESTED_BY_PREFIX: &str = "kubernetes:";
/// Condition type recording whether the object was submitted.
pub const COND_ACCEPTED: &str = "Accepted";
/// `Accepted=False` reason that is retried on later re-reads.
pub const REASON_NOT_REGISTERED: &str = "GroupNotRegistered";
/// The first lease of a submitted operation (as `failoverctl`'s default).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

/// `kubernetes:<cluster>/<namespace>/<name>`: who asked, for the operation record.
pub fn requested_by(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{REQUESTED_BY_PREFIX}{cluster}/{namespace}/{name}")
}

/// The (cluster, namespace, name) of a [`requested_by`] string.
pub fn parse_requested_by(s: &str) -> Option<(&str, &str, &str)> {
    let rest = s.strip_prefix(REQUESTED_BY_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let (c, ns, n) = (parts.next()?, parts.next()?, parts.next()?);
    (!c.is_empty() && !ns.is_empty() && !n.is_empty()).then_some((c, ns, n))
}

/// True for the `Failover` objects agents create for their operations.
pub fn is_agent_created(fo: &Failover) -> bool {
    fo.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_OPERATION))
        || fo
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LABEL_OPERATION))
}

fn accepted(status: Option<&FailoverStatus>) -> Option<&Condition> {
    status.and_then(|s| s.conditions.iter().find(|c| c.type_ == COND_ACCEPTED))
}

/// True when the agent should (still) submit `fo`: a user object without an operation id,
/// not refused for good.
pub fn needs_submission(fo: &Failover) -> bool {
    if is_agent_created(fo) || fo.metadata.deletion_timestamp.is_some() {
        return false;
    }
    let status = fo.status.as_ref();
    if status.and_then(|s| s.operation_id.as_deref()).is_some() {
        return false;
    }
    accepted(status).is_none_or(|c| c.status != "False" || c.reason == REASON_NOT_REGISTERED)
}

/// True when the agent keeps the progress of `fo`'s operation on `fo` itself: a user object
/// naming a single group.
pub fn status_on_user_object(fo: &Failover) -> bool {
    !is_agent_created(fo) && fo.spec.groups.len() == 1
}

/// The operation id of each group of `fo`, in `spec.groups` order: the object's UID for a
/// single group, `<uid>-<index>` for several. Empty without a UID.
pub fn operation_ids(fo: &Failover) -> Vec<String> {
    let Some(uid) = fo.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let n = fo.spec.groups.len();
    if n == 1 {
        vec![uid.to_owned()]
    } else {
        (0..n).map(|i| format!("{uid}-{i}")).collect()
    }
}

/// Why a group (or the whole object) was not started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// `Accepted=False` reason, e.g. `OperationInFlight`.
    pub reason: &'static str,
    /// Words naming the group (or field) and why.
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// One start to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedStart {
    /// The group.
    pub group: GroupRef,
    /// The deterministic operation id.
    pub op_id: String,
    /// The request, source still empty (it is the group's active cluster, read later).
    pub request: StartRequest,
}

fn mode(m: FailoverMode) -> Mode {
    match m {
        FailoverMode::Consistency => Mode::Consistency,
        FailoverMode::Uptime => Mode::Uptime,
    }
}

/// The starts `fo` asks for, as this cluster's agent submits them; a refusal of the whole
/// object when it cannot be submitted at all.
pub fn plan(fo: &Failover, cluster: &str) -> Result<Vec<PlannedStart>, Refusal> {
    let ns = fo.metadata.namespace.as_deref().unwrap_or_default();
    let name = fo.metadata.name.as_deref().unwrap_or_default();
    let ids = operation_ids(fo);
    if ids.is_empty() {
        return Err(Refusal::new("Invalid", "the object has no metadata.uid"));
    }
    if fo.spec.groups.is_empty() {
        return Err(Refusal::new("Invalid", "spec.groups: names no group"));
    }
    if let Err(e) = keys::validate_cluster(&fo.spec.target_cluster) {
        return Err(Refusal::new(
            "UnknownCluster",
            format!("spec.targetCluster: {e}"),
        ));
    }
    let reason = fo.spec.reason.clone().unwrap_or_default();
    if fo.spec.force && reason.trim().is_empty() {
        return Err(Refusal::new(
            "Invalid",
            "spec.reason: a forced failover needs a reason",
        ));
    }
    let mut out = Vec::new();
    for (i, (g, op_id)) in fo.spec.groups.iter().zip(ids).enumerate() {
        let group = GroupRef::new(g.namespace_or(ns), &g.name)
            .map_err(|e| Refusal::new("Invalid", format!("spec.groups[{i}]: {e}")))?;
        if let Err(e) = keys::validate_operation_id(&op_id) {
            return Err(Refusal::new("Invalid", format!("operation id: {e}")));
        }
        out.push(PlannedStart {
            request: StartRequest {
                group: group.clone(),
                source: String::new(),
                target: fo.spec.target_cluster.clone(),
                mode: mode(fo.spec.mode),
                force: fo.spec.force,
                reason: reason.clone(),
                requested_by: requested_by(cluster, ns, name),
                lease_ttl: DEFAULT_LEASE_TTL,
                op_id: Some(op_id.clone()),
            },
            group,
            op_id,
        });
    }
    Ok(out)
}

/// Whether to start `start` given the group's state and whether the target cluster is
/// known (its inbox queue exists): the request with its source filled in, or why not.
pub fn decide(
    start: &PlannedStart,
    state: Option<&GroupState>,
    target_known: bool,
) -> Result<StartRequest, Refusal> {
    let group = &start.group;
    let target = &start.request.target;
    if !target_known {
        return Err(Refusal::new(
            "UnknownCluster",
            format!("{group}: cluster {target} is unknown (it has no inbox queue)"),
        ));
    }
    let Some(state) = state else {
        return Err(Refusal::new(
            REASON_NOT_REGISTERED,
            format!("{group}: the group is not registered (`failoverctl register`)"),
        ));
    };
    if &state.active_cluster == target {
        return Err(Refusal::new(
            "AlreadyActive",
            format!(
                "{group}: {target} is already the active cluster; there is nothing to fail over"
            ),
        ));
    }
    let mut req = start.request.clone();
    req.source = state.active_cluster.clone();
    Ok(req)
}

/// The refusal of a store answer other than `Started`.
pub fn refusal_of(group: &GroupRef, outcome: &StartOutcome) -> Option<Refusal> {
    Some(match outcome {
        StartOutcome::Started(_) => return None,
        StartOutcome::LeaseHeld {
            holder,
            op_id,
            expires,
        }
        | StartOutcome::LostRace {
            holder,
            op_id,
            expires,
        } => Refusal::new(
            "OperationInFlight",
            format!(
                "{group}: operation {op_id} is in flight, its lease held by {holder} until {expires}"
            ),
        ),
        StartOutcome::PromotionClaimed { claimed_by, .. } => Refusal::new(
            "PromotionClaimed",
            format!(
                "{group}: promotion already claimed by {claimed_by}; only forward is possible (or a forced failover)"
            ),
        ),
        StartOutcome::NotActive { active, .. } => Refusal::new(
            "NotActive",
            format!("{group}: the active cluster changed to {active} while submitting"),
        ),
        StartOutcome::NotRegistered { .. } => Refusal::new(
            REASON_NOT_REGISTERED,
            format!("{group}: the group is not registered (`failoverctl register`)"),
        ),
        StartOutcome::Suspended { .. } => Refusal::new(
            "Suspended",
            format!("{group}: the group is suspended (no operation may start)"),
        ),
    })
}

/// How one group of a trigger went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupResult {
    /// Its operation runs (started now, or found started by an earlier attempt).
    Started(Box<Operation>),
    /// It was not started.
    Refused {
        /// The group.
        group: GroupRef,
        /// Why.
        refusal: Refusal,
    },
}

/// The status to record on the user's `fo` after submitting: see the module docs. `current`
/// keeps condition transition times and an existing phase.
pub fn trigger_status(
    fo: &Failover,
    outcome: &Result<Vec<GroupResult>, Refusal>,
    now: Timestamp,
) -> FailoverStatus {
    let current = fo.status.clone().unwrap_or_default();
    let mut status = FailoverStatus {
        conditions: current.conditions.clone(),
        observed_generation: fo.metadata.generation,
        ..FailoverStatus::default()
    };
    let g = fo.metadata.generation;
    let results = match outcome {
        Err(r) => {
            status.phase = Some(FailoverPhase::Failed);
            set_condition(
                &mut status.conditions,
                COND_ACCEPTED,
                false,
                r.reason,
                r.message.clone(),
                g,
                now,
            );
            return status;
        }
        Ok(results) => results,
    };
    let started: Vec<&Operation> = results
        .iter()
        .filter_map(|r| match r {
            GroupResult::Started(op) => Some(op.as_ref()),
            GroupResult::Refused { .. } => None,
        })
        .collect();
    let refused: Vec<&Refusal> = results
        .iter()
        .filter_map(|r| match r {
            GroupResult::Refused { refusal, .. } => Some(refusal),
            GroupResult::Started(_) => None,
        })
        .collect();
    status.groups = results
        .iter()
        .map(|r| match r {
            GroupResult::Started(op) => GroupProgress {
                name: op.group.name.clone(),
                namespace: Some(op.group.namespace.clone()),
                phase: Some(FailoverPhase::Pending),
                epoch: Some(op.epoch),
                message: Some(format!(
                    "operation {} started ({} -> {}, epoch {})",
                    op.id, op.source, op.target, op.epoch
                )),
                ..GroupProgress::default()
            },
            GroupResult::Refused { group, refusal } => GroupProgress {
                name: group.name.clone(),
                namespace: Some(group.namespace.clone()),
                phase: Some(FailoverPhase::Failed),
                message: Some(refusal.message.clone()),
                ..GroupProgress::default()
            },
        })
        .collect();
    let refused_text = refused
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    if started.is_empty() {
        let reason = if refused.iter().all(|r| r.reason == refused[0].reason) {
            refused.first().map_or("Refused", |r| r.reason)
        } else {
            "Refused"
        };
        let retried = refused.iter().all(|r| r.reason == REASON_NOT_REGISTERED);
        if !retried {
            status.phase = Some(FailoverPhase::Failed);
        }
        set_condition(
            &mut status.conditions,
            COND_ACCEPTED,
            false,
            reason,
            refused_text,
            g,
            now,
        );
    } else {
        status.operation_id = Some(
            started
                .iter()
                .map(|o| o.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        status.phase = current.phase.or(Some(FailoverPhase::Pending));
        let mut message = started
            .iter()
            .map(|o| format!("{}: operation {} started", o.group, o.id))
            .collect::<Vec<_>>()
            .join("; ");
        if !refused.is_empty() {
            message.push_str(&format!("; not started: {refused_text}"));
        }
        let reason = if refused.is_empty() {
            "Started"
        } else {
            "PartiallyStarted"
        };
        set_condition(
            &mut status.conditions,
            COND_ACCEPTED,
            true,
            reason,
            message,
            g,
            now,
        );
    }
    status
}

/// The Event recording a trigger's outcome.
pub fn trigger_event(status: &FailoverStatus) -> Option<EventSpec> {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == COND_ACCEPTED)?;
    Some(EventSpec {
        warning: c.status != "True",
        reason: if c.status == "True" {
            "Accepted"
        } else {
            "Refused"
        }
        .to_owned(),
        action: "Submit".to_owned(),
        note: c.message.chars().take(1000).collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

/// Why a submission could not be decided (transient: retried on the next re-read).
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    /// A DynamoDB read or the start failed.
    #[error("cannot submit Failover {failover}")]
    Store {
        /// `namespace/name`.
        failover: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
    /// Looking up the target's inbox queue failed (other than "does not exist").
    #[error("cannot look up the inbox queue {queue} of cluster {cluster}: {reason}")]
    Queue {
        /// The queue.
        queue: String,
        /// The target cluster.
        cluster: String,
        /// Why.
        reason: String,
    },
    /// Writing the status failed.
    #[error("cannot write the status of Failover {failover}")]
    Patch {
        /// `namespace/name`.
        failover: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

/// Submits user-created Failovers of this cluster.
#[derive(Clone)]
pub struct Trigger {
    kube: kube::Client,
    store: Store,
    inbox: Inbox,
    sqs: aws_sdk_sqs::Client,
    cluster: String,
    events: Events,
}

impl std::fmt::Debug for Trigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Trigger {
    /// A trigger for `cluster`: `inbox` sends the wake-ups (its options name the queues),
    /// `sqs` checks that a target cluster has an inbox.
    pub fn new(
        kube: kube::Client,
        store: Store,
        inbox: Inbox,
        sqs: aws_sdk_sqs::Client,
        cluster: &str,
    ) -> Self {
        Self {
            events: Events::new(kube.clone(), cluster),
            kube,
            store,
            inbox,
            sqs,
            cluster: cluster.to_owned(),
        }
    }

    async fn target_known(&self, target: &str) -> Result<bool, TriggerError> {
        let queue = self.inbox.options().inbox_queue_name(target);
        match self.sqs.get_queue_url().queue_name(&queue).send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let missing = e.as_service_error().is_some_and(|se| {
                    se.is_queue_does_not_exist()
                        || aws_sdk_sqs::error::ProvideErrorMetadata::code(se).is_some_and(|c| {
                            c.contains("NonExistentQueue") || c.contains("QueueDoesNotExist")
                        })
                });
                if missing {
                    Ok(false)
                } else {
                    Err(TriggerError::Queue {
                        queue,
                        cluster: target.to_owned(),
                        reason: crate::errors::error_chain(&e),
                    })
                }
            }
        }
    }

    async fn notify(&self, op: &Operation) {
        let envelope = Envelope {
            kind: EnvelopeKind::OperationStarted,
            operation_id: op.id.clone(),
            group: op.group.clone(),
            epoch: op.epoch,
            sender: self.cluster.clone(),
            sent_at: Timestamp::now(),
        };
        for cluster in [&op.source, &op.target] {
            if let Err(e) = self.inbox.send(cluster, &envelope).await {
                tracing::warn!(
                    %cluster, op = %op.id, error = %crate::errors::error_chain(&e),
                    "cannot notify a cluster of a submitted operation; its agent finds it on its next re-read"
                );
            }
        }
    }

    /// Submits `fo` when [`needs_submission`] says so, records the answer in its status
    /// (only when it changes) and notifies the source and target inboxes of every operation
    /// started. Returns the status written, `None` when there was nothing to do.
    pub async fn reconcile(&self, fo: &Failover) -> Result<Option<FailoverStatus>, TriggerError> {
        if !needs_submission(fo) {
            return Ok(None);
        }
        let ns = fo.metadata.namespace.clone().unwrap_or_default();
        let name = fo.metadata.name.clone().unwrap_or_default();
        let what = format!("{ns}/{name}");
        let store_err = |source| TriggerError::Store {
            failover: what.clone(),
            source,
        };
        let mut fresh = Vec::new();
        let outcome = match plan(fo, &self.cluster) {
            Err(r) => Err(r),
            Ok(starts) => {
                let mut results = Vec::new();
                let mut known: Option<bool> = None;
                for start in &starts {
                    if let Some(op) = self
                        .store
                        .get_operation(&start.op_id)
                        .await
                        .map_err(store_err)?
                    {
                        results.push(GroupResult::Started(Box::new(op)));
                        continue;
                    }
                    let state = self
                        .store
                        .get_group_state(&start.group)
                        .await
                        .map_err(store_err)?;
                    let target_known = match known {
                        Some(k) => k,
                        None => {
                            let k = self.target_known(&start.request.target).await?;
                            known = Some(k);
                            k
                        }
                    };
                    let req = match decide(start, state.as_ref(), target_known) {
                        Ok(req) => req,
                        Err(refusal) => {
                            results.push(GroupResult::Refused {
                                group: start.group.clone(),
                                refusal,
                            });
                            continue;
                        }
                    };
                    let answer = self.store.start_operation(req).await.map_err(store_err)?;
                    match answer {
                        StartOutcome::Started(op) => {
                            tracing::info!(
                                failover = %what, op = %op.id, group = %op.group, source = %op.source,
                                target = %op.target, epoch = op.epoch, "operation submitted from a Failover"
                            );
                            fresh.push(op.clone());
                            results.push(GroupResult::Started(Box::new(op)));
                        }
                        other => results.push(GroupResult::Refused {
                            group: start.group.clone(),
                            refusal: refusal_of(&start.group, &other).unwrap_or_else(|| {
                                Refusal::new("Refused", format!("{}: refused", start.group))
                            }),
                        }),
                    }
                }
                Ok(results)
            }
        };
        let status = trigger_status(fo, &outcome, Timestamp::now());
        // Written before the wake-ups, so this cluster's runner finds the status recorded.
        let changed = fo.status.as_ref().is_none_or(|s| {
            s.operation_id != status.operation_id
                || s.conditions != status.conditions
                || s.phase != status.phase
        });
        let api: Api<Failover> = Api::namespaced(self.kube.clone(), &ns);
        if changed && status.operation_id.is_none() {
            // Nothing started here: another agent sharing the cluster (with another table)
            // may have accepted the object meanwhile; never overwrite that.
            let latest = api
                .get_opt(&name)
                .await
                .map_err(|source| TriggerError::Patch {
                    failover: what.clone(),
                    source,
                })?;
            if latest.is_none_or(|l| !needs_submission(&l)) {
                return Ok(None);
            }
        }
        if changed {
            let pp = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            let mut body = json!({
                "conditions": status.conditions,
                "observedGeneration": status.observed_generation,
            });
            if let Some(id) = &status.operation_id {
                body["operationId"] = json!(id);
            }
            if fo.status.as_ref().is_none_or(|s| s.phase.is_none())
                || status.phase == Some(FailoverPhase::Failed)
            {
                body["phase"] = json!(status.phase);
            }
            if fo.status.as_ref().is_none_or(|s| s.groups.is_empty())
                || status.operation_id.is_none()
            {
                body["groups"] = json!(status.groups);
            }
            let patched = api
                .patch_status(&name, &pp, &Patch::Merge(&json!({ "status": body })))
                .await;
            for op in &fresh {
                self.notify(op).await;
            }
            patched.map_err(|source| TriggerError::Patch {
                failover: what.clone(),
                source,
            })?;
            if let Some(ev) = trigger_event(&status) {
                let mut r = fo.object_ref(&());
                r.namespace = Some(ns.clone());
                self.events.publish(&r, &ev).await;
            }
        } else {
            for op in &fresh {
                self.notify(op).await;
            }
        }
        Ok(Some(status))
    }
}

#[cfg(test)]
mod tests {
    use failover_messages::crd::{FailoverSpec, GroupRef as CrdGroupRef};
    use failover_messages::records::Phase;

    use super::*;

    fn fo(groups: &[&str]) -> Failover {
        let mut fo = Failover::new(
            "move-orders",
            FailoverSpec {
                target_cluster: "west".into(),
                mode: FailoverMode::Uptime,
                groups: groups
                    .iter()
                    .map(|g| CrdGroupRef {
                        name: (*g).into(),
                        namespace: None,
                    })
                    .collect(),
                force: false,
                reason: Some("drill".into()),
            },
        );
        fo.metadata.namespace = Some("shop".into());
        fo.metadata.uid = Some("0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a".into());
        fo.metadata.generation = Some(1);
        fo
    }

    fn state(active: &str) -> GroupState {
        GroupState {
            group: GroupRef::new("shop", "orders").unwrap(),
            active_cluster: active.into(),
            epoch: 4,
            op_id: None,
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: Timestamp::UNIX_EPOCH,
        }
    }

    fn op(id: &str) -> Operation {
        Operation {
            id: id.into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch: 5,
            mode: Mode::Uptime,
            source: "east".into(),
            target: "west".into(),
            force: false,
            reason: "drill".into(),
            requested_by: requested_by("east", "shop", "move-orders"),
            phase: Phase::Pending,
            requested_at: Timestamp::UNIX_EPOCH,
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

    #[test]
    fn requested_by_round_trips() {
        let s = requested_by("east", "shop", "move-orders");
        assert_eq!(s, "kubernetes:east/shop/move-orders");
        assert_eq!(
            parse_requested_by(&s),
            Some(("east", "shop", "move-orders"))
        );
        assert_eq!(parse_requested_by("failoverctl:alice"), None);
        assert_eq!(parse_requested_by("kubernetes:east//x"), None);
    }

    #[test]
    fn agent_objects_and_submitted_objects_are_not_triggers() {
        let user = fo(&["orders"]);
        assert!(needs_submission(&user));
        assert!(status_on_user_object(&user));
        let agent = crate::failover_object::failover_status::desired_failover(&op("abc"));
        assert!(is_agent_created(&agent) && !needs_submission(&agent));
        let mut done = user.clone();
        done.status = Some(FailoverStatus {
            operation_id: Some("x".into()),
            ..FailoverStatus::default()
        });
        assert!(!needs_submission(&done));
        let t = "2026-11-26T12:00:00Z".parse().unwrap();
        let mut refused = user.clone();
        refused.status = Some(trigger_status(
            &user,
            &Ok(vec![GroupResult::Refused {
                group: GroupRef::new("shop", "orders").unwrap(),
                refusal: Refusal::new("OperationInFlight", "busy"),
            }]),
            t,
        ));
        assert!(!needs_submission(&refused), "a refusal is final");
        let mut unregistered = user.clone();
        unregistered.status = Some(trigger_status(
            &user,
            &Ok(vec![GroupResult::Refused {
                group: GroupRef::new("shop", "orders").unwrap(),
                refusal: Refusal::new(REASON_NOT_REGISTERED, "not registered"),
            }]),
            t,
        ));
        assert!(needs_submission(&unregistered), "not registered is retried");
        assert_eq!(unregistered.status.unwrap().phase, None);
    }

    #[test]
    fn operation_ids_come_from_the_uid() {
        assert_eq!(
            operation_ids(&fo(&["orders"])),
            ["0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"]
        );
        assert_eq!(
            operation_ids(&fo(&["a", "b"])),
            [
                "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a-0",
                "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a-1"
            ]
        );
        let mut no_uid = fo(&["orders"]);
        no_uid.metadata.uid = None;
        assert!(operation_ids(&no_uid).is_empty());
        assert!(plan(&no_uid, "east").is_err());
    }

    #[test]
    fn plan_and_decide_build_the_coordinators_request() {
        let starts = plan(&fo(&["orders"]), "east").unwrap();
        assert_eq!(starts.len(), 1);
        let s = &starts[0];
        assert_eq!(s.group, GroupRef::new("shop", "orders").unwrap());
        assert_eq!(s.request.mode, Mode::Uptime);
        assert_eq!(s.request.requested_by, "kubernetes:east/shop/move-orders");
        assert_eq!(s.request.op_id.as_deref(), Some(s.op_id.as_str()));
        let req = decide(s, Some(&state("east")), true).unwrap();
        assert_eq!((req.source.as_str(), req.target.as_str()), ("east", "west"));
        assert_eq!(
            decide(s, None, true).unwrap_err().reason,
            REASON_NOT_REGISTERED
        );
        assert_eq!(
            decide(s, Some(&state("west")), true).unwrap_err().reason,
            "AlreadyActive"
        );
        let unknown = decide(s, Some(&state("east")), false).unwrap_err();
        assert_eq!(unknown.reason, "UnknownCluster");
        assert!(unknown.message.contains("west"), "{}", unknown.message);
        let mut forced = fo(&["orders"]);
        forced.spec.force = true;
        forced.spec.reason = None;
        assert!(
            plan(&forced, "east")
                .unwrap_err()
                .message
                .contains("spec.reason")
        );
    }

    #[test]
    fn status_records_ids_and_refusals() {
        let t = "2026-11-26T12:00:00Z".parse().unwrap();
        let user = fo(&["orders"]);
        let s = trigger_status(
            &user,
            &Ok(vec![GroupResult::Started(Box::new(op("id-1")))]),
            t,
        );
        assert_eq!(s.operation_id.as_deref(), Some("id-1"));
        assert_eq!(s.phase, Some(FailoverPhase::Pending));
        assert_eq!(s.conditions[0].status, "True");
        let refusal = refusal_of(
            &GroupRef::new("shop", "orders").unwrap(),
            &StartOutcome::LeaseHeld {
                holder: "failoverctl:bob".into(),
                op_id: "other".into(),
                expires: t,
            },
        )
        .unwrap();
        let s = trigger_status(
            &user,
            &Ok(vec![GroupResult::Refused {
                group: GroupRef::new("shop", "orders").unwrap(),
                refusal,
            }]),
            t,
        );
        assert_eq!(s.phase, Some(FailoverPhase::Failed));
        let c = &s.conditions[0];
        assert_eq!(
            (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
            ("Accepted", "False", "OperationInFlight")
        );
        assert!(
            c.message.contains("shop/orders") && c.message.contains("other"),
            "{}",
            c.message
        );
        let ev = trigger_event(&s).unwrap();
        assert!(ev.warning && ev.reason == "Refused");
    }
}
