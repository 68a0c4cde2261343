//! A whole CONSISTENCY failover east → west, in process: the east and west
//! [`ManagerAdapter`]s run concurrently against the two real kube-apiservers of the test
//! environment, one moto table and two SQS inboxes, with the storage simulator playing the
//! volume driver in both clusters.
//!
//! Each test takes its own namespace (plus one for its Flux objects), table and queue names.
//! A failing test prints both clusters' objects.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use failover_agent::adapter::ManagerAdapter;
use failover_agent::kube_ops::workloads;
use failover_agent::kube_ops::{ClusterClient, flux, traffic};
use failover_agent::seam;
use failover_agent::status::{LABEL_GROUP, LABEL_OPERATION, failover_name, label_value};
use failover_agent::tasks::TasksConfig;
use failover_agent::workflow::{Progress, ProgressEvent, RunReport};
use failover_messages::crd::{
    Failover, FailoverGroup, FailoverGroupSpec, FailoverPhase, FluxKind, FluxRef, GroupRole,
    NetworkKind, NetworkRef, StageTimeouts, VolumeReplicationRef, WorkloadKind, WorkloadRef, crds,
};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::{HandoffState, Mode, Operation, Phase, StepStatus};
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::kube::{Cluster, TestEnv, TestNamespace};
use failover_tests::storage_sim::{
    ANNOTATION_WORKLOAD, DesiredState, SimHandle, SimOptions, StorageSim, volume_replication,
    volume_replications,
};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::core::ApiResource;
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

const GROUP: &str = "shop";
const VOLUMES: [(&str, &str, &str); 2] = [
    ("api-data", "Deployment", "api"),
    ("db-data", "StatefulSet", "db"),
];
const RUN_LIMIT: Duration = Duration::from_secs(240);
const SETTLE: Duration = Duration::from_secs(30);

/// Everything one scenario needs.
struct Scenario {
    env: TestEnv,
    ns: TestNamespace,
    flux_ns: TestNamespace,
    sim: SimHandle,
    store: Store,
    inbox_options: InboxOptions,
    group: GroupRef,
}

impl Scenario {
    fn adapter(&self, cluster: &Cluster) -> ManagerAdapter {
        self.adapter_rereading_every(cluster, Duration::from_secs(2))
    }

    fn adapter_rereading_every(&self, cluster: &Cluster, reread: Duration) -> ManagerAdapter {
        let inbox = Inbox::new(
            self.env.aws.sqs(),
            &cluster.name,
            self.inbox_options.clone(),
        );
        ManagerAdapter::new(&cluster.name, cluster.client.clone(), self.store.clone())
            .with_inbox(inbox)
            .with_tasks_config(TasksConfig {
                reread_interval: reread,
                ..TasksConfig::default()
            })
    }

    /// Registers the group active in east and starts a CONSISTENCY operation east → west.
    async fn start_operation(&self) -> Result<Operation> {
        self.store.register_group(&self.group, "east").await?;
        match self
            .store
            .start_operation(StartRequest {
                group: self.group.clone(),
                source: "east".into(),
                target: "west".into(),
                mode: Mode::Consistency,
                force: false,
                reason: "in-process failover test".into(),
                requested_by: "failover-in-process-test".into(),
                lease_ttl: Duration::from_secs(120),
                op_id: None,
            })
            .await?
        {
            StartOutcome::Started(op) => Ok(op),
            other => bail!("the operation did not start: {other:?}"),
        }
    }
}

