//! The agent's Kubernetes operations against the real kube-apiservers of the test
//! environment (cluster `east`).
//!
//! Each test takes its own namespace and, where volumes are involved, its own storage
//! simulator scoped to it, so the tests run in parallel. A failing test prints the
//! namespace's objects in both clusters.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use failover_agent::kube_ops::flux::{self, ANNOTATION_REQUESTED_AT};
use failover_agent::kube_ops::traffic::{self, TrafficConfig, TrafficState};
use failover_agent::kube_ops::volumes::{self, ReplicationState, VolumeState};
use failover_agent::kube_ops::workloads;
use failover_agent::kube_ops::{
    ANNOTATION_ORIGINAL_REPLICAS, Cause, Change, ClusterClient, KubeOpsError, Stamp,
};
use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};
use failover_tests::kube::{TestEnv, TestNamespace, pod_names};
use failover_tests::storage_sim::{
    DesiredState, SimHandle, SimOptions, StorageSim, create_volume_replication, set_degraded,
    set_stuck,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const SETTLE: Duration = Duration::from_secs(15);

/// Runs `body` in a fresh namespace; on failure the error carries the namespace dump. The
/// namespace is deleted either way.
async fn in_namespace<F, Fut>(prefix: &str, body: F) -> Result<()>
where
    F: FnOnce(TestEnv, String) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let env = TestEnv::attach().await?;
    let ns: TestNamespace = env.namespace(prefix).await?;
    let res = body(env, ns.name.clone()).await;
    let out = match res {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow!("{e:#}\n\n{}", ns.dump().await)),
    };
    ns.cleanup().await;
    out
}

/// Runs `body` with a storage simulator in `east`, scoped to a fresh namespace; fails on
/// any violation the simulator recorded.
async fn with_sim<F, Fut>(prefix: &str, body: F) -> Result<()>
where
    F: FnOnce(ClusterClient, String, Arc<SimHandle>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    in_namespace(prefix, |env, ns| async move {
        let sim = Arc::new(
            StorageSim::start(
                vec![("east".into(), env.east.client.clone())],
                SimOptions {
                    latency: Duration::from_millis(100),
                    violations_file: None,
                    namespace: Some(ns.clone()),
                },
            )
            .await?,
        );
        let res = body(east(&env), ns.clone(), sim.clone()).await;
        let violations = sim.violations_in(&ns);
        sim.shutdown();
        res?;
        ensure!(violations.is_empty(), "storage violations: {violations:#?}");
        Ok(())
    })
    .await
}

fn east(env: &TestEnv) -> ClusterClient {
    ClusterClient::new(env.east.client.clone(), "east")
}

fn annotations_of(meta: &kube::api::ObjectMeta) -> BTreeMap<String, String> {
    meta.annotations.clone().unwrap_or_default()
}

fn check_stamp(what: &str, ann: &BTreeMap<String, String>, stamp: &Stamp) -> Result<()> {
    ensure!(
        ann.get("failover.io/epoch") == Some(&stamp.epoch.to_string()),
        "{what}: failover.io/epoch is {:?}, want {}",
        ann.get("failover.io/epoch"),
        stamp.epoch
    );
    ensure!(
        ann.get("failover.io/operation") == Some(&stamp.operation),
        "{what}: failover.io/operation is {:?}, want {}",
        ann.get("failover.io/operation"),
        stamp.operation
    );
    Ok(())
}

async fn create_dynamic(
    cc: &ClusterClient,
    ns: &str,
    ar: &ApiResource,
    name: &str,
    annotations: Value,
    spec: Value,
) -> Result<DynamicObject> {
    let mut obj = DynamicObject::new(name, ar);
    obj.metadata.annotations = serde_json::from_value(annotations)?;
    obj.data = json!({ "spec": spec });
    Api::<DynamicObject>::namespaced_with(cc.client.clone(), ns, ar)
        .create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("creating {} {ns}/{name}", ar.kind))
}

// ---- traffic --------------------------------------------------------------------------------

