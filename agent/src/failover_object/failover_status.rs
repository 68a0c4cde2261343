//! The `Failover` object an agent keeps in its own cluster for every operation that involves
//! it, so `kubectl get failovers -w` in either cluster shows that cluster's side live.
//!
//! * Pure part: [`failover_name`], [`desired_failover`] (the object to create: name, labels,
//!   immutable spec from the operation), [`initial_status`], [`apply_progress`] (folds one
//!   engine [`Progress`] event into the status) and [`apply_result`] (folds the final result).
//! * I/O part: [`StatusReporter`] creates the object if absent (an existing one is kept: the
//!   spec is immutable) and merge-patches its status subresource. A status write that fails
//!   is logged as a warning and never fails the workflow. It also publishes the operation's
//!   Kubernetes Events on that object ([`crate::kube_events`]): stage started/finished, the
//!   failing task, the final result.
//!
//! **A Failover a user created** (see [`crate::failover_object::trigger`]): when the operation was submitted
//! from a single-group `Failover` in this very cluster (its `requestedBy` is
//! `kubernetes:<this cluster>/<ns>/<name>` and the object's UID gives this operation id),
//! the reporter keeps the status of the user's object instead of creating a second one.
//! The peer cluster, which has no user object, creates its own as for any operation. A
//! multi-group user `Failover` gets one agent-created object per operation (the groups'
//! progress would overwrite each other in one status); the user's object then carries the
//! operation ids and the `Accepted` condition.

use std::time::{Duration, Instant};

use failover_messages::crd::{
    Failover, FailoverMode, FailoverPhase, FailoverSpec, FailoverStatus, FailoverTimings,
    GroupProgress, GroupRef as CrdGroupRef,
};
use failover_messages::records::Operation;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::adapter::AdapterError;
use crate::errors::error_chain_without_repeats;
use crate::kube_events::{EventSpec, Events, ProgressEvents, result_event};
use crate::kube_ops::{ANNOTATION_OPERATION, FIELD_MANAGER};
use crate::workflow::{EngineError, Progress, ProgressEvent};

/// Label: the operation (a label-safe form of its id; the full id is in the
/// `failover.io/operation` annotation and `status.operationId`).
pub const LABEL_OPERATION: &str = "failover.io/operation";
/// Label: the FailoverGroup's name (a label-safe form of it).
pub const LABEL_GROUP: &str = "failover.io/group";
/// Annotation: the epoch the operation runs at.
pub const ANNOTATION_EPOCH: &str = "failover.io/epoch";

/// Longest Kubernetes object name (DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;
/// Longest label value.
const MAX_LABEL_LEN: usize = 63;

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_value(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// FNV-1a, 32 bits: a stable short fingerprint, so two ids that sanitize alike still get
/// different names.
fn fingerprint(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// `s` lowercased with every run of characters outside `[a-z0-9]` turned into one `-`,
/// without leading or trailing `-`, cut to `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_owned()
}

/// The name of the `Failover` object of operation `op_id`: the id itself when it is a valid
/// object name (DNS-1123 subdomain, e.g. a lowercase UUID), otherwise
/// `fo-<sanitized id>-<fingerprint>` (stable, and distinct for ids that sanitize alike).
pub fn failover_name(op_id: &str) -> String {
    if is_dns_subdomain(op_id) {
        return op_id.to_owned();
    }
    let hash = fingerprint(op_id);
    // "fo-" + body + "-" + 8 hex digits stays within 63 characters (also a valid label).
    let body = sanitize(op_id, MAX_LABEL_LEN - 3 - 1 - hash.len());
    if body.is_empty() {
        format!("fo-{hash}")
    } else {
        format!("fo-{body}-{hash}")
    }
}

/// A label value standing for `s`: `s` itself when it is a valid label value, otherwise a
/// sanitized form with a fingerprint.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_owned();
    }
    let hash = fingerprint(s);
    let body = sanitize(s, MAX_LABEL_LEN - 1 - hash.len());
    if body.is_empty() {
        hash
    } else {
        format!("{body}-{hash}")
    }
}

