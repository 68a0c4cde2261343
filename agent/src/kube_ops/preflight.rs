//! The preflight's reads: does each object the group names exist in this cluster, and for a
//! VolumeReplication, its PersistentVolumeClaim (`spec.dataSource`, kind
//! `PersistentVolumeClaim`) and its VolumeReplicationClass (`spec.volumeReplicationClass`,
//! cluster-scoped). Nothing is changed.
//!
//! A read the API server refuses for good (403 forbidden, 404, ...) is a [`Lookup::Refused`]
//! and reported as a problem; a read that may pass later (5xx, a broken connection) is an
//! error, and the step runs again. Problems are sentences naming the object, its kind and
//! the cluster, e.g. `VolumeReplication shop/data in cluster west: its
//! PersistentVolumeClaim data-pvc does not exist` ([`missing_problem`],
//! [`volume_problems`], [`replicas_problem`]: pure).

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::Ingress;
use kube::Api;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};

use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};
use failover_messages::protocol::names::{flux_kind_name, network_kind_name, workload_kind_name};

use super::error::{Cause, KubeOpsError, ObjectId, is_permanent_api_error};
use super::volumes::{VolumeObservation, volume_replication_resource};
use super::{ANNOTATION_ORIGINAL_REPLICAS, ClusterClient, flux, traffic};

/// What a read found.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The object, as read.
    Found(Box<DynamicObject>),
    /// It does not exist.
    Missing,
    /// The API server refused the read in a way that repeats (e.g. 403 forbidden).
    Refused(String),
}

/// The VolumeReplicationClass API resource (cluster-scoped).
pub fn volume_replication_class_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "replication.storage.openshift.io",
            "v1alpha1",
            "VolumeReplicationClass",
        ),
        "volumereplicationclasses",
    )
}

/// The API resource of a workload kind.
pub fn workload_resource(kind: WorkloadKind) -> ApiResource {
    match kind {
        WorkloadKind::Deployment => ApiResource::erase::<Deployment>(&()),
        WorkloadKind::StatefulSet => ApiResource::erase::<StatefulSet>(&()),
        WorkloadKind::CronJob => ApiResource::erase::<CronJob>(&()),
    }
}

/// The API resource of a traffic kind.
pub fn network_resource(kind: NetworkKind) -> ApiResource {
    match kind {
        NetworkKind::VirtualService => traffic::virtual_service_resource(),
        NetworkKind::Ingress => ApiResource::erase::<Ingress>(&()),
    }
}

async fn lookup(api: Api<DynamicObject>, object: &ObjectId) -> Result<Lookup, KubeOpsError> {
    match api.get_opt(&object.name).await {
        Ok(Some(obj)) => Ok(Lookup::Found(Box::new(obj))),
        Ok(None) => Ok(Lookup::Missing),
        Err(e) if is_permanent_api_error(&e) => Ok(Lookup::Refused(e.to_string())),
        Err(e) => Err(KubeOpsError::Preflight {
            object: object.clone(),
            source: Cause::Api(e),
        }),
    }
}

/// Reads namespaced object `object` of resource `ar`.
pub async fn find(
    cc: &ClusterClient,
    ar: &ApiResource,
    object: &ObjectId,
) -> Result<Lookup, KubeOpsError> {
    let api = Api::namespaced_with(cc.client.clone(), &object.namespace, ar);
    lookup(api, object).await
}

/// Reads cluster-scoped object `object` (its namespace is empty) of resource `ar`.
pub async fn find_cluster_scoped(
    cc: &ClusterClient,
    ar: &ApiResource,
    object: &ObjectId,
) -> Result<Lookup, KubeOpsError> {
    lookup(Api::all_with(cc.client.clone(), ar), object).await
}

/// The ids of the group's objects: a workload, a traffic object, a Flux object, a volume.
pub fn workload_id(cc: &ClusterClient, kind: WorkloadKind, ns: &str, name: &str) -> ObjectId {
    cc.object(workload_kind_name(kind), ns, name)
}

