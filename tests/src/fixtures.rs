//! The application fixture of the failover scenarios: the `shop` FailoverGroup with its
//! workloads, PVCs, VolumeReplications, VirtualService, Ingress and HelmRelease in both
//! clusters (active in east, passive in west), the failover CRDs, and the assertions on each
//! side and on the records after a failover east → west.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use failover_messages::crd::{
    FailoverGroup, FailoverGroupSpec, FluxKind, FluxRef, NetworkKind, NetworkRef, StageTimeouts,
    VolumeReplicationRef, WorkloadKind, WorkloadRef, crds,
};
use failover_messages::keys::GroupRef;
use failover_messages::records::{HandoffState, Operation, Phase};
use failover_messages::store::Store;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

use crate::kube::{Cluster, TestEnv, wait_for};
use crate::storage_sim::{
    ANNOTATION_WORKLOAD, DesiredState, volume_replication, volume_replications, wait_settled,
};

/// The FailoverGroup's name.
pub const GROUP: &str = "shop";
/// The group's volumes: (VolumeReplication, workload kind, workload name).
pub const VOLUMES: [(&str, &str, &str); 2] = [
    ("api-data", "Deployment", "api"),
    ("db-data", "StatefulSet", "db"),
];
/// How long the fixture waits for the starting point to settle.
pub const SETTLE: Duration = Duration::from_secs(30);
/// The annotation that says which side serves the traffic.
pub const TRAFFIC_KEY: &str = "external-dns.alpha.kubernetes.io/controller";
/// The annotation Flux reconciles on.
pub const REQUESTED_AT: &str = "reconcile.fluxcd.io/requestedAt";

/// The duration in environment variable `var` (humantime, e.g. `30s`), else `default`: the
/// lease and timing knobs a test keeps short in `make test` and a measurement lengthens.
pub fn duration_from_env(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok())
        .unwrap_or(default)
}

/// Istio's VirtualService.
pub fn virtual_service_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("networking.istio.io", "v1", "VirtualService"),
        "virtualservices",
    )
}

/// Flux's HelmRelease.
pub fn helm_release_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease"),
        "helmreleases",
    )
}

/// Creates the failover CRDs from the Rust types unless present, and waits up to `deadline`
/// until each is established.
pub async fn install_crds(c: &Cluster, deadline: Duration) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for crd in crds() {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            // Installed already (the environment outlives test runs): bring an older schema
            // up to date, or the API server prunes the fields it does not know.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let current = api.get(&name).await?;
                if current.spec != crd.spec {
                    let mut apply = crd.clone();
                    apply.metadata.managed_fields = None;
                    api.patch(
                        &name,
                        &kube::api::PatchParams::apply("failover-tests").force(),
                        &kube::api::Patch::Apply(&apply),
                    )
                    .await
                    .with_context(|| format!("updating CRD {name} in {}", c.name))?;
                }
            }
            Err(e) => return Err(e).with_context(|| format!("creating CRD {name} in {}", c.name)),
        }
        tokio::time::timeout(
            deadline,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established in {}", c.name))??;
    }
    Ok(())
}

/// The group's spec, its HelmRelease in `flux_ns`.
pub fn group_spec(flux_ns: &str) -> FailoverGroupSpec {
    FailoverGroupSpec {
        workloads: vec![
            WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "api".into(),
                replicas: None,
            },
            WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
                replicas: None,
            },
        ],
        volume_replications: VOLUMES
            .iter()
            .map(|(v, _, w)| VolumeReplicationRef {
                name: (*v).into(),
                workload: Some((*w).into()),
            })
            .collect(),
        network: vec![
            NetworkRef {
                kind: NetworkKind::VirtualService,
                name: "api".into(),
            },
            NetworkRef {
                kind: NetworkKind::Ingress,
                name: "api".into(),
            },
        ],
        flux: vec![FluxRef {
            kind: FluxKind::HelmRelease,
            name: "api".into(),
            namespace: flux_ns.into(),
        }],
        timeouts: StageTimeouts {
            initialization: Some("30s".into()),
            source_shutdown: Some("60s".into()),
            volume_demotion: Some("60s".into()),
            volume_promotion: Some("90s".into()),
            target_activation: Some("90s".into()),
            completion: Some("30s".into()),
        },
        ..FailoverGroupSpec::default()
    }
}

