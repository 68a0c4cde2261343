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
//!
//! This module holds the shared constants and [`FailoverMode`] and renders the CRDs; the
//! resources live in `failover_group`, `failover` and `timeouts`, re-exported here.

use std::fmt;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod failover;
mod failover_group;
mod journal_line;
mod timeouts;

pub use failover::{
    Failover, FailoverPhase, FailoverSpec, FailoverStatus, FailoverTimings, GroupProgress, GroupRef,
};
pub use failover_group::{
    AutoFailover, CoordinationLoss, FailoverGroup, FailoverGroupSpec, FailoverGroupStatus,
    FluxKind, FluxRef, GroupRole, LastOperation, NetworkKind, NetworkRef, ResourceState,
    VolumeReplicationRef, WorkloadKind, WorkloadRef,
};
pub use journal_line::{journal_line, parse_journal_line};
pub use timeouts::{DurationError, ResolvedTimeouts, StageTimeouts, TimeoutStage, parse_duration};

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
mod tests;
