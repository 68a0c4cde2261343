//! What a VolumeReplication says and what the simulated driver writes back: a typed view of
//! the object, the plan the driver follows for it (desired state, generation, test
//! controls), whether its status already reflects that plan, and the status object for each
//! phase of a transition. Pure functions, no clients.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Annotation: `"true"` makes the volume never reach the requested state (`Completed=False`,
/// reason `Stuck`).
pub const ANNOTATION_STUCK: &str = "storage-sim.failover.io/stuck";
/// Annotation: `"true"` makes the volume report `Degraded=True` and never complete.
pub const ANNOTATION_DEGRADED: &str = "storage-sim.failover.io/degraded";
/// Annotation: a humantime duration (`"1s"`, `"250ms"`) overriding the simulator's latency
/// for this volume.
pub const ANNOTATION_LATENCY: &str = "storage-sim.failover.io/latency";
/// Annotation: `"Deployment/<name>"` or `"StatefulSet/<name>"`, the workload whose pods use
/// the volume (checked when the volume is demoted).
pub const ANNOTATION_WORKLOAD: &str = "storage-sim.failover.io/workload";

/// Condition types the csi-addons driver reports.
pub const COND_COMPLETED: &str = "Completed";
/// See [`COND_COMPLETED`].
pub const COND_DEGRADED: &str = "Degraded";
/// See [`COND_COMPLETED`].
pub const COND_RESYNCING: &str = "Resyncing";

/// `status.state` values.
pub const STATE_PRIMARY: &str = "Primary";
/// See [`STATE_PRIMARY`].
pub const STATE_SECONDARY: &str = "Secondary";

/// `spec.replicationState`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DesiredState {
    Primary,
    Secondary,
    Resync,
}

impl DesiredState {
    /// Parses the spec value (`primary`, `secondary`, `resync`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "primary" => Some(Self::Primary),
            "secondary" => Some(Self::Secondary),
            "resync" => Some(Self::Resync),
            _ => None,
        }
    }

    /// The spec value.
    pub fn as_spec(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
            Self::Resync => "resync",
        }
    }

    /// The `status.state` a completed transition to this desired state shows.
    pub fn target_state(self) -> &'static str {
        match self {
            Self::Primary => STATE_PRIMARY,
            Self::Secondary | Self::Resync => STATE_SECONDARY,
        }
    }
}

impl fmt::Display for DesiredState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_spec())
    }
}

/// One entry of `status.conditions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VrCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl VrCondition {
    /// `status == "True"`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }

    /// The reason, or `""`.
    pub fn reason(&self) -> &str {
        self.reason.as_deref().unwrap_or("")
    }
}

/// `status` of a VolumeReplication (the fields the driver owns).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VrStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<VrCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completion_time: Option<String>,
}

/// `spec.dataSource`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_group: Option<String>,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

/// A typed read of a VolumeReplication object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VrView {
    pub namespace: String,
    pub name: String,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub generation: i64,
    /// `spec.replicationState` parsed; `None` if missing or not one of the three values.
    pub desired: Option<DesiredState>,
    /// The raw `spec.replicationState`.
    pub desired_raw: Option<String>,
    pub data_source: Option<DataSource>,
    pub annotations: BTreeMap<String, String>,
    pub status: VrStatus,
}

