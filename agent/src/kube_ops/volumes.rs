//! Volumes: drive csi-addons VolumeReplications (`replication.storage.openshift.io/
//! v1alpha1`) and wait for the storage to confirm.
//!
//! * [`set_replication_state`] sets `spec.replicationState` (`primary|secondary|resync`),
//!   a new `metadata.generation` when it changes; nothing when it already has that value.
//! * [`wait_state`] waits until the volume is **settled** ([`settled`]): `status.state`
//!   is the expected one, condition `Completed=True`, and `status.observedGeneration >=
//!   metadata.generation` (so a status left over from before our patch never counts). A
//!   `Degraded=True` condition for the current generation fails at once, naming the volume.
//! * [`wait_resynced`] waits until a `resync` finished ([`resynced`]): `Resyncing` not
//!   true, `Completed=True`, state `Secondary`, current generation observed.
//! * [`verify`] checks a promoted volume ([`verify_problems`]): settled Primary, not
//!   Degraded, and the PVC named by `spec.dataSource` (kind `PersistentVolumeClaim`)
//!   exists.
//! * [`observe`] reads the current [`VolumeObservation`] (state, Completed, Degraded,
//!   generation, observedGeneration, ...).
//!
//! A condition counts for the current generation when its own `observedGeneration` (or,
//! without one, the status's) is at least `metadata.generation`.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use serde::Deserialize;
use serde_json::{Value, json};

use super::wait::{self, Verdict};
use super::{Cause, Change, ClusterClient, KubeOpsError, Stamp, patch_params, stamped_patch};

/// The kind's name, as errors show it.
pub const KIND: &str = "VolumeReplication";
/// Condition type: the last requested transition completed.
pub const COND_COMPLETED: &str = "Completed";
/// Condition type: replication is degraded.
pub const COND_DEGRADED: &str = "Degraded";
/// Condition type: a resync is running.
pub const COND_RESYNCING: &str = "Resyncing";

/// The VolumeReplication resource (plural `volumereplications`).
pub fn volume_replication_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("replication.storage.openshift.io", "v1alpha1", KIND),
        "volumereplications",
    )
}

/// `spec.replicationState`: what we ask the storage for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReplicationState {
    /// `primary`: promote.
    Primary,
    /// `secondary`: demote.
    Secondary,
    /// `resync`: resynchronise from the peer (the old source after UPTIME).
    Resync,
}

impl ReplicationState {
    /// The spec value.
    pub fn as_spec(self) -> &'static str {
        match self {
            ReplicationState::Primary => "primary",
            ReplicationState::Secondary => "secondary",
            ReplicationState::Resync => "resync",
        }
    }
}

impl fmt::Display for ReplicationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_spec())
    }
}

/// `status.state` a wait expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VolumeState {
    /// `Primary`.
    Primary,
    /// `Secondary`.
    Secondary,
}

impl VolumeState {
    /// The status value.
    pub fn as_status(self) -> &'static str {
        match self {
            VolumeState::Primary => "Primary",
            VolumeState::Secondary => "Secondary",
        }
    }
}

impl fmt::Display for VolumeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_status())
    }
}

/// One entry of `status.conditions`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeCondition {
    /// `Completed`, `Degraded`, `Resyncing`.
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    #[serde(default)]
    pub status: String,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: Option<String>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// The generation the condition was written for.
    #[serde(default)]
    pub observed_generation: Option<i64>,
}

