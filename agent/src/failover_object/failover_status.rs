//! The status of the `Failover` object an agent keeps in its own cluster for every
//! operation that involves it, as a pure fold: [`desired_failover`] (the object to create:
//! name, labels, immutable spec from the operation), [`initial_status`], [`apply_progress`]
//! (folds one engine [`Progress`] event into the status), [`apply_recorded_timings`] (what
//! only the stored operation knows) and [`apply_result`] (the end of this cluster's side).
//! The I/O is the [`FailoverReporter`](super::failover_reporter::FailoverReporter)'s.

use failover_messages::crd::{
    Failover, FailoverMode, FailoverPhase, FailoverSpec, FailoverStatus, FailoverTimings,
    GroupProgress, GroupRef as CrdGroupRef,
};
use failover_messages::records::Operation;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::kube_ops::ANNOTATION_OPERATION;
use crate::workflow::{Progress, ProgressEvent, SideResult};

use super::failover_names::{
    ANNOTATION_EPOCH, LABEL_GROUP, LABEL_OPERATION, failover_name, label_value,
};

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
            source_is_down: false,
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

/// Folds one progress event of the run into `status`: the stored operation adds its
/// timings ([`apply_recorded_timings`]), the end of the side its final phase
/// ([`apply_result`]), and an engine event moves the phase to `Running` (a finished status
/// never changes again), the group's stage and task follow it, and a failed task leaves a
/// message naming it and its error.
pub fn apply_progress(status: &mut FailoverStatus, progress: &Progress) {
    match &progress.event {
        ProgressEvent::Recorded(op) => apply_recorded_timings(status, op),
        ProgressEvent::SideFinished(result) => apply_result(status, result, progress.at),
        _ => apply_engine_progress(status, progress),
    }
}

fn apply_engine_progress(status: &mut FailoverStatus, progress: &Progress) {
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
        // Folded by `apply_progress`.
        ProgressEvent::Recorded(_) | ProgressEvent::SideFinished(_) => {}
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use failover_messages::keys::GroupRef;

    use super::*;
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
            source_is_down: false,
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
                source_is_down: false,
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
}