impl VrView {
    /// Reads the fields the simulator uses; missing or malformed fields read as empty.
    pub fn from_object(obj: &DynamicObject) -> Self {
        let spec = obj.data.get("spec");
        let desired_raw = spec
            .and_then(|s| s.get("replicationState"))
            .and_then(Value::as_str)
            .map(str::to_string);
        Self {
            namespace: obj.metadata.namespace.clone().unwrap_or_default(),
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.clone(),
            resource_version: obj.metadata.resource_version.clone(),
            generation: obj.metadata.generation.unwrap_or(0),
            desired: desired_raw.as_deref().and_then(DesiredState::parse),
            desired_raw,
            data_source: spec
                .and_then(|s| s.get("dataSource"))
                .and_then(|d| serde_json::from_value(d.clone()).ok()),
            annotations: obj.metadata.annotations.clone().unwrap_or_default(),
            status: obj
                .data
                .get("status")
                .and_then(|s| serde_json::from_value(s.clone()).ok())
                .unwrap_or_default(),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The condition of that type, if reported.
    pub fn condition(&self, type_: &str) -> Option<&VrCondition> {
        self.status.conditions.iter().find(|c| c.type_ == type_)
    }

    /// `status.state`, or `""`.
    pub fn state(&self) -> &str {
        self.status.state.as_deref().unwrap_or("")
    }

    /// True when the condition is reported `True` for the current generation.
    pub fn condition_true_now(&self, type_: &str) -> bool {
        self.condition(type_)
            .is_some_and(|c| c.is_true() && c.observed_generation == Some(self.generation))
    }

    /// The protocol's "done" test: `status.state == expected` (`Primary`/`Secondary`),
    /// `Completed=True`, and the current generation observed (top level and on the
    /// condition).
    pub fn is_settled(&self, expected_state: &str) -> bool {
        self.state() == expected_state
            && self.status.observed_generation == Some(self.generation)
            && self.condition_true_now(COND_COMPLETED)
    }

    /// `Secondary` with the transition completed: `status.state = Secondary`,
    /// `Completed=True`, and the spec not asking for `primary` (a promotion under way, even
    /// before the driver noticed it, is not at rest). Pods of the volume's workload must not
    /// exist then.
    pub fn is_secondary_at_rest(&self) -> bool {
        self.state() == STATE_SECONDARY
            && self
                .condition(COND_COMPLETED)
                .is_some_and(VrCondition::is_true)
            && self.desired != Some(DesiredState::Primary)
    }

    fn flag(&self, key: &str) -> bool {
        self.annotations
            .get(key)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// The latency for this volume: the annotation override if it parses, else `default`.
    pub fn latency(&self, default: Duration) -> Duration {
        self.annotations
            .get(ANNOTATION_LATENCY)
            .and_then(|v| humantime::parse_duration(v.trim()).ok())
            .unwrap_or(default)
    }
}

/// How the simulated driver treats a volume, from its test-control annotations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Completes after the latency.
    Normal,
    /// Never completes: `Completed=False`, reason `Stuck`.
    Stuck,
    /// Never completes: `Degraded=True`.
    Degraded,
}

/// What the driver is working towards for one object: changes of any field restart the
/// transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub generation: i64,
    pub desired: DesiredState,
    pub mode: Mode,
    pub latency: Duration,
}

impl Plan {
    /// The plan for this object, or `None` when its spec names no valid desired state.
    pub fn for_view(view: &VrView, default_latency: Duration) -> Option<Self> {
        let desired = view.desired?;
        let mode = if view.flag(ANNOTATION_STUCK) {
            Mode::Stuck
        } else if view.flag(ANNOTATION_DEGRADED) {
            Mode::Degraded
        } else {
            Mode::Normal
        };
        Some(Self {
            generation: view.generation,
            desired,
            mode,
            latency: view.latency(default_latency),
        })
    }

