//! Flux: suspend and resume a HelmRelease (`helm.toolkit.fluxcd.io/v2`) or a Kustomization
//! (`kustomize.toolkit.fluxcd.io/v1`), each in the namespace the group names for it.
//!
//! Suspend sets `spec.suspend = true`, so no reconcile undoes the scale-down that follows.
//! Resume sets `spec.suspend = false` and the annotation `reconcile.fluxcd.io/requestedAt`
//! to now (RFC 3339), which makes Flux reconcile at once instead of at its next interval.
//!
//! Both decide with pure functions over the object ([`suspend_patch`], [`resume_patch`]):
//! suspend does nothing when already suspended; resume does nothing when the object is not
//! suspended and this very operation ([`Stamp`]) already requested the reconcile, so a
//! second run does not trigger another reconcile.

use failover_messages::crd::FluxKind;
use jiff::Timestamp;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::{Change, ClusterClient, KubeOpsError, Stamp, patch_params, stamped_patch};

/// The annotation that asks Flux for an immediate reconcile.
pub const ANNOTATION_REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

pub use failover_messages::protocol::names::flux_kind_name as kind_name;

/// The API resource of a Flux kind.
pub fn resource(kind: FluxKind) -> ApiResource {
    match kind {
        FluxKind::HelmRelease => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
            "helmreleases",
        ),
        FluxKind::Kustomization => ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
            "kustomizations",
        ),
    }
}

/// `spec.suspend` (absent reads as `false`, as Flux reads it).
pub fn is_suspended(obj: &DynamicObject) -> bool {
    obj.data
        .pointer("/spec/suspend")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The merge patch suspending the object, or `None` when it already is suspended.
pub fn suspend_patch(obj: &DynamicObject, stamp: &Stamp) -> Option<Value> {
    (!is_suspended(obj)).then(|| stamped_patch(stamp, &[], json!({"spec": {"suspend": true}})))
}

/// The merge patch resuming the object and requesting a reconcile at `now`, or `None` when
/// it is not suspended and this operation already requested the reconcile.
pub fn resume_patch(obj: &DynamicObject, stamp: &Stamp, now: Timestamp) -> Option<Value> {
    let annotations = obj.metadata.annotations.as_ref();
    let requested = annotations.is_some_and(|a| a.contains_key(ANNOTATION_REQUESTED_AT));
    if !is_suspended(obj) && requested && stamp.is_on(annotations) {
        return None;
    }
    Some(stamped_patch(
        stamp,
        &[(ANNOTATION_REQUESTED_AT, Some(now.to_string()))],
        json!({"spec": {"suspend": false}}),
    ))
}

fn api(cc: &ClusterClient, kind: FluxKind, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(cc.client.clone(), namespace, &resource(kind))
}

/// Suspends HelmRelease or Kustomization `namespace/name` (`spec.suspend = true`).
pub async fn suspend_flux(
    cc: &ClusterClient,
    kind: FluxKind,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
) -> Result<Change, KubeOpsError> {
    let err = |e: kube::Error| KubeOpsError::SuspendFlux {
        object: cc.object(kind_name(kind), namespace, name),
        source: e.into(),
    };
    let api = api(cc, kind, namespace);
    let obj = api.get(name).await.map_err(err)?;
    let change = match suspend_patch(&obj, stamp) {
        None => Change::Unchanged,
        Some(p) => {
            api.patch(name, &patch_params(), &Patch::Merge(&p))
                .await
                .map_err(err)?;
            Change::Applied
        }
    };
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, ?change, %stamp, "flux suspended");
    Ok(change)
}

/// Resumes HelmRelease or Kustomization `namespace/name` (`spec.suspend = false`) and
/// requests a reconcile at `now` (`reconcile.fluxcd.io/requestedAt`).
pub async fn resume_flux(
    cc: &ClusterClient,
    kind: FluxKind,
    namespace: &str,
    name: &str,
    stamp: &Stamp,
    now: Timestamp,
) -> Result<Change, KubeOpsError> {
    let err = |e: kube::Error| KubeOpsError::ResumeFlux {
        object: cc.object(kind_name(kind), namespace, name),
        source: e.into(),
    };
    let api = api(cc, kind, namespace);
    let obj = api.get(name).await.map_err(err)?;
    let change = match resume_patch(&obj, stamp, now) {
        None => Change::Unchanged,
        Some(p) => {
            api.patch(name, &patch_params(), &Patch::Merge(&p))
                .await
                .map_err(err)?;
            Change::Applied
        }
    };
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, ?change, %stamp, "flux resumed");
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn hr(spec: Value, annotations: Value) -> DynamicObject {
        obj(json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "flux-system", "annotations": annotations},
            "spec": spec
        }))
    }

    #[test]
    fn suspend_only_when_not_suspended() {
        let s = Stamp::new(2, "op");
        assert_eq!(
            suspend_patch(&hr(json!({"interval": "5m"}), json!({})), &s),
            Some(json!({
                "metadata": {"annotations": {"failover.io/epoch": "2", "failover.io/operation": "op"}},
                "spec": {"suspend": true}
            }))
        );
        assert!(suspend_patch(&hr(json!({"suspend": false}), json!({})), &s).is_some());
        assert_eq!(
            suspend_patch(&hr(json!({"suspend": true}), json!({})), &s),
            None
        );
    }

    #[test]
    fn resume_requests_a_reconcile_once_per_operation() {
        let s = Stamp::new(2, "op");
        let now: Timestamp = "2026-11-26T12:00:00Z".parse().unwrap();
        let p = resume_patch(&hr(json!({"suspend": true}), json!({})), &s, now).unwrap();
        assert_eq!(p["spec"]["suspend"], json!(false));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION_REQUESTED_AT],
            json!("2026-11-26T12:00:00Z")
        );
        assert_eq!(
            p["metadata"]["annotations"]["failover.io/operation"],
            json!("op")
        );

        // Resumed by this operation already: nothing to do.
        let done = hr(
            json!({"suspend": false}),
            json!({ANNOTATION_REQUESTED_AT: "2026-11-26T12:00:00Z", "failover.io/epoch": "2", "failover.io/operation": "op"}),
        );
        assert_eq!(resume_patch(&done, &s, now), None);
        // Another operation's request, or suspended again: resume and request anew.
        assert!(resume_patch(&done, &Stamp::new(3, "op2"), now).is_some());
        let again = hr(
            json!({"suspend": true}),
            json!({ANNOTATION_REQUESTED_AT: "x", "failover.io/epoch": "2", "failover.io/operation": "op"}),
        );
        assert!(resume_patch(&again, &s, now).is_some());
        // Never suspended and never requested: request a reconcile.
        assert!(resume_patch(&hr(json!({}), json!({})), &s, now).is_some());
    }

    #[test]
    fn resources_have_the_flux_group_versions() {
        let hr = resource(FluxKind::HelmRelease);
        assert_eq!(hr.api_version, "helm.toolkit.fluxcd.io/v2");
        assert_eq!(hr.plural, "helmreleases");
        let ks = resource(FluxKind::Kustomization);
        assert_eq!(ks.api_version, "kustomize.toolkit.fluxcd.io/v1");
        assert_eq!(ks.plural, "kustomizations");
    }
}
