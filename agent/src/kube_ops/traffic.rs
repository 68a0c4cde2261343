//! Traffic switch: the external-dns controller annotation on a VirtualService
//! (`networking.istio.io/v1`, read as a dynamic object) or an Ingress
//! (`networking.k8s.io/v1`).
//!
//! external-dns manages the DNS records of an object only while the annotation
//! [`TrafficConfig::annotation_key`] (default [`DEFAULT_ANNOTATION_KEY`]) says
//! `dns-controller`; `ignore` makes it leave them alone, so the peer cluster's records win.
//! The key is configurable because external-dns changed its prefix.
//!
//! Read → [`traffic_patch`] (pure: `None` when the annotation already has the wanted
//! value) → one merge patch carrying the value and the [`Stamp`].

use std::fmt;

use failover_messages::crd::NetworkKind;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, DynamicObject, Patch};
use kube::core::{ApiResource, GroupVersionKind};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{Cause, Change, ClusterClient, KubeOpsError, Stamp, patch_params, stamped_patch};

/// The annotation external-dns reads, unless configured otherwise.
pub const DEFAULT_ANNOTATION_KEY: &str = "external-dns.alpha.kubernetes.io/controller";
/// Annotation value of an active object: external-dns manages its records.
pub const VALUE_ON: &str = "dns-controller";
/// Annotation value of a passive object: external-dns ignores it.
pub const VALUE_OFF: &str = "ignore";

/// Whether an object's traffic is served from this cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrafficState {
    /// `dns-controller`.
    On,
    /// `ignore`.
    Off,
}

impl TrafficState {
    /// The annotation value.
    pub fn value(self) -> &'static str {
        match self {
            TrafficState::On => VALUE_ON,
            TrafficState::Off => VALUE_OFF,
        }
    }

    /// `on` / `off`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrafficState::On => "on",
            TrafficState::Off => "off",
        }
    }

    /// The state an annotation value means, if it is one of the two.
    pub fn from_value(v: &str) -> Option<Self> {
        match v {
            VALUE_ON => Some(TrafficState::On),
            VALUE_OFF => Some(TrafficState::Off),
            _ => None,
        }
    }
}

impl fmt::Display for TrafficState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How traffic is switched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrafficConfig {
    /// The annotation external-dns reads.
    pub annotation_key: String,
}

impl Default for TrafficConfig {
    fn default() -> Self {
        Self {
            annotation_key: DEFAULT_ANNOTATION_KEY.to_string(),
        }
    }
}

pub use failover_messages::protocol::names::network_kind_name as kind_name;

/// The Istio VirtualService resource (`networking.istio.io/v1`, plural `virtualservices`).
pub fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

/// The traffic state the object's annotation `key` says; `None` when it is absent or has
/// another value (external-dns then manages the object: treat as on when fencing).
pub fn current_state(meta: &ObjectMeta, key: &str) -> Option<TrafficState> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| TrafficState::from_value(v))
}

/// The merge patch switching the object to `state`, or `None` when it already is.
pub fn traffic_patch(
    meta: &ObjectMeta,
    key: &str,
    state: TrafficState,
    stamp: &Stamp,
) -> Option<Value> {
    (current_state(meta, key) != Some(state))
        .then(|| stamped_patch(stamp, &[(key, Some(state.value().to_string()))], json!({})))
}

/// Switches the traffic of VirtualService or Ingress `namespace/name` to `state`
/// (idempotent: [`Change::Unchanged`] when it already is).
pub async fn set_traffic(
    cc: &ClusterClient,
    config: &TrafficConfig,
    kind: NetworkKind,
    namespace: &str,
    name: &str,
    state: TrafficState,
    stamp: &Stamp,
) -> Result<Change, KubeOpsError> {
    let key = config.annotation_key.as_str();
    let res = match kind {
        NetworkKind::VirtualService => {
            let api = Api::<DynamicObject>::namespaced_with(
                cc.client.clone(),
                namespace,
                &virtual_service_resource(),
            );
            switch(api, name, key, state, stamp).await
        }
        NetworkKind::Ingress => {
            let api = Api::<Ingress>::namespaced(cc.client.clone(), namespace);
            switch(api, name, key, state, stamp).await
        }
    };
    let change = res.map_err(|source| KubeOpsError::PatchTraffic {
        object: cc.object(kind_name(kind), namespace, name),
        state: state.as_str(),
        source,
    })?;
    tracing::info!(cluster = %cc.cluster, kind = kind_name(kind), %namespace, %name, traffic = %state, ?change, %stamp, "traffic switched");
    Ok(change)
}