    /// Whether the status already shows the end point of this plan, so nothing is to be done.
    pub fn is_reflected_by(&self, view: &VrView) -> bool {
        let current = |c: &VrCondition| c.observed_generation == Some(self.generation);
        let completed = view.condition(COND_COMPLETED);
        match self.mode {
            Mode::Stuck => {
                completed.is_some_and(|c| current(c) && !c.is_true() && c.reason() == "Stuck")
            }
            Mode::Degraded => {
                view.condition(COND_DEGRADED)
                    .is_some_and(|c| current(c) && c.is_true())
                    && completed.is_some_and(|c| current(c) && !c.is_true())
            }
            Mode::Normal => {
                let not_true = |t: &str| view.condition(t).is_none_or(|c| !c.is_true());
                view.is_settled(self.desired.target_state())
                    && not_true(COND_DEGRADED)
                    && not_true(COND_RESYNCING)
                    && (self.desired != DesiredState::Resync
                        || completed.is_some_and(|c| c.reason() == "Resynced"))
            }
        }
    }
}

/// One status the driver writes during a transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Transition accepted, not done: `Completed=False`, reason `InProgress`.
    InProgress(DesiredState),
    /// `stuck` annotation: `Completed=False`, reason `Stuck`.
    Stuck(DesiredState),
    /// `degraded` annotation: `Degraded=True`, `Completed=False`.
    Degraded(DesiredState),
    /// `state: Primary`, `Completed=True` (`Promoted`).
    Promoted,
    /// `state: Secondary`, `Completed=True` (`Demoted`).
    Demoted,
    /// `state: Secondary`, `Resyncing=True`, `Completed=False`.
    Resyncing,
    /// `state: Secondary`, `Completed=True` (`Resynced`), `Resyncing=False`.
    Resynced,
}

struct Cond {
    status: bool,
    reason: &'static str,
    message: String,
}

fn cond(status: bool, reason: &'static str, message: impl Into<String>) -> Cond {
    Cond {
        status,
        reason,
        message: message.into(),
    }
}

/// RFC 3339 UTC with milliseconds (what every simulator timestamp uses).
pub fn format_ms(ts: Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// What a phase writes: `status.state` (if any), the three conditions and the message.
struct PhaseStatus {
    state: Option<&'static str>,
    completed: Cond,
    degraded: Cond,
    resyncing: Cond,
    message: String,
}

impl PhaseStatus {
    fn new(
        state: Option<&'static str>,
        completed: Cond,
        degraded: Cond,
        resyncing: Cond,
        message: String,
    ) -> Self {
        Self {
            state,
            completed,
            degraded,
            resyncing,
            message,
        }
    }
}

/// The state, conditions and message of `phase` for volume `vol` (`namespace/name`).
fn phase_status(vol: &str, phase: Phase) -> PhaseStatus {
    match phase {
        Phase::InProgress(d) => PhaseStatus::new(
            None,
            cond(
                false,
                "InProgress",
                format!("volume {vol}: transition to {d} in progress"),
            ),
            cond(false, "Healthy", "volume is healthy"),
            cond(false, "NotResyncing", "volume is not resyncing"),
            format!("volume {vol}: transition to {d} in progress"),
        ),
        Phase::Stuck(d) => {
            let m = format!("volume {vol} is stuck: cannot reach {d} ({ANNOTATION_STUCK})");
            PhaseStatus::new(
                None,
                cond(false, "Stuck", m.clone()),
                cond(false, "Healthy", "volume is healthy"),
                cond(false, "NotResyncing", "volume is not resyncing"),
                m,
            )
        }
        Phase::Degraded(d) => {
            let m = format!("volume {vol} is degraded: cannot reach {d} ({ANNOTATION_DEGRADED})");
            PhaseStatus::new(
                None,
                cond(false, "Degraded", m.clone()),
                cond(true, "Degraded", m.clone()),
                cond(false, "NotResyncing", "volume is not resyncing"),
                m,
            )
        }
        Phase::Promoted => PhaseStatus::new(
            Some(STATE_PRIMARY),
            cond(
                true,
                "Promoted",
                format!("volume {vol} is promoted to primary"),
            ),
            cond(false, "Healthy", "volume is healthy"),
            cond(false, "NotResyncing", "volume is not resyncing"),
            format!("volume {vol} is marked primary"),
        ),
        Phase::Demoted => PhaseStatus::new(
            Some(STATE_SECONDARY),
            cond(
                true,
                "Demoted",
                format!("volume {vol} is demoted to secondary"),
            ),
            cond(false, "Healthy", "volume is healthy"),
            cond(false, "NotResyncing", "volume is not resyncing"),
            format!("volume {vol} is marked secondary"),
        ),
        Phase::Resyncing => PhaseStatus::new(
            Some(STATE_SECONDARY),
            cond(false, "Resyncing", format!("volume {vol} is resyncing")),
            cond(false, "Healthy", "volume is healthy"),
            cond(true, "Resyncing", format!("volume {vol} is resyncing")),
            format!("volume {vol} is resyncing"),
        ),
        Phase::Resynced => PhaseStatus::new(
            Some(STATE_SECONDARY),
            cond(true, "Resynced", format!("volume {vol} is resynced")),
            cond(false, "Healthy", "volume is healthy"),
            cond(false, "NotResyncing", "volume is not resyncing"),
            format!("volume {vol} is resynced and marked secondary"),
        ),
    }
}

/// Condition `type_` as written at `generation`; its `lastTransitionTime` is kept from
/// `view` when its status does not change, else `now_s`.
fn status_condition(
    view: &VrView,
    generation: i64,
    now_s: &str,
    type_: &str,
    c: Cond,
) -> VrCondition {
    let status = if c.status { "True" } else { "False" };
    let prev = view.condition(type_);
    let ltt = match prev {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => None,
    };
    VrCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(c.reason.to_string()),
        message: Some(c.message),
        observed_generation: Some(generation),
        last_transition_time: Some(ltt.unwrap_or_else(|| now_s.to_string())),
    }
}

