//! The two custom resources of group `failover.io`, version `v1alpha1` (both namespaced).
//!
//! * [`FailoverGroup`] (`fg`) exists with the same namespace/name in every cluster and says
//!   what moves together: workloads, replicated volumes, traffic objects and Flux objects,
//!   plus the group's default mode, per-stage timeouts and auto-failover settings. Its status
//!   is the local agent's view: role, active cluster, epoch, last operation, per-resource
//!   state and conditions.
//! * [`Failover`] (`fo`) is one operation. Its spec is immutable (a CEL transition rule
//!   `self == oldSelf` on `spec`); its status shows phase, per-group stage and task, timings
//!   and conditions, kept current by the agent of the cluster it lives in.
//!
//! Everything Kubernetes can enforce is in the generated schema: enums, required fields,
//! `minItems`, non-empty names, the duration syntax of timeouts, unique list entries
//! (`x-kubernetes-list-type: map`) and the immutability rule. What it cannot enforce
//! (e.g. a zero timeout) is checked by the typed accessors here, whose errors name the field.
//!
//! The CRD YAML under `deploy/crds/` is generated from these types by
//! `cargo run -p failover-messages --example crdgen` (`make crds`); the test
//! `messages/tests/crd_drift.rs` fails when the committed files differ from [`crds`].

use std::fmt;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of both custom resources.
pub const GROUP: &str = "failover.io";
/// API version of both custom resources.
pub const VERSION: &str = "v1alpha1";

/// Regular expression (RE2 and Rust `regex` compatible) a timeout string must match:
/// one or more `<integer><unit>` parts, unit one of `ms`, `s`, `m`, `h`; e.g. `90s`, `5m`, `1h30m`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(ms|s|m|h))+$";

/// Regular expression a cluster name must match: a DNS label (it becomes part of SQS queue
/// names and DynamoDB keys).
pub const CLUSTER_NAME_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

// ---------------------------------------------------------------------------------------------
// Shared enums
// ---------------------------------------------------------------------------------------------

/// How a failover orders the two sides.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailoverMode {
    /// Source fully down and demoted before the target promotes: never two Primary volumes,
    /// never two writers.
    #[default]
    #[serde(rename = "CONSISTENCY")]
    Consistency,
    /// Target promoted and serving before the source is shut down: minimal downtime; the
    /// dual-active window is measured and recorded.
    #[serde(rename = "UPTIME")]
    Uptime,
}

impl FailoverMode {
    /// The wire name (`CONSISTENCY` / `UPTIME`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consistency => "CONSISTENCY",
            Self::Uptime => "UPTIME",
        }
    }
}

impl fmt::Display for FailoverMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// FailoverGroup
// ---------------------------------------------------------------------------------------------

/// What moves together between clusters. Create it with the same namespace/name in every
/// cluster; all referenced objects live in the group's namespace unless stated otherwise.
// `type_` repeats across the separate `printcolumn(...)` groups, which clippy mistakes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "failover.io",
    version = "v1alpha1",
    kind = "FailoverGroup",
    plural = "failovergroups",
    singular = "failovergroup",
    shortname = "fg",
    category = "failover",
    namespaced,
    status = "FailoverGroupStatus",
    derive = "PartialEq",
    doc = "A set of workloads, volumes, traffic objects and Flux objects that fail over between clusters together.",
    printcolumn(
        name = "Role",
        type_ = "string",
        json_path = ".status.role",
        description = "This cluster's role for the group"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.activeCluster",
        description = "The cluster that currently owns the group"
    ),
    printcolumn(
        name = "Epoch",
        type_ = "integer",
        json_path = ".status.epoch",
        description = "Ownership epoch (only grows)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct FailoverGroupSpec {
    /// Workloads scaled down on the source and up on the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["kind", "name"]
    ))]
    pub workloads: Vec<WorkloadRef>,

    /// csi-addons `VolumeReplication` objects demoted on the source and promoted on the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"]
    ))]
    pub volume_replications: Vec<VolumeReplicationRef>,

    /// Traffic objects switched off on the source and on on the target (external-dns
    /// controller annotation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["kind", "name"]
    ))]
    pub network: Vec<NetworkRef>,

    /// Flux objects suspended on the source and resumed on the target.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["kind", "namespace", "name"]
    ))]
    pub flux: Vec<FluxRef>,

    /// Mode used when a failover does not name one.
    #[serde(default)]
    pub default_mode: FailoverMode,

    /// When true, no new failover of this group may start (neither manual nor automatic).
    #[serde(default)]
    pub suspended: bool,

    /// Per-stage time limits; a stage that runs longer fails the operation.
    #[serde(default, skip_serializing_if = "StageTimeouts::is_empty")]
    pub timeouts: StageTimeouts,

    /// Automatic failover when the active cluster's heartbeat goes stale.
    #[serde(default, skip_serializing_if = "AutoFailover::is_default")]
    pub auto_failover: AutoFailover,
}