/// Switches `kind/name` off then on, each twice, and checks the annotations after each run.
async fn traffic_off_and_on(
    cc: &ClusterClient,
    config: &TrafficConfig,
    kind: NetworkKind,
    ns: &str,
    name: &str,
    read: impl Fn() -> std::pin::Pin<
        Box<dyn Future<Output = Result<(BTreeMap<String, String>, String)>> + Send>,
    >,
) -> Result<()> {
    let key = config.annotation_key.as_str();
    let off = Stamp::new(3, "op-off");
    let on = Stamp::new(4, "op-on");
    for (state, stamp, value) in [
        (TrafficState::Off, &off, "ignore"),
        (TrafficState::On, &on, "dns-controller"),
    ] {
        let first = traffic::set_traffic(cc, config, kind, ns, name, state, stamp).await?;
        ensure!(first == Change::Applied, "first {state}: {first:?}");
        let (ann, rv) = read().await?;
        ensure!(
            ann.get(key).map(String::as_str) == Some(value),
            "{state}: {key} = {:?}",
            ann.get(key)
        );
        check_stamp(&format!("{name} after {state}"), &ann, stamp)?;

        let second = traffic::set_traffic(cc, config, kind, ns, name, state, stamp).await?;
        ensure!(second == Change::Unchanged, "second {state}: {second:?}");
        let (ann2, rv2) = read().await?;
        ensure!(
            ann2 == ann && rv2 == rv,
            "second {state} changed the object: {ann2:?} (rv {rv} -> {rv2})"
        );
        ensure!(
            traffic::get_traffic(cc, config, kind, ns, name).await? == Some(state),
            "get_traffic after {state}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn traffic_switches_a_virtual_service_off_and_on_and_a_second_run_changes_nothing()
-> Result<()> {
    in_namespace("ops-vs", |env, ns| async move {
        let cc = east(&env);
        let ar = traffic::virtual_service_resource();
        create_dynamic(
            &cc,
            &ns,
            &ar,
            "orders",
            json!({traffic::DEFAULT_ANNOTATION_KEY: "dns-controller", "keep": "me"}),
            json!({"hosts": ["orders.example.com"], "http": [{"route": [{"destination": {"host": "orders"}}]}]}),
        )
        .await?;
        let api: Api<DynamicObject> = Api::namespaced_with(cc.client.clone(), &ns, &ar);
        let read = move || {
            let api = api.clone();
            Box::pin(async move {
                let o = api.get("orders").await?;
                Ok((annotations_of(&o.metadata), o.metadata.resource_version.unwrap_or_default()))
            }) as std::pin::Pin<Box<dyn Future<Output = Result<_>> + Send>>
        };
        traffic_off_and_on(&cc, &TrafficConfig::default(), NetworkKind::VirtualService, &ns, "orders", &read).await?;
        let (ann, _) = read().await?;
        ensure!(ann.get("keep").map(String::as_str) == Some("me"), "other annotations lost: {ann:?}");
        Ok(())
    })
    .await
}

fn ingress(name: &str) -> Result<Ingress> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"rules": [{"host": "admin.example.com", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "admin", "port": {"number": 80}}}
        }]}}]}
    }))?)
}

