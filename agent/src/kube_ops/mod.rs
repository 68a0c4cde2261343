//! The agent's Kubernetes operations: everything a failover changes in its own cluster.
//!
//! | module | objects | operations |
//! |---|---|---|
//! | [`traffic`] | VirtualService (`networking.istio.io/v1`), Ingress (`networking.k8s.io/v1`) | external-dns controller annotation `dns-controller` (on) / `ignore` (off) |
//! | [`flux`] | HelmRelease (`helm.toolkit.fluxcd.io/v2`), Kustomization (`kustomize.toolkit.fluxcd.io/v1`) | suspend, resume with `reconcile.fluxcd.io/requestedAt` |
//! | [`workloads`] | Deployment, StatefulSet, CronJob | scale to 0 recording `failover.io/original-replicas`, restore, wait until pods are gone / ready, suspend and resume CronJobs, wait for their Jobs |
//! | [`volumes`] | VolumeReplication (`replication.storage.openshift.io/v1alpha1`) | set `spec.replicationState`, wait until settled / resynced, verify, observe |
//! | [`preflight`] | every kind above, PersistentVolumeClaim, VolumeReplicationClass | read only: does each object the group names exist, with each volume's PVC and class |
//!
//! Every operation follows the same shape: **read** the object, **decide** with a pure
//! function (no client, unit-tested over small JSON fixtures in each module), **act** with
//! at most one JSON merge patch, and, for waits, **watch** the object with
//! `kube::runtime` until a pure verdict says done or failed, or a deadline passes
//! ([`wait`]).
//!
//! # Contract
//!
//! * **Idempotent.** An operation only patches what still differs from the goal and
//!   reports [`Change::Unchanged`] otherwise, so running it twice gives the same object.
//!   Scale-down never overwrites a recorded non-zero replica count with 0.
//! * **Stamped.** Every object an operation changes gets the annotations
//!   [`ANNOTATION_EPOCH`] and [`ANNOTATION_OPERATION`] from the caller's [`Stamp`], in the
//!   same patch as the change.
//! * **Own cluster only.** Operations take a [`ClusterClient`]: this cluster's client and
//!   its name, which every error names.
//! * **Errors name the object.** [`KubeOpsError`] has one variant per operation; each names
//!   the kind, `namespace/name` and cluster ([`ObjectId`]) and carries the [`Cause`]. Wait
//!   timeouts say what was expected and what was last seen.

pub mod error;
pub mod flux;
pub mod preflight;
pub mod traffic;
pub mod volumes;
pub mod wait;
pub mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use kube::Client;
use serde_json::{Map, Value, json};

pub use error::{Cause, KubeOpsError, ObjectId};

/// The annotations on every object the agent changes (defined once in the protocol module).
pub use failover_messages::protocol::names::{
    ANNOTATION_EPOCH, ANNOTATION_OPERATION, ANNOTATION_ORIGINAL_REPLICAS,
};

/// The field manager of every patch the agent makes.
pub const FIELD_MANAGER: &str = "failover-agent";

/// Who changes an object: the operation id and its epoch. Written as annotations on every
/// object an operation changes (protocol rule 2).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// The group's epoch the operation runs at.
    pub epoch: u64,
    /// The operation id.
    pub operation: String,
}

impl Stamp {
    /// A stamp for operation `operation` at `epoch`.
    pub fn new(epoch: u64, operation: impl Into<String>) -> Self {
        Self {
            epoch,
            operation: operation.into(),
        }
    }

    /// The two annotations, as written.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (ANNOTATION_EPOCH.to_string(), self.epoch.to_string()),
            (ANNOTATION_OPERATION.to_string(), self.operation.clone()),
        ])
    }

    /// True when `annotations` carry exactly this stamp.
    pub fn is_on(&self, annotations: Option<&BTreeMap<String, String>>) -> bool {
        annotations.is_some_and(|a| {
            a.get(ANNOTATION_EPOCH).map(String::as_str) == Some(self.epoch.to_string().as_str())
                && a.get(ANNOTATION_OPERATION) == Some(&self.operation)
        })
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {} at epoch {}", self.operation, self.epoch)
    }
}

/// This cluster's Kubernetes client and the cluster's name (for messages and logs).
#[derive(Clone)]
pub struct ClusterClient {
    /// The client of this cluster's API server.
    pub client: Client,
    /// The cluster's name (`east`, `west`, ...).
    pub cluster: String,
}

impl fmt::Debug for ClusterClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterClient")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterClient {
    /// Wraps `client`, the client of cluster `cluster`.
    pub fn new(client: Client, cluster: impl Into<String>) -> Self {
        Self {
            client,
            cluster: cluster.into(),
        }
    }

    /// The id of object `kind` `namespace/name` in this cluster, for errors.
    pub fn object(&self, kind: &'static str, namespace: &str, name: &str) -> ObjectId {
        ObjectId {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            cluster: self.cluster.clone(),
        }
    }
}

/// Whether an operation had to change the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The object was patched.
    Applied,
    /// The object already was as wanted; nothing was written.
    Unchanged,
}

impl Change {
    /// `Applied` when a patch was needed.
    pub fn from_patched(patched: bool) -> Self {
        if patched {
            Change::Applied
        } else {
            Change::Unchanged
        }
    }
}

/// Parameters of every patch: our field manager.
pub(crate) fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// A merge patch setting `annotations` (a value of `None` removes the key) plus the
/// stamp, merged with `extra` (top-level fields such as `spec`).
pub(crate) fn stamped_patch(
    stamp: &Stamp,
    annotations: &[(&str, Option<String>)],
    extra: Value,
) -> Value {
    let mut ann = Map::new();
    for (k, v) in stamp.annotations() {
        ann.insert(k, Value::String(v));
    }
    for (k, v) in annotations {
        ann.insert(
            (*k).to_string(),
            v.clone().map_or(Value::Null, Value::String),
        );
    }
    let mut patch = match extra {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    patch.insert("metadata".into(), json!({ "annotations": ann }));
    Value::Object(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_annotations_and_recognition() {
        let s = Stamp::new(7, "op-1");
        let a = s.annotations();
        assert_eq!(a["failover.io/epoch"], "7");
        assert_eq!(a["failover.io/operation"], "op-1");
        assert!(s.is_on(Some(&a)));
        assert!(!Stamp::new(8, "op-1").is_on(Some(&a)));
        assert!(!Stamp::new(7, "op-2").is_on(Some(&a)));
        assert!(!s.is_on(None));
    }

    #[test]
    fn stamped_patch_merges_annotations_and_spec() {
        let p = stamped_patch(
            &Stamp::new(3, "op"),
            &[("a", Some("1".into())), ("b", None)],
            json!({"spec": {"suspend": true}}),
        );
        assert_eq!(
            p,
            json!({
                "metadata": {"annotations": {
                    "failover.io/epoch": "3", "failover.io/operation": "op", "a": "1", "b": null
                }},
                "spec": {"suspend": true}
            })
        );
    }
}