impl FailoverGroupSpec {
    /// Checks what the schema cannot: every duration parses and is greater than zero
    /// (objects stored before a schema change, or created with validation off, may still hold
    /// bad values). Returns every problem, each naming its field, for a `SpecValid=False`
    /// condition.
    pub fn validate(&self) -> Result<(), Vec<DurationError>> {
        let errors: Vec<DurationError> = TimeoutStage::ALL
            .iter()
            .filter_map(|stage| self.timeouts.get(*stage).err())
            .chain(self.auto_failover.heartbeat_timeout().err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// Kind of a workload a group scales.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum WorkloadKind {
    /// `apps/v1` Deployment (scaled via `spec.replicas`).
    Deployment,
    /// `apps/v1` StatefulSet (scaled via `spec.replicas`).
    StatefulSet,
    /// `batch/v1` CronJob (suspended via `spec.suspend`).
    CronJob,
}

/// A workload in the group's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct WorkloadRef {
    /// Kind of the workload.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A csi-addons `VolumeReplication` (`replication.storage.openshift.io/v1alpha1`) in the
/// group's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct VolumeReplicationRef {
    /// Name of the VolumeReplication object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Name of the workload whose pods use the volume (optional; used to check that no pod
    /// of that workload still runs when the volume is demoted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub workload: Option<String>,
}

/// Kind of a traffic object.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum NetworkKind {
    /// Istio `networking.istio.io/v1` VirtualService.
    VirtualService,
    /// `networking.k8s.io/v1` Ingress.
    Ingress,
}

/// A traffic object in the group's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct NetworkRef {
    /// Kind of the traffic object.
    pub kind: NetworkKind,
    /// Name of the traffic object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Kind of a Flux object.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema,
)]
pub enum FluxKind {
    /// `helm.toolkit.fluxcd.io/v2` HelmRelease.
    HelmRelease,
    /// `kustomize.toolkit.fluxcd.io/v1` Kustomization.
    Kustomization,
}

/// A Flux object; Flux objects often live in a namespace of their own (e.g. `flux-system`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct FluxRef {
    /// Kind of the Flux object.
    pub kind: FluxKind,
    /// Name of the Flux object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Flux object.
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
}

/// The stages a timeout can be set for, in CONSISTENCY order (UPTIME runs the same stages,
/// target first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimeoutStage {
    /// Stage 1: validation, lock acquisition, consistent view (both sides).
    Initialization,
    /// Stage 2: network off, Flux suspended, workloads scaled to 0, pods gone (source).
    SourceShutdown,
    /// Stage 3: volumes demoted to Secondary and marked ready for promotion (source).
    VolumeDemotion,
    /// Stage 4: waiting for the handoff, promotion and verification of volumes (target).
    VolumePromotion,
    /// Stage 5: workloads up, Flux resumed, ready, network on (target).
    TargetActivation,
    /// Stage 6: global state, history, lock release, status (both sides).
    Completion,
}

impl TimeoutStage {
    /// Every stage, in order.
    pub const ALL: [TimeoutStage; 6] = [
        Self::Initialization,
        Self::SourceShutdown,
        Self::VolumeDemotion,
        Self::VolumePromotion,
        Self::TargetActivation,
        Self::Completion,
    ];

    /// The field name under `spec.timeouts`.
    pub fn field_name(self) -> &'static str {
        match self {
            Self::Initialization => "initialization",
            Self::SourceShutdown => "sourceShutdown",
            Self::VolumeDemotion => "volumeDemotion",
            Self::VolumePromotion => "volumePromotion",
            Self::TargetActivation => "targetActivation",
            Self::Completion => "completion",
        }
    }

    /// The limit used when the field is not set.
    pub fn default_timeout(self) -> Duration {
        match self {
            Self::Initialization => Duration::from_secs(60),
            Self::SourceShutdown => Duration::from_secs(10 * 60),
            Self::VolumeDemotion => Duration::from_secs(10 * 60),
            Self::VolumePromotion => Duration::from_secs(15 * 60),
            Self::TargetActivation => Duration::from_secs(10 * 60),
            Self::Completion => Duration::from_secs(60),
        }
    }
}

impl fmt::Display for TimeoutStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.field_name())
    }
}

/// Per-stage time limits, as duration strings: one or more `<integer><unit>` parts with unit
/// `ms`, `s`, `m` or `h` (e.g. `90s`, `5m`, `1h30m`). Unset fields use the defaults below;
/// read them through [`StageTimeouts::get`] or [`StageTimeouts::resolve`].
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StageTimeouts {
    /// Stage 1, validation and lock acquisition (both sides). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub initialization: Option<String>,
    /// Stage 2, network off, Flux suspended, workloads scaled to zero, pods gone (source).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub source_shutdown: Option<String>,
    /// Stage 3, volumes demoted to Secondary and marked ready for promotion (source).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub volume_demotion: Option<String>,
    /// Stage 4, waiting for the handoff, then promoting and verifying volumes (target).
    /// Default `15m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub volume_promotion: Option<String>,
    /// Stage 5, workloads scaled up, Flux resumed, workloads ready, network on (target).
    /// Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub target_activation: Option<String>,
    /// Stage 6, global state, history, lock release (both sides). Default `1m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub completion: Option<String>,
}

