//! Publishing Kubernetes Events (`events.k8s.io/v1`, through
//! [`kube::runtime::events::Recorder`]), so `kubectl describe failover …` and
//! `kubectl describe failovergroup …` tell what happened. A leaf: which Events an object
//! gets is its own module's business (`failover_object::failover_events`,
//! `failover_object::trigger`, `failover_group::group_events`); this module only shapes an
//! [`EventSpec`] to what the API accepts and publishes it ([`Events::publish`]). A write that
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
    /// An Event with `reason`, `action` and `note` cut to what the API accepts.
    pub fn new(warning: bool, reason: &str, action: &str, note: String) -> Self {
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

    #[test]
    fn reasons_and_notes_are_cut_to_what_the_api_accepts() {
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
