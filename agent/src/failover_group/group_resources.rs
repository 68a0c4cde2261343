//! What the objects a `FailoverGroup` references look like in this cluster
//! ([`observe`]: Deployments, StatefulSets, CronJobs, VolumeReplications, traffic and Flux
//! objects), and, pure, the `status.resources` entries they make and why an object is not
//! in the side the group's role wants ([`resource_states`]).

use std::fmt;

use failover_messages::crd::{
    FailoverGroupSpec, FluxKind, GroupRole, NetworkKind, ResourceState, WorkloadKind,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject};

use crate::kube_ops::traffic::{self, TrafficState};
use crate::kube_ops::volumes::{self, VolumeObservation};
use crate::kube_ops::{flux, workloads};

/// What one referenced object looks like in this cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// A Deployment or StatefulSet.
    Workload {
        /// `spec.replicas`.
        replicas: u32,
        /// `status.readyReplicas`.
        ready: u32,
        /// Ready in the sense of the workflow's waits (generation observed, all ready).
        settled: bool,
    },
    /// A CronJob.
    CronJob {
        /// `spec.suspend`.
        suspended: bool,
    },
    /// A VirtualService or Ingress: the traffic annotation (`None`: absent or unknown).
    Traffic(Option<TrafficState>),
    /// A HelmRelease or Kustomization.
    Flux {
        /// `spec.suspend`.
        suspended: bool,
    },
    /// A VolumeReplication.
    Volume {
        /// `spec.replicationState`.
        desired: Option<String>,
        /// `status.state`.
        state: Option<String>,
        /// `Completed=True` for the current generation.
        completed: bool,
        /// `Degraded=True` for the current generation.
        degraded: bool,
        /// One line describing it.
        detail: String,
    },
    /// The object does not exist.
    Missing,
    /// It could not be read.
    Unreadable(String),
}

/// One referenced object and what it looks like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedResource {
    /// `Deployment`, `VolumeReplication`, `Ingress`, `HelmRelease`, …
    pub kind: String,
    /// Its name (`namespace/name` for Flux objects).
    pub name: String,
    /// What it looks like.
    pub observed: Observed,
}

impl ObservedResource {
    /// The observation of a VolumeReplication.
    pub fn volume(name: &str, obs: &VolumeObservation) -> Self {
        Self {
            kind: volumes::KIND.to_owned(),
            name: name.to_owned(),
            observed: Observed::Volume {
                desired: obs.desired.clone(),
                state: obs.state.clone(),
                completed: obs.completed,
                degraded: obs.degraded,
                detail: obs.describe(),
            },
        }
    }
}

/// Which side a role wants: `Some(true)` active, `Some(false)` passive, `None` no
/// expectation (an operation is moving it).
fn wants_active(role: Option<GroupRole>) -> Option<bool> {
    match role {
        Some(GroupRole::Primary) => Some(true),
        Some(GroupRole::Standby | GroupRole::Fenced) => Some(false),
        Some(GroupRole::Transitioning) | None => None,
    }
}

