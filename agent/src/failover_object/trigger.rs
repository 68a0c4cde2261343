//! A `Failover` a user creates in this cluster is a trigger: the agent submits it as an
//! operation exactly as `failoverctl failover` would (one conditional start per group in
//! `spec.groups`, target `spec.targetCluster`, source = the group's active cluster, then a
//! wake-up to the source and target inboxes) and records the answer in the object's status.
//!
//! **Which objects.** Agents create a `Failover` per operation too; those carry the
//! `failover.io/operation` annotation (and label) set by
//! [`desired_failover`](super::failover_status::desired_failover) and are never triggers
//! ([`is_agent_created`]). A user object is submitted while it has no
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
//! (see [`super::failover_reporter`]); the peer cluster creates its own object, named after
//! the operation id. Events: `Accepted` (Normal) or `Refused` (Warning) on the object.
//!
//! Pure part: [`needs_submission`], [`plan`], [`decide`], [`trigger_status`] (the names and
//! ids it relies on are in [`super::failover_names`]). I/O part: [`Trigger::reconcile`].

use std::time::Duration;

use failover_messages::crd::{
    Failover, FailoverMode, FailoverPhase, FailoverStatus, GroupProgress,
};
use failover_messages::envelope::EnvelopeKind;
use failover_messages::inbox::Inbox;
use failover_messages::keys::{self, GroupRef};
use failover_messages::protocol::start;
use failover_messages::records::{Mode, Operation};
use failover_messages::store::{StartOutcome, StartRequest, StartView, Store, StoreError};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::conditions::set_condition;
use crate::errors::error_chain;
use crate::kube_events::{EventSpec, Events};
use crate::kube_ops::FIELD_MANAGER;

use super::failover_names::{is_agent_created, operation_ids, requested_by};

/// Condition type recording whether the object was submitted.
pub const COND_ACCEPTED: &str = "Accepted";
/// `Accepted=False` reason that is retried on later re-reads.
pub use failover_messages::protocol::start::REASON_NOT_REGISTERED;
/// The first lease of a submitted operation (as `failoverctl`'s default).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------------

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
                source_is_down: fo.spec.force && fo.spec.source_is_down,
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

impl From<start::Refusal> for Refusal {
    /// The refusal of [`start::decide_start`] as this object's `Accepted=False` reason and
    /// message: the same words `failoverctl failover` prints, after the group.
    fn from(r: start::Refusal) -> Self {
        Self::new(r.reason(), r.to_string())
    }
}

/// Whether to start `start`, decided by [`start::decide_start`] as for every front end on
/// what was read (`view`) and whether the target cluster is known (its inbox queue exists):
/// the request with its source filled in, or the first refusal.
pub fn decide(
    start: &PlannedStart,
    view: &StartView,
    target_known: bool,
) -> Result<StartRequest, Refusal> {
    let ask = start::Request {
        group: &start.group,
        target: &start.request.target,
        source: None,
        force: start.request.force,
        source_is_down: start.request.source_is_down,
        op_id: Some(&start.op_id),
    };
    match start::decide_start(&view.observed(Some(target_known)), &ask, view.read_at) {
        Ok(plan) => {
            let mut req = start.request.clone();
            req.source = plan.source;
            Ok(req)
        }
        Err(refusals) => Err(refusals
            .into_iter()
            .next()
            .expect("a refused start names a refusal")
            .into()),
    }
}

/// The refusal of a store answer other than `Started`.
pub fn refusal_of(group: &GroupRef, outcome: &StartOutcome) -> Option<Refusal> {
    outcome.refusal(group).map(Refusal::from)
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
    status.groups = results.iter().map(group_progress).collect();
    let refused_text = refused
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    let (accepted, reason, message) = if started.is_empty() {
        let retried = refused.iter().all(|r| r.reason == REASON_NOT_REGISTERED);
        if !retried {
            status.phase = Some(FailoverPhase::Failed);
        }
        (false, refusal_reason(&refused), refused_text)
    } else {
        status.operation_id = Some(
            started
                .iter()
                .map(|o| o.id.as_str())
                .collect::<Vec<_>>()
                .join(","),
        );
        status.phase = current.phase.or(Some(FailoverPhase::Pending));
        let (reason, message) = started_message(&started, &refused, &refused_text);
        (true, reason, message)
    };
    set_condition(
        &mut status.conditions,
        COND_ACCEPTED,
        accepted,
        reason,
        message,
        g,
        now,
    );
    status
}

/// The `status.groups` entry of one group's result.
fn group_progress(r: &GroupResult) -> GroupProgress {
    match r {
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
    }
}

/// The `Accepted=False` reason when no group started: the refusals' common reason, else
/// `Refused`.
fn refusal_reason(refused: &[&Refusal]) -> &'static str {
    if refused.iter().all(|r| r.reason == refused[0].reason) {
        refused.first().map_or("Refused", |r| r.reason)
    } else {
        "Refused"
    }
}

/// The `Accepted=True` reason and message when some group started (`refused_text`: the
/// refusals of the others).
fn started_message(
    started: &[&Operation],
    refused: &[&Refusal],
    refused_text: &str,
) -> (&'static str, String) {
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
    (reason, message)
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
                        reason: error_chain(&e),
                    })
                }
            }
        }
    }

    async fn notify(&self, op: &Operation) {
        let sent = self
            .inbox
            .notify_operation(op, EnvelopeKind::OperationStarted, Timestamp::now())
            .await;
        for (cluster, result) in sent {
            if let Err(e) = result {
                tracing::warn!(
                    %cluster, op = %op.id, error = %error_chain(&e),
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
        let mut fresh = Vec::new();
        let outcome = match plan(fo, &self.cluster) {
            Err(r) => Err(r),
            Ok(starts) => Ok(self.submit(&starts, &what, &mut fresh).await?),
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
            let body = status_patch(fo, &status);
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

    /// Starts every group of `starts` whose operation does not exist yet, as [`decide`]
    /// allows; the operations started now are added to `fresh` (`what`: the Failover, for
    /// errors and logs).
    async fn submit(
        &self,
        starts: &[PlannedStart],
        what: &str,
        fresh: &mut Vec<Operation>,
    ) -> Result<Vec<GroupResult>, TriggerError> {
        let store_err = |source| TriggerError::Store {
            failover: what.to_owned(),
            source,
        };
        let mut results = Vec::new();
        let mut known: Option<bool> = None;
        for start in starts {
            if let Some(op) = self
                .store
                .get_operation(&start.op_id)
                .await
                .map_err(store_err)?
            {
                results.push(GroupResult::Started(Box::new(op)));
                continue;
            }
            let view = self
                .store
                .read_start_view(&start.group, &start.request.target)
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
            let req = match decide(start, &view, target_known) {
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
}

/// The `status` fields to merge-patch on the user's `fo` for `status`: conditions and
/// generation always, the operation ids when some started, the phase when there was none or
/// it failed, the groups when there were none or nothing started.
fn status_patch(fo: &Failover, status: &FailoverStatus) -> serde_json::Value {
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
    if fo.status.as_ref().is_none_or(|s| s.groups.is_empty()) || status.operation_id.is_none() {
        body["groups"] = json!(status.groups);
    }
    body
}

#[cfg(test)]
mod tests;