#[tokio::test]
async fn traffic_switches_an_ingress_off_and_on_and_a_second_run_changes_nothing() -> Result<()> {
    in_namespace("ops-ing", |env, ns| async move {
        let cc = east(&env);
        let api: Api<Ingress> = Api::namespaced(cc.client.clone(), &ns);
        api.create(&PostParams::default(), &ingress("admin")?)
            .await?;
        let read = {
            let api = api.clone();
            move || {
                let api = api.clone();
                Box::pin(async move {
                    let o = api.get("admin").await?;
                    Ok((
                        annotations_of(&o.metadata),
                        o.metadata.resource_version.unwrap_or_default(),
                    ))
                }) as std::pin::Pin<Box<dyn Future<Output = Result<_>> + Send>>
            }
        };
        traffic_off_and_on(
            &cc,
            &TrafficConfig::default(),
            NetworkKind::Ingress,
            &ns,
            "admin",
            &read,
        )
        .await?;

        // A configured key is used instead of the default one.
        let custom = TrafficConfig {
            annotation_key: "external-dns.kubernetes.io/controller".into(),
        };
        api.create(&PostParams::default(), &ingress("admin2")?)
            .await?;
        let stamp = Stamp::new(5, "op-custom");
        traffic::set_traffic(
            &cc,
            &custom,
            NetworkKind::Ingress,
            &ns,
            "admin2",
            TrafficState::Off,
            &stamp,
        )
        .await?;
        let ann = annotations_of(&api.get("admin2").await?.metadata);
        ensure!(
            ann.get("external-dns.kubernetes.io/controller")
                .map(String::as_str)
                == Some("ignore"),
            "{ann:?}"
        );
        ensure!(
            !ann.contains_key(traffic::DEFAULT_ANNOTATION_KEY),
            "default key written: {ann:?}"
        );
        check_stamp("admin2", &ann, &stamp)?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn traffic_on_a_missing_object_names_it_and_the_cluster() -> Result<()> {
    in_namespace("ops-miss", |env, ns| async move {
        let cc = east(&env);
        let err = traffic::set_traffic(
            &cc,
            &TrafficConfig::default(),
            NetworkKind::VirtualService,
            &ns,
            "nope",
            TrafficState::Off,
            &Stamp::new(1, "op"),
        )
        .await
        .err()
        .context("switching a missing VirtualService succeeded")?;
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(
            matches!(
                err,
                KubeOpsError::PatchTraffic {
                    source: Cause::NotFound,
                    ..
                }
            ),
            "{err:?}"
        );
        ensure!(
            m.contains(&format!("VirtualService {ns}/nope in cluster east")),
            "{m}"
        );
        Ok(())
    })
    .await
}

// ---- Flux -----------------------------------------------------------------------------------

#[tokio::test]
async fn flux_suspends_and_resumes_helm_releases_and_kustomizations() -> Result<()> {
    in_namespace("ops-flux", |env, ns| async move {
        let cc = east(&env);
        for kind in [FluxKind::HelmRelease, FluxKind::Kustomization] {
            let ar = flux::resource(kind);
            let name = format!("app-{}", flux::kind_name(kind).to_lowercase());
            create_dynamic(
                &cc,
                &ns,
                &ar,
                &name,
                json!({}),
                json!({"interval": "5m", "suspend": false}),
            )
            .await?;
            let api: Api<DynamicObject> = Api::namespaced_with(cc.client.clone(), &ns, &ar);

            let stop = Stamp::new(7, "op-stop");
            ensure!(flux::suspend_flux(&cc, kind, &ns, &name, &stop).await? == Change::Applied);
            let o = api.get(&name).await?;
            ensure!(
                o.data["spec"]["suspend"] == json!(true),
                "{name}: {:?}",
                o.data
            );
            ensure!(
                o.data["spec"]["interval"] == json!("5m"),
                "{name}: spec lost: {:?}",
                o.data
            );
            check_stamp(&name, &annotations_of(&o.metadata), &stop)?;
            ensure!(flux::suspend_flux(&cc, kind, &ns, &name, &stop).await? == Change::Unchanged);

            let start = Stamp::new(8, "op-start");
            let now = jiff::Timestamp::now();
            ensure!(
                flux::resume_flux(&cc, kind, &ns, &name, &start, now).await? == Change::Applied
            );
            let o = api.get(&name).await?;
            let ann = annotations_of(&o.metadata);
            ensure!(
                o.data["spec"]["suspend"] == json!(false),
                "{name}: {:?}",
                o.data
            );
            let requested = ann
                .get(ANNOTATION_REQUESTED_AT)
                .with_context(|| format!("{name}: no requestedAt: {ann:?}"))?;
            ensure!(
                requested.parse::<jiff::Timestamp>()? == now,
                "{name}: requestedAt {requested} != {now}"
            );
            check_stamp(&name, &ann, &start)?;
            // A second run requests no second reconcile.
            let later = now + jiff::SignedDuration::from_secs(5);
            ensure!(
                flux::resume_flux(&cc, kind, &ns, &name, &start, later).await? == Change::Unchanged
            );
            let again = annotations_of(&api.get(&name).await?.metadata);
            ensure!(
                again.get(ANNOTATION_REQUESTED_AT) == Some(requested),
                "{name}: requestedAt changed: {again:?}"
            );
        }
        Ok(())
    })
    .await
}

// ---- workloads ------------------------------------------------------------------------------

fn pod_template(app: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}
    })
}