/// The `status.resources` entry of `r`, and, when `active` says which side is wanted and
/// the object is not in it, why not.
fn resource_state(r: &ObservedResource, active: Option<bool>) -> (ResourceState, Option<String>) {
    let what = format!("{}/{}", r.kind, r.name);
    let (state, message, ok): (String, Option<String>, Option<bool>) = match &r.observed {
        Observed::Workload {
            replicas,
            ready,
            settled,
        } => {
            let state = if *replicas == 0 {
                "ScaledDown".to_owned()
            } else {
                format!("Running {ready}/{replicas}")
            };
            let ok = active.map(|a| {
                if a {
                    *replicas > 0 && *settled
                } else {
                    *replicas == 0
                }
            });
            (state, None, ok)
        }
        Observed::CronJob { suspended } => (
            if *suspended { "Suspended" } else { "Active" }.to_owned(),
            None,
            active.map(|a| a != *suspended),
        ),
        Observed::Traffic(t) => {
            let state = match t {
                Some(TrafficState::On) => "Active",
                Some(TrafficState::Off) => "Passive",
                None => "Unmanaged",
            };
            let ok = active.map(|a| {
                *t == Some(if a {
                    TrafficState::On
                } else {
                    TrafficState::Off
                })
            });
            (state.to_owned(), None, ok)
        }
        Observed::Flux { suspended } => (
            if *suspended {
                "Suspended"
            } else {
                "Reconciling"
            }
            .to_owned(),
            None,
            active.map(|a| a != *suspended),
        ),
        Observed::Volume {
            desired,
            state,
            completed,
            degraded,
            detail,
        } => {
            let shown = state.clone().unwrap_or_else(|| "Unknown".to_owned());
            let want = |s: &str| {
                state.as_deref() == Some(s)
                    && desired
                        .as_deref()
                        .is_some_and(|d| d.eq_ignore_ascii_case(s))
                    && *completed
                    && !*degraded
            };
            let ok = active.map(|a| want(if a { "Primary" } else { "Secondary" }));
            let message = (*degraded || !*completed || ok == Some(false)).then(|| detail.clone());
            (shown, message, ok)
        }
        Observed::Missing => (
            "Missing".to_owned(),
            Some(format!("{what} does not exist in this cluster")),
            Some(false),
        ),
        Observed::Unreadable(e) => ("Unknown".to_owned(), Some(e.clone()), Some(false)),
    };
    let why = match ok {
        Some(false) => Some(match (&r.observed, active) {
            (Observed::Missing | Observed::Unreadable(_), _) => message
                .clone()
                .unwrap_or_else(|| format!("{what} is {state}")),
            (_, Some(true)) => format!("{what} is {state}, not active"),
            _ => format!("{what} is {state}, not passive"),
        }),
        _ => None,
    };
    (
        ResourceState {
            kind: r.kind.clone(),
            name: r.name.clone(),
            state,
            message,
        },
        why,
    )
}