/// See [`workload_id`].
pub fn network_id(cc: &ClusterClient, kind: NetworkKind, ns: &str, name: &str) -> ObjectId {
    cc.object(network_kind_name(kind), ns, name)
}

/// See [`workload_id`].
pub fn flux_id(cc: &ClusterClient, kind: FluxKind, ns: &str, name: &str) -> ObjectId {
    cc.object(flux_kind_name(kind), ns, name)
}

/// The API resource of a Flux kind.
pub fn flux_resource(kind: FluxKind) -> ApiResource {
    flux::resource(kind)
}

/// See [`workload_id`].
pub fn volume_id(cc: &ClusterClient, ns: &str, name: &str) -> ObjectId {
    cc.object("VolumeReplication", ns, name)
}

/// The resource of VolumeReplications.
pub fn volume_resource() -> ApiResource {
    volume_replication_resource()
}

/// The resource of PersistentVolumeClaims.
pub fn pvc_resource() -> ApiResource {
    ApiResource::erase::<PersistentVolumeClaim>(&())
}

// ---- decisions (pure) -------------------------------------------------------------------------

/// The problem with `object` when it was not found, or `None`.
pub fn missing_problem(object: &ObjectId, lookup: &Lookup) -> Option<String> {
    match lookup {
        Lookup::Found(_) => None,
        Lookup::Missing => Some(format!("{object} does not exist")),
        Lookup::Refused(why) => Some(format!("{object} cannot be read: {why}")),
    }
}

/// What a VolumeReplication names besides itself: its PersistentVolumeClaim and its class.
pub struct VolumeNames {
    /// `spec.dataSource.name` when its kind is `PersistentVolumeClaim`; `Err` with the
    /// problem when `spec.dataSource` is missing.
    pub pvc: Result<Option<String>, String>,
    /// `spec.volumeReplicationClass`, if set.
    pub class: Option<String>,
}

/// What VolumeReplication `obj` names ([`VolumeNames`]).
pub fn volume_names(obj: &DynamicObject) -> VolumeNames {
    let obs = VolumeObservation::from_object(obj);
    let pvc = match (&obs.data_source, obs.pvc_name()) {
        (None, _) => Err("its spec.dataSource is missing".to_owned()),
        (Some(_), pvc) => Ok(pvc.map(str::to_owned)),
    };
    let class = obj
        .data
        .pointer("/spec/volumeReplicationClass")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    VolumeNames { pvc, class }
}

/// The problems of VolumeReplication `volume`: its `spec.dataSource`, and what the reads of
/// its PersistentVolumeClaim and VolumeReplicationClass found (`(name, lookup)`).
pub fn volume_problems(
    volume: &ObjectId,
    names: &VolumeNames,
    pvc: Option<(&str, &Lookup)>,
    class: Option<(&str, &Lookup)>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Err(problem) = &names.pvc {
        out.push(format!("{volume}: {problem}"));
    }
    let named = [
        ("PersistentVolumeClaim", pvc),
        ("VolumeReplicationClass", class),
    ];
    for (kind, found) in named {
        match found {
            Some((name, Lookup::Missing)) => {
                out.push(format!("{volume}: its {kind} {name} does not exist"));
            }
            Some((name, Lookup::Refused(why))) => {
                out.push(format!("{volume}: its {kind} {name} cannot be read: {why}"));
            }
            Some((_, Lookup::Found(_))) | None => {}
        }
    }
    out
}

/// The `failover.io/original-replicas` annotation of a workload, if it holds a count.
pub fn annotated_replicas(obj: &DynamicObject) -> Option<u32> {
    obj.metadata
        .annotations
        .as_ref()?
        .get(ANNOTATION_ORIGINAL_REPLICAS)?
        .parse()
        .ok()
}