impl VolumeCondition {
    fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// `spec.dataSource`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSource {
    /// API group (empty for core).
    #[serde(default)]
    pub api_group: Option<String>,
    /// Usually `PersistentVolumeClaim`.
    #[serde(default)]
    pub kind: String,
    /// The object's name.
    #[serde(default)]
    pub name: String,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawStatus {
    state: Option<String>,
    message: Option<String>,
    observed_generation: Option<i64>,
    #[serde(default)]
    conditions: Vec<VolumeCondition>,
}

/// What a VolumeReplication says right now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VolumeObservation {
    /// `spec.replicationState` as written.
    pub desired: Option<String>,
    /// `status.state` (`Primary`, `Secondary`, `Unknown`), if reported.
    pub state: Option<String>,
    /// `Completed=True` for the current generation.
    pub completed: bool,
    /// `Degraded=True` for the current generation.
    pub degraded: bool,
    /// `Resyncing=True` for the current generation.
    pub resyncing: bool,
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// `status.message`.
    pub message: Option<String>,
    /// `status.conditions` as reported.
    pub conditions: Vec<VolumeCondition>,
    /// `spec.dataSource`.
    pub data_source: Option<DataSource>,
}

impl VolumeObservation {
    /// Reads a VolumeReplication; missing or malformed fields read as empty.
    pub fn from_object(obj: &DynamicObject) -> Self {
        let status: RawStatus = obj
            .data
            .get("status")
            .and_then(|s| serde_json::from_value(s.clone()).ok())
            .unwrap_or_default();
        let generation = obj.metadata.generation.unwrap_or(0);
        let current_true = |type_: &str| {
            status.conditions.iter().any(|c| {
                c.type_ == type_
                    && c.is_true()
                    && c.observed_generation
                        .or(status.observed_generation)
                        .is_some_and(|g| g >= generation)
            })
        };
        Self {
            desired: obj
                .data
                .pointer("/spec/replicationState")
                .and_then(Value::as_str)
                .map(str::to_string),
            completed: current_true(COND_COMPLETED),
            degraded: current_true(COND_DEGRADED),
            resyncing: current_true(COND_RESYNCING),
            state: status.state.clone(),
            generation,
            observed_generation: status.observed_generation,
            message: status.message.clone(),
            data_source: obj
                .data
                .pointer("/spec/dataSource")
                .and_then(|d| serde_json::from_value(d.clone()).ok()),
            conditions: status.conditions,
        }
    }

    /// `status.observedGeneration >= metadata.generation`.
    pub fn generation_observed(&self) -> bool {
        self.observed_generation
            .is_some_and(|g| g >= self.generation)
    }

    /// The reported condition of that type.
    pub fn condition(&self, type_: &str) -> Option<&VolumeCondition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    fn condition_text(&self, type_: &str) -> String {
        match self.condition(type_) {
            None => format!("{type_} not reported"),
            Some(c) => {
                let mut s = format!("{type_}={}", c.status);
                if let Some(r) = c.reason.as_deref().filter(|r| !r.is_empty()) {
                    s.push_str(&format!(" ({r})"));
                }
                if let Some(g) = c.observed_generation {
                    s.push_str(&format!(" at generation {g}"));
                }
                s
            }
        }
    }

    /// One line for logs and timeout messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "spec.replicationState {} at generation {}; status.state {}, observedGeneration {}, {}, {}, {}",
            self.desired.as_deref().unwrap_or("unset"),
            self.generation,
            self.state.as_deref().unwrap_or("unset"),
            self.observed_generation
                .map_or_else(|| "unset".to_string(), |g| g.to_string()),
            self.condition_text(COND_COMPLETED),
            self.condition_text(COND_DEGRADED),
            self.condition_text(COND_RESYNCING),
        );
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            s.push_str(&format!("; message: {m}"));
        }
        s
    }

    fn degraded_message(&self) -> String {
        let c = self.condition(COND_DEGRADED);
        let reason = c.and_then(|c| c.reason.as_deref()).unwrap_or("");
        let message = c
            .and_then(|c| c.message.as_deref())
            .or(self.message.as_deref())
            .unwrap_or("");
        format!(
            "Degraded=True ({reason}) at generation {}: {message}",
            self.generation
        )
    }

    /// The PVC `spec.dataSource` names, when its kind is `PersistentVolumeClaim`.
    pub fn pvc_name(&self) -> Option<&str> {
        self.data_source
            .as_ref()
            .filter(|d| d.kind == "PersistentVolumeClaim" && !d.name.is_empty())
            .map(|d| d.name.as_str())
    }
}