async fn create_workload(
    cc: &ClusterClient,
    kind: WorkloadKind,
    ns: &str,
    name: &str,
    replicas: i32,
) -> Result<()> {
    let spec = json!({
        "replicas": replicas,
        "selector": {"matchLabels": {"app": name}},
        "template": pod_template(name),
    });
    match kind {
        WorkloadKind::Deployment => {
            let d: Deployment =
                serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
            Api::<Deployment>::namespaced(cc.client.clone(), ns)
                .create(&PostParams::default(), &d)
                .await?;
        }
        WorkloadKind::StatefulSet => {
            let mut spec = spec;
            spec["serviceName"] = json!(name);
            spec["podManagementPolicy"] = json!("Parallel");
            let s: StatefulSet =
                serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?;
            Api::<StatefulSet>::namespaced(cc.client.clone(), ns)
                .create(&PostParams::default(), &s)
                .await?;
        }
        WorkloadKind::CronJob => anyhow::bail!("not a scalable kind"),
    }
    Ok(())
}

/// Scale down (twice), pods gone, restore (twice), ready: for one Deployment or StatefulSet.
async fn scale_cycle(
    cc: &ClusterClient,
    kind: WorkloadKind,
    ns: &str,
    name: &str,
    replicas: u32,
) -> Result<()> {
    create_workload(cc, kind, ns, name, replicas as i32).await?;
    let view = workloads::wait_ready(cc, kind, ns, name, WAIT).await?;
    ensure!(
        view.ready_replicas == replicas,
        "{name} before: {}",
        view.describe()
    );
    ensure!(
        pod_names(&cc.client, ns, &format!("app={name}"))
            .await?
            .len()
            == replicas as usize
    );

    let stamp = Stamp::new(11, "op-down");
    let down = workloads::scale_down(cc, kind, ns, name, &stamp).await?;
    ensure!(
        down.replicas == replicas && down.change == Change::Applied,
        "first scale-down: {down:?}"
    );
    let v = workloads::get_workload(cc, kind, ns, name).await?;
    ensure!(v.replicas == 0, "{name}: spec.replicas {}", v.replicas);
    ensure!(
        v.annotations.get(ANNOTATION_ORIGINAL_REPLICAS) == Some(&replicas.to_string()),
        "{name}: {:?}",
        v.annotations
    );
    check_stamp(name, &v.annotations, &stamp)?;

    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let log = seen.clone();
    let started = Instant::now();
    workloads::wait_pods_gone(cc, kind, ns, name, WAIT, move |left| {
        log.lock().unwrap().push(left.to_vec())
    })
    .await?;
    let left = pod_names(&cc.client, ns, &format!("app={name}")).await?;
    ensure!(
        left.is_empty(),
        "{name}: pods left after wait_pods_gone: {left:?}"
    );
    let reports = seen.lock().unwrap().clone();
    ensure!(
        reports.last().is_some_and(Vec::is_empty),
        "{name}: progress reports {reports:?}"
    );
    eprintln!(
        "{kind:?} {name}: pods gone after {:?}; progress {reports:?}",
        started.elapsed()
    );

    // The second run finds 0 replicas and keeps the recorded count.
    let again = workloads::scale_down(cc, kind, ns, name, &Stamp::new(12, "op-down-again")).await?;
    ensure!(
        again.replicas == replicas && again.change == Change::Unchanged,
        "second scale-down: {again:?}"
    );
    let v = workloads::get_workload(cc, kind, ns, name).await?;
    ensure!(
        v.annotations.get(ANNOTATION_ORIGINAL_REPLICAS) == Some(&replicas.to_string()),
        "{name} after 2nd: {:?}",
        v.annotations
    );
    check_stamp(name, &v.annotations, &stamp)?;
    workloads::wait_pods_gone(cc, kind, ns, name, WAIT, |_| {}).await?;

    let up = Stamp::new(11, "op-up");
    let restored = workloads::restore_replicas(cc, kind, ns, name, None, None, &up).await?;
    ensure!(
        restored.replicas == replicas && restored.change == Change::Applied,
        "restore: {restored:?}"
    );
    let restored = workloads::restore_replicas(cc, kind, ns, name, None, None, &up).await?;
    ensure!(
        restored.change == Change::Unchanged,
        "second restore: {restored:?}"
    );
    let view = workloads::wait_ready(cc, kind, ns, name, WAIT).await?;
    ensure!(
        view.ready_replicas == replicas && view.replicas == replicas,
        "{name} after restore: {}",
        view.describe()
    );
    check_stamp(name, &view.annotations, &up)?;
    Ok(())
}

