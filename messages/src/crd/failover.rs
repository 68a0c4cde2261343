//! The `Failover` custom resource: one operation's immutable spec, and the status
//! (phase, per-group progress, timings) the agent of its cluster keeps current.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::journal_line::parse_journal_line;
use super::{CLUSTER_NAME_PATTERN, FailoverMode};
use crate::records::JournalStep;

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
    /// Do not wait for the graceful handoff: the target promotes once the source has shut
    /// its side down and released it, or once its serving lease is certainly over. Always
    /// CONSISTENCY order. The operation is recorded as forced.
    #[serde(default)]
    pub force: bool,
    /// With `force`: the requester vouches that the source cluster is down (needed for a
    /// group whose source keeps serving without DynamoDB; the target then promotes without
    /// waiting for the source's lease).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub source_is_down: bool,
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
            P::Superseded => FailoverPhase::Superseded,
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
    /// Taken over by a later operation after its lease expired.
    Superseded,
}

impl FailoverPhase {
    /// True for phases after which nothing changes any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::Failed | Self::Aborted | Self::RolledBack | Self::Superseded
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
    /// This cluster's journal of the operation: every step's intent and outcome, one line
    /// per step in the order the steps were started: `<stage> <task> <STARTED|DONE|FAILED>
    /// epoch=<n> attempts=<n> started=<time>[ first=<time>][ finished=<time>][ message=<text>]`.
    /// The agent resumes from it after a restart; DynamoDB keeps one copy of each stage once
    /// it is published.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "super::journal_line::lenient_lines"
    )]
    pub journal: Vec<String>,
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

impl FailoverStatus {
    /// The journal of operation `op_id` in `cluster` this status keeps (entries that do not
    /// parse left out).
    pub fn journal_of(&self, op_id: &str, cluster: &str) -> Vec<JournalStep> {
        self.journal
            .iter()
            .filter_map(|line| parse_journal_line(line, op_id, cluster))
            .collect()
    }
}