/// The problem with a workload the target scales up when no replica count is known for it.
pub fn replicas_problem(workload: &ObjectId, known: Option<u32>) -> Option<String> {
    known.is_none().then(|| {
        format!(
            "{workload}: no replica count is known to scale it up to (none recorded for the \
             group in DynamoDB, no {ANNOTATION_ORIGINAL_REPLICAS} annotation on it, no \
             `replicas` in its entry of the FailoverGroup's spec.workloads)"
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn id(kind: &'static str, name: &str) -> ObjectId {
        ObjectId {
            kind,
            namespace: "shop".into(),
            name: name.into(),
            cluster: "west".into(),
        }
    }

    fn vr(spec: serde_json::Value) -> DynamicObject {
        let mut obj = DynamicObject::new("data", &volume_replication_resource());
        obj.data = json!({ "spec": spec });
        obj
    }

    fn found() -> Lookup {
        Lookup::Found(Box::new(vr(json!({}))))
    }

    #[test]
    fn a_missing_pvc_is_named_with_its_volume_and_cluster() {
        let obj = vr(json!({
            "volumeReplicationClass": "fast",
            "dataSource": {"kind": "PersistentVolumeClaim", "name": "data-pvc"},
        }));
        let names = volume_names(&obj);
        assert_eq!(names.pvc, Ok(Some("data-pvc".into())));
        assert_eq!(names.class.as_deref(), Some("fast"));
        let problems = volume_problems(
            &id("VolumeReplication", "data"),
            &names,
            Some(("data-pvc", &Lookup::Missing)),
            Some(("fast", &found())),
        );
        assert_eq!(
            problems,
            [
                "VolumeReplication shop/data in cluster west: its PersistentVolumeClaim data-pvc does not exist"
            ]
        );
    }

    #[test]
    fn a_missing_class_and_data_source_are_problems() {
        let obj = vr(json!({"volumeReplicationClass": "fast"}));
        let names = volume_names(&obj);
        let problems = volume_problems(
            &id("VolumeReplication", "data"),
            &names,
            None,
            Some(("fast", &Lookup::Refused("forbidden".into()))),
        );
        assert_eq!(
            problems,
            [
                "VolumeReplication shop/data in cluster west: its spec.dataSource is missing",
                "VolumeReplication shop/data in cluster west: its VolumeReplicationClass fast cannot be read: forbidden",
            ]
        );
    }

    #[test]
    fn a_data_source_of_another_kind_names_no_pvc() {
        let obj = vr(json!({"dataSource": {"kind": "VolumeSnapshot", "name": "snap"}}));
        let names = volume_names(&obj);
        assert_eq!(names.pvc, Ok(None));
        assert_eq!(names.class, None);
        assert!(volume_problems(&id("VolumeReplication", "data"), &names, None, None).is_empty());
    }

    #[test]
    fn missing_objects_are_named() {
        let d = id("Deployment", "api");
        assert_eq!(missing_problem(&d, &found()), None);
        assert_eq!(
            missing_problem(&d, &Lookup::Missing).unwrap(),
            "Deployment shop/api in cluster west does not exist"
        );
        assert!(
            missing_problem(&d, &Lookup::Refused("403 forbidden".into()))
                .unwrap()
                .ends_with("cannot be read: 403 forbidden")
        );
    }

    #[test]
    fn an_unknown_replica_count_is_a_problem() {
        let d = id("StatefulSet", "db");
        assert_eq!(replicas_problem(&d, Some(0)), None);
        let p = replicas_problem(&d, None).unwrap();
        assert!(
            p.starts_with("StatefulSet shop/db in cluster west: no replica count"),
            "{p}"
        );
    }

    #[test]
    fn the_original_replicas_annotation_is_read() {
        let mut obj = vr(json!({}));
        assert_eq!(annotated_replicas(&obj), None);
        obj.metadata.annotations = Some(
            [(ANNOTATION_ORIGINAL_REPLICAS.to_owned(), "3".to_owned())]
                .into_iter()
                .collect(),
        );
        assert_eq!(annotated_replicas(&obj), Some(3));
    }
}