// ---------------------------------------------------------------------------------------------
// The object
// ---------------------------------------------------------------------------------------------

/// The `Failover` to create for `op` in an involved cluster: in the group's namespace,
/// named by [`failover_name`], labelled with the operation and group, with the operation's
/// (immutable) spec. The status is written separately (status subresource).
pub fn desired_failover(op: &Operation) -> Failover {
    let mut fo = Failover::new(
        &failover_name(&op.id),
        FailoverSpec {
            target_cluster: op.target.clone(),
            mode: FailoverMode::from(op.mode),
            groups: vec![CrdGroupRef {
                name: op.group.name.clone(),
                namespace: Some(op.group.namespace.clone()),
            }],
            force: op.force,
            reason: Some(op.reason.clone()).filter(|r| !r.is_empty()),
        },
    );
    fo.metadata.namespace = Some(op.group.namespace.clone());
    fo.metadata.labels = Some(
        [
            (LABEL_OPERATION.to_owned(), label_value(&op.id)),
            (LABEL_GROUP.to_owned(), label_value(&op.group.name)),
        ]
        .into(),
    );
    fo.metadata.annotations = Some(
        [
            (ANNOTATION_OPERATION.to_owned(), op.id.clone()),
            (ANNOTATION_EPOCH.to_owned(), op.epoch.to_string()),
        ]
        .into(),
    );
    fo
}

// ---------------------------------------------------------------------------------------------
// The status
// ---------------------------------------------------------------------------------------------

/// The status before this cluster's workflow reports anything: `Pending`, the group listed,
/// started at the operation's start.
pub fn initial_status(op: &Operation) -> FailoverStatus {
    FailoverStatus {
        phase: Some(FailoverPhase::Pending),
        operation_id: Some(op.id.clone()),
        groups: vec![GroupProgress {
            name: op.group.name.clone(),
            namespace: Some(op.group.namespace.clone()),
            phase: Some(FailoverPhase::Pending),
            epoch: Some(op.epoch),
            ..GroupProgress::default()
        }],
        timings: Some(FailoverTimings {
            started_at: Some(Time(op.requested_at)),
            ..FailoverTimings::default()
        }),
        ..FailoverStatus::default()
    }
}

fn group_mut(status: &mut FailoverStatus) -> &mut GroupProgress {
    if status.groups.is_empty() {
        status.groups.push(GroupProgress::default());
    }
    &mut status.groups[0]
}

fn is_terminal(phase: Option<FailoverPhase>) -> bool {
    phase.is_some_and(FailoverPhase::is_terminal)
}

/// Folds one progress event into `status`: the phase becomes `Running` (a finished status
/// never changes again), the group's stage and task follow the event, and a failed task
/// leaves a message naming it and its error.
pub fn apply_progress(status: &mut FailoverStatus, progress: &Progress) {
    if is_terminal(status.phase) {
        return;
    }
    status.phase = Some(FailoverPhase::Running);
    if status.operation_id.is_none() {
        status.operation_id = Some(progress.operation_id.clone());
    }
    let g = group_mut(status);
    g.phase = Some(FailoverPhase::Running);
    match &progress.event {
        ProgressEvent::StageStarted {
            stage,
            number,
            title,
        } => {
            g.stage = Some(stage.clone());
            g.task = None;
            g.message = Some(format!("stage {number}: {title}"));
        }
        ProgressEvent::StageFinished { stage, .. } => {
            g.stage = Some(stage.clone());
        }
        ProgressEvent::TaskStarted { stage, task, .. }
        | ProgressEvent::TaskSkipped { stage, task }
        | ProgressEvent::TaskFinished { stage, task, .. } => {
            g.stage = Some(stage.clone());
            g.task = Some(task.clone());
        }
        ProgressEvent::TaskFailed {
            stage, task, error, ..
        } => {
            g.stage = Some(stage.clone());
            g.task = Some(task.clone());
            g.message = Some(format!("task {task} (stage {stage}) failed: {error}"));
        }
    }
}