#[tokio::test]
async fn deployment_scale_down_records_replicas_waits_for_pods_and_restores() -> Result<()> {
    in_namespace("ops-dep", |env, ns| async move {
        scale_cycle(&east(&env), WorkloadKind::Deployment, &ns, "api", 3).await
    })
    .await
}

#[tokio::test]
async fn statefulset_scale_down_records_replicas_waits_for_pods_and_restores() -> Result<()> {
    in_namespace("ops-sts", |env, ns| async move {
        scale_cycle(&east(&env), WorkloadKind::StatefulSet, &ns, "db", 2).await
    })
    .await
}

#[tokio::test]
async fn restore_to_an_explicit_count_and_a_short_wait_names_the_pods_left() -> Result<()> {
    in_namespace("ops-dep2", |env, ns| async move {
        let cc = east(&env);
        create_workload(&cc, WorkloadKind::Deployment, &ns, "web", 1).await?;
        workloads::wait_ready(&cc, WorkloadKind::Deployment, &ns, "web", WAIT).await?;
        let s = workloads::restore_replicas(
            &cc,
            WorkloadKind::Deployment,
            &ns,
            "web",
            Some(2),
            None,
            &Stamp::new(1, "op"),
        )
        .await?;
        ensure!(s.replicas == 2 && s.change == Change::Applied, "{s:?}");
        let v = workloads::wait_ready(&cc, WorkloadKind::Deployment, &ns, "web", WAIT).await?;
        ensure!(v.ready_replicas == 2, "{}", v.describe());
        // Not scaled down: the pods stay, and the timeout names them.
        let err = workloads::wait_pods_gone(
            &cc,
            WorkloadKind::Deployment,
            &ns,
            "web",
            Duration::from_millis(1500),
            |_| {},
        )
        .await
        .err()
        .context("pods of a running Deployment reported gone")?;
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(err.is_timeout(), "{err:?}");
        ensure!(
            m.contains(&format!("Deployment {ns}/web in cluster east"))
                && m.contains("pods left: web-"),
            "{m}"
        );
        // No recorded count and none given: a clear error.
        create_workload(&cc, WorkloadKind::Deployment, &ns, "bare", 1).await?;
        let err = workloads::restore_replicas(
            &cc,
            WorkloadKind::Deployment,
            &ns,
            "bare",
            None,
            None,
            &Stamp::new(1, "op"),
        )
        .await
        .err()
        .context("restore without a count succeeded")?;
        ensure!(
            err.to_string().contains(ANNOTATION_ORIGINAL_REPLICAS),
            "{err}"
        );
        ensure!(err.is_permanent(), "retrying cannot find a count: {err:?}");
        // The count the FailoverGroup declares is the last fallback.
        let s = workloads::restore_replicas(
            &cc,
            WorkloadKind::Deployment,
            &ns,
            "bare",
            None,
            Some(2),
            &Stamp::new(1, "op"),
        )
        .await?;
        ensure!(s.replicas == 2, "{s:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn cronjob_suspends_resumes_and_waits_for_its_running_jobs() -> Result<()> {
    in_namespace("ops-cron", |env, ns| async move {
        let cc = east(&env);
        let cronjobs: Api<CronJob> = Api::namespaced(cc.client.clone(), &ns);
        let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "report"},
            "spec": {"schedule": "0 0 1 1 *", "suspend": false, "jobTemplate": {"spec": {"template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "registry.example/report:1"}]}
            }}}}
        }))?;
        let cj = cronjobs.create(&PostParams::default(), &cj).await?;

        let stop = Stamp::new(2, "op-stop");
        ensure!(workloads::suspend_cronjob(&cc, &ns, "report", &stop).await? == Change::Applied);
        ensure!(workloads::suspend_cronjob(&cc, &ns, "report", &stop).await? == Change::Unchanged);
        let got = cronjobs.get("report").await?;
        ensure!(got.spec.suspend == Some(true), "suspend: {:?}", got.spec.suspend);
        check_stamp("report", &annotations_of(&got.metadata), &stop)?;

        // No Jobs: nothing to wait for.
        workloads::wait_jobs_finished(&cc, &ns, "report", Duration::from_secs(5), |_| {}).await?;
        workloads::wait_pods_gone(&cc, WorkloadKind::CronJob, &ns, "report", Duration::from_secs(5), |_| {}).await?;

        // A running Job of the CronJob (held suspended so it cannot finish), in its active list.
        let job: Job = serde_json::from_value(json!({
            "metadata": {"name": "report-1", "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "CronJob", "name": "report",
                "uid": cj.metadata.uid.clone().unwrap_or_default(), "controller": true, "blockOwnerDeletion": true
            }]},
            "spec": {"suspend": true, "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "registry.example/report:1"}]}
            }}
        }))?;
        let jobs: Api<Job> = Api::namespaced(cc.client.clone(), &ns);
        let job = jobs.create(&PostParams::default(), &job).await?;
        cronjobs
            .patch_status("report", &PatchParams::default(), &Patch::Merge(json!({"status": {"active": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": "report-1", "namespace": ns,
                "uid": job.metadata.uid.clone().unwrap_or_default()
            }]}})))
            .await?;

        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let log = seen.clone();
        let err = workloads::wait_jobs_finished(&cc, &ns, "report", Duration::from_secs(2), move |a| log.lock().unwrap().push(a.to_vec()))
            .await
            .err()
            .context("a running Job was reported finished")?;
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(matches!(err, KubeOpsError::WaitJobsFinished { .. }) && err.is_timeout(), "{err:?}");
        ensure!(m.contains(&format!("CronJob {ns}/report in cluster east")) && m.contains("active Jobs: report-1"), "{m}");
        ensure!(seen.lock().unwrap().contains(&vec!["report-1".to_string()]), "progress: {:?}", seen.lock().unwrap());

        // Let the Job run: kwok completes its pod, the CronJob controller clears `active`.
        jobs.patch("report-1", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": false}}))).await?;
        workloads::wait_jobs_finished(&cc, &ns, "report", WAIT, |_| {}).await?;
        workloads::wait_pods_gone(&cc, WorkloadKind::CronJob, &ns, "report", WAIT, |_| {}).await?;

        let start = Stamp::new(3, "op-start");
        ensure!(workloads::resume_cronjob(&cc, &ns, "report", &start).await? == Change::Applied);
        ensure!(workloads::resume_cronjob(&cc, &ns, "report", &start).await? == Change::Unchanged);
        let got = cronjobs.get("report").await?;
        ensure!(got.spec.suspend == Some(false), "suspend: {:?}", got.spec.suspend);
        check_stamp("report", &annotations_of(&got.metadata), &start)?;
        Ok(())
    })
    .await
}