/// Sets up the scenario, runs `body`, dumps both clusters on failure and cleans up.
async fn scenario<F>(prefix: &str, body: F) -> Result<()>
where
    F: AsyncFnOnce(&Scenario) -> Result<()>,
{
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c).await?;
    }
    let ns = env.namespace(prefix).await?;
    let flux_ns = env.namespace(&format!("{prefix}-flux")).await?;
    let res = async {
        let sim = StorageSim::start(
            vec![
                ("east".into(), env.east.client.clone()),
                ("west".into(), env.west.client.clone()),
            ],
            SimOptions {
                latency: Duration::from_millis(100),
                violations_file: None,
                namespace: Some(ns.name.clone()),
            },
        )
        .await?;
        let ddb = env.aws.dynamodb();
        let table = env.aws.unique("fo-inproc");
        ensure_table(&ddb, &table).await?;
        let store = Store::new(&ddb, &table);
        let inbox_options = InboxOptions {
            prefix: format!("{}-", env.aws.unique("fo")),
            ..InboxOptions::default()
        };
        let setup = Inbox::new(env.aws.sqs(), "east", inbox_options.clone());
        for c in env.clusters() {
            setup.ensure_queues(&c.name).await?;
        }
        let s = Scenario {
            group: GroupRef::new(&ns.name, GROUP)?,
            env: env.clone(),
            ns: ns.clone(),
            flux_ns: flux_ns.clone(),
            sim,
            store,
            inbox_options,
        };
        Box::pin(create_application(&s)).await?;
        let res = Box::pin(body(&s)).await;
        let violations = s.sim.violations_in(&ns.name);
        s.sim.shutdown();
        res?;
        ensure!(violations.is_empty(), "storage violations: {violations:#?}");
        Ok(())
    }
    .await;
    let out = match res {
        Ok(()) => Ok(()),
        Err(e) => Err(anyhow!("{e:#}\n\n{}", ns.dump().await)),
    };
    ns.cleanup().await;
    flux_ns.cleanup().await;
    out
}

/// Creates the failover CRDs from the Rust types unless present, and waits until they are
/// established.
async fn install_crds(c: &Cluster) -> Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    for crd in crds() {
        let name = crd.metadata.name.clone().context("a CRD without a name")?;
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating CRD {name} in {}", c.name)),
        }
        tokio::time::timeout(
            SETTLE,
            await_condition(api.clone(), &name, conditions::is_crd_established()),
        )
        .await
        .with_context(|| format!("CRD {name} not established in {}", c.name))??;
    }
    Ok(())
}