/// The `status.resources` entries, and for each object not in the side `role` wants, why.
pub fn resource_states(
    observed: &[ObservedResource],
    role: Option<GroupRole>,
) -> (Vec<ResourceState>, Vec<String>) {
    let active = wants_active(role);
    observed.iter().map(|r| resource_state(r, active)).fold(
        (Vec::new(), Vec::new()),
        |(mut states, mut why), (s, w)| {
            states.push(s);
            why.extend(w);
            (states, why)
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Reading them
// ---------------------------------------------------------------------------------------------

fn unreadable(e: &kube::Error) -> Observed {
    Observed::Unreadable(format!("cannot read it: {e}"))
}

async fn get_opt<K>(api: Api<K>, name: &str) -> Result<Option<K>, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + fmt::Debug,
{
    api.get_opt(name).await
}

/// Reads every object `spec` references in namespace `ns` of this cluster.
pub async fn observe(
    client: &kube::Client,
    ns: &str,
    spec: &FailoverGroupSpec,
    traffic_key: &str,
) -> Vec<ObservedResource> {
    let mut out = Vec::new();
    observe_workloads(client, ns, spec, &mut out).await;
    observe_volumes(client, ns, spec, &mut out).await;
    observe_traffic(client, ns, spec, traffic_key, &mut out).await;
    observe_flux(client, spec, &mut out).await;
    out
}

/// The Deployments, StatefulSets and CronJobs of `spec`.
async fn observe_workloads(
    client: &kube::Client,
    ns: &str,
    spec: &FailoverGroupSpec,
    out: &mut Vec<ObservedResource>,
) {
    for w in &spec.workloads {
        let observed = match w.kind {
            WorkloadKind::Deployment => {
                match get_opt(Api::<Deployment>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(d)) => workload(&workloads::WorkloadView::from_deployment(&d)),
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
            WorkloadKind::StatefulSet => {
                match get_opt(Api::<StatefulSet>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(s)) => workload(&workloads::WorkloadView::from_stateful_set(&s)),
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
            WorkloadKind::CronJob => {
                match get_opt(Api::<CronJob>::namespaced(client.clone(), ns), &w.name).await {
                    Ok(Some(c)) => Observed::CronJob {
                        suspended: c.spec.suspend.unwrap_or(false),
                    },
                    Ok(None) => Observed::Missing,
                    Err(e) => unreadable(&e),
                }
            }
        };
        out.push(ObservedResource {
            kind: workloads::kind_name(w.kind).to_owned(),
            name: w.name.clone(),
            observed,
        });
    }
}

/// The VolumeReplications of `spec`.
async fn observe_volumes(
    client: &kube::Client,
    ns: &str,
    spec: &FailoverGroupSpec,
    out: &mut Vec<ObservedResource>,
) {
    for v in &spec.volume_replications {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            ns,
            &volumes::volume_replication_resource(),
        );
        match get_opt(api, &v.name).await {
            Ok(Some(obj)) => {
                out.push(ObservedResource::volume(
                    &v.name,
                    &VolumeObservation::from_object(&obj),
                ));
            }
            Ok(None) => out.push(ObservedResource {
                kind: volumes::KIND.to_owned(),
                name: v.name.clone(),
                observed: Observed::Missing,
            }),
            Err(e) => out.push(ObservedResource {
                kind: volumes::KIND.to_owned(),
                name: v.name.clone(),
                observed: unreadable(&e),
            }),
        }
    }
}

/// The VirtualServices and Ingresses of `spec`, by the traffic annotation `traffic_key`.
async fn observe_traffic(
    client: &kube::Client,
    ns: &str,
    spec: &FailoverGroupSpec,
    traffic_key: &str,
    out: &mut Vec<ObservedResource>,
) {
    for n in &spec.network {
        let meta = match n.kind {
            NetworkKind::VirtualService => get_opt(
                Api::<DynamicObject>::namespaced_with(
                    client.clone(),
                    ns,
                    &traffic::virtual_service_resource(),
                ),
                &n.name,
            )
            .await
            .map(|o| o.map(|o| o.metadata)),
            NetworkKind::Ingress => {
                get_opt(Api::<Ingress>::namespaced(client.clone(), ns), &n.name)
                    .await
                    .map(|o| o.map(|o| o.metadata))
            }
        };
        let observed = match meta {
            Ok(Some(m)) => Observed::Traffic(traffic::current_state(&m, traffic_key)),
            Ok(None) => Observed::Missing,
            Err(e) => unreadable(&e),
        };
        out.push(ObservedResource {
            kind: traffic::kind_name(n.kind).to_owned(),
            name: n.name.clone(),
            observed,
        });
    }
}

/// The Flux objects of `spec`, each in its own namespace.
async fn observe_flux(
    client: &kube::Client,
    spec: &FailoverGroupSpec,
    out: &mut Vec<ObservedResource>,
) {
    for f in &spec.flux {
        let api = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &f.namespace,
            &flux::resource(f.kind),
        );
        let observed = match get_opt(api, &f.name).await {
            Ok(Some(o)) => Observed::Flux {
                suspended: flux::is_suspended(&o),
            },
            Ok(None) => Observed::Missing,
            Err(e) => unreadable(&e),
        };
        out.push(ObservedResource {
            kind: flux_kind(f.kind).to_owned(),
            name: format!("{}/{}", f.namespace, f.name),
            observed,
        });
    }
}

fn flux_kind(kind: FluxKind) -> &'static str {
    flux::kind_name(kind)
}

fn workload(view: &workloads::WorkloadView) -> Observed {
    Observed::Workload {
        replicas: view.replicas,
        ready: view.ready_replicas,
        settled: workloads::is_ready(view),
    }
}