// ---- volumes --------------------------------------------------------------------------------

/// Creates VolumeReplication `name` asking for `state` and waits until it is settled.
async fn settled_volume(
    cc: &ClusterClient,
    ns: &str,
    name: &str,
    state: DesiredState,
    expected: VolumeState,
) -> Result<()> {
    create_volume_replication(&cc.client, ns, name, state, &format!("{name}-pvc")).await?;
    volumes::wait_state(cc, ns, name, expected, SETTLE).await?;
    Ok(())
}

/// Marks volume `name` stuck in the storage simulator, then asks it for `state`: the
/// request is recorded, the storage never gets there (until unstuck).
async fn ask_while_stuck(
    cc: &ClusterClient,
    ns: &str,
    name: &str,
    state: ReplicationState,
    stamp: &Stamp,
) -> Result<()> {
    set_stuck(&cc.client, ns, name, true).await?;
    volumes::set_replication_state(cc, ns, name, state, stamp).await?;
    Ok(())
}

#[tokio::test]
async fn volume_demote_then_promote_settle_and_a_second_run_is_a_no_op() -> Result<()> {
    with_sim("ops-vol", |cc, ns, _sim| async move {
        settled_volume(
            &cc,
            &ns,
            "data",
            DesiredState::Primary,
            VolumeState::Primary,
        )
        .await?;
        let before = volumes::observe(&cc, &ns, "data").await?;

        for (desired, expected, stamp) in [
            (
                ReplicationState::Secondary,
                VolumeState::Secondary,
                Stamp::new(21, "op-demote"),
            ),
            (
                ReplicationState::Primary,
                VolumeState::Primary,
                Stamp::new(22, "op-promote"),
            ),
        ] {
            let set = volumes::set_replication_state(&cc, &ns, "data", desired, &stamp).await?;
            ensure!(
                set.change == Change::Applied && set.generation > before.generation,
                "{desired}: {set:?}"
            );
            let obs = volumes::wait_state(&cc, &ns, "data", expected, SETTLE).await?;
            ensure!(
                obs.state.as_deref() == Some(expected.as_status())
                    && obs.completed
                    && !obs.degraded,
                "{obs:?}"
            );
            ensure!(
                obs.generation == set.generation && obs.observed_generation >= Some(set.generation),
                "{obs:?}"
            );

            // Second run: no new generation, and the wait returns at once.
            let again = volumes::set_replication_state(&cc, &ns, "data", desired, &stamp).await?;
            ensure!(
                again.change == Change::Unchanged && again.generation == set.generation,
                "{desired} again: {again:?}"
            );
            let t = Instant::now();
            volumes::wait_state(&cc, &ns, "data", expected, SETTLE).await?;
            ensure!(
                t.elapsed() < Duration::from_secs(5),
                "settled wait took {:?}",
                t.elapsed()
            );

            let vr = failover_tests::storage_sim::volume_replications(&cc.client, &ns)
                .get("data")
                .await?;
            check_stamp("data", &annotations_of(&vr.metadata), &stamp)?;
        }
        let now = volumes::observe(&cc, &ns, "data").await?;
        ensure!(
            now.state.as_deref() == Some("Primary")
                && now.completed
                && !now.degraded
                && now.generation_observed(),
            "{now:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stuck_volume_makes_wait_state_time_out_naming_the_volume() -> Result<()> {
    with_sim("ops-stuck", |cc, ns, _sim| async move {
        settled_volume(
            &cc,
            &ns,
            "stuck",
            DesiredState::Primary,
            VolumeState::Primary,
        )
        .await?;
        ask_while_stuck(
            &cc,
            &ns,
            "stuck",
            ReplicationState::Secondary,
            &Stamp::new(1, "op"),
        )
        .await?;
        let err = volumes::wait_state(
            &cc,
            &ns,
            "stuck",
            VolumeState::Secondary,
            Duration::from_secs(2),
        )
        .await
        .err()
        .context("a stuck volume settled")?;
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(
            matches!(
                err,
                KubeOpsError::WaitVolumeState {
                    expected: "Secondary",
                    ..
                }
            ) && err.is_timeout(),
            "{err:?}"
        );
        ensure!(
            m.contains(&format!("VolumeReplication {ns}/stuck in cluster east")),
            "{m}"
        );
        ensure!(
            m.contains("status.state Secondary")
                && m.contains("last seen:")
                && m.contains("(Stuck)"),
            "{m}"
        );
        Ok(())
    })
    .await
}

/// A wait still pending after its first read follows the object through its watch: the
/// storage catching up ends it as soon as it does, and a deletion ends the next at once
/// (not at its deadline).
#[tokio::test]
async fn a_pending_wait_sees_later_changes_and_a_deletion() -> Result<()> {
    with_sim("ops-follow", |cc, ns, _sim| async move {
        settled_volume(
            &cc,
            &ns,
            "late",
            DesiredState::Primary,
            VolumeState::Primary,
        )
        .await?;
        ask_while_stuck(
            &cc,
            &ns,
            "late",
            ReplicationState::Secondary,
            &Stamp::new(1, "op"),
        )
        .await?;
        let wait = volumes::wait_state(&cc, &ns, "late", VolumeState::Secondary, SETTLE);
        let unstick = async {
            // Long enough for the wait's read to find the volume still Primary.
            tokio::time::sleep(Duration::from_millis(500)).await;
            set_stuck(&cc.client, &ns, "late", false).await
        };
        let (settled, unstuck) = tokio::join!(wait, unstick);
        unstuck?;
        let obs = settled.context("the volume settled after the wait's read")?;
        ensure!(obs.state.as_deref() == Some("Secondary"), "{obs:?}");

        ask_while_stuck(
            &cc,
            &ns,
            "late",
            ReplicationState::Primary,
            &Stamp::new(2, "op"),
        )
        .await?;
        let t = Instant::now();
        let wait = volumes::wait_state(&cc, &ns, "late", VolumeState::Primary, SETTLE);
        let delete = async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            failover_tests::storage_sim::volume_replications(&cc.client, &ns)
                .delete("late", &Default::default())
                .await
        };
        let (gone, deleted) = tokio::join!(wait, delete);
        deleted?;
        let err = gone.err().context("a deleted volume settled")?;
        ensure!(
            matches!(
                err,
                KubeOpsError::WaitVolumeState {
                    source: Cause::Deleted { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        ensure!(
            t.elapsed() < Duration::from_secs(10),
            "the deletion took {:?} to end the wait",
            t.elapsed()
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_degraded_volume_fails_wait_state_fast() -> Result<()> {
    with_sim("ops-degr", |cc, ns, _sim| async move {
        settled_volume(
            &cc,
            &ns,
            "broken",
            DesiredState::Primary,
            VolumeState::Primary,
        )
        .await?;
        set_degraded(&cc.client, &ns, "broken", true).await?;
        volumes::set_replication_state(
            &cc,
            &ns,
            "broken",
            ReplicationState::Secondary,
            &Stamp::new(1, "op"),
        )
        .await?;
        let t = Instant::now();
        let err = volumes::wait_state(
            &cc,
            &ns,
            "broken",
            VolumeState::Secondary,
            Duration::from_secs(60),
        )
        .await
        .err()
        .context("a degraded volume settled")?;
        ensure!(
            t.elapsed() < Duration::from_secs(10),
            "degraded took {:?} to fail",
            t.elapsed()
        );
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(
            matches!(
                err,
                KubeOpsError::WaitVolumeState {
                    source: Cause::Degraded { .. },
                    ..
                }
            ),
            "{err:?}"
        );
        ensure!(
            m.contains(&format!("VolumeReplication {ns}/broken in cluster east"))
                && m.contains("Degraded"),
            "{m}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn resync_is_followed_to_completion() -> Result<()> {
    with_sim("ops-resync", |cc, ns, _sim| async move {
        settled_volume(
            &cc,
            &ns,
            "old",
            DesiredState::Secondary,
            VolumeState::Secondary,
        )
        .await?;
        let set = volumes::set_replication_state(
            &cc,
            &ns,
            "old",
            ReplicationState::Resync,
            &Stamp::new(4, "op"),
        )
        .await?;
        ensure!(set.change == Change::Applied);
        let obs = volumes::wait_resynced(&cc, &ns, "old", SETTLE).await?;
        ensure!(
            obs.state.as_deref() == Some("Secondary") && !obs.resyncing && obs.completed,
            "{obs:?}"
        );
        ensure!(obs.generation == set.generation, "{obs:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn verify_reports_a_missing_pvc_and_a_volume_that_is_not_primary() -> Result<()> {
    with_sim("ops-verify", |cc, ns, _sim| async move {
        settled_volume(&cc, &ns, "data", DesiredState::Primary, VolumeState::Primary).await?;
        let err = volumes::verify(&cc, &ns, "data").await.err().context("verify passed without a PVC")?;
        let m = err.to_string();
        eprintln!("expected error: {m}");
        ensure!(matches!(err, KubeOpsError::VerifyVolume { source: Cause::Verify { .. }, .. }), "{err:?}");
        ensure!(m.contains("PVC missing") && m.contains(&format!("{ns}/data-pvc")), "{m}");

        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-pvc"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))?;
        Api::<PersistentVolumeClaim>::namespaced(cc.client.clone(), &ns).create(&PostParams::default(), &pvc).await?;
        let obs = volumes::verify(&cc, &ns, "data").await?;
        ensure!(obs.state.as_deref() == Some("Primary"), "{obs:?}");

        settled_volume(&cc, &ns, "standby", DesiredState::Secondary, VolumeState::Secondary).await?;
        let err = volumes::verify(&cc, &ns, "standby").await.err().context("a Secondary volume verified")?;
        ensure!(err.to_string().contains("not Primary"), "{err}");
        Ok(())
    })
    .await
}