/// How this cluster's side ended, for [`apply_result`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SideResult {
    /// The workflow ran to its end.
    Succeeded,
    /// An abort stopped it.
    Aborted {
        /// What happened, rendered.
        message: String,
    },
    /// It failed (or could not start).
    Failed {
        /// Where it stopped: (stage, task), when it got that far.
        at: Option<(String, String)>,
        /// What happened, rendered (names the failing task).
        message: String,
    },
}

impl SideResult {
    /// The side result of an adapter's outcome.
    pub fn of<T>(result: &Result<T, AdapterError>) -> Self {
        match result {
            Ok(_) => Self::Succeeded,
            Err(e @ AdapterError::Run(EngineError::AbortRequested { .. })) => Self::Aborted {
                message: error_chain_without_repeats(e),
            },
            Err(e) => {
                let at = match e {
                    AdapterError::Run(run) => run
                        .stage()
                        .zip(run.task())
                        .map(|(s, t)| (s.to_owned(), t.to_owned())),
                    _ => None,
                };
                Self::Failed {
                    at,
                    message: error_chain_without_repeats(e),
                }
            }
        }
    }
}

/// Folds the end of this cluster's side into `status`: the final phase (for the operation
/// and the group), the failing stage and task with a message, and finishedAt/totalSeconds.
pub fn apply_result(status: &mut FailoverStatus, result: &SideResult, at: Timestamp) {
    let (phase, message) = match result {
        SideResult::Succeeded => (FailoverPhase::Succeeded, None),
        SideResult::Aborted { message } => (FailoverPhase::Aborted, Some(message.clone())),
        SideResult::Failed { message, .. } => (FailoverPhase::Failed, Some(message.clone())),
    };
    status.phase = Some(phase);
    let g = group_mut(status);
    g.phase = Some(phase);
    if let SideResult::Failed {
        at: Some((stage, task)),
        ..
    } = result
    {
        g.stage = Some(stage.clone());
        g.task = Some(task.clone());
    }
    match message {
        Some(m) => g.message = Some(m),
        None => {
            if phase == FailoverPhase::Succeeded {
                g.message = Some("this cluster's side finished".to_owned());
            }
        }
    }
    let timings = status.timings.get_or_insert_with(FailoverTimings::default);
    let started = timings.started_at.as_ref().map_or(at, |t| t.0);
    timings.started_at = Some(Time(started));
    timings.finished_at = Some(Time(at));
    let total = at.duration_since(started).as_secs_f64().max(0.0);
    timings.total_seconds = Some((total * 1000.0).round() / 1000.0);
}

/// Copies what only the operation record knows into the status's timings: the downtime
/// (`timings.downtimeMs`, written when the target completed it) and the UPTIME dual-active
/// window (both ends recorded). Fields the record lacks are left alone.
pub fn apply_recorded_timings(status: &mut FailoverStatus, op: &Operation) {
    let timings = status.timings.get_or_insert_with(FailoverTimings::default);
    if let Some(ms) = op.timings.downtime_ms {
        timings.downtime_seconds = Some(ms as f64 / 1000.0);
    }
    if let (Some(a), Some(b)) = (op.dual_active_started_at, op.dual_active_ended_at) {
        let secs = b.duration_since(a).as_secs_f64().max(0.0);
        timings.dual_active_seconds = Some((secs * 1000.0).round() / 1000.0);
    }
}

// ---------------------------------------------------------------------------------------------
// I/O
// ---------------------------------------------------------------------------------------------

