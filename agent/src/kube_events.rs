//! Kubernetes Events the agent publishes (`events.k8s.io/v1`, through
//! [`kube::runtime::events::Recorder`]), so `kubectl describe failover …` and
//! `kubectl describe failovergroup …` tell what happened:
//!
//! * on an operation's `Failover` in this cluster: every stage started and finished
//!   (Normal), the failing task (Warning, naming stage, task, object and cluster) and the
//!   final result of this cluster's side;
//! * on a user-created `Failover`: accepted (Normal) or refused (Warning);
//! * on a `FailoverGroup` whose spec is invalid (Warning, naming the field).
//!
//! Pure part: [`ProgressEvents`] turns engine [`Progress`] events into [`EventSpec`]s,
//! [`result_event`], [`invalid_spec_event`]. I/O part: [`Events::publish`]; a write that
//! fails is logged, never returned, so an event can never fail a workflow.
//!
//! The recorder merges repeats of the same (type, reason, action, object) into one Event
//! with a count, so every event that must stay distinct carries its stage or task in
//! `action`. A run that is retried (the runner resumes a failed side on every re-read)
//! would repeat the same Events each time, through a new reporter: the same Event (object,
//! type, reason, action, note) is therefore published at most once per [`REPEAT_WINDOW`]
//! in this process.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::failover_group::group_status::{SpecProblem, problems_message};
use crate::failover_object::failover_status::SideResult;
use crate::workflow::{Progress, ProgressEvent};

/// `reportingController` of every Event the agent writes.
pub const REPORTING_CONTROLLER: &str = "failover.io/failover-agent";

/// Longest `reason` / `action` the API accepts.
const MAX_SHORT: usize = 128;
/// Longest `note` the API accepts (bytes).
const MAX_NOTE: usize = 1024;

/// The same Event is published at most once within this window (see the module docs).
pub const REPEAT_WINDOW: Duration = Duration::from_secs(600);

fn recent() -> &'static Mutex<HashMap<String, Instant>> {
    static RECENT: OnceLock<Mutex<HashMap<String, Instant>>> = OnceLock::new();
    RECENT.get_or_init(|| Mutex::new(HashMap::new()))
}

/// True when the Event `key` was not published within [`REPEAT_WINDOW`]; records it.
fn first_in_window(key: String, now: Instant) -> bool {
    let mut map = recent()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.retain(|_, at| now.duration_since(*at) < REPEAT_WINDOW);
    if map.contains_key(&key) {
        return false;
    }
    map.insert(key, now);
    true
}

/// One Event to publish, before it is attached to an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// Short CamelCase reason, e.g. `StageStarted`.
    pub reason: String,
    /// What was acted on, e.g. the stage or task key.
    pub action: String,
    /// The human-readable message.
    pub note: String,
}

impl EventSpec {
    fn new(warning: bool, reason: &str, action: &str, note: String) -> Self {
        Self {
            warning,
            reason: cut(reason, MAX_SHORT),
            action: cut(action, MAX_SHORT),
            note: cut(&note, MAX_NOTE),
        }
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

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

/// The Warning on a FailoverGroup whose spec is invalid.
pub fn invalid_spec_event(problems: &[SpecProblem], cluster: &str) -> EventSpec {
    EventSpec::new(
        true,
        crate::failover_group::group_status::REASON_INVALID_SPEC,
        "ValidateSpec",
        format!(
            "cluster {cluster} cannot fail this group over: {}",
            problems_message(problems)
        ),
    )
}

/// The Warning on a FailoverGroup whose side this cluster fenced.
pub fn fenced_event(cluster: &str, entitled: &str, epoch: u64, seen: &str) -> EventSpec {
    EventSpec::new(
        true,
        "Fenced",
        "Fence",
        format!(
            "cluster {cluster} is not entitled to this group ({entitled} is, epoch {epoch}) but its side was active ({seen}): traffic off, workloads scaled to 0, volumes demoted"
        ),
    )
}

/// Publishes Events as this cluster's agent. Cheap to clone (clones share the recorder's
/// cache of recent events).
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
    cluster: String,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// A publisher for cluster `cluster` writing through `client`.
    pub fn new(client: kube::Client, cluster: &str) -> Self {
        let reporter = Reporter {
            controller: REPORTING_CONTROLLER.to_owned(),
            instance: Some(cut(&format!("failover-agent-{cluster}"), MAX_SHORT)),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            cluster: cluster.to_owned(),
        }
    }

    /// Publishes `ev` on `regarding`; a failure is logged as a warning and otherwise ignored.
    pub async fn publish(&self, regarding: &ObjectReference, ev: &EventSpec) {
        let key = format!(
            "{}|{}|{}/{}|{}|{}|{}|{}",
            self.cluster,
            regarding.uid.as_deref().unwrap_or(""),
            regarding.namespace.as_deref().unwrap_or(""),
            regarding.name.as_deref().unwrap_or(""),
            ev.warning,
            ev.reason,
            ev.action,
            ev.note
        );
        if !first_in_window(key, Instant::now()) {
            return;
        }
        let event = Event {
            type_: if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: ev.reason.clone(),
            note: Some(ev.note.clone()),
            action: ev.action.clone(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(
                cluster = %self.cluster,
                kind = regarding.kind.as_deref().unwrap_or(""),
                namespace = regarding.namespace.as_deref().unwrap_or(""),
                name = regarding.name.as_deref().unwrap_or(""),
                reason = %ev.reason,
                error = %e,
                "cannot publish a Kubernetes Event; going on"
            );
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
    fn results_and_invalid_specs() {
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
        let ev = invalid_spec_event(
            &[SpecProblem {
                field: "spec.volumeReplications[1].workload".into(),
                message: "names no workload of the group".into(),
            }],
            "east",
        );
        assert!(ev.warning && ev.note.contains("spec.volumeReplications[1].workload"));
        assert_eq!(cut(&"é".repeat(600), MAX_NOTE).len(), 1024);
        assert!(cut(&"ab".repeat(600), 5).len() == 5);
    }

    #[test]
    fn a_repeated_event_is_published_once_per_window() {
        let t = Instant::now();
        assert!(first_in_window("events-test-a".into(), t));
        assert!(!first_in_window(
            "events-test-a".into(),
            t + Duration::from_secs(1)
        ));
        assert!(first_in_window("events-test-b".into(), t));
        assert!(first_in_window(
            "events-test-a".into(),
            t + REPEAT_WINDOW + Duration::from_secs(1)
        ));
    }
}
