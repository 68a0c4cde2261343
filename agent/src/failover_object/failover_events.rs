//! The Kubernetes Events on an operation's `Failover` in this cluster: every stage started
//! and finished (Normal), the failing task (Warning, naming stage, task, object and
//! cluster) and the final result of this cluster's side. Pure: [`ProgressEvents`] turns the
//! run's [`Progress`] events into [`EventSpec`]s, [`result_event`] the side's end; the
//! reporter publishes them ([`crate::kube_events`]).

use crate::kube_events::EventSpec;
use crate::workflow::{Progress, ProgressEvent, SideResult};

/// Folds engine progress into Events: remembers the object of the task running, so the
/// failure event can name it.
#[derive(Clone, Debug, Default)]
pub struct ProgressEvents {
    running: Option<(String, Option<String>)>,
}

impl ProgressEvents {
    /// The Event for `p`, if it is one worth an Event (stage boundaries and failures).
    pub fn on(&mut self, p: &Progress) -> Option<EventSpec> {
        let cluster = &p.cluster;
        match &p.event {
            ProgressEvent::StageStarted {
                stage,
                number,
                title,
            } => Some(EventSpec::new(
                false,
                "StageStarted",
                stage,
                format!(
                    "operation {}: stage {number} {title} ({stage}) started in cluster {cluster}",
                    p.operation_id
                ),
            )),
            ProgressEvent::StageFinished { stage, elapsed } => Some(EventSpec::new(
                false,
                "StageFinished",
                stage,
                format!(
                    "operation {}: stage {stage} finished in cluster {cluster} after {:.3}s",
                    p.operation_id,
                    elapsed.as_secs_f64()
                ),
            )),
            ProgressEvent::TaskStarted { task, object, .. } => {
                self.running = Some((task.clone(), object.clone()));
                None
            }
            ProgressEvent::TaskSkipped { .. } | ProgressEvent::TaskFinished { .. } => None,
            // The side's end has an Event of its own (`result_event`), published after the
            // final status.
            ProgressEvent::Recorded(_) | ProgressEvent::SideFinished(_) => None,
            ProgressEvent::TaskFailed {
                stage, task, error, ..
            } => {
                let object = self
                    .running
                    .as_ref()
                    .filter(|(t, _)| t == task)
                    .and_then(|(_, o)| o.clone())
                    .unwrap_or_else(|| "no single object".to_owned());
                Some(EventSpec::new(
                    true,
                    "TaskFailed",
                    task,
                    format!(
                        "operation {}: task {task} of stage {stage} failed on {object} in cluster {cluster}: {error}",
                        p.operation_id
                    ),
                ))
            }
        }
    }
}

/// The Event of how this cluster's side of operation `op_id` ended.
pub fn result_event(result: &SideResult, op_id: &str, cluster: &str) -> EventSpec {
    match result {
        SideResult::Succeeded => EventSpec::new(
            false,
            "Succeeded",
            "Failover",
            format!("operation {op_id}: cluster {cluster}'s side finished"),
        ),
        SideResult::Aborted { message } => EventSpec::new(
            true,
            "Aborted",
            "Failover",
            format!("operation {op_id} aborted in cluster {cluster}: {message}"),
        ),
        SideResult::Failed { at, message } => {
            let place = at
                .as_ref()
                .map(|(s, t)| format!(" at task {t} of stage {s}"))
                .unwrap_or_default();
            EventSpec::new(
                true,
                "Failed",
                "Failover",
                format!("operation {op_id} failed in cluster {cluster}{place}: {message}"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn p(event: ProgressEvent) -> Progress {
        Progress {
            operation_id: "op-1".into(),
            cluster: "east".into(),
            at: "2026-11-26T12:00:00Z".parse().unwrap(),
            event,
        }
    }

    #[test]
    fn stages_give_normal_events_named_by_stage() {
        let mut f = ProgressEvents::default();
        let ev = f
            .on(&p(ProgressEvent::StageStarted {
                stage: "SourceShutdown".into(),
                number: 2,
                title: "Source Cluster Shutdown".into(),
            }))
            .unwrap();
        assert!(!ev.warning);
        assert_eq!(
            (ev.reason.as_str(), ev.action.as_str()),
            ("StageStarted", "SourceShutdown")
        );
        assert!(
            ev.note.contains("east") && ev.note.contains("op-1"),
            "{}",
            ev.note
        );
        let ev = f
            .on(&p(ProgressEvent::StageFinished {
                stage: "SourceShutdown".into(),
                elapsed: Duration::from_millis(1500),
            }))
            .unwrap();
        assert_eq!(ev.reason, "StageFinished");
        assert!(ev.note.contains("1.500s"), "{}", ev.note);
        assert_eq!(
            f.on(&p(ProgressEvent::TaskFinished {
                stage: "s".into(),
                task: "t".into(),
                elapsed: Duration::ZERO
            })),
            None
        );
    }

    #[test]
    fn a_failed_task_names_stage_task_object_and_cluster() {
        let mut f = ProgressEvents::default();
        assert_eq!(
            f.on(&p(ProgressEvent::TaskStarted {
                stage: "VolumeDemotion".into(),
                task: "Demote:db".into(),
                object: Some("VolumeReplication shop/db".into()),
                previous: None,
            })),
            None
        );
        let ev = f
            .on(&p(ProgressEvent::TaskFailed {
                stage: "VolumeDemotion".into(),
                task: "Demote:db".into(),
                elapsed: Duration::from_secs(1),
                error: "boom".into(),
            }))
            .unwrap();
        assert!(ev.warning);
        for part in [
            "VolumeDemotion",
            "Demote:db",
            "VolumeReplication shop/db",
            "east",
            "boom",
        ] {
            assert!(ev.note.contains(part), "{part} missing in {}", ev.note);
        }
    }

    #[test]
    fn the_result_of_a_side_names_where_it_failed() {
        assert!(!result_event(&SideResult::Succeeded, "op", "east").warning);
        let ev = result_event(
            &SideResult::Failed {
                at: Some(("S".into(), "T".into())),
                message: "x".into(),
            },
            "op",
            "east",
        );
        assert!(
            ev.warning && ev.note.contains("task T of stage S"),
            "{}",
            ev.note
        );
    }
}