/// Least time between two progress writes of the same Failover (stage changes and failures
/// are written at once; the final status always).
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// Keeps one operation's `Failover` in this cluster current. Every write is best effort.
#[derive(Debug)]
pub struct StatusReporter {
    api: Api<Failover>,
    name: String,
    namespace: String,
    cluster: String,
    op_id: String,
    status: FailoverStatus,
    last_write: Option<Instant>,
    dirty: bool,
    events: Events,
    progress_events: ProgressEvents,
    reference: Option<ObjectReference>,
}

impl StatusReporter {
    /// A reporter for `op` in cluster `cluster`, writing through `client`.
    pub fn new(client: kube::Client, cluster: &str, op: &Operation) -> Self {
        Self {
            events: Events::new(client.clone(), cluster),
            api: Api::namespaced(client, &op.group.namespace),
            name: failover_name(&op.id),
            namespace: op.group.namespace.clone(),
            cluster: cluster.to_owned(),
            op_id: op.id.clone(),
            status: initial_status(op),
            last_write: None,
            dirty: false,
            progress_events: ProgressEvents::default(),
            reference: None,
        }
    }

    /// The name of the `Failover` whose status this reporter keeps (the user's object for
    /// an operation submitted from a Failover in this cluster, see the module docs).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The user's single-group `Failover` in this cluster that submitted `op`, if any.
    async fn user_failover(&self, op: &Operation) -> Option<Failover> {
        let (cluster, ns, name) =
            crate::failover_object::trigger::parse_requested_by(&op.requested_by)?;
        if cluster != self.cluster || ns != op.group.namespace {
            return None;
        }
        let fo = match self.api.get_opt(name).await {
            Ok(fo) => fo?,
            Err(e) => {
                tracing::warn!(
                    failover = %name, namespace = %ns, cluster = %self.cluster,
                    error = %error_chain_without_repeats(&e), "cannot read the Failover that requested the operation"
                );
                return None;
            }
        };
        (crate::failover_object::trigger::status_on_user_object(&fo)
            && crate::failover_object::trigger::operation_ids(&fo).first() == Some(&op.id))
        .then_some(fo)
    }

    fn reference_of(&self, fo: &Failover) -> ObjectReference {
        let mut r = fo.object_ref(&());
        r.namespace = r.namespace.or_else(|| Some(self.namespace.clone()));
        r
    }