/// Settled in `expected`: state, `Completed=True` and the current generation observed.
/// `Degraded=True` for the current generation fails.
pub fn settled(obs: &VolumeObservation, expected: VolumeState) -> Verdict<()> {
    if obs.degraded {
        return Verdict::Failed(Cause::Degraded {
            message: obs.degraded_message(),
        });
    }
    if obs.state.as_deref() == Some(expected.as_status())
        && obs.completed
        && obs.generation_observed()
    {
        Verdict::Done(())
    } else {
        Verdict::Pending(obs.describe())
    }
}

/// Resynced: `Resyncing` not true, `Completed=True`, state `Secondary`, the current
/// generation observed. `Degraded=True` for the current generation fails.
pub fn resynced(obs: &VolumeObservation) -> Verdict<()> {
    if obs.degraded {
        return Verdict::Failed(Cause::Degraded {
            message: obs.degraded_message(),
        });
    }
    if !obs.resyncing
        && obs.completed
        && obs.state.as_deref() == Some(VolumeState::Secondary.as_status())
        && obs.generation_observed()
    {
        Verdict::Done(())
    } else {
        Verdict::Pending(obs.describe())
    }
}

/// What is wrong with a volume that should now be Primary. `pvc_exists` is whether the PVC
/// of [`VolumeObservation::pvc_name`] exists (`None` when there is none to check).
pub fn verify_problems(
    obs: &VolumeObservation,
    namespace: &str,
    pvc_exists: Option<bool>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if obs.state.as_deref() != Some("Primary") {
        problems.push(format!(
            "status.state is {}, not Primary",
            obs.state.as_deref().unwrap_or("unset")
        ));
    }
    if !obs.completed || !obs.generation_observed() {
        problems.push(format!(
            "the promotion is not complete for generation {} ({})",
            obs.generation,
            obs.describe()
        ));
    }
    if obs.degraded {
        problems.push(obs.degraded_message());
    }
    match (&obs.data_source, obs.pvc_name(), pvc_exists) {
        (None, _, _) => problems.push("spec.dataSource is missing".into()),
        (Some(_), Some(pvc), Some(false)) => {
            problems.push(format!("PVC missing: {namespace}/{pvc} does not exist"));
        }
        _ => {}
    }
    problems
}

/// The merge patch setting `spec.replicationState`, or `None` when it already has that
/// value.
pub fn state_patch(
    obs: &VolumeObservation,
    desired: ReplicationState,
    stamp: &Stamp,
) -> Option<Value> {
    (obs.desired.as_deref() != Some(desired.as_spec())).then(|| {
        stamped_patch(
            stamp,
            &[],
            json!({"spec": {"replicationState": desired.as_spec()}}),
        )
    })
}

// ---- I/O -----------------------------------------------------------------------------------

fn api(cc: &ClusterClient, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(cc.client.clone(), namespace, &volume_replication_resource())
}

/// The result of [`set_replication_state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateSet {
    /// `metadata.generation` after the change: waits need this generation observed.
    pub generation: i64,
    /// Whether a patch was needed.
    pub change: Change,
}

/// Sets `spec.replicationState` of VolumeReplication `namespace/name`.
pub async fn set_replication_state(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    desired: ReplicationState,
    stamp: &Stamp,
) -> Result<StateSet, KubeOpsError> {
    let err = |e: kube::Error| KubeOpsError::SetReplicationState {
        object: cc.object(KIND, namespace, name),
        state: desired.as_spec(),
        source: e.into(),
    };
    let api = api(cc, namespace);
    let obj = api.get(name).await.map_err(err)?;
    let obs = VolumeObservation::from_object(&obj);
    let set = match state_patch(&obs, desired, stamp) {
        None => StateSet {
            generation: obs.generation,
            change: Change::Unchanged,
        },
        Some(p) => {
            let patched = api
                .patch(name, &patch_params(), &Patch::Merge(&p))
                .await
                .map_err(err)?;
            StateSet {
                generation: patched.metadata.generation.unwrap_or(0),
                change: Change::Applied,
            }
        }
    };
    tracing::info!(cluster = %cc.cluster, %namespace, %name, state = %desired, generation = set.generation, change = ?set.change, %stamp, "replication state set");
    Ok(set)
}