async fn create<K>(api: Api<K>, obj: Value) -> Result<()>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj.clone())?;
    api.create(&PostParams::default(), &o)
        .await
        .with_context(|| format!("creating {obj}"))?;
    Ok(())
}

async fn create_dynamic(
    client: &kube::Client,
    ns: &str,
    ar: &ApiResource,
    obj: Value,
) -> Result<()> {
    let mut o: DynamicObject = serde_json::from_value(obj)?;
    o.types = Some(kube::core::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    Api::<DynamicObject>::namespaced_with(client.clone(), ns, ar)
        .create(&PostParams::default(), &o)
        .await
        .with_context(|| format!("creating {} {:?} in {ns}", ar.kind, o.metadata.name))?;
    Ok(())
}

/// Waits until the workload (`kind` Deployment or StatefulSet) reports `want` ready replicas.
pub async fn wait_ready_replicas(
    c: &Cluster,
    ns: &str,
    kind: &str,
    name: &str,
    want: i32,
) -> Result<()> {
    let what = format!("{kind}/{name} in {} with {want} ready replicas", c.name);
    wait_for(&what, SETTLE, || async {
        let ready = match kind {
            "Deployment" => Api::<Deployment>::namespaced(c.client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.ready_replicas),
            _ => Api::<StatefulSet>::namespaced(c.client.clone(), ns)
                .get(name)
                .await
                .map_err(|e| e.to_string())?
                .status
                .and_then(|s| s.ready_replicas),
        }
        .unwrap_or(0);
        if ready == want {
            Ok(Some(()))
        } else {
            Err(format!("{ready} ready"))
        }
    })
    .await
}

/// Creates the application in both clusters, active in east and passive in west, with its
/// HelmRelease in `flux_ns`. It does not wait for anything to settle; see
/// [`wait_starting_point`].
pub async fn create_application(env: &TestEnv, ns: &str, flux_ns: &str) -> Result<()> {
    for c in env.clusters() {
        let active = c.name == "east";
        let (api_replicas, db_replicas) = if active { (2, 1) } else { (0, 0) };
        let client = c.client.clone();
        let template = |app: &str| {
            json!({"metadata": {"labels": {"app": app}},
                   "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}})
        };
        create::<Deployment>(
            Api::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "api"}, "spec": {"replicas": api_replicas,
                "selector": {"matchLabels": {"app": "api"}}, "template": template("api")}}),
        )
        .await?;
        create::<StatefulSet>(
            Api::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "db"}, "spec": {"replicas": db_replicas,
                "serviceName": "db", "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": {"app": "db"}}, "template": template("db")}}),
        )
        .await?;
        for (volume, kind, workload) in VOLUMES {
            let pvc = format!("{volume}-pvc");
            create::<PersistentVolumeClaim>(
                Api::namespaced(client.clone(), ns),
                json!({"metadata": {"name": pvc}, "spec": {"accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}}}}),
            )
            .await?;
            let state = if active {
                DesiredState::Primary
            } else {
                DesiredState::Secondary
            };
            let mut vr = volume_replication(volume, state, &pvc);
            vr.metadata.annotations = Some(BTreeMap::from([(
                ANNOTATION_WORKLOAD.to_owned(),
                format!("{kind}/{workload}"),
            )]));
            volume_replications(&client, ns)
                .create(&PostParams::default(), &vr)
                .await
                .with_context(|| format!("creating VolumeReplication {volume} in {}", c.name))?;
        }
        let dns = if active { "dns-controller" } else { "ignore" };
        create_dynamic(
            &client,
            ns,
            &virtual_service_resource(),
            json!({"metadata": {"name": "api", "annotations": {TRAFFIC_KEY: dns}},
                   "spec": {"hosts": ["api.example.com"],
                            "http": [{"route": [{"destination": {"host": "api"}}]}]}}),
        )
        .await?;
        create::<Ingress>(
            Api::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "api", "annotations": {TRAFFIC_KEY: dns}},
                   "spec": {"rules": [{"host": "api.example.com", "http": {"paths": [{
                       "path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}),
        )
        .await?;
        create_dynamic(
            &client,
            flux_ns,
            &helm_release_resource(),
            json!({"metadata": {"name": "api"},
                   "spec": {"interval": "5m", "suspend": !active,
                            "chart": {"spec": {"chart": "api", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}}),
        )
        .await?;
        let mut fg = FailoverGroup::new(GROUP, group_spec(flux_ns));
        fg.metadata.namespace = Some(ns.to_owned());
        Api::<FailoverGroup>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &fg)
            .await
            .with_context(|| format!("creating FailoverGroup in {}", c.name))?;
    }
    Ok(())
}

/// Waits until the starting point is settled: the volumes in their states (read from the
/// clusters) and east's workloads ready.
pub async fn wait_starting_point(env: &TestEnv, ns: &str) -> Result<()> {
    for (volume, _, _) in VOLUMES {
        wait_settled(&env.east.client, ns, volume, "Primary", SETTLE).await?;
        wait_settled(&env.west.client, ns, volume, "Secondary", SETTLE).await?;
    }
    wait_ready_replicas(&env.east, ns, "Deployment", "api", 2).await?;
    wait_ready_replicas(&env.east, ns, "StatefulSet", "db", 1).await?;
    Ok(())
}

/// The records after the failover of `op` ([`assert_records_moved`]) and the timings the
/// target recorded on it (downtime, the stages of both sides).
pub async fn assert_records(store: &Store, group: &GroupRef, op: &Operation) -> Result<()> {
    assert_records_moved(store, group, op).await?;
    // The timings the target computed from both journals: a downtime (traffic off on the
    // source until traffic on on the target) and every stage of both sides.
    let stored = store.get_operation(&op.id).await?.context("no operation")?;
    ensure!(
        stored.timings.downtime_ms.is_some() && stored.timings.total_ms.is_some(),
        "timings: {:?}",
        stored.timings
    );
    for stage in ["source/SourceShutdown", "target/TargetActivation"] {
        ensure!(
            stored.timings.stages_ms.contains_key(stage),
            "no {stage} in the timings: {:?}",
            stored.timings
        );
    }
    Ok(())
}

/// One cluster's side after the failover, active (`true`) or passive: the workloads' desired
/// replicas, the traffic annotations and the HelmRelease. Readiness, the volumes and the
/// FailoverGroup status are left to the caller, which knows how to wait for them; it gets the
/// Deployment and StatefulSet as they were read here.
pub async fn assert_side(
    c: &Cluster,
    ns: &str,
    flux_ns: &str,
    active: bool,
) -> Result<(Deployment, StatefulSet)> {
    let what = |x: &str| format!("{x} in {}", c.name);
    let d = Api::<Deployment>::namespaced(c.client.clone(), ns)
        .get("api")
        .await?;
    let st = Api::<StatefulSet>::namespaced(c.client.clone(), ns)
        .get("db")
        .await?;
    let (want_api, want_db) = if active { (2, 1) } else { (0, 0) };
    let spec = |r: Option<i32>| r.unwrap_or(1);
    ensure!(
        spec(d.spec.as_ref().and_then(|x| x.replicas)) == want_api,
        "{}: {:?}",
        what("api replicas"),
        d.spec
    );
    ensure!(
        spec(st.spec.as_ref().and_then(|x| x.replicas)) == want_db,
        "{}: {:?}",
        what("db replicas"),
        st.spec
    );
    let dns = if active { "dns-controller" } else { "ignore" };
    let vs =
        Api::<DynamicObject>::namespaced_with(c.client.clone(), ns, &virtual_service_resource())
            .get("api")
            .await?;
    let vs = vs
        .metadata
        .annotations
        .and_then(|a| a.get(TRAFFIC_KEY).cloned());
    ensure!(
        vs.as_deref() == Some(dns),
        "{}: {vs:?}",
        what("VirtualService traffic")
    );
    let ing = Api::<Ingress>::namespaced(c.client.clone(), ns)
        .get("api")
        .await?;
    let ing = ing
        .metadata
        .annotations
        .and_then(|a| a.get(TRAFFIC_KEY).cloned());
    ensure!(
        ing.as_deref() == Some(dns),
        "{}: {ing:?}",
        what("Ingress traffic")
    );
    let hr =
        Api::<DynamicObject>::namespaced_with(c.client.clone(), flux_ns, &helm_release_resource())
            .get("api")
            .await?;
    ensure!(
        hr.data["spec"]["suspend"] == json!(!active),
        "{}: {:?}",
        what("HelmRelease suspend"),
        hr.data["spec"]
    );
    if active {
        ensure!(
            hr.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(REQUESTED_AT)),
            "{}: no reconcile requested",
            what("HelmRelease")
        );
    }
    Ok((d, st))
}

// ---- helpers of the end-to-end scenarios (e2e_uptime, e2e_two_groups, e2e_back_and_forth,
// e2e_race) ------------------------------------------------------------------------------------

/// How long a scenario waits for the agents to finish an operation.
pub const OPERATION_DEADLINE: Duration = Duration::from_secs(90);

/// One cluster's side settled, active (`true`) or passive: [`assert_side`], then (active)
/// the workloads ready, and the volumes settled Primary / Secondary as read from the cluster.
pub async fn assert_side_settled(c: &Cluster, ns: &str, flux_ns: &str, active: bool) -> Result<()> {
    assert_side(c, ns, flux_ns, active)
        .await
        .with_context(|| format!("{} side of {ns} in {}", side_word(active), c.name))?;
    if active {
        wait_ready_replicas(c, ns, "Deployment", "api", 2).await?;
        wait_ready_replicas(c, ns, "StatefulSet", "db", 1).await?;
    }
    let state = if active { "Primary" } else { "Secondary" };
    for (volume, _, _) in VOLUMES {
        wait_settled(&c.client, ns, volume, state, SETTLE)
            .await
            .with_context(|| format!("{ns}/{volume} in {}", c.name))?;
    }
    Ok(())
}

fn side_word(active: bool) -> &'static str {
    if active { "active" } else { "passive" }
}

/// Waits until the group's state record says `cluster` is active and nothing is in flight;
/// returns the state.
pub async fn wait_group_idle_on(
    store: &Store,
    group: &GroupRef,
    cluster: &str,
    deadline: Duration,
) -> Result<failover_messages::records::GroupState> {
    wait_for(
        &format!(
            "{group}: active = {cluster}, no operation in flight, the last one recorded closed"
        ),
        deadline,
        || async { group_settled(store, group, cluster).await },
    )
    .await
}

/// The group state when `cluster` is active with nothing in flight and the last operation's
/// own item reads closed (the close releases the group state first, then writes the history
/// record and the operation's phase); else why not.
pub async fn group_settled(
    store: &Store,
    group: &GroupRef,
    cluster: &str,
) -> Result<Option<failover_messages::records::GroupState>, String> {
    let state = store
        .get_group_state(group)
        .await
        .map_err(|e| e.to_string())?;
    let s = match state {
        Some(s) if s.active_cluster == cluster && s.op_id.is_none() => s,
        other => return Err(format!("{other:?}")),
    };
    if let Some(last) = &s.last_op_id {
        let op = store.get_operation(last).await.map_err(|e| e.to_string())?;
        if !op.as_ref().is_some_and(|o| o.phase.is_terminal()) {
            return Err(format!(
                "the group is released, its last operation not yet closed: {op:?}"
            ));
        }
    }
    Ok(Some(s))
}

/// Waits until the `Failover` object of operation `op_id` in cluster `c` (namespace `ns`,
/// found by its `status.operationId` or its `failover.io/operation` annotation) reports
/// `phase`, for the whole operation and for its group; returns it.
pub async fn wait_failover_object(
    c: &Cluster,
    ns: &str,
    op_id: &str,
    phase: failover_messages::crd::FailoverPhase,
) -> Result<failover_messages::crd::Failover> {
    use failover_messages::crd::Failover;
    let api: Api<Failover> = Api::namespaced(c.client.clone(), ns);
    wait_for(
        &format!(
            "Failover of operation {op_id} in {} with phase {phase:?}",
            c.name
        ),
        SETTLE,
        || {
            let api = api.clone();
            async move {
                let list = api
                    .list(&kube::api::ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let fo = list.items.into_iter().find(|f| {
                    f.status.as_ref().and_then(|s| s.operation_id.as_deref()) == Some(op_id)
                        || f.metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get("failover.io/operation"))
                            .map(String::as_str)
                            == Some(op_id)
                });
                let Some(fo) = fo else {
                    return Err("no Failover object for the operation".into());
                };
                let st = fo.status.clone().unwrap_or_default();
                let group_phase = st.groups.first().and_then(|g| g.phase);
                if st.phase == Some(phase) && group_phase == Some(phase) {
                    Ok(Some(fo))
                } else {
                    Err(format!("status {st:?}"))
                }
            }
        },
    )
    .await
}

/// Waits until the `Failover` of `op_id` reports `Succeeded` in both clusters, each naming
/// the operation's target and mode in its (immutable) spec.
pub async fn assert_failover_objects_succeeded(
    env: &TestEnv,
    ns: &str,
    op: &Operation,
) -> Result<()> {
    for c in env.clusters() {
        let fo = wait_failover_object(
            c,
            ns,
            &op.id,
            failover_messages::crd::FailoverPhase::Succeeded,
        )
        .await?;
        ensure!(
            fo.spec.target_cluster == op.target,
            "Failover {} in {}: target {}",
            op.id,
            c.name,
            fo.spec.target_cluster
        );
        ensure!(
            fo.spec.mode == failover_messages::crd::FailoverMode::from(op.mode),
            "Failover {} in {}: mode {:?}, operation {}",
            op.id,
            c.name,
            fo.spec.mode,
            op.mode
        );
    }
    Ok(())
}

/// Waits until the FailoverGroup's status in `c` shows `active` as the active cluster,
/// the role `Primary` (when `c` is `active`) or `Standby`, and `epoch`.
pub async fn wait_group_status(c: &Cluster, ns: &str, active: &str, epoch: u64) -> Result<()> {
    use failover_messages::crd::GroupRole;
    let api: Api<FailoverGroup> = Api::namespaced(c.client.clone(), ns);
    let want_role = if c.name == active {
        GroupRole::Primary
    } else {
        GroupRole::Standby
    };
    wait_for(
        &format!(
            "FailoverGroup {ns}/{GROUP} in {}: {want_role:?}, active {active}, epoch {epoch}",
            c.name
        ),
        SETTLE,
        || {
            let api = api.clone();
            async move {
                let fg = api.get(GROUP).await.map_err(|e| e.to_string())?;
                let st = fg.status.unwrap_or_default();
                if st.role == Some(want_role)
                    && st.active_cluster.as_deref() == Some(active)
                    && st.epoch == Some(epoch)
                {
                    Ok(Some(()))
                } else {
                    Err(format!(
                        "role {:?}, active {:?}, epoch {:?}",
                        st.role, st.active_cluster, st.epoch
                    ))
                }
            }
        },
    )
    .await
}

/// The records after the failover of `op` to `op.target`: [`assert_records`] for any
/// direction (the target active at the operation's epoch, nothing in flight, the operation
/// succeeded with the original replicas, every handoff promoted at the epoch, in history).
pub async fn assert_records_moved(store: &Store, group: &GroupRef, op: &Operation) -> Result<()> {
    let state = store
        .get_group_state(group)
        .await?
        .context("no group state")?;
    ensure!(
        state.active_cluster == op.target,
        "active cluster: {state:?}"
    );
    ensure!(state.epoch == op.epoch, "epoch: {state:?}");
    ensure!(
        state.op_id.is_none(),
        "operation still in flight: {state:?}"
    );
    ensure!(
        state.promotion_claimed_by.is_none(),
        "claim left: {state:?}"
    );
    ensure!(
        state.lease.is_none() || !state.lease_is_live(jiff::Timestamp::now()),
        "lease left: {state:?}"
    );
    let stored = store.get_operation(&op.id).await?.context("no operation")?;
    ensure!(stored.phase == Phase::Succeeded, "phase: {stored:?}");
    ensure!(stored.mode == op.mode, "mode: {stored:?}");
    ensure!(stored.finished_at.is_some(), "no finishedAt: {stored:?}");
    let want = BTreeMap::from([
        ("Deployment/api".to_owned(), 2),
        ("StatefulSet/db".to_owned(), 1),
    ]);
    ensure!(
        stored.original_replicas == want,
        "original replicas: {:?}",
        stored.original_replicas
    );
    let handoffs = store.list_handoffs(&op.id).await?;
    ensure!(handoffs.len() == VOLUMES.len(), "handoffs: {handoffs:?}");
    for h in &handoffs {
        ensure!(
            h.state == HandoffState::Promoted && h.epoch == op.epoch,
            "handoff: {h:?}"
        );
    }
    let history = store.history(group, None).await?;
    ensure!(
        history.iter().any(|h| h.operation.id == op.id),
        "no history entry for {}: {history:?}",
        op.id
    );
    Ok(())
}

/// The CronJob `backup` and the Kustomization `apps` (in `flux_ns`) that
/// [`add_cron_job_and_kustomization`] adds to the group.
pub const CRON_JOB: &str = "backup";
/// See [`CRON_JOB`].
pub const KUSTOMIZATION: &str = "apps";

/// Flux's Kustomization.
pub fn kustomization_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    )
}

/// Adds the kinds [`create_application`] leaves out to the application in both clusters:
/// a CronJob `backup` (suspended in west, a schedule that never fires during a test) and a
/// Kustomization `apps` in `flux_ns` (suspended in west), and puts both in the group's spec
/// (`workloads`, `flux`). Call it after [`create_application`] and before the agents start.
pub async fn add_cron_job_and_kustomization(env: &TestEnv, ns: &str, flux_ns: &str) -> Result<()> {
    use k8s_openapi::api::batch::v1::CronJob;
    for c in env.clusters() {
        let active = c.name == "east";
        create::<CronJob>(
            Api::namespaced(c.client.clone(), ns),
            json!({"metadata": {"name": CRON_JOB}, "spec": {
                "schedule": "0 3 1 1 *", "suspend": !active,
                "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "main", "image": "registry.example/backup:1"}]}}}}}}),
        )
        .await?;
        create_dynamic(
            &c.client,
            flux_ns,
            &kustomization_resource(),
            json!({"metadata": {"name": KUSTOMIZATION},
                   "spec": {"interval": "10m", "path": "./apps", "prune": true, "suspend": !active,
                            "sourceRef": {"kind": "GitRepository", "name": "apps"}}}),
        )
        .await?;
        let api = Api::<FailoverGroup>::namespaced(c.client.clone(), ns);
        let mut fg = api.get(GROUP).await?;
        fg.spec.workloads.push(WorkloadRef {
            kind: WorkloadKind::CronJob,
            name: CRON_JOB.into(),
            replicas: None,
        });
        fg.spec.flux.push(FluxRef {
            kind: FluxKind::Kustomization,
            name: KUSTOMIZATION.into(),
            namespace: flux_ns.into(),
        });
        api.replace(GROUP, &PostParams::default(), &fg)
            .await
            .with_context(|| {
                format!(
                    "adding the CronJob and Kustomization to the group in {}",
                    c.name
                )
            })?;
    }
    Ok(())
}

/// One cluster's side of the kinds [`add_cron_job_and_kustomization`] added: the CronJob
/// suspended unless `active`, the Kustomization suspended unless `active` (and, when
/// `reconciled`, a reconcile requested on the active side, as an agent's resume does).
pub async fn assert_cron_job_and_kustomization(
    c: &Cluster,
    ns: &str,
    flux_ns: &str,
    active: bool,
    reconciled: bool,
) -> Result<()> {
    use k8s_openapi::api::batch::v1::CronJob;
    let cj = Api::<CronJob>::namespaced(c.client.clone(), ns)
        .get(CRON_JOB)
        .await?;
    let suspended = cj.spec.suspend.unwrap_or(false);
    ensure!(
        suspended != active,
        "CronJob {CRON_JOB} in {}: suspend {suspended}, want {}",
        c.name,
        !active
    );
    let ks =
        Api::<DynamicObject>::namespaced_with(c.client.clone(), flux_ns, &kustomization_resource())
            .get(KUSTOMIZATION)
            .await?;
    ensure!(
        ks.data["spec"]["suspend"] == json!(!active),
        "Kustomization {KUSTOMIZATION} in {}: {:?}",
        c.name,
        ks.data["spec"]
    );
    if active && reconciled {
        ensure!(
            ks.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(REQUESTED_AT)),
            "Kustomization {KUSTOMIZATION} in {}: no reconcile requested",
            c.name
        );
    }
    Ok(())
}

/// Records the active side's replica counts (api 2, db 1) in the
/// `failover.io/original-replicas` annotation of `c`'s (passive, scaled-to-0) workloads, as
/// an earlier failover away from `c` leaves them: a target that finds no count on the
/// operation scales up to this one.
pub async fn annotate_original_replicas(c: &Cluster, ns: &str) -> Result<()> {
    use kube::api::{Patch, PatchParams};
    let patch = |n: i32| json!({"metadata": {"annotations": {"failover.io/original-replicas": n.to_string()}}});
    Api::<Deployment>::namespaced(c.client.clone(), ns)
        .patch("api", &PatchParams::default(), &Patch::Merge(&patch(2)))
        .await
        .with_context(|| format!("annotating Deployment api in {}", c.name))?;
    Api::<StatefulSet>::namespaced(c.client.clone(), ns)
        .patch("db", &PatchParams::default(), &Patch::Merge(&patch(1)))
        .await
        .with_context(|| format!("annotating StatefulSet db in {}", c.name))?;
    Ok(())
}
