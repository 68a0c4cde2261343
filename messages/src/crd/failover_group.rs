//! The `FailoverGroup` custom resource: its spec (workloads, volumes, traffic and Flux
//! objects, mode, timeouts, auto-failover) and the status the local agent writes.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::timeouts::parse_positive_duration;
use super::{
    DURATION_PATTERN, DurationError, FailoverMode, FailoverPhase, StageTimeouts, TimeoutStage,
};

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

    /// What this cluster's agent does with its active side of the group when it loses
    /// DynamoDB (its serving lease runs out): `Fence` (default) stops serving, so a forced
    /// failover elsewhere is safe after the lease; `KeepServing` keeps serving, and a forced
    /// failover then needs `--source-is-down`.
    #[serde(default, skip_serializing_if = "CoordinationLoss::is_default")]
    pub on_coordination_loss: CoordinationLoss,

    /// Per-stage time limits; a stage that runs longer fails the operation.
    #[serde(default, skip_serializing_if = "StageTimeouts::is_empty")]
    pub timeouts: StageTimeouts,

    /// Automatic failover when the active cluster's serving lease goes unrenewed.
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
            .chain(self.auto_failover.after().err())
            .chain(self.auto_failover.cooldown().err())
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// What an agent does with its active side of a group when its serving lease runs out.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CoordinationLoss {
    /// Stop serving: traffic off, Flux suspended, workloads at 0, volumes demoted. The
    /// group comes back only through an operation.
    #[default]
    Fence,
    /// Keep serving (availability over the guarantee that no other cluster writes).
    KeepServing,
}

impl CoordinationLoss {
    /// True for the default (`Fence`).
    pub fn is_default(&self) -> bool {
        *self == Self::Fence
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
    /// Replica count to scale a Deployment or StatefulSet up to when the target knows no
    /// other: used only when no count was recorded for the group (by the source, in an
    /// earlier operation, or by the active side while idle) and the standby object has no
    /// `failover.io/original-replicas` annotation, e.g. for a forced failover whose source
    /// never ran. Not for CronJobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<u32>,
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

/// Automatic failover settings (opt-in).
///
/// A standby cluster's agent watches the active cluster's serving lease (its `CLUSTER#`
/// record) on its own monotonic clock. When the record has not changed for `after`, and its
/// own lease is live, no operation is in flight, the group is not suspended and no automatic
/// failover of the group started within `cooldown`, it starts a forced failover to itself
/// (`requestedBy: auto:<cluster>`). The forced target then waits the lost side's lease out
/// before it promotes, as every forced failover does, so the lost side has fenced itself.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoFailover {
    /// When true, a standby cluster's agent starts a forced failover to its cluster once the
    /// active cluster's serving lease has been unrenewed for `after`.
    #[serde(default)]
    pub enabled: bool,
    /// How long the active cluster's serving lease must stay unrenewed before a standby acts,
    /// as a duration string (e.g. `90s`). Default `60s`; at least twice the agents' lease
    /// duration (an agent refuses to arm a group with a shorter one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub after: Option<String>,
    /// The older name of `after`, still read when `after` is not set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub heartbeat_timeout: Option<String>,
    /// No second automatic failover of the group starts within this long of the last one, as
    /// a duration string. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub cooldown: Option<String>,
    /// Which clusters may take the group over, in order of preference (with more than two
    /// clusters). A standby acts only when it is listed and every cluster listed before it is
    /// the lost one or has no live agent. Empty: any standby.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
}

impl AutoFailover {
    /// Used when neither `after` nor `heartbeatTimeout` is set.
    pub const DEFAULT_AFTER: Duration = Duration::from_secs(60);
    /// Used when `cooldown` is not set.
    pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(600);

    fn is_default(&self) -> bool {
        self == &Self::default()
    }

    /// The parsed `after` (else `heartbeatTimeout`), or [`Self::DEFAULT_AFTER`] when unset.
    pub fn after(&self) -> Result<Duration, DurationError> {
        match (&self.after, &self.heartbeat_timeout) {
            (Some(raw), _) => parse_positive_duration("spec.autoFailover.after", raw),
            (None, Some(raw)) => parse_positive_duration("spec.autoFailover.heartbeatTimeout", raw),
            (None, None) => Ok(Self::DEFAULT_AFTER),
        }
    }

    /// The parsed `cooldown`, or [`Self::DEFAULT_COOLDOWN`] when unset.
    pub fn cooldown(&self) -> Result<Duration, DurationError> {
        match &self.cooldown {
            None => Ok(Self::DEFAULT_COOLDOWN),
            Some(raw) => parse_positive_duration("spec.autoFailover.cooldown", raw),
        }
    }
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