/// The `status` object (for a merge patch on `/status`) the driver writes for `phase` of
/// volume `view` at generation `generation`. `lastTransitionTime` of a condition is kept
/// when its status does not change.
pub fn build_status(view: &VrView, generation: i64, phase: Phase, now: Timestamp) -> Value {
    let PhaseStatus {
        state,
        completed,
        degraded,
        resyncing,
        message,
    } = phase_status(&view.key(), phase);
    let now_s = format_ms(now);
    let make = |type_: &str, c: Cond| status_condition(view, generation, &now_s, type_, c);
    let conditions = vec![
        make(COND_COMPLETED, completed),
        make(COND_DEGRADED, degraded),
        make(COND_RESYNCING, resyncing),
    ];
    let mut status = json!({
        "message": message,
        "conditions": conditions,
    });
    let obj = status.as_object_mut().expect("object literal");
    if let Some(state) = state {
        obj.insert("state".into(), json!(state));
    }
    match phase {
        Phase::InProgress(_) | Phase::Stuck(_) | Phase::Degraded(_) => {
            obj.insert("lastStartTime".into(), json!(now_s));
        }
        Phase::Resyncing => {}
        Phase::Promoted | Phase::Demoted | Phase::Resynced => {
            obj.insert("observedGeneration".into(), json!(generation));
            obj.insert("lastCompletionTime".into(), json!(now_s));
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, gen_: i64, status: Value, annotations: &[(&str, &str)]) -> VrView {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "replication.storage.openshift.io/v1alpha1",
            "kind": "VolumeReplication",
            "metadata": {
                "name": "data", "namespace": "ns", "generation": gen_,
                "annotations": annotations.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            },
            "spec": {"replicationState": state, "volumeReplicationClass": "c",
                     "dataSource": {"kind": "PersistentVolumeClaim", "name": "pvc"}},
            "status": status,
        }))
        .unwrap();
        VrView::from_object(&obj)
    }

    fn with_status(v: &VrView, phase: Phase) -> VrView {
        let mut v = v.clone();
        let s = build_status(&v, v.generation, phase, Timestamp::UNIX_EPOCH);
        // A merge patch onto an empty status is the object itself.
        let mut base = serde_json::to_value(&v.status).unwrap();
        base.as_object_mut()
            .unwrap()
            .extend(s.as_object().unwrap().clone());
        v.status = serde_json::from_value(base).unwrap();
        v
    }

    #[test]
    fn normal_transitions_are_reflected_only_when_complete() {
        let v = view("primary", 3, json!({}), &[]);
        let plan = Plan::for_view(&v, Duration::from_millis(5)).unwrap();
        assert_eq!(plan.mode, Mode::Normal);
        assert!(!plan.is_reflected_by(&v));
        let v = with_status(&v, Phase::InProgress(DesiredState::Primary));
        assert!(!plan.is_reflected_by(&v));
        assert_eq!(v.condition(COND_COMPLETED).unwrap().reason(), "InProgress");
        let v = with_status(&v, Phase::Promoted);
        assert!(plan.is_reflected_by(&v));
        assert!(v.is_settled("Primary"));
        assert_eq!(v.status.observed_generation, Some(3));
    }

    #[test]
    fn secondary_at_rest_only_once_completed_and_not_being_promoted() {
        let v = view("secondary", 2, json!({}), &[]);
        assert!(!v.is_secondary_at_rest());
        let v = with_status(&v, Phase::InProgress(DesiredState::Secondary));
        assert!(!v.is_secondary_at_rest());
        let v = with_status(&v, Phase::Demoted);
        assert!(v.is_secondary_at_rest());
        // The spec asks for primary: a promotion is under way.
        let mut p = v.clone();
        p.desired = Some(DesiredState::Primary);
        assert!(!p.is_secondary_at_rest());
        // Resync: at rest only once resynced.
        let mut r = v.clone();
        r.desired = Some(DesiredState::Resync);
        let r = with_status(&r, Phase::Resyncing);
        assert!(!r.is_secondary_at_rest());
        assert!(with_status(&r, Phase::Resynced).is_secondary_at_rest());
        assert!(!with_status(&v, Phase::Promoted).is_secondary_at_rest());
    }

    #[test]
    fn resync_needs_resynced() {
        let v = view("resync", 2, json!({}), &[]);
        let plan = Plan::for_view(&v, Duration::ZERO).unwrap();
        let v = with_status(&v, Phase::Demoted);
        assert!(!plan.is_reflected_by(&v));
        let v = with_status(&v, Phase::Resyncing);
        assert!(v.condition_true_now(COND_RESYNCING));
        assert!(!plan.is_reflected_by(&v));
        let v = with_status(&v, Phase::Resynced);
        assert!(plan.is_reflected_by(&v));
    }

    #[test]
    fn controls_from_annotations() {
        let v = view(
            "primary",
            1,
            json!({}),
            &[(ANNOTATION_STUCK, "true"), (ANNOTATION_LATENCY, "1s")],
        );
        let plan = Plan::for_view(&v, Duration::ZERO).unwrap();
        assert_eq!(plan.mode, Mode::Stuck);
        assert_eq!(plan.latency, Duration::from_secs(1));
        let v2 = with_status(&v, Phase::Stuck(DesiredState::Primary));
        assert!(plan.is_reflected_by(&v2));
        assert!(
            v2.condition(COND_COMPLETED)
                .unwrap()
                .message
                .as_deref()
                .unwrap()
                .contains("ns/data")
        );

        let v = view(
            "primary",
            1,
            json!({}),
            &[(ANNOTATION_DEGRADED, "True"), (ANNOTATION_LATENCY, "bogus")],
        );
        let plan = Plan::for_view(&v, Duration::from_millis(7)).unwrap();
        assert_eq!(plan.mode, Mode::Degraded);
        assert_eq!(plan.latency, Duration::from_millis(7));
        assert!(plan.is_reflected_by(&with_status(&v, Phase::Degraded(DesiredState::Primary))));
        assert!(view("bogus", 1, json!({}), &[]).desired.is_none());
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let v = view("primary", 1, json!({}), &[]);
        let v = with_status(&v, Phase::InProgress(DesiredState::Primary));
        let s = build_status(&v, 2, Phase::Stuck(DesiredState::Primary), Timestamp::now());
        let conds: Vec<VrCondition> = serde_json::from_value(s["conditions"].clone()).unwrap();
        // Completed stays False → original time; Degraded stays False → original time.
        assert!(
            conds
                .iter()
                .all(|c| c.last_transition_time.as_deref() == Some("1970-01-01T00:00:00.000Z"))
        );
        assert!(conds.iter().all(|c| c.observed_generation == Some(2)));
    }
}