    /// The object Events are attached to: the Failover as created or read, else one built
    /// from its name.
    fn regarding(&self) -> ObjectReference {
        self.reference.clone().unwrap_or_else(|| ObjectReference {
            api_version: Some(Failover::api_version(&()).into_owned()),
            kind: Some(Failover::kind(&()).into_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        })
    }

    async fn publish(&self, ev: &EventSpec) {
        self.events.publish(&self.regarding(), ev).await;
    }

    /// The status as folded so far.
    pub fn status(&self) -> &FailoverStatus {
        &self.status
    }

    /// Creates the Failover unless it exists (the spec is immutable, so an existing one is
    /// kept as is); writes the initial status when it was created here.
    pub async fn create(&mut self, op: &Operation) {
        if let Some(fo) = self.user_failover(op).await {
            self.name = fo.metadata.name.clone().unwrap_or_default();
            self.reference = Some(self.reference_of(&fo));
            if fo.status.as_ref().and_then(|s| s.phase).is_none() {
                self.write().await;
            }
            return;
        }
        match self
            .api
            .create(&PostParams::default(), &desired_failover(op))
            .await
        {
            Ok(created) => {
                self.reference = Some(self.reference_of(&created));
                self.write().await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if let Ok(Some(existing)) = self.api.get_opt(&self.name).await {
                    self.reference = Some(self.reference_of(&existing));
                }
            }
            Err(e) => tracing::warn!(
                failover = %self.name, namespace = %self.namespace, cluster = %self.cluster,
                error = %error_chain_without_repeats(&e), "cannot create the Failover; the operation goes on"
            ),
        }
    }

    /// Merge-patches the status subresource with the folded status.
    async fn write(&mut self) {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = json!({ "status": &self.status });
        self.last_write = Some(Instant::now());
        self.dirty = false;
        if let Err(e) = self
            .api
            .patch_status(&self.name, &pp, &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(
                failover = %self.name, namespace = %self.namespace, cluster = %self.cluster,
                error = %error_chain_without_repeats(&e), "cannot write the Failover status; the operation goes on"
            );
        }
    }

    fn due(&self) -> Option<Instant> {
        self.dirty.then(|| {
            self.last_write
                .map_or_else(Instant::now, |t| t + MIN_WRITE_INTERVAL)
        })
    }

    /// Folds every progress event from `rx` into the status and writes it, at most every
    /// [`MIN_WRITE_INTERVAL`] (stage changes and failures at once), until `rx` closes; then
    /// writes what is still unwritten.
    pub async fn follow(&mut self, mut rx: mpsc::UnboundedReceiver<Progress>) {
        loop {
            let due = self.due();
            tokio::select! {
                p = rx.recv() => {
                    let Some(p) = p else { break };
                    apply_progress(&mut self.status, &p);
                    if let Some(ev) = self.progress_events.on(&p) {
                        self.publish(&ev).await;
                    }
                    self.dirty = true;
                    let urgent = matches!(
                        p.event,
                        ProgressEvent::StageStarted { .. } | ProgressEvent::TaskFailed { .. }
                    );
                    if urgent || self.due().is_some_and(|t| t <= Instant::now()) {
                        self.write().await;
                    }
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    self.write().await;
                }
            }
        }
        if self.dirty {
            self.write().await;
        }
    }

    /// Folds the end of this side and writes the final status (always written).
    /// Takes the downtime and dual-active window from the stored operation (see
    /// [`apply_recorded_timings`]); written with the next status write.
    pub fn recorded_timings(&mut self, op: &Operation) {
        apply_recorded_timings(&mut self.status, op);
    }

    pub async fn finish(&mut self, result: &SideResult, at: Timestamp) {
        apply_result(&mut self.status, result, at);
        self.write().await;
        let ev = result_event(result, &self.op_id, &self.cluster);
        self.publish(&ev).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use failover_messages::keys::GroupRef;
    use failover_messages::records::{Mode, Phase};

    fn op(id: &str) -> Operation {
        Operation {
            id: id.into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch: 3,
            mode: Mode::Consistency,
            source: "east".into(),
            target: "west".into(),
            force: false,
            reason: "drill".into(),
            requested_by: "me".into(),
            phase: Phase::Running,
            requested_at: "2026-11-26T12:00:00Z".parse().unwrap(),
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

    fn progress(event: ProgressEvent) -> Progress {
        Progress {
            operation_id: "op-1".into(),
            cluster: "east".into(),
            at: "2026-11-26T12:00:01Z".parse().unwrap(),
            event,
        }
    }

    #[test]
    fn the_recorded_downtime_and_dual_active_window_reach_the_status() {
        let mut o = op("op-1");
        let mut status = FailoverStatus::default();
        apply_recorded_timings(&mut status, &o);
        let t = status.timings.clone().unwrap();
        assert_eq!((t.downtime_seconds, t.dual_active_seconds), (None, None));
        o.timings.downtime_ms = Some(1_250);
        o.dual_active_started_at = Some("2026-11-26T12:00:01Z".parse().unwrap());
        o.dual_active_ended_at = Some("2026-11-26T12:00:03.5Z".parse().unwrap());
        apply_recorded_timings(&mut status, &o);
        let t = status.timings.unwrap();
        assert_eq!(t.downtime_seconds, Some(1.25));
        assert_eq!(t.dual_active_seconds, Some(2.5));
    }

    #[test]
    fn dns_safe_ids_are_the_name() {
        assert_eq!(
            failover_name("0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"),
            "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"
        );
        assert_eq!(failover_name("op-1"), "op-1");
    }

    #[test]
    fn other_ids_are_sanitized_stably_and_distinctly() {
        let a = failover_name("Op:2026_11.A");
        let b = failover_name("op-2026-11-a");
        let c = failover_name("OP:2026_11.A");
        assert!(a.starts_with("fo-op-2026-11-a-"), "{a}");
        assert!(is_dns_subdomain(&a) && is_label_value(&a), "{a}");
        assert_eq!(a, failover_name("Op:2026_11.A"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        let long = "X".repeat(128);
        let n = failover_name(&long);
        assert!(n.len() <= 63 && is_dns_subdomain(&n), "{n}");
        assert!(is_dns_subdomain(&failover_name("::")));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("op-1"), "op-1");
        assert_eq!(label_value("Op_1.x"), "Op_1.x");
        let l = label_value(&format!("a:{}", "b".repeat(100)));
        assert!(is_label_value(&l) && !l.is_empty(), "{l}");
    }

    #[test]
    fn the_object_carries_the_operation() {
        let fo = desired_failover(&op("op-1"));
        assert_eq!(fo.metadata.name.as_deref(), Some("op-1"));
        assert_eq!(fo.metadata.namespace.as_deref(), Some("shop"));
        let labels = fo.metadata.labels.unwrap();
        assert_eq!(labels[LABEL_OPERATION], "op-1");
        assert_eq!(labels[LABEL_GROUP], "orders");
        let ann = fo.metadata.annotations.unwrap();
        assert_eq!(ann[ANNOTATION_OPERATION], "op-1");
        assert_eq!(ann[ANNOTATION_EPOCH], "3");
        assert_eq!(
            fo.spec,
            FailoverSpec {
                target_cluster: "west".into(),
                mode: FailoverMode::Consistency,
                groups: vec![CrdGroupRef {
                    name: "orders".into(),
                    namespace: Some("shop".into())
                }],
                force: false,
                reason: Some("drill".into()),
            }
        );
        let mut o = op("op-2");
        o.reason.clear();
        o.mode = Mode::Uptime;
        o.force = true;
        let fo = desired_failover(&o);
        assert_eq!(fo.spec.reason, None);
        assert_eq!(fo.spec.mode, FailoverMode::Uptime);
        assert!(fo.spec.force);
    }

    #[test]
    fn progress_moves_the_phase_stage_and_task() {
        let mut s = initial_status(&op("op-1"));
        assert_eq!(s.phase, Some(FailoverPhase::Pending));
        assert_eq!(s.operation_id.as_deref(), Some("op-1"));
        assert_eq!(s.groups[0].epoch, Some(3));
        apply_progress(
            &mut s,
            &progress(ProgressEvent::StageStarted {
                stage: "SourceShutdown".into(),
                number: 2,
                title: "Source Cluster Shutdown".into(),
            }),
        );
        assert_eq!(s.phase, Some(FailoverPhase::Running));
        assert_eq!(s.groups[0].stage.as_deref(), Some("SourceShutdown"));
        assert_eq!(s.groups[0].task, None);
        apply_progress(
            &mut s,
            &progress(ProgressEvent::TaskStarted {
                stage: "SourceShutdown".into(),
                task: "NetworkOff".into(),
                object: None,
                previous: None,
            }),
        );
        assert_eq!(s.groups[0].task.as_deref(), Some("NetworkOff"));
        apply_progress(
            &mut s,
            &progress(ProgressEvent::TaskFinished {
                stage: "SourceShutdown".into(),
                task: "NetworkOff".into(),
                elapsed: Duration::from_millis(5),
            }),
        );
        apply_progress(
            &mut s,
            &progress(ProgressEvent::StageFinished {
                stage: "SourceShutdown".into(),
                elapsed: Duration::from_secs(1),
            }),
        );
        assert_eq!(s.groups[0].stage.as_deref(), Some("SourceShutdown"));
        assert_eq!(s.groups[0].task.as_deref(), Some("NetworkOff"));
        assert_eq!(s.groups[0].phase, Some(FailoverPhase::Running));
    }

    #[test]
    fn success_records_the_end_and_the_total() {
        let mut s = initial_status(&op("op-1"));
        apply_progress(
            &mut s,
            &progress(ProgressEvent::TaskSkipped {
                stage: "Completion".into(),
                task: "CompleteOperation".into(),
            }),
        );
        apply_result(
            &mut s,
            &SideResult::Succeeded,
            "2026-11-26T12:00:12.5Z".parse().unwrap(),
        );
        assert_eq!(s.phase, Some(FailoverPhase::Succeeded));
        assert_eq!(s.groups[0].phase, Some(FailoverPhase::Succeeded));
        assert_eq!(s.groups[0].stage.as_deref(), Some("Completion"));
        let t = s.timings.unwrap();
        assert_eq!(t.total_seconds, Some(12.5));
        assert_eq!(
            t.finished_at.unwrap().0,
            "2026-11-26T12:00:12.5Z".parse::<Timestamp>().unwrap()
        );
    }

    #[test]
    fn a_failure_names_the_task_and_later_events_change_nothing() {
        let mut s = initial_status(&op("op-1"));
        apply_progress(
            &mut s,
            &progress(ProgressEvent::TaskFailed {
                stage: "VolumeDemotion".into(),
                task: "Demote:VolumeReplication/db".into(),
                elapsed: Duration::from_secs(1),
                error: "boom".into(),
            }),
        );
        let msg = s.groups[0].message.clone().unwrap();
        assert!(
            msg.contains("Demote:VolumeReplication/db") && msg.contains("boom"),
            "{msg}"
        );
        apply_result(
            &mut s,
            &SideResult::Failed {
                at: Some((
                    "VolumeDemotion".into(),
                    "Demote:VolumeReplication/db".into(),
                )),
                message: "task Demote:VolumeReplication/db (stage VolumeDemotion) failed".into(),
            },
            "2026-11-26T12:01:00Z".parse().unwrap(),
        );
        assert_eq!(s.phase, Some(FailoverPhase::Failed));
        assert_eq!(
            s.groups[0].task.as_deref(),
            Some("Demote:VolumeReplication/db")
        );
        let before = s.clone();
        apply_progress(
            &mut s,
            &progress(ProgressEvent::StageStarted {
                stage: "X".into(),
                number: 9,
                title: "x".into(),
            }),
        );
        assert_eq!(s, before);
    }

    #[test]
    fn adapter_errors_map_to_phases() {
        let abort: Result<(), AdapterError> = Err(AdapterError::Run(EngineError::AbortRequested {
            stage: "SourceShutdown".into(),
            task: "NetworkOff".into(),
            cluster: "east".into(),
            op_id: "op-1".into(),
            at: "2026-11-26T12:00:00Z".parse().unwrap(),
        }));
        assert!(matches!(SideResult::of(&abort), SideResult::Aborted { .. }));
        let timeout: Result<(), AdapterError> =
            Err(AdapterError::Run(EngineError::DeadlineExceeded {
                stage: "VolumeDemotion".into(),
                task: "WaitSecondary".into(),
                object: None,
                cluster: "east".into(),
                after: Duration::from_secs(60),
            }));
        match SideResult::of(&timeout) {
            SideResult::Failed { at, message } => {
                assert_eq!(at, Some(("VolumeDemotion".into(), "WaitSecondary".into())));
                assert!(message.contains("WaitSecondary"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let missing: Result<(), AdapterError> = Err(AdapterError::GroupNotFound {
            group: "shop/orders".into(),
            cluster: "east".into(),
        });
        assert!(matches!(
            SideResult::of(&missing),
            SideResult::Failed { at: None, .. }
        ));
        assert_eq!(
            SideResult::of(&Ok::<(), AdapterError>(())),
            SideResult::Succeeded
        );
    }
}