/// The per-stage limits with defaults applied and strings parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResolvedTimeouts {
    /// Stage 1.
    pub initialization: Duration,
    /// Stage 2.
    pub source_shutdown: Duration,
    /// Stage 3.
    pub volume_demotion: Duration,
    /// Stage 4.
    pub volume_promotion: Duration,
    /// Stage 5.
    pub target_activation: Duration,
    /// Stage 6.
    pub completion: Duration,
}

impl ResolvedTimeouts {
    /// The limit of one stage.
    pub fn get(&self, stage: TimeoutStage) -> Duration {
        match stage {
            TimeoutStage::Initialization => self.initialization,
            TimeoutStage::SourceShutdown => self.source_shutdown,
            TimeoutStage::VolumeDemotion => self.volume_demotion,
            TimeoutStage::VolumePromotion => self.volume_promotion,
            TimeoutStage::TargetActivation => self.target_activation,
            TimeoutStage::Completion => self.completion,
        }
    }
}

impl Default for ResolvedTimeouts {
    fn default() -> Self {
        StageTimeouts::default()
            .resolve()
            .expect("the defaults are valid durations")
    }
}

impl StageTimeouts {
    fn raw(&self, stage: TimeoutStage) -> Option<&str> {
        match stage {
            TimeoutStage::Initialization => self.initialization.as_deref(),
            TimeoutStage::SourceShutdown => self.source_shutdown.as_deref(),
            TimeoutStage::VolumeDemotion => self.volume_demotion.as_deref(),
            TimeoutStage::VolumePromotion => self.volume_promotion.as_deref(),
            TimeoutStage::TargetActivation => self.target_activation.as_deref(),
            TimeoutStage::Completion => self.completion.as_deref(),
        }
    }

    /// True when no field is set.
    pub fn is_empty(&self) -> bool {
        TimeoutStage::ALL.iter().all(|s| self.raw(*s).is_none())
    }

    /// The limit of one stage: the parsed field, or the stage's default when unset.
    /// The error names the field (`spec.timeouts.<stage>`) and the offending value.
    pub fn get(&self, stage: TimeoutStage) -> Result<Duration, DurationError> {
        match self.raw(stage) {
            None => Ok(stage.default_timeout()),
            Some(raw) => {
                parse_positive_duration(&format!("spec.timeouts.{}", stage.field_name()), raw)
            }
        }
    }

    /// Every stage's limit; fails on the first invalid field (in stage order).
    pub fn resolve(&self) -> Result<ResolvedTimeouts, DurationError> {
        Ok(ResolvedTimeouts {
            initialization: self.get(TimeoutStage::Initialization)?,
            source_shutdown: self.get(TimeoutStage::SourceShutdown)?,
            volume_demotion: self.get(TimeoutStage::VolumeDemotion)?,
            volume_promotion: self.get(TimeoutStage::VolumePromotion)?,
            target_activation: self.get(TimeoutStage::TargetActivation)?,
            completion: self.get(TimeoutStage::Completion)?,
        })
    }
}

/// Automatic failover settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoFailover {
    /// When true, the standby cluster's agent starts a forced failover once the active
    /// cluster's heartbeat is older than `heartbeatTimeout`.
    #[serde(default)]
    pub enabled: bool,
    /// How old the active cluster's heartbeat may get before it counts as failed, as a
    /// duration string (e.g. `2m`). Default `2m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub heartbeat_timeout: Option<String>,
}

impl AutoFailover {
    /// Used when `heartbeatTimeout` is not set.
    pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(120);

    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The parsed `heartbeatTimeout`, or [`Self::DEFAULT_HEARTBEAT_TIMEOUT`] when unset.
    pub fn heartbeat_timeout(&self) -> Result<Duration, DurationError> {
        match &self.heartbeat_timeout {
            None => Ok(Self::DEFAULT_HEARTBEAT_TIMEOUT),
            Some(raw) => parse_positive_duration("spec.autoFailover.heartbeatTimeout", raw),
        }
    }
}

/// A duration field that does not parse, or is zero.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {value:?} in `{field}`: {reason} (expected e.g. \"90s\", \"5m\", \"1h30m\"; units ms, s, m, h)"
)]
pub struct DurationError {
    /// Path of the field, e.g. `spec.timeouts.sourceShutdown`.
    pub field: String,
    /// The value found.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a duration string (`90s`, `5m`, `1h30m`, `250ms`), the syntax of
/// [`DURATION_PATTERN`]; `field` only labels the error.
pub fn parse_duration(field: &str, value: &str) -> Result<Duration, DurationError> {
    let err = |reason: &str| DurationError {
        field: field.to_owned(),
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.is_empty() {
        return Err(err("empty"));
    }
    let mut total = Duration::ZERO;
    let mut rest = value;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err("expected a number"));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| err("number too large"))?;
        rest = &rest[digits..];
        let (unit_len, unit) = if rest.starts_with("ms") {
            (2, Duration::from_millis(1))
        } else if rest.starts_with('s') {
            (1, Duration::from_secs(1))
        } else if rest.starts_with('m') {
            (1, Duration::from_secs(60))
        } else if rest.starts_with('h') {
            (1, Duration::from_secs(3600))
        } else {
            return Err(err("expected a unit (ms, s, m or h) after the number"));
        };
        rest = &rest[unit_len..];
        let part = u32::try_from(number)
            .ok()
            .and_then(|n| unit.checked_mul(n))
            .ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(total)
}