/// Reads the traffic state of VirtualService or Ingress `namespace/name` (`None`: the
/// annotation is absent or unknown).
pub async fn get_traffic(
    cc: &ClusterClient,
    config: &TrafficConfig,
    kind: NetworkKind,
    namespace: &str,
    name: &str,
) -> Result<Option<TrafficState>, KubeOpsError> {
    let key = config.annotation_key.as_str();
    let meta = match kind {
        NetworkKind::VirtualService => Api::<DynamicObject>::namespaced_with(
            cc.client.clone(),
            namespace,
            &virtual_service_resource(),
        )
        .get(name)
        .await
        .map(|o| o.metadata),
        NetworkKind::Ingress => Api::<Ingress>::namespaced(cc.client.clone(), namespace)
            .get(name)
            .await
            .map(|o| o.metadata),
    };
    let meta = meta.map_err(|e| KubeOpsError::ReadTraffic {
        object: cc.object(kind_name(kind), namespace, name),
        source: e.into(),
    })?;
    Ok(current_state(&meta, key))
}

async fn switch<K>(
    api: Api<K>,
    name: &str,
    key: &str,
    state: TrafficState,
    stamp: &Stamp,
) -> Result<Change, Cause>
where
    K: Resource + Clone + DeserializeOwned + fmt::Debug,
{
    let obj = api.get(name).await?;
    match traffic_patch(obj.meta(), key, state, stamp) {
        None => Ok(Change::Unchanged),
        Some(patch) => {
            api.patch(name, &patch_params(), &Patch::Merge(&patch))
                .await?;
            Ok(Change::Applied)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(v: Value) -> ObjectMeta {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn reads_the_state_from_the_configured_key() {
        let m = meta(json!({"name": "vs", "annotations": {
            "external-dns.alpha.kubernetes.io/controller": "ignore",
            "external-dns.kubernetes.io/controller": "dns-controller"
        }}));
        assert_eq!(
            current_state(&m, DEFAULT_ANNOTATION_KEY),
            Some(TrafficState::Off)
        );
        assert_eq!(
            current_state(&m, "external-dns.kubernetes.io/controller"),
            Some(TrafficState::On)
        );
        assert_eq!(current_state(&m, "other"), None);
        assert_eq!(current_state(&meta(json!({"name": "x"})), "k"), None);
    }

    #[test]
    fn patch_switches_and_stamps_only_when_needed() {
        let stamp = Stamp::new(4, "op-9");
        let on =
            meta(json!({"name": "vs", "annotations": {DEFAULT_ANNOTATION_KEY: "dns-controller"}}));
        assert_eq!(
            traffic_patch(&on, DEFAULT_ANNOTATION_KEY, TrafficState::On, &stamp),
            None
        );
        let p = traffic_patch(&on, DEFAULT_ANNOTATION_KEY, TrafficState::Off, &stamp).unwrap();
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {
                DEFAULT_ANNOTATION_KEY: "ignore",
                "failover.io/epoch": "4",
                "failover.io/operation": "op-9"
            }}})
        );
        // Absent or unknown values are switched explicitly, both ways.
        let bare = meta(json!({"name": "vs"}));
        assert!(traffic_patch(&bare, DEFAULT_ANNOTATION_KEY, TrafficState::On, &stamp).is_some());
        let odd = meta(json!({"name": "vs", "annotations": {DEFAULT_ANNOTATION_KEY: "weird"}}));
        assert!(traffic_patch(&odd, DEFAULT_ANNOTATION_KEY, TrafficState::Off, &stamp).is_some());
    }

    #[test]
    fn values_round_trip() {
        for s in [TrafficState::On, TrafficState::Off] {
            assert_eq!(TrafficState::from_value(s.value()), Some(s));
        }
        assert_eq!(TrafficState::On.value(), "dns-controller");
        assert_eq!(TrafficState::Off.value(), "ignore");
    }
}