fn group_spec(flux_ns: &str) -> FailoverGroupSpec {
    FailoverGroupSpec {
        workloads: vec![
            WorkloadRef {
                kind: WorkloadKind::Deployment,
                name: "api".into(),
            },
            WorkloadRef {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
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
        .with_context(|| format!("creating {} in {ns}", ar.kind))?;
    Ok(())
}

/// The application in both clusters: active in east, passive in west.
async fn create_application(s: &Scenario) -> Result<()> {
    let ns = s.ns.name.as_str();
    for c in s.env.clusters() {
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
            &traffic::virtual_service_resource(),
            json!({"metadata": {"name": "api", "annotations": {traffic::DEFAULT_ANNOTATION_KEY: dns}},
                   "spec": {"hosts": ["api.example.com"],
                            "http": [{"route": [{"destination": {"host": "api"}}]}]}}),
        )
        .await?;
        create::<Ingress>(
            Api::namespaced(client.clone(), ns),
            json!({"metadata": {"name": "api", "annotations": {traffic::DEFAULT_ANNOTATION_KEY: dns}},
                   "spec": {"rules": [{"host": "api.example.com", "http": {"paths": [{
                       "path": "/", "pathType": "Prefix",
                       "backend": {"service": {"name": "api", "port": {"number": 80}}}}]}}]}}),
        )
        .await?;
        create_dynamic(
            &client,
            &s.flux_ns.name,
            &flux::resource(FluxKind::HelmRelease),
            json!({"metadata": {"name": "api"},
                   "spec": {"interval": "5m", "suspend": !active,
                            "chart": {"spec": {"chart": "api", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}}}}),
        )
        .await?;
        let mut fg = FailoverGroup::new(GROUP, group_spec(&s.flux_ns.name));
        fg.metadata.namespace = Some(ns.to_owned());
        Api::<FailoverGroup>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &fg)
            .await
            .with_context(|| format!("creating FailoverGroup in {}", c.name))?;
    }
    // The starting point is settled: volumes in their states, east's workloads ready.
    for (volume, _, _) in VOLUMES {
        let v = format!("{}/{volume}", s.ns.name);
        s.sim
            .wait_until_settled(&v, "east", "Primary", SETTLE)
            .await?;
        s.sim
            .wait_until_settled(&v, "west", "Secondary", SETTLE)
            .await?;
    }
    let east = ClusterClient::new(s.env.east.client.clone(), "east");
    workloads::wait_ready(&east, WorkloadKind::Deployment, ns, "api", SETTLE).await?;
    workloads::wait_ready(&east, WorkloadKind::StatefulSet, ns, "db", SETTLE).await?;
    Ok(())
}

// ---- assertions -------------------------------------------------------------------------------

async fn assert_records(s: &Scenario, op: &Operation) -> Result<()> {
    let state = s
        .store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(state.active_cluster == "west", "active cluster: {state:?}");
    ensure!(state.epoch == 1, "epoch: {state:?}");
    ensure!(
        state.op_id.is_none(),
        "operation still in flight: {state:?}"
    );
    ensure!(
        state.promotion_claimed_by.is_none(),
        "claim left: {state:?}"
    );

    let stored = s
        .store
        .get_operation(&op.id)
        .await?
        .context("no operation")?;
    ensure!(stored.phase == Phase::Succeeded, "phase: {stored:?}");
    ensure!(
        stored.promotion_started_at.is_some(),
        "no claim time: {stored:?}"
    );
    let want = BTreeMap::from([
        ("Deployment/api".to_owned(), 2),
        ("StatefulSet/db".to_owned(), 1),
    ]);
    ensure!(
        stored.original_replicas == want,
        "original replicas: {:?}",
        stored.original_replicas
    );

    let handoffs = s.store.list_handoffs(&op.id).await?;
    ensure!(handoffs.len() == VOLUMES.len(), "handoffs: {handoffs:?}");
    for h in &handoffs {
        ensure!(
            h.state == HandoffState::Promoted && h.epoch == 1,
            "handoff: {h:?}"
        );
    }
    let history = s.store.history(&s.group, None).await?;
    ensure!(
        history.len() == 1 && history[0].operation.id == op.id,
        "history: {history:?}"
    );
    Ok(())
}

async fn annotation(
    c: &kube::Client,
    ns: &str,
    ar: &ApiResource,
    name: &str,
    key: &str,
) -> Result<Option<String>> {
    let o = Api::<DynamicObject>::namespaced_with(c.clone(), ns, ar)
        .get(name)
        .await?;
    Ok(o.metadata.annotations.and_then(|a| a.get(key).cloned()))
}

/// One cluster's side: active (`true`) or passive.
async fn assert_side(s: &Scenario, c: &Cluster, active: bool) -> Result<()> {
    let ns = s.ns.name.as_str();
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
    if active {
        let ready = d
            .status
            .as_ref()
            .and_then(|x| x.ready_replicas)
            .unwrap_or(0);
        ensure!(ready == 2, "{}: {:?}", what("api ready"), d.status);
        let ready = st
            .status
            .as_ref()
            .and_then(|x| x.ready_replicas)
            .unwrap_or(0);
        ensure!(ready == 1, "{}: {:?}", what("db ready"), st.status);
    }
    let dns = if active { "dns-controller" } else { "ignore" };
    let key = traffic::DEFAULT_ANNOTATION_KEY;
    let vs = annotation(
        &c.client,
        ns,
        &traffic::virtual_service_resource(),
        "api",
        key,
    )
    .await?;
    ensure!(
        vs.as_deref() == Some(dns),
        "{}: {vs:?}",
        what("VirtualService traffic")
    );
    let ing = Api::<Ingress>::namespaced(c.client.clone(), ns)
        .get("api")
        .await?;
    let ing = ing.metadata.annotations.and_then(|a| a.get(key).cloned());
    ensure!(
        ing.as_deref() == Some(dns),
        "{}: {ing:?}",
        what("Ingress traffic")
    );
    let hr = Api::<DynamicObject>::namespaced_with(
        c.client.clone(),
        &s.flux_ns.name,
        &flux::resource(FluxKind::HelmRelease),
    )
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
                .is_some_and(|a| a.contains_key(flux::ANNOTATION_REQUESTED_AT)),
            "{}: no reconcile requested",
            what("HelmRelease")
        );
    }
    let state = if active { "Primary" } else { "Secondary" };
    for (volume, _, _) in VOLUMES {
        s.sim
            .wait_until_settled(
                &format!("{ns}/{volume}"),
                &c.name,
                state,
                Duration::from_secs(1),
            )
            .await
            .with_context(|| what(volume))?;
    }
    let fg = Api::<FailoverGroup>::namespaced(c.client.clone(), ns)
        .get(GROUP)
        .await?;
    let status = fg.status.unwrap_or_default();
    let role = if active {
        GroupRole::Primary
    } else {
        GroupRole::Standby
    };
    ensure!(
        status.role == Some(role)
            && status.active_cluster.as_deref() == Some("west")
            && status.epoch == Some(1),
        "{}: {status:?}",
        what("FailoverGroup status")
    );
    Ok(())
}