fn parse_positive_duration(field: &str, value: &str) -> Result<Duration, DurationError> {
    let d = parse_duration(field, value)?;
    if d.is_zero() {
        return Err(DurationError {
            field: field.to_owned(),
            value: value.to_owned(),
            reason: "must be greater than zero".to_owned(),
        });
    }
    Ok(d)
}

/// This cluster's role for a group.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum GroupRole {
    /// This cluster owns the group: volumes Primary, workloads up, traffic on.
    Primary,
    /// The other cluster owns the group: volumes Secondary, workloads down, traffic off.
    Standby,
    /// An operation involving this cluster is in flight.
    Transitioning,
    /// This cluster found itself active at a stale epoch and shut its side down.
    Fenced,
}

// Epochs are `u64` in Rust (as in DynamoDB and envelopes) but `int64` with `minimum: 0` in the
// schema: Kubernetes knows no `uint64` format, and an epoch never comes near 2^63.

/// What the local agent sees of a group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverGroupStatus {
    /// This cluster's role for the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<GroupRole>,
    /// The cluster that owns the group according to the global state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_cluster: Option<String>,
    /// Ownership epoch of the global state (only grows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub epoch: Option<u64>,
    /// The most recent operation on the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<LastOperation>,
    /// State of each referenced resource in this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceState>,
    /// Standard conditions (e.g. `Ready`, `SpecValid`, `Fenced`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Summary of the most recent operation on a group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LastOperation {
    /// Operation id (also the name of the matching `Failover` object).
    pub id: String,
    /// Phase of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FailoverPhase>,
    /// Mode of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FailoverMode>,
    /// Cluster the group moved away from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cluster: Option<String>,
    /// Cluster the group moved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<String>,
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the operation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// State of one referenced resource in this cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ResourceState {
    /// Kind of the resource (`Deployment`, `VolumeReplication`, `Ingress`, `HelmRelease`, …).
    pub kind: String,
    /// Name of the resource.
    pub name: String,
    /// Short state, e.g. `Running 3/3`, `Primary`, `Secondary`, `Active`, `Passive`,
    /// `Suspended`, `Missing`.
    pub state: String,
    /// Human-readable detail, e.g. why the resource is missing or not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Failover
// ---------------------------------------------------------------------------------------------

/// One failover operation. The spec is immutable: to change anything, create a new
/// `Failover`. A `Failover` created by hand is a trigger: the agent submits it as an operation
/// exactly as `failoverctl failover` would; agents also create one in their own cluster for
/// every operation that involves it.
#[allow(clippy::duplicated_attributes)] // see FailoverGroupSpec
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "failover.io",
    version = "v1alpha1",
    kind = "Failover",
    plural = "failovers",
    singular = "failover",
    shortname = "fo",
    category = "failover",
    namespaced,
    status = "FailoverStatus",
    derive = "PartialEq",
    doc = "One failover operation of one or more FailoverGroups to a target cluster.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Phase of the operation"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.targetCluster",
        description = "Cluster the groups move to"
    ),
    printcolumn(
        name = "Mode",
        type_ = "string",
        json_path = ".spec.mode",
        description = "CONSISTENCY or UPTIME"
    ),
    printcolumn(
        name = "Stage",
        type_ = "string",
        json_path = ".status.groups[0].stage",
        description = "Current stage (of the first group)"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self == oldSelf",
    "message": "spec is immutable; create a new Failover instead"
}]))]
pub struct FailoverSpec {
    /// Cluster the groups move to.
    #[schemars(length(min = 1, max = 63), regex(pattern = CLUSTER_NAME_PATTERN))]
    pub target_cluster: String,
    /// CONSISTENCY (default: never two writers) or UPTIME (minimal downtime).
    #[serde(default)]
    pub mode: FailoverMode,
    /// Groups to move (at least one).
    #[schemars(length(min = 1))]
    pub groups: Vec<GroupRef>,
    /// Promote the target without the source's handoff (source unreachable, its heartbeat
    /// stale). The operation is recorded as forced.
    #[serde(default)]
    pub force: bool,
    /// Why the failover was requested (recorded in the operation and history).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// A `FailoverGroup` named by a `Failover`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub struct GroupRef {
    /// Name of the FailoverGroup.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the FailoverGroup; defaults to the Failover's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

impl GroupRef {
    /// The group's namespace, falling back to `default_namespace` (the Failover's namespace).
    pub fn namespace_or<'a>(&'a self, default_namespace: &'a str) -> &'a str {
        self.namespace.as_deref().unwrap_or(default_namespace)
    }
}

impl From<crate::records::Mode> for FailoverMode {
    fn from(mode: crate::records::Mode) -> Self {
        match mode {
            crate::records::Mode::Consistency => FailoverMode::Consistency,
            crate::records::Mode::Uptime => FailoverMode::Uptime,
        }
    }
}

impl From<crate::records::Phase> for FailoverPhase {
    /// The operation record's phase as the `Failover` resource shows it (same names).
    fn from(phase: crate::records::Phase) -> Self {
        use crate::records::Phase as P;
        match phase {
            P::Pending => FailoverPhase::Pending,
            P::Running => FailoverPhase::Running,
            P::Stalled => FailoverPhase::Stalled,
            P::Aborting => FailoverPhase::Aborting,
            P::Succeeded => FailoverPhase::Succeeded,
            P::Failed => FailoverPhase::Failed,
            P::Aborted => FailoverPhase::Aborted,
            P::RolledBack => FailoverPhase::RolledBack,
        }
    }
}

/// Phase of an operation (or of one group within it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum FailoverPhase {
    /// Accepted, not started yet.
    Pending,
    /// Running.
    Running,
    /// The lease expired while the operation ran; a new operation may take over.
    Stalled,
    /// An abort was requested; the source is being reactivated.
    Aborting,
    /// Finished: the target owns the groups.
    Succeeded,
    /// Finished with an error.
    Failed,
    /// Aborted before promotion; the source still owns the groups.
    Aborted,
    /// Rolled back after a failure; the source still owns the groups.
    RolledBack,
}