/// Waits until VolumeReplication `namespace/name` is settled in `expected` ([`settled`]);
/// fails fast when it is Degraded, and at `deadline` with the last state seen.
pub async fn wait_state(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    expected: VolumeState,
    deadline: Duration,
) -> Result<VolumeObservation, KubeOpsError> {
    let object = cc.object(KIND, namespace, name);
    let what = object.to_string();
    let goal =
        format!("status.state {expected} with Completed=True and observedGeneration >= generation");
    let obs = wait::until(api(cc, namespace), name, &what, &goal, deadline, |o| {
        let obs = VolumeObservation::from_object(o);
        match settled(&obs, expected) {
            Verdict::Done(()) => Verdict::Done(obs),
            Verdict::Pending(s) => Verdict::Pending(s),
            Verdict::Failed(c) => Verdict::Failed(c),
        }
    })
    .await
    .map_err(|source| KubeOpsError::WaitVolumeState {
        object,
        expected: expected.as_status(),
        source,
    })?;
    tracing::info!(cluster = %cc.cluster, %namespace, %name, state = %expected, generation = obs.generation, "volume settled");
    Ok(obs)
}

/// Waits until VolumeReplication `namespace/name` has resynced ([`resynced`]).
pub async fn wait_resynced(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
    deadline: Duration,
) -> Result<VolumeObservation, KubeOpsError> {
    let object = cc.object(KIND, namespace, name);
    let what = object.to_string();
    let goal = "Resyncing not True, Completed=True, status.state Secondary, observedGeneration >= generation";
    let obs = wait::until(api(cc, namespace), name, &what, goal, deadline, |o| {
        let obs = VolumeObservation::from_object(o);
        match resynced(&obs) {
            Verdict::Done(()) => Verdict::Done(obs),
            Verdict::Pending(s) => Verdict::Pending(s),
            Verdict::Failed(c) => Verdict::Failed(c),
        }
    })
    .await
    .map_err(|source| KubeOpsError::WaitVolumeResynced { object, source })?;
    tracing::info!(cluster = %cc.cluster, %namespace, %name, generation = obs.generation, "volume resynced");
    Ok(obs)
}

/// Reads VolumeReplication `namespace/name`.
pub async fn observe(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
) -> Result<VolumeObservation, KubeOpsError> {
    let obj = api(cc, namespace)
        .get(name)
        .await
        .map_err(|e| KubeOpsError::ObserveVolume {
            object: cc.object(KIND, namespace, name),
            source: e.into(),
        })?;
    Ok(VolumeObservation::from_object(&obj))
}