/// The operation's `Failover` in cluster `c`: present, for this operation and group,
/// `Succeeded`, with the last stage of this cluster's run recorded.
async fn assert_failover(
    s: &Scenario,
    c: &Cluster,
    op: &Operation,
    report: &RunReport,
) -> Result<()> {
    let ns = s.ns.name.as_str();
    let what = |x: &str| format!("{x} in {}", c.name);
    let api = Api::<Failover>::namespaced(c.client.clone(), ns);
    let listed = api
        .list(&ListParams::default().labels(&format!(
            "{LABEL_OPERATION}={},{LABEL_GROUP}={GROUP}",
            label_value(&op.id)
        )))
        .await?;
    ensure!(
        listed.items.len() == 1,
        "{}: {:?}",
        what("Failovers of the operation"),
        listed.items
    );
    let fo = api
        .get_opt(&failover_name(&op.id))
        .await?
        .with_context(|| what("no Failover for the operation"))?;
    ensure!(
        fo.spec.target_cluster == "west"
            && fo.spec.groups.len() == 1
            && fo.spec.groups[0].name == GROUP
            && fo.spec.groups[0].namespace.as_deref() == Some(ns)
            && !fo.spec.force,
        "{}: {:?}",
        what("Failover spec"),
        fo.spec
    );
    let status = fo.status.with_context(|| what("Failover without status"))?;
    let last_stage = report
        .stages
        .last()
        .map(|st| st.stage.as_str())
        .with_context(|| what("a run without stages"))?;
    ensure!(
        status.phase == Some(FailoverPhase::Succeeded)
            && status.operation_id.as_deref() == Some(op.id.as_str())
            && status.groups.len() == 1
            && status.groups[0].name == GROUP
            && status.groups[0].phase == Some(FailoverPhase::Succeeded)
            && status.groups[0].stage.as_deref() == Some(last_stage)
            && status.groups[0].task.is_some(),
        "{} (last stage {last_stage}): {status:?}",
        what("Failover status")
    );
    let timings = status
        .timings
        .with_context(|| what("Failover without timings"))?;
    ensure!(
        timings.started_at.is_some()
            && timings.finished_at.is_some()
            && timings.total_seconds.is_some_and(|t| t >= 0.0),
        "{}: {timings:?}",
        what("Failover timings")
    );
    Ok(())
}

async fn with_limit<T>(what: &str, fut: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(RUN_LIMIT, fut)
        .await
        .map_err(|_| anyhow!("{what} did not finish within {RUN_LIMIT:?}"))
}

// ---- tests ------------------------------------------------------------------------------------