impl FailoverPhase {
    /// True for phases after which nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::RolledBack
        )
    }
}

/// What this cluster's agent reports about an operation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverStatus {
    /// Phase of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FailoverPhase>,
    /// Operation id in the global state (DynamoDB `OP#<id>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_id: Option<String>,
    /// Progress of each group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupProgress>,
    /// Timings of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<FailoverTimings>,
    /// Standard conditions (e.g. `Accepted`, `Completed`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Progress of one group in an operation, as seen by this cluster.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupProgress {
    /// Name of the FailoverGroup.
    pub name: String,
    /// Namespace of the FailoverGroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Current (or last) stage, e.g. `SourceShutdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Current (or last) task within the stage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// Phase of this group's part of the operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<FailoverPhase>,
    /// Human-readable detail (the failing task and error on failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Epoch the operation runs at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<i64>", range(min = 0))]
    pub epoch: Option<u64>,
}

/// Timings of an operation, in seconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailoverTimings {
    /// When the operation started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// When the operation finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// Start to finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_seconds: Option<f64>,
    /// Time no cluster served the application (network off on the source until network on
    /// on the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downtime_seconds: Option<f64>,
    /// UPTIME mode: first target Primary until last source Secondary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dual_active_seconds: Option<f64>,
}

// ---------------------------------------------------------------------------------------------
// CRD rendering
// ---------------------------------------------------------------------------------------------

/// Both custom resource definitions, `FailoverGroup` first.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![FailoverGroup::crd(), Failover::crd()]
}

/// The file name a CRD is written to under `deploy/crds/`: `<plural>.<group>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!(
        "{}.yaml",
        crd.metadata
            .name
            .as_deref()
            .unwrap_or("unnamed.failover.io")
    )
}

/// The YAML text of one CRD, with a header saying how it was made.
pub fn render_crd_yaml(crd: &CustomResourceDefinition) -> String {
    let body = serde_yaml::to_string(crd).expect("a CustomResourceDefinition serializes to YAML");
    format!(
        "# Generated from the Rust types in messages/src/crd.rs; do not edit by hand.\n\
         # Regenerate with `make crds` (cargo run -p failover-messages --example crdgen).\n\
         {body}"
    )
}