/// Verifies a promoted VolumeReplication ([`verify_problems`]); the error lists every
/// problem found.
pub async fn verify(
    cc: &ClusterClient,
    namespace: &str,
    name: &str,
) -> Result<VolumeObservation, KubeOpsError> {
    let err = |source| KubeOpsError::VerifyVolume {
        object: cc.object(KIND, namespace, name),
        source,
    };
    let obj = api(cc, namespace)
        .get(name)
        .await
        .map_err(|e| err(e.into()))?;
    let obs = VolumeObservation::from_object(&obj);
    let pvc_exists = match obs.pvc_name() {
        None => None,
        Some(pvc) => Some(
            Api::<PersistentVolumeClaim>::namespaced(cc.client.clone(), namespace)
                .get_opt(pvc)
                .await
                .map_err(|e| err(Cause::Api(e)))?
                .is_some(),
        ),
    };
    let problems = verify_problems(&obs, namespace, pvc_exists);
    if !problems.is_empty() {
        return Err(err(Cause::Verify { problems }));
    }
    tracing::info!(cluster = %cc.cluster, %namespace, %name, "volume verified");
    Ok(obs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vr(generation: i64, spec_state: &str, status: Value) -> VolumeObservation {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "replication.storage.openshift.io/v1alpha1",
            "kind": "VolumeReplication",
            "metadata": {"name": "data", "namespace": "shop", "generation": generation},
            "spec": {"replicationState": spec_state, "volumeReplicationClass": "c",
                     "dataSource": {"apiGroup": "", "kind": "PersistentVolumeClaim", "name": "data-pvc"}},
            "status": status
        }))
        .unwrap();
        VolumeObservation::from_object(&obj)
    }

    fn conds(completed: (&str, &str), degraded: &str, resyncing: &str, g: i64) -> Value {
        json!([
            {"type": "Completed", "status": completed.0, "reason": completed.1, "observedGeneration": g},
            {"type": "Degraded", "status": degraded, "reason": "R", "message": "peer unreachable", "observedGeneration": g},
            {"type": "Resyncing", "status": resyncing, "observedGeneration": g}
        ])
    }

    #[test]
    fn settled_secondary_at_the_current_generation() {
        let o = vr(
            2,
            "secondary",
            json!({"state": "Secondary", "observedGeneration": 2,
            "conditions": conds(("True", "Demoted"), "False", "False", 2)}),
        );
        assert!(o.completed && !o.degraded && !o.resyncing);
        assert!(settled(&o, VolumeState::Secondary).is_done());
        assert!(!settled(&o, VolumeState::Primary).is_done());
    }

    #[test]
    fn a_status_from_before_our_patch_does_not_count() {
        // Secondary and Completed, but for generation 1; we wrote generation 2.
        let o = vr(
            2,
            "secondary",
            json!({"state": "Secondary", "observedGeneration": 1,
            "conditions": conds(("True", "Demoted"), "False", "False", 1)}),
        );
        assert!(!o.completed);
        match settled(&o, VolumeState::Secondary) {
            Verdict::Pending(s) => {
                assert!(s.contains("generation 2"), "{s}");
                assert!(s.contains("observedGeneration 1"), "{s}");
            }
            v => panic!("{v:?}"),
        }
        // observedGeneration beyond ours is fine (someone wrote after us).
        let o = vr(
            2,
            "secondary",
            json!({"state": "Secondary", "observedGeneration": 3,
            "conditions": conds(("True", "Demoted"), "False", "False", 3)}),
        );
        assert!(settled(&o, VolumeState::Secondary).is_done());
    }

    #[test]
    fn in_progress_is_pending_and_described() {
        let o = vr(
            3,
            "primary",
            json!({"observedGeneration": 3, "message": "transition in progress",
            "conditions": conds(("False", "InProgress"), "False", "False", 3)}),
        );
        match settled(&o, VolumeState::Primary) {
            Verdict::Pending(s) => {
                assert!(s.contains("status.state unset"), "{s}");
                assert!(s.contains("Completed=False (InProgress)"), "{s}");
                assert!(s.contains("transition in progress"), "{s}");
            }
            v => panic!("{v:?}"),
        }
        assert!(!settled(&vr(1, "primary", json!({})), VolumeState::Primary).is_done());
    }

    #[test]
    fn degraded_fails_fast_but_a_stale_degraded_does_not() {
        let o = vr(
            4,
            "secondary",
            json!({"observedGeneration": 4,
            "conditions": conds(("False", "Degraded"), "True", "False", 4)}),
        );
        match settled(&o, VolumeState::Secondary) {
            Verdict::Failed(Cause::Degraded { message }) => {
                assert!(message.contains("peer unreachable"), "{message}")
            }
            v => panic!("{v:?}"),
        }
        assert!(matches!(resynced(&o), Verdict::Failed(_)));
        let stale = vr(
            5,
            "secondary",
            json!({"observedGeneration": 4,
            "conditions": conds(("False", "Degraded"), "True", "False", 4)}),
        );
        assert!(!stale.degraded);
        assert!(matches!(
            settled(&stale, VolumeState::Secondary),
            Verdict::Pending(_)
        ));
    }

    #[test]
    fn conditions_without_their_own_generation_use_the_status_generation() {
        let o = vr(
            2,
            "primary",
            json!({"state": "Primary", "observedGeneration": 2,
            "conditions": [{"type": "Completed", "status": "True"}]}),
        );
        assert!(settled(&o, VolumeState::Primary).is_done());
        let o = vr(
            2,
            "primary",
            json!({"state": "Primary", "observedGeneration": 1,
            "conditions": [{"type": "Completed", "status": "True"}]}),
        );
        assert!(!settled(&o, VolumeState::Primary).is_done());
    }

    #[test]
    fn resync_finishes_when_resyncing_goes_false() {
        let running = vr(
            3,
            "resync",
            json!({"state": "Secondary", "observedGeneration": 3,
            "conditions": conds(("False", "Resyncing"), "False", "True", 3)}),
        );
        assert!(matches!(resynced(&running), Verdict::Pending(_)));
        let done = vr(
            3,
            "resync",
            json!({"state": "Secondary", "observedGeneration": 3,
            "conditions": conds(("True", "Resynced"), "False", "False", 3)}),
        );
        assert!(resynced(&done).is_done());
        // The Secondary/Completed of the demotion before the resync request is not it.
        let before = vr(
            3,
            "resync",
            json!({"state": "Secondary", "observedGeneration": 2,
            "conditions": conds(("True", "Demoted"), "False", "False", 2)}),
        );
        assert!(!resynced(&before).is_done());
    }

    #[test]
    fn verify_lists_problems() {
        let ok = vr(
            2,
            "primary",
            json!({"state": "Primary", "observedGeneration": 2,
            "conditions": conds(("True", "Promoted"), "False", "False", 2)}),
        );
        assert_eq!(ok.pvc_name(), Some("data-pvc"));
        assert!(verify_problems(&ok, "shop", Some(true)).is_empty());
        let p = verify_problems(&ok, "shop", Some(false));
        assert_eq!(
            p,
            vec!["PVC missing: shop/data-pvc does not exist".to_string()]
        );

        let bad = vr(
            2,
            "primary",
            json!({"state": "Secondary", "observedGeneration": 2,
            "conditions": conds(("False", "Degraded"), "True", "False", 2)}),
        );
        let p = verify_problems(&bad, "shop", Some(true));
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("not Primary"));
        assert!(p[2].contains("Degraded=True"));
    }

    #[test]
    fn observation_reads_the_basic_fields() {
        let o = vr(
            7,
            "primary",
            json!({"state": "Primary", "observedGeneration": 6,
            "conditions": conds(("True", "Promoted"), "False", "False", 6)}),
        );
        assert_eq!(o.state.as_deref(), Some("Primary"));
        assert_eq!(o.desired.as_deref(), Some("primary"));
        assert_eq!((o.generation, o.observed_generation), (7, Some(6)));
        assert!(!o.completed, "Completed is for generation 6, not 7");
        assert!(!o.generation_observed());
    }

    #[test]
    fn state_patch_only_when_the_spec_differs() {
        let s = Stamp::new(9, "op");
        let o = vr(1, "primary", json!({}));
        assert_eq!(state_patch(&o, ReplicationState::Primary, &s), None);
        assert_eq!(
            state_patch(&o, ReplicationState::Secondary, &s),
            Some(json!({
                "metadata": {"annotations": {"failover.io/epoch": "9", "failover.io/operation": "op"}},
                "spec": {"replicationState": "secondary"}
            }))
        );
        assert_eq!(
            state_patch(&o, ReplicationState::Resync, &s).unwrap()["spec"]["replicationState"],
            "resync"
        );
    }
}