#[tokio::test]
async fn consistency_failover_east_to_west_moves_everything_and_records_it() -> Result<()> {
    Box::pin(scenario("fo-inproc", async |s: &Scenario| {
        let op = s.start_operation().await?;
        // Waits for the other cluster re-read only every 60 s on their own, so finishing well
        // within that shows the SQS wake-ups drive the handoff and the completion.
        let reread = Duration::from_secs(60);
        let east = s.adapter_rereading_every(&s.env.east, reread);
        let west = s.adapter_rereading_every(&s.env.west, reread);
        // Watches west's Failover while the operation runs, to see its status live.
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let watcher = tokio::spawn({
            let api = Api::<Failover>::namespaced(s.env.west.client.clone(), &s.ns.name);
            let name = failover_name(&op.id);
            let seen = std::sync::Arc::clone(&seen);
            async move {
                loop {
                    if let Ok(Some(fo)) = api.get_opt(&name).await {
                        let st = fo.status.unwrap_or_default();
                        let at = (st.phase, st.groups.first().and_then(|g| g.stage.clone()));
                        let mut seen = seen.lock().unwrap();
                        if seen.last() != Some(&at) {
                            seen.push(at);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        let started = std::time::Instant::now();
        let (e, w) = with_limit("the failover", async {
            tokio::join!(
                Box::pin(east.process_failover(&op)),
                Box::pin(west.process_failover(&op))
            )
        })
        .await?;
        let e = e.context("east (source) failed")?;
        let w = w.context("west (target) failed")?;
        eprintln!(
            "failover took {:?}: east ran {} steps, west ran {} steps",
            started.elapsed(),
            e.ran().len(),
            w.ran().len()
        );
        ensure!(
            started.elapsed() < Duration::from_secs(30),
            "the waits were not woken by SQS: {:?}",
            started.elapsed()
        );
        ensure!(
            e.skipped().is_empty() && w.skipped().is_empty(),
            "a first run skipped steps"
        );
        assert_records(s, &op).await?;
        assert_side(s, &s.env.east, false).await?;
        assert_side(s, &s.env.west, true).await?;
        assert_failover(s, &s.env.east, &op, &e).await?;
        assert_failover(s, &s.env.west, &op, &w).await?;
        watcher.abort();
        let seen = seen.lock().unwrap().clone();
        eprintln!("west's Failover went through {seen:?}");
        let running_stages: std::collections::BTreeSet<_> = seen
            .iter()
            .filter(|(phase, _)| *phase == Some(FailoverPhase::Running))
            .filter_map(|(_, stage)| stage.clone())
            .collect();
        ensure!(
            running_stages.len() >= 2,
            "west's Failover status was not kept current while it ran: {seen:?}"
        );
        Ok(())
    }))
    .await
}

#[tokio::test]
async fn a_target_killed_after_promoting_resumes_from_the_journal_without_re_promoting()
-> Result<()> {
    Box::pin(scenario("fo-resume", async |s: &Scenario| {
        let op = s.start_operation().await?;
        let east = s.adapter(&s.env.east);
        let east_run = tokio::spawn({
            let op = op.clone();
            async move { east.process_failover(&op).await }
        });

        // The first target run is dropped (the agent "dies") right after the first volume's
        // promotion is journaled DONE.
        let kill_after = "Promote:VolumeReplication/api-data";
        let (tx, mut rx) = seam::channel::<Progress>();
        let west = s.adapter(&s.env.west).with_progress(tx);
        let killed = with_limit("the first target run", async {
            tokio::select! {
                r = west.process_failover(&op) => Err(anyhow!("the target finished before it was killed: {:?}", r.map(|r| r.ran().len()))),
                () = async {
                    while let Some(p) = rx.recv().await {
                        if matches!(&p.event, ProgressEvent::TaskFinished { task, .. } if task == kill_after) {
                            return;
                        }
                    }
                } => Ok(()),
            }
        })
        .await?;
        killed?;
        drop(west);
        let before = s.store.journal(&op.id, "west").await?;
        let claim = before
            .iter()
            .find(|j| j.task == "ClaimPromotion")
            .context("no ClaimPromotion journaled")?;
        ensure!(claim.status == StepStatus::Done, "claim: {claim:?}");
        let state = s.store.get_group_state(&s.group).await?.context("no state")?;
        ensure!(
            state.op_id.as_deref() == Some(op.id.as_str()) && state.promotion_claimed_by.as_deref() == Some("west"),
            "after the kill: {state:?}"
        );

        // A new target agent resumes the same operation.
        let resumed = with_limit("the resumed target run", s.adapter(&s.env.west).process_failover(&op))
            .await?
            .context("the resumed target failed")?;
        let skipped = resumed.skipped();
        let ran = resumed.ran();
        eprintln!("resumed target: skipped {skipped:?}, ran {ran:?}");
        for done in ["ValidateOperation", "ClaimPromotion", kill_after] {
            ensure!(skipped.contains(&done), "{done} was not skipped: skipped {skipped:?}");
            ensure!(!ran.contains(&done), "{done} ran again: {ran:?}");
        }
        ensure!(ran.contains(&"CompleteOperation"), "ran {ran:?}");
        let after = s.store.journal(&op.id, "west").await?;
        for j in after.iter().filter(|j| j.task == "ClaimPromotion" || j.task == kill_after) {
            ensure!(j.attempts == 1 && j.status == StepStatus::Done, "re-attempted: {j:?}");
        }

        let source = with_limit("the source", east_run).await??.context("east (source) failed")?;
        ensure!(source.ran().contains(&"MarkAllReady"), "source ran {:?}", source.ran());
        assert_records(s, &op).await?;
        assert_side(s, &s.env.east, false).await?;
        assert_side(s, &s.env.west, true).await?;
        Ok(())
    }))
    .await
}