/// Every CRD file: (file name, YAML text).
pub fn crd_files() -> Vec<(String, String)> {
    crds()
        .iter()
        .map(|crd| (crd_file_name(crd), render_crd_yaml(crd)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_phases_and_modes_keep_their_names_in_the_failover_resource() {
        use crate::records::{Mode, Phase};
        for p in [
            Phase::Pending,
            Phase::Running,
            Phase::Stalled,
            Phase::Aborting,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Aborted,
            Phase::RolledBack,
        ] {
            assert_eq!(
                serde_json::to_value(FailoverPhase::from(p)).unwrap(),
                p.as_str()
            );
        }
        for m in [Mode::Consistency, Mode::Uptime] {
            assert_eq!(
                serde_json::to_value(FailoverMode::from(m)).unwrap(),
                m.as_str()
            );
        }
    }

    const SAMPLE_GROUP: &str = r#"
apiVersion: failover.io/v1alpha1
kind: FailoverGroup
metadata:
  name: orders
  namespace: shop
spec:
  workloads:
    - kind: Deployment
      name: orders-api
    - kind: StatefulSet
      name: orders-db
    - kind: CronJob
      name: orders-report
  volumeReplications:
    - name: orders-db-data
      workload: orders-db
    - name: orders-scratch
  network:
    - kind: VirtualService
      name: orders
    - kind: Ingress
      name: orders-admin
  flux:
    - kind: HelmRelease
      name: orders
      namespace: flux-system
    - kind: Kustomization
      name: orders-config
      namespace: flux-system
  defaultMode: UPTIME
  suspended: true
  timeouts:
    sourceShutdown: 5m
    volumePromotion: 1h30m
  autoFailover:
    enabled: true
    heartbeatTimeout: 90s
"#;

    const SAMPLE_FAILOVER: &str = r#"
apiVersion: failover.io/v1alpha1
kind: Failover
metadata:
  name: orders-to-west
  namespace: shop
spec:
  targetCluster: west
  groups:
    - name: orders
    - name: payments
      namespace: billing
  reason: planned maintenance of east
"#;

    #[test]
    fn sample_group_naming_every_kind_round_trips() {
        let group: FailoverGroup = serde_yaml::from_str(SAMPLE_GROUP).unwrap();
        let spec = &group.spec;
        let workload_kinds: Vec<_> = spec.workloads.iter().map(|w| w.kind).collect();
        assert_eq!(
            workload_kinds,
            [
                WorkloadKind::Deployment,
                WorkloadKind::StatefulSet,
                WorkloadKind::CronJob
            ]
        );
        let network_kinds: Vec<_> = spec.network.iter().map(|n| n.kind).collect();
        assert_eq!(
            network_kinds,
            [NetworkKind::VirtualService, NetworkKind::Ingress]
        );
        let flux_kinds: Vec<_> = spec.flux.iter().map(|f| f.kind).collect();
        assert_eq!(flux_kinds, [FluxKind::HelmRelease, FluxKind::Kustomization]);
        assert_eq!(
            spec.volume_replications[0].workload.as_deref(),
            Some("orders-db")
        );
        assert_eq!(spec.volume_replications[1].workload, None);
        assert_eq!(spec.default_mode, FailoverMode::Uptime);
        assert!(spec.suspended);
        assert!(spec.auto_failover.enabled);

        let yaml = serde_yaml::to_string(&group).unwrap();
        let again: FailoverGroup = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(again, group);
        let json = serde_json::to_string(&group).unwrap();
        let again: FailoverGroup = serde_json::from_str(&json).unwrap();
        assert_eq!(again, group);
    }

    #[test]
    fn minimal_group_gets_defaults() {
        let group: FailoverGroup = serde_yaml::from_str(
            "apiVersion: failover.io/v1alpha1\nkind: FailoverGroup\nmetadata: {name: g}\nspec: {}\n",
        )
        .unwrap();
        assert_eq!(group.spec, FailoverGroupSpec::default());
        assert_eq!(group.spec.default_mode, FailoverMode::Consistency);
        assert!(!group.spec.suspended);
        assert!(!group.spec.auto_failover.enabled);
        assert_eq!(
            group.spec.timeouts.resolve().unwrap(),
            ResolvedTimeouts::default()
        );
        // Unset optional parts are left out when written back.
        assert_eq!(
            serde_json::to_value(&group.spec).unwrap(),
            serde_json::json!({"defaultMode": "CONSISTENCY", "suspended": false})
        );
    }

    #[test]
    fn sample_failover_round_trips_with_defaults() {
        let fo: Failover = serde_yaml::from_str(SAMPLE_FAILOVER).unwrap();
        assert_eq!(fo.spec.target_cluster, "west");
        assert_eq!(fo.spec.mode, FailoverMode::Consistency);
        assert!(!fo.spec.force);
        assert_eq!(fo.spec.groups[0].namespace_or("shop"), "shop");
        assert_eq!(fo.spec.groups[1].namespace_or("shop"), "billing");
        let yaml = serde_yaml::to_string(&fo).unwrap();
        let again: Failover = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(again, fo);
    }

    #[test]
    fn status_round_trips() {
        let status = FailoverStatus {
            phase: Some(FailoverPhase::Running),
            operation_id: Some("op-1".into()),
            groups: vec![GroupProgress {
                name: "orders".into(),
                namespace: Some("shop".into()),
                stage: Some("SourceShutdown".into()),
                task: Some("ScaleDownWorkloads".into()),
                phase: Some(FailoverPhase::Running),
                message: None,
                epoch: Some(7),
            }],
            timings: Some(FailoverTimings {
                started_at: Some(Time("2026-11-26T10:00:00Z".parse().unwrap())),
                total_seconds: Some(1.5),
                ..Default::default()
            }),
            conditions: vec![],
            observed_generation: Some(1),
        };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(
            serde_json::from_str::<FailoverStatus>(&json).unwrap(),
            status
        );
        let group_status = FailoverGroupStatus {
            role: Some(GroupRole::Fenced),
            active_cluster: Some("west".into()),
            epoch: Some(3),
            last_operation: Some(LastOperation {
                id: "op-1".into(),
                ..Default::default()
            }),
            resources: vec![ResourceState {
                kind: "VolumeReplication".into(),
                name: "orders-db-data".into(),
                state: "Secondary".into(),
                message: None,
            }],
            conditions: vec![],
            observed_generation: Some(2),
        };
        let yaml = serde_yaml::to_string(&group_status).unwrap();
        assert_eq!(
            serde_yaml::from_str::<FailoverGroupStatus>(&yaml).unwrap(),
            group_status
        );
    }

    /// Objects as a kube-apiserver 1.36 returned them after `kubectl apply` of the generated
    /// CRDs and a status patch (defaults filled in by the server, managedFields dropped).
    #[test]
    fn objects_as_the_apiserver_returns_them_decode() {
        let group: FailoverGroup = serde_json::from_str(
            r#"{"apiVersion": "failover.io/v1alpha1", "kind": "FailoverGroup", "metadata": {"creationTimestamp": "2026-11-26T11:35:13Z", "generation": 1, "name": "orders", "namespace": "shop", "resourceVersion": "95", "uid": "23dde934-3c68-4399-98a0-0ac2f69d3b2b"}, "spec": {"autoFailover": {"enabled": true, "heartbeatTimeout": "90s"}, "defaultMode": "CONSISTENCY", "flux": [{"kind": "HelmRelease", "name": "orders", "namespace": "flux-system"}, {"kind": "Kustomization", "name": "cfg", "namespace": "flux-system"}], "network": [{"kind": "VirtualService", "name": "orders"}, {"kind": "Ingress", "name": "orders-admin"}], "suspended": false, "timeouts": {"sourceShutdown": "5m", "volumePromotion": "1h30m"}, "volumeReplications": [{"name": "orders-db-data", "workload": "orders-db"}], "workloads": [{"kind": "Deployment", "name": "orders-api"}, {"kind": "StatefulSet", "name": "orders-db"}, {"kind": "CronJob", "name": "report"}]}, "status": {"activeCluster": "east", "conditions": [{"lastTransitionTime": "2026-11-26T10:00:00Z", "message": "", "reason": "AllResourcesReady", "status": "True", "type": "Ready"}], "epoch": 4, "lastOperation": {"id": "op-1", "phase": "Succeeded"}, "observedGeneration": 1, "resources": [{"kind": "Deployment", "name": "orders-api", "state": "Running 3/3"}], "role": "Primary"}}"#,
        )
        .unwrap();
        let status = group.status.unwrap();
        assert_eq!(status.role, Some(GroupRole::Primary));
        assert_eq!(status.epoch, Some(4));
        assert_eq!(status.conditions[0].type_, "Ready");
        assert_eq!(
            group.spec.timeouts.resolve().unwrap().volume_promotion,
            Duration::from_secs(5400)
        );

        let fo: Failover = serde_json::from_str(
            r#"{"apiVersion": "failover.io/v1alpha1", "kind": "Failover", "metadata": {"creationTimestamp": "2026-11-26T11:35:13Z", "generation": 1, "labels": {"a": "b"}, "name": "orders-to-west", "namespace": "shop", "resourceVersion": "85", "uid": "083cad27-b2b7-46ea-9bd0-905984b96087"}, "spec": {"force": false, "groups": [{"name": "orders"}], "mode": "CONSISTENCY", "reason": "maintenance", "targetCluster": "west"}, "status": {"groups": [{"epoch": 4, "name": "orders", "stage": "SourceShutdown"}], "phase": "Running"}}"#,
        )
        .unwrap();
        assert_eq!(
            fo.status.unwrap().groups[0].stage.as_deref(),
            Some("SourceShutdown")
        );
    }

    #[test]
    fn unknown_enum_values_are_rejected() {
        let bad = SAMPLE_GROUP.replace("kind: CronJob", "kind: DaemonSet");
        let err = serde_yaml::from_str::<FailoverGroup>(&bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("DaemonSet"), "{err}");
        let bad =
            SAMPLE_FAILOVER.replace("targetCluster: west", "targetCluster: west\n  mode: FAST");
        assert!(serde_yaml::from_str::<Failover>(&bad).is_err());
    }

    #[test]
    fn durations_parse() {
        let ok = |s: &str| parse_duration("f", s).unwrap();
        assert_eq!(ok("90s"), Duration::from_secs(90));
        assert_eq!(ok("5m"), Duration::from_secs(300));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("1h30m"), Duration::from_secs(5400));
        assert_eq!(ok("250ms"), Duration::from_millis(250));
        assert_eq!(ok("1m30s500ms"), Duration::from_millis(90_500));
        assert_eq!(ok("0s"), Duration::ZERO);
    }

    #[test]
    fn bad_durations_are_rejected_with_a_reason() {
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "5 m",
            "-5m",
            "1.5h",
            "5M",
            "5m ",
            "99999999999999999999s",
            "18446744073709551615h",
        ] {
            assert!(
                parse_duration("f", bad).is_err(),
                "{bad:?} should not parse"
            );
        }
    }

    #[test]
    fn timeouts_use_defaults_and_overrides() {
        let timeouts = StageTimeouts {
            source_shutdown: Some("5m".into()),
            volume_promotion: Some("1h30m".into()),
            ..Default::default()
        };
        let resolved = timeouts.resolve().unwrap();
        assert_eq!(resolved.source_shutdown, Duration::from_secs(300));
        assert_eq!(resolved.volume_promotion, Duration::from_secs(5400));
        assert_eq!(
            resolved.initialization,
            TimeoutStage::Initialization.default_timeout()
        );
        assert_eq!(resolved.completion, Duration::from_secs(60));
        for stage in TimeoutStage::ALL {
            assert_eq!(timeouts.get(stage).unwrap(), resolved.get(stage));
        }
    }

    #[test]
    fn a_bad_timeout_error_names_the_field_and_value() {
        let timeouts = StageTimeouts {
            volume_demotion: Some("ten minutes".into()),
            ..Default::default()
        };
        let err = timeouts.resolve().unwrap_err();
        assert_eq!(err.field, "spec.timeouts.volumeDemotion");
        let msg = err.to_string();
        assert!(msg.contains("spec.timeouts.volumeDemotion"), "{msg}");
        assert!(msg.contains("\"ten minutes\""), "{msg}");

        let zero = StageTimeouts {
            completion: Some("0s".into()),
            ..Default::default()
        };
        let err = zero.get(TimeoutStage::Completion).unwrap_err();
        assert_eq!(err.field, "spec.timeouts.completion");
        assert!(err.reason.contains("greater than zero"));
    }

    #[test]
    fn spec_validation_reports_every_bad_duration() {
        assert!(FailoverGroupSpec::default().validate().is_ok());
        let spec = FailoverGroupSpec {
            timeouts: StageTimeouts {
                initialization: Some("0ms".into()),
                completion: Some("soon".into()),
                ..Default::default()
            },
            auto_failover: AutoFailover {
                enabled: true,
                heartbeat_timeout: Some("1d".into()),
            },
            ..Default::default()
        };
        let fields: Vec<String> = spec
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.timeouts.initialization",
                "spec.timeouts.completion",
                "spec.autoFailover.heartbeatTimeout"
            ]
        );
    }

    #[test]
    fn heartbeat_timeout_defaults_and_parses() {
        assert_eq!(
            AutoFailover::default().heartbeat_timeout().unwrap(),
            AutoFailover::DEFAULT_HEARTBEAT_TIMEOUT
        );
        let af = AutoFailover {
            enabled: true,
            heartbeat_timeout: Some("45s".into()),
        };
        assert_eq!(af.heartbeat_timeout().unwrap(), Duration::from_secs(45));
        let af = AutoFailover {
            enabled: true,
            heartbeat_timeout: Some("2 minutes".into()),
        };
        assert_eq!(
            af.heartbeat_timeout().unwrap_err().field,
            "spec.autoFailover.heartbeatTimeout"
        );
    }

    fn schema_of(crd: &CustomResourceDefinition) -> serde_json::Value {
        let schema = crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap();
        serde_json::to_value(schema).unwrap()
    }

    #[test]
    fn failover_spec_is_immutable_and_validated_in_the_schema() {
        let schema = schema_of(&Failover::crd());
        let spec = &schema["properties"]["spec"];
        assert_eq!(
            spec["x-kubernetes-validations"][0]["rule"],
            "self == oldSelf"
        );
        let required: Vec<&str> = spec["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            required.contains(&"targetCluster") && required.contains(&"groups"),
            "{required:?}"
        );
        assert_eq!(spec["properties"]["groups"]["minItems"], 1);
        assert_eq!(
            spec["properties"]["groups"]["items"]["properties"]["name"]["minLength"],
            1
        );
        assert_eq!(spec["properties"]["targetCluster"]["minLength"], 1);
        assert_eq!(spec["properties"]["mode"]["default"], "CONSISTENCY");
        assert_eq!(
            spec["properties"]["mode"]["enum"],
            serde_json::json!(["CONSISTENCY", "UPTIME"])
        );
        let status = &schema["properties"]["status"];
        assert!(
            status["properties"]["phase"]["enum"]
                .as_array()
                .unwrap()
                .contains(&"RolledBack".into())
        );
    }

    #[test]
    fn group_schema_has_enums_and_unique_lists() {
        let schema = schema_of(&FailoverGroup::crd());
        let spec = &schema["properties"]["spec"]["properties"];
        assert_eq!(
            spec["workloads"]["items"]["properties"]["kind"]["enum"],
            serde_json::json!(["Deployment", "StatefulSet", "CronJob"])
        );
        assert_eq!(spec["workloads"]["x-kubernetes-list-type"], "map");
        assert_eq!(
            spec["flux"]["x-kubernetes-list-map-keys"],
            serde_json::json!(["kind", "namespace", "name"])
        );
        assert_eq!(
            spec["timeouts"]["properties"]["sourceShutdown"]["pattern"],
            DURATION_PATTERN
        );
        assert_eq!(spec["defaultMode"]["default"], "CONSISTENCY");
        let crd = FailoverGroup::crd();
        let columns: Vec<_> = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .unwrap()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(columns, ["Role", "Active", "Epoch", "Age"]);
        assert!(
            crd.spec.versions[0]
                .subresources
                .as_ref()
                .unwrap()
                .status
                .is_some()
        );
    }

    #[test]
    fn crd_files_are_named_after_the_crds() {
        let names: Vec<_> = crd_files().into_iter().map(|(name, _)| name).collect();
        assert_eq!(
            names,
            [
                "failovergroups.failover.io.yaml",
                "failovers.failover.io.yaml"
            ]
        );
    }
}
