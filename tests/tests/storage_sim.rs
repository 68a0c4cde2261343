//! The storage simulator against the two real kube-apiservers of the test environment.
//!
//! Each test takes its own namespace (same name in east and west) and runs its own
//! simulator scoped to it, so the tests run in parallel in one process. A failing test
//! prints the namespace's objects in both clusters and the violations recorded.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use failover_tests::kube::{Cluster, TestEnv, TestNamespace, pod_names, wait_for};
use failover_tests::storage_sim::{
    COND_COMPLETED, COND_DEGRADED, COND_RESYNCING, DesiredState, SimHandle, SimOptions, StorageSim,
    Violation, VrView, create_volume_replication, get_volume, read_violations_file, set_degraded,
    set_latency, set_replication_state, set_stuck, set_workload, volume_replications, wait_settled,
    wait_volume,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig, NamedAuthInfo};
use serde_json::json;

const SETTLE: Duration = Duration::from_secs(15);

/// What a test body gets: the environment, its namespace and its own simulator.
struct Ctx {
    env: TestEnv,
    ns: String,
    sim: SimHandle,
}

impl Ctx {
    fn east(&self) -> &Client {
        &self.env.east.client
    }

    fn west(&self) -> &Client {
        &self.env.west.client
    }

    async fn settled(&self, client: &Client, name: &str, state: &str) -> Result<VrView> {
        wait_settled(client, &self.ns, name, state, SETTLE).await
    }
}

/// Runs `body` in a fresh namespace; on failure the error carries the namespace dump. The
/// namespace is deleted either way.
async fn in_namespace<F, Fut>(prefix: &str, body: F) -> Result<()>
where
    F: FnOnce(TestEnv, TestNamespace) -> Fut,
    Fut: Future<Output = Result<Vec<Violation>>>,
{
    let env = TestEnv::attach().await?;
    let ns = env.namespace(prefix).await?;
    let res = body(env, ns.clone()).await;
    let out = match res {
        Ok(_) => Ok(()),
        Err(e) => {
            let dump = ns.dump().await;
            Err(anyhow!("{e:#}\n\n{dump}"))
        }
    };
    ns.cleanup().await;
    out
}

/// Runs `body` with a simulator (latency `latency`) scoped to a fresh namespace.
async fn with_sim<F, Fut>(prefix: &str, latency: Duration, body: F) -> Result<()>
where
    F: FnOnce(std::sync::Arc<Ctx>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    in_namespace(prefix, |env, ns| async move {
        let sim = start_sim(&env, &ns.name, latency).await?;
        let ctx = std::sync::Arc::new(Ctx {
            env,
            ns: ns.name.clone(),
            sim,
        });
        let res = body(ctx.clone()).await;
        let violations = ctx.sim.violations();
        ctx.sim.shutdown();
        res.map_err(|e| anyhow!("{e:#}\nviolations recorded: {violations:#?}"))?;
        Ok(violations)
    })
    .await
}

async fn start_sim(env: &TestEnv, ns: &str, latency: Duration) -> Result<SimHandle> {
    StorageSim::start(
        vec![
            ("east".into(), env.east.client.clone()),
            ("west".into(), env.west.client.clone()),
        ],
        SimOptions {
            latency,
            violations_file: None,
            namespace: Some(ns.to_string()),
        },
    )
    .await
}

fn check_completed(v: &VrView, state: &str, reason: &str) -> Result<()> {
    ensure!(
        v.state() == state,
        "{}: state {:?}, want {state}",
        v.key(),
        v.state()
    );
    ensure!(
        v.status.observed_generation == Some(v.generation),
        "{}: observedGeneration {:?} != generation {}",
        v.key(),
        v.status.observed_generation,
        v.generation
    );
    let completed = v
        .condition(COND_COMPLETED)
        .context("no Completed condition")?;
    ensure!(
        completed.is_true() && completed.reason() == reason,
        "{}: Completed {completed:?}, want True/{reason}",
        v.key()
    );
    for t in [COND_DEGRADED, COND_RESYNCING] {
        let c = v
            .condition(t)
            .with_context(|| format!("no {t} condition"))?;
        ensure!(!c.is_true(), "{}: {t} is {c:?}", v.key());
    }
    for c in &v.status.conditions {
        ensure!(
            c.observed_generation == Some(v.generation),
            "{}: condition {c:?} not at generation {}",
            v.key(),
            v.generation
        );
        ensure!(
            c.last_transition_time.is_some(),
            "{}: condition {c:?} has no lastTransitionTime",
            v.key()
        );
    }
    ensure!(
        v.status.last_completion_time.is_some(),
        "{}: no lastCompletionTime",
        v.key()
    );
    Ok(())
}

fn dual_primaries(vs: &[Violation]) -> Vec<Violation> {
    vs.iter()
        .filter(|v| matches!(v, Violation::DualPrimary { .. }))
        .cloned()
        .collect()
}

fn demotions_with_pods(vs: &[Violation]) -> Vec<Violation> {
    vs.iter()
        .filter(|v| matches!(v, Violation::DemotedWithPods { .. }))
        .cloned()
        .collect()
}

fn pods_on_secondary(vs: &[Violation]) -> Vec<Violation> {
    vs.iter()
        .filter(|v| matches!(v, Violation::PodsOnSecondary { .. }))
        .cloned()
        .collect()
}

/// Waits for a `PodsOnSecondary` of `name` in `cluster`, open (`closed: false`) or closed.
async fn wait_pods_on_secondary(
    sim: &SimHandle,
    cluster: &str,
    name: &str,
    closed: bool,
) -> Result<Violation> {
    let (cluster, name) = (cluster.to_owned(), name.to_owned());
    sim.wait_for_violation(SETTLE, move |v| {
        matches!(v, Violation::PodsOnSecondary { cluster: c, name: n, end, .. }
            if *c == cluster && *n == name && end.is_some() == closed)
    })
    .await
}

/// Waits until no pod with `selector` is left in the namespace.
async fn wait_pods_gone(client: &Client, ns: &str, selector: &str) -> Result<()> {
    wait_for("pods gone", Duration::from_secs(60), || async move {
        let pods = pod_names(client, ns, selector)
            .await
            .map_err(|e| e.to_string())?;
        if pods.is_empty() {
            Ok(Some(()))
        } else {
            Err(format!("pods left: {pods:?}"))
        }
    })
    .await
}

/// Waits until a pod with `selector` exists in the namespace; returns their names.
async fn wait_pods(client: &Client, ns: &str, selector: &str) -> Result<Vec<String>> {
    wait_for(
        &format!("a pod with {selector}"),
        Duration::from_secs(60),
        || async move {
            let pods = pod_names(client, ns, selector)
                .await
                .map_err(|e| e.to_string())?;
            Ok((!pods.is_empty()).then_some(pods))
        },
    )
    .await
}

async fn scale(client: &Client, ns: &str, name: &str, replicas: i32) -> Result<()> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .with_context(|| format!("scaling Deployment {ns}/{name} to {replicas}"))?;
    Ok(())
}

#[tokio::test]
async fn volumes_settle_flip_and_follow_new_generations() -> Result<()> {
    with_sim("sim-flip", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.as_str();
        create_volume_replication(ctx.east(), ns, "data", DesiredState::Secondary, "data-pvc")
            .await?;
        create_volume_replication(ctx.west(), ns, "data", DesiredState::Primary, "data-pvc")
            .await?;
        let east = ctx.settled(ctx.east(), "data", "Secondary").await?;
        let west = ctx.settled(ctx.west(), "data", "Primary").await?;
        check_completed(&east, "Secondary", "Demoted")?;
        check_completed(&west, "Primary", "Promoted")?;

        // Flip, in the safe order: west demotes, then east promotes.
        let w = set_replication_state(ctx.west(), ns, "data", DesiredState::Secondary).await?;
        let west = ctx.settled(ctx.west(), "data", "Secondary").await?;
        ensure!(
            west.generation == w.generation && west.generation > 1,
            "west generation {}",
            west.generation
        );
        check_completed(&west, "Secondary", "Demoted")?;
        set_replication_state(ctx.east(), ns, "data", DesiredState::Primary).await?;
        let east = ctx.settled(ctx.east(), "data", "Primary").await?;
        check_completed(&east, "Primary", "Promoted")?;

        // A new generation mid-transition restarts toward the new desired state.
        set_latency(ctx.east(), ns, "data", Some(Duration::from_millis(800))).await?;
        let g1 = set_replication_state(ctx.east(), ns, "data", DesiredState::Secondary).await?;
        wait_volume(
            ctx.east(),
            ns,
            "data",
            "InProgress toward secondary",
            SETTLE,
            move |v| {
                v.condition(COND_COMPLETED).is_some_and(|c| {
                    c.reason() == "InProgress" && c.observed_generation == Some(g1.generation)
                })
            },
        )
        .await?;
        let g2 = set_replication_state(ctx.east(), ns, "data", DesiredState::Primary).await?;
        ensure!(g2.generation > g1.generation);
        let east = ctx.settled(ctx.east(), "data", "Primary").await?;
        ensure!(
            east.generation == g2.generation,
            "settled at generation {} not {}",
            east.generation,
            g2.generation
        );
        check_completed(&east, "Primary", "Promoted")?;

        let vs = ctx.sim.violations_in(ns);
        ensure!(vs.is_empty(), "unexpected violations: {vs:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dual_primary_is_recorded_with_start_and_end() -> Result<()> {
    with_sim("sim-dual", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        create_volume_replication(ctx.east(), &ns, "data", DesiredState::Primary, "data-pvc").await?;
        create_volume_replication(ctx.west(), &ns, "data", DesiredState::Primary, "data-pvc").await?;
        ctx.settled(ctx.east(), "data", "Primary").await?;
        ctx.settled(ctx.west(), "data", "Primary").await?;
        let n = ns.clone();
        let open = ctx
            .sim
            .wait_for_violation(SETTLE, move |v| {
                matches!(v, Violation::DualPrimary { namespace, name, end: None, .. } if *namespace == n && name == "data")
            })
            .await?;
        let Violation::DualPrimary { start, .. } = open else { unreachable!() };

        set_replication_state(ctx.east(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.east(), "data", "Secondary").await?;
        let n = ns.clone();
        let closed = ctx
            .sim
            .wait_for_violation(SETTLE, move |v| {
                matches!(v, Violation::DualPrimary { namespace, end: Some(_), .. } if *namespace == n)
            })
            .await?;
        let Violation::DualPrimary { start: s2, end: Some(end), .. } = closed else { unreachable!() };
        ensure!(s2 == start, "start changed: {start} vs {s2}");
        ensure!(end >= start, "end {end} before start {start}");
        let vs = ctx.sim.violations_in(&ns);
        ensure!(dual_primaries(&vs).len() == 1, "want exactly one DualPrimary: {vs:?}");
        ensure!(demotions_with_pods(&vs).is_empty(), "{vs:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn primary_status_written_by_someone_else_counts() -> Result<()> {
    in_namespace("sim-pre", |env, ns| async move {
        // Both sides already say Primary before the simulator starts.
        for c in env.clusters() {
            create_volume_replication(
                &c.client,
                &ns.name,
                "data",
                DesiredState::Primary,
                "data-pvc",
            )
            .await?;
            volume_replications(&c.client, &ns.name)
                .patch_status(
                    "data",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"state": "Primary"}})),
                )
                .await?;
        }
        let before = jiff::Timestamp::now();
        let sim = start_sim(&env, &ns.name, Duration::from_millis(100)).await?;
        let n = ns.name.clone();
        let v = sim
            .wait_for_violation(
                SETTLE,
                move |v| matches!(v, Violation::DualPrimary { namespace, .. } if *namespace == n),
            )
            .await?;
        let Violation::DualPrimary { start, end, .. } = &v else {
            unreachable!()
        };
        ensure!(end.is_none(), "{v:?}");
        ensure!(
            *start >= before - jiff::SignedDuration::from_secs(1),
            "{v:?} starts before the simulator ran"
        );
        // It still drives them (to Primary), and ends the interval when one side demotes.
        wait_settled(&env.east.client, &ns.name, "data", "Primary", SETTLE).await?;
        set_replication_state(&env.west.client, &ns.name, "data", DesiredState::Secondary).await?;
        wait_settled(&env.west.client, &ns.name, "data", "Secondary", SETTLE).await?;
        let n = ns.name.clone();
        sim.wait_for_violation(SETTLE, move |v| {
            matches!(v, Violation::DualPrimary { namespace, end: Some(_), .. } if *namespace == n)
        })
        .await?;
        let vs = sim.violations_in(&ns.name);
        ensure!(vs.len() == 1, "{vs:?}");
        Ok(vs)
    })
    .await
}

fn deployment(name: &str, replicas: i32) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]}
            }
        }
    }))?)
}

#[tokio::test]
async fn demotion_while_workload_has_pods_is_recorded() -> Result<()> {
    with_sim("sim-pods", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        Api::<Deployment>::namespaced(ctx.east().clone(), &ns)
            .create(&PostParams::default(), &deployment("app", 1)?)
            .await?;
        create_volume_replication(ctx.east(), &ns, "data", DesiredState::Primary, "data-pvc")
            .await?;
        set_workload(ctx.east(), &ns, "data", Some(("Deployment", "app"))).await?;
        let pods = wait_pods(ctx.east(), &ns, "app=app").await?;
        ctx.settled(ctx.east(), "data", "Primary").await?;

        // Demote with the pod still there: the demotion happens and is recorded.
        set_replication_state(ctx.east(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.east(), "data", "Secondary").await?;
        let v = ctx
            .sim
            .wait_for_violation(SETTLE, |v| matches!(v, Violation::DemotedWithPods { .. }))
            .await?;
        let Violation::DemotedWithPods {
            cluster,
            namespace,
            name,
            pods: seen,
            ..
        } = &v
        else {
            unreachable!()
        };
        ensure!(
            cluster == "east" && *namespace == ns && name == "data",
            "{v:?}"
        );
        ensure!(
            seen.iter().any(|p| pods.contains(p)),
            "violation pods {seen:?}, deployment pods {pods:?}"
        );
        // The pods stay on the Secondary volume: that is recorded too, as an open interval.
        wait_pods_on_secondary(&ctx.sim, "east", "data", false).await?;

        // Scale to 0, wait until the pods are gone: the interval ends, and a demotion is
        // then clean.
        scale(ctx.east(), &ns, "app", 0).await?;
        wait_pods_gone(ctx.east(), &ns, "app=app").await?;
        wait_pods_on_secondary(&ctx.sim, "east", "data", true).await?;
        set_replication_state(ctx.east(), &ns, "data", DesiredState::Primary).await?;
        ctx.settled(ctx.east(), "data", "Primary").await?;
        set_replication_state(ctx.east(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.east(), "data", "Secondary").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let vs = ctx.sim.violations_in(&ns);
        ensure!(
            demotions_with_pods(&vs).len() == 1 && pods_on_secondary(&vs).len() == 1,
            "want only the first demotion and its pods recorded: {vs:?}"
        );
        ensure!(vs.len() == 2, "{vs:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn demotion_while_a_pod_mounts_the_pvc_is_recorded() -> Result<()> {
    with_sim("sim-pvc", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        let pods: Api<Pod> = Api::namespaced(ctx.west().clone(), &ns);
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "writer"},
            "spec": {
                "containers": [{"name": "main", "image": "registry.example/app:1",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-pvc"}}]
            }
        }))?;
        // The namespace's default ServiceAccount may not exist yet: retry the create.
        let p = pods.clone();
        wait_for("pod writer created", Duration::from_secs(30), || {
            let (p, pod) = (p.clone(), pod.clone());
            async move {
                match p.create(&PostParams::default(), &pod).await {
                    Ok(_) => Ok(Some(())),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
        create_volume_replication(ctx.west(), &ns, "data", DesiredState::Primary, "data-pvc")
            .await?;
        create_volume_replication(ctx.west(), &ns, "other", DesiredState::Primary, "other-pvc")
            .await?;
        ctx.settled(ctx.west(), "data", "Primary").await?;
        ctx.settled(ctx.west(), "other", "Primary").await?;

        // "other" is not mounted by the pod: demoting it is clean.
        set_replication_state(ctx.west(), &ns, "other", DesiredState::Secondary).await?;
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.west(), "other", "Secondary").await?;
        ctx.settled(ctx.west(), "data", "Secondary").await?;
        let v = ctx
            .sim
            .wait_for_violation(SETTLE, |v| matches!(v, Violation::DemotedWithPods { .. }))
            .await?;
        ensure!(
            matches!(&v, Violation::DemotedWithPods { cluster, name, pods, .. }
                if cluster == "west" && name == "data" && pods == &vec!["writer".to_string()]),
            "{v:?}"
        );
        let v = wait_pods_on_secondary(&ctx.sim, "west", "data", false).await?;
        ensure!(
            matches!(&v, Violation::PodsOnSecondary { pods, .. } if pods == &["writer"]),
            "{v:?}"
        );

        pods.delete(
            "writer",
            &DeleteParams {
                grace_period_seconds: Some(0),
                ..DeleteParams::default()
            },
        )
        .await?;
        let p = pods.clone();
        wait_for("pod writer gone", Duration::from_secs(30), || {
            let p = p.clone();
            async move {
                match p.get_opt("writer").await {
                    Ok(None) => Ok(Some(())),
                    Ok(Some(_)) => Ok(None),
                    Err(e) => Err(e.to_string()),
                }
            }
        })
        .await?;
        wait_pods_on_secondary(&ctx.sim, "west", "data", true).await?;
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Primary).await?;
        ctx.settled(ctx.west(), "data", "Primary").await?;
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.west(), "data", "Secondary").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let vs = ctx.sim.violations_in(&ns);
        ensure!(
            vs.len() == 2 && pods_on_secondary(&vs).len() == 1,
            "want only the first demotion of data and its pod recorded: {vs:?}"
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn stuck_volume_never_completes() -> Result<()> {
    with_sim("sim-stuck", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        create_volume_replication(ctx.east(), &ns, "data", DesiredState::Secondary, "data-pvc")
            .await?;
        ctx.settled(ctx.east(), "data", "Secondary").await?;
        set_stuck(ctx.east(), &ns, "data", true).await?;
        let g = set_replication_state(ctx.east(), &ns, "data", DesiredState::Primary).await?;
        wait_volume(
            ctx.east(),
            &ns,
            "data",
            "Completed=False reason Stuck",
            SETTLE,
            move |v| {
                v.condition(COND_COMPLETED).is_some_and(|c| {
                    c.reason() == "Stuck" && c.observed_generation == Some(g.generation)
                })
            },
        )
        .await?;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            let v = get_volume(ctx.east(), &ns, "data").await?;
            let c = v
                .condition(COND_COMPLETED)
                .context("no Completed condition")?;
            ensure!(
                !c.is_true() && c.reason() == "Stuck",
                "stuck volume moved: {c:?}"
            );
            ensure!(
                c.message
                    .as_deref()
                    .is_some_and(|m| m.contains(&format!("{ns}/data"))),
                "message does not name the volume: {c:?}"
            );
            ensure!(
                v.state() != "Primary",
                "stuck volume became Primary: {:?}",
                v.status
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Lifting the control lets it complete.
        set_stuck(ctx.east(), &ns, "data", false).await?;
        let v = ctx.settled(ctx.east(), "data", "Primary").await?;
        check_completed(&v, "Primary", "Promoted")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn degraded_volume_reports_degraded_and_never_completes() -> Result<()> {
    with_sim("sim-degr", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        create_volume_replication(ctx.west(), &ns, "data", DesiredState::Secondary, "data-pvc")
            .await?;
        ctx.settled(ctx.west(), "data", "Secondary").await?;
        set_degraded(ctx.west(), &ns, "data", true).await?;
        let g = set_replication_state(ctx.west(), &ns, "data", DesiredState::Primary).await?;
        wait_volume(ctx.west(), &ns, "data", "Degraded=True", SETTLE, move |v| {
            v.condition(COND_DEGRADED).is_some_and(|c| {
                c.is_true()
                    && c.reason() == "Degraded"
                    && c.observed_generation == Some(g.generation)
            })
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(800)).await;
        let v = get_volume(ctx.west(), &ns, "data").await?;
        ensure!(
            !v.condition_true_now(COND_COMPLETED),
            "degraded volume completed: {:?}",
            v.status
        );
        ensure!(v.condition_true_now(COND_DEGRADED), "{:?}", v.status);
        set_degraded(ctx.west(), &ns, "data", false).await?;
        let v = ctx.settled(ctx.west(), "data", "Primary").await?;
        check_completed(&v, "Primary", "Promoted")?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn resync_goes_through_resyncing() -> Result<()> {
    with_sim("sim-resync", Duration::from_millis(300), |ctx| async move {
        let ns = ctx.ns.clone();
        create_volume_replication(ctx.east(), &ns, "data", DesiredState::Primary, "data-pvc")
            .await?;
        ctx.settled(ctx.east(), "data", "Primary").await?;
        let g = set_replication_state(ctx.east(), &ns, "data", DesiredState::Resync).await?;
        let v = wait_volume(
            ctx.east(),
            &ns,
            "data",
            "Resyncing=True",
            SETTLE,
            move |v| {
                v.condition(COND_RESYNCING)
                    .is_some_and(|c| c.is_true() && c.observed_generation == Some(g.generation))
            },
        )
        .await?;
        ensure!(
            v.state() == "Secondary",
            "resyncing volume state {:?}",
            v.state()
        );
        ensure!(
            !v.condition(COND_COMPLETED).is_some_and(|c| c.is_true()),
            "{:?}",
            v.status
        );
        let v = ctx.settled(ctx.east(), "data", "Secondary").await?;
        check_completed(&v, "Secondary", "Resynced")?;
        ensure!(v.generation == g.generation);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn per_volume_latency_override() -> Result<()> {
    with_sim("sim-lat", Duration::from_millis(50), |ctx| async move {
        let ns = ctx.ns.clone();
        create_volume_replication(ctx.east(), &ns, "slow", DesiredState::Secondary, "slow-pvc")
            .await?;
        create_volume_replication(ctx.east(), &ns, "fast", DesiredState::Secondary, "fast-pvc")
            .await?;
        ctx.settled(ctx.east(), "slow", "Secondary").await?;
        ctx.settled(ctx.east(), "fast", "Secondary").await?;
        set_latency(ctx.east(), &ns, "slow", Some(Duration::from_millis(1500))).await?;
        let t0 = Instant::now();
        set_replication_state(ctx.east(), &ns, "slow", DesiredState::Primary).await?;
        set_replication_state(ctx.east(), &ns, "fast", DesiredState::Primary).await?;
        ctx.settled(ctx.east(), "fast", "Primary").await?;
        let fast = t0.elapsed();
        ctx.settled(ctx.east(), "slow", "Primary").await?;
        let slow = t0.elapsed();
        ensure!(
            slow >= Duration::from_millis(1400),
            "slow volume took {slow:?}"
        );
        ensure!(
            fast < Duration::from_millis(1400),
            "fast volume took {fast:?}"
        );
        Ok(())
    })
    .await
}

/// The simulator binary for both clusters and namespace `ns`, writing `violations`.
fn sim_command(env: &TestEnv, ns: &str, violations: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_failover-storage-sim"));
    cmd.arg("--cluster")
        .arg(format!("east={}", env.east.kubeconfig.display()))
        .arg("--cluster")
        .arg(format!("west={}", env.west.kubeconfig.display()))
        .arg("--violations")
        .arg(violations)
        .args(["--latency", "100ms", "--namespace", ns])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn binary_writes_violations_file_and_stops_on_sigterm() -> Result<()> {
    in_namespace("sim-bin", |env, ns| async move {
        let dir = std::env::temp_dir().join(format!("storage-sim-{}", ns.name));
        std::fs::create_dir_all(&dir)?;
        let file: PathBuf = dir.join("violations.json");
        let log_path = dir.join("sim.log");
        let mut child = sim_command(&env, &ns.name, &file)
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .spawn()
            .context("spawning failover-storage-sim")?;
        let pid = child.id().context("child pid")?;
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

        let res: Result<Vec<Violation>> = async {
            let f = file.clone();
            wait_for(
                "violations file written at start",
                Duration::from_secs(30),
                || {
                    let f = f.clone();
                    async move { Ok(f.exists().then_some(())) }
                },
            )
            .await?;
            ensure!(
                read_violations_file(&file)?.is_empty(),
                "fresh file is not empty"
            );

            for c in env.clusters() {
                create_volume_replication(
                    &c.client,
                    &ns.name,
                    "data",
                    DesiredState::Primary,
                    "data-pvc",
                )
                .await?;
            }
            let f = file.clone();
            wait_for("DualPrimary in the file", SETTLE, || {
                let f = f.clone();
                async move {
                    let vs = read_violations_file(&f).map_err(|e| format!("{e:#}"))?;
                    Ok((!dual_primaries(&vs).is_empty()).then_some(()))
                }
            })
            .await?;

            let kill = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
            ensure!(kill.success(), "kill -TERM {pid} failed");
            let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .context("simulator did not exit within 10 s of SIGTERM")??;
            ensure!(status.success(), "simulator exited with {status}");

            let vs = read_violations_file(&file)?;
            let duals = dual_primaries(&vs);
            ensure!(duals.len() == 1, "want one DualPrimary: {vs:?}");
            let Violation::DualPrimary {
                namespace,
                name,
                end,
                ..
            } = &duals[0]
            else {
                unreachable!()
            };
            ensure!(
                *namespace == ns.name && name == "data" && end.is_none(),
                "{:?}",
                duals[0]
            );
            let text = std::fs::read_to_string(&file)?;
            ensure!(text.contains("\"kind\": \"DualPrimary\""), "{text}");
            let logs = log_text();
            ensure!(
                logs.contains("storage-sim transition"),
                "no transition lines in the log"
            );
            ensure!(
                logs.contains("WARN") && logs.contains("DualPrimary"),
                "no WARN violation line in the log"
            );
            Ok(vs)
        }
        .await;
        if res.is_err() {
            let _ = child.start_kill();
        }
        let out = res.map_err(|e| anyhow!("{e:#}\n--- simulator log ---\n{}", log_text()));
        if out.is_ok() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        out
    })
    .await
}

#[tokio::test]
async fn unknown_cluster_is_named() -> Result<()> {
    with_sim("sim-names", Duration::from_millis(50), |ctx| async move {
        let err = ctx
            .sim
            .wait_until_settled(
                &format!("{}/data", ctx.ns),
                "north",
                "Primary",
                Duration::from_secs(1),
            )
            .await
            .expect_err("no such cluster");
        ensure!(format!("{err:#}").contains("north"), "{err:#}");
        if ctx.sim.client("east").is_err() {
            bail!("east missing");
        }
        create_volume_replication(
            ctx.east(),
            &ctx.ns,
            "data",
            DesiredState::Primary,
            "data-pvc",
        )
        .await?;
        ctx.sim
            .wait_until_settled(&format!("{}/data", ctx.ns), "east", "Primary", SETTLE)
            .await?;
        Ok(())
    })
    .await
}

#[tokio::test]
async fn binary_exits_non_zero_naming_a_violations_file_it_cannot_write() -> Result<()> {
    in_namespace("sim-badfile", |env, ns| async move {
        let dir = std::env::temp_dir().join(format!("storage-sim-{}", ns.name));
        std::fs::create_dir_all(&dir)?;
        // At start: the file's folder is a regular file.
        let blocker = dir.join("blocker");
        std::fs::write(&blocker, "")?;
        let bad = blocker.join("violations.json");
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            sim_command(&env, &ns.name, &bad)
                .stderr(Stdio::piped())
                .output(),
        )
        .await
        .context("the simulator did not exit on an unwritable file")??;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "exited {}: {stderr}", out.status);
        ensure!(
            stderr.contains(&bad.display().to_string()),
            "the error does not name {}: {stderr}",
            bad.display()
        );

        // While running: the folder is replaced by a regular file, then a violation is due.
        let out_dir = dir.join("out");
        std::fs::create_dir_all(&out_dir)?;
        let file = out_dir.join("violations.json");
        let log_path = dir.join("sim.log");
        let mut child = sim_command(&env, &ns.name, &file)
            .stderr(Stdio::from(std::fs::File::create(&log_path)?))
            .spawn()
            .context("spawning failover-storage-sim")?;
        let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let f = file.clone();
        wait_for("violations file written at start", SETTLE, || {
            let f = f.clone();
            async move { Ok(f.exists().then_some(())) }
        })
        .await?;
        std::fs::remove_dir_all(&out_dir)?;
        std::fs::write(&out_dir, "")?;
        for c in env.clusters() {
            create_volume_replication(&c.client, &ns.name, "data", DesiredState::Primary, "pvc")
                .await?;
        }
        let status = tokio::time::timeout(SETTLE, child.wait())
            .await
            .with_context(|| format!("still running:\n{}", log_text()))??;
        let log = log_text();
        ensure!(!status.success(), "exited {status}:\n{log}");
        ensure!(
            log.contains(&format!(
                "cannot write the violations file {}",
                file.display()
            )),
            "the log does not name {}:\n{log}",
            file.display()
        );
        let _ = std::fs::remove_dir_all(&dir);
        Ok(Vec::new())
    })
    .await
}

#[tokio::test]
async fn pods_on_a_secondary_volume_are_recorded_at_any_time() -> Result<()> {
    with_sim("sim-sec", Duration::from_millis(100), |ctx| async move {
        let ns = ctx.ns.clone();
        // The standby side of a fresh group: Secondary, its workload at 0. Clean.
        Api::<Deployment>::namespaced(ctx.west().clone(), &ns)
            .create(&PostParams::default(), &deployment("app", 0)?)
            .await?;
        create_volume_replication(ctx.west(), &ns, "data", DesiredState::Secondary, "data-pvc")
            .await?;
        set_workload(ctx.west(), &ns, "data", Some(("Deployment", "app"))).await?;
        ctx.settled(ctx.west(), "data", "Secondary").await?;

        // Scaled up by hand on the Secondary side, no demotion involved: recorded while
        // the pods are there.
        scale(ctx.west(), &ns, "app", 1).await?;
        let pods = wait_pods(ctx.west(), &ns, "app=app").await?;
        let v = wait_pods_on_secondary(&ctx.sim, "west", "data", false).await?;
        ensure!(
            matches!(&v, Violation::PodsOnSecondary { namespace, pods: seen, .. }
                if *namespace == ns && *seen == pods),
            "{v:?} (pods {pods:?})"
        );
        // The volume leaves Secondary (promoted): the interval ends, the pods may stay.
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Primary).await?;
        ctx.settled(ctx.west(), "data", "Primary").await?;
        let v = wait_pods_on_secondary(&ctx.sim, "west", "data", true).await?;
        let Violation::PodsOnSecondary {
            start,
            end: Some(end),
            ..
        } = v
        else {
            unreachable!()
        };
        ensure!(start <= end, "{start} .. {end}");

        // The order an agent follows: scale down, pods gone, demote; then promote, Primary,
        // scale up. Nothing more is recorded.
        scale(ctx.west(), &ns, "app", 0).await?;
        wait_pods_gone(ctx.west(), &ns, "app=app").await?;
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Secondary).await?;
        ctx.settled(ctx.west(), "data", "Secondary").await?;
        set_replication_state(ctx.west(), &ns, "data", DesiredState::Primary).await?;
        ctx.settled(ctx.west(), "data", "Primary").await?;
        scale(ctx.west(), &ns, "app", 1).await?;
        wait_pods(ctx.west(), &ns, "app=app").await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let vs = ctx.sim.violations_in(&ns);
        ensure!(
            vs.len() == 1 && pods_on_secondary(&vs).len() == 1,
            "want only the hand-made interval: {vs:#?}"
        );
        Ok(())
    })
    .await
}

/// A client for cluster `c` as a ServiceAccount of `ns` that may read and write
/// VolumeReplications there and nothing else (no pods, no workloads).
async fn client_without_pods(c: &Cluster, ns: &str) -> Result<Client> {
    let pp = PostParams::default();
    let sa: ServiceAccount = serde_json::from_value(json!({"metadata": {"name": "sim"}}))?;
    Api::<ServiceAccount>::namespaced(c.client.clone(), ns)
        .create(&pp, &sa)
        .await?;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "sim"},
        "rules": [{"apiGroups": ["replication.storage.openshift.io"],
                   "resources": ["volumereplications", "volumereplications/status"],
                   "verbs": ["get", "list", "watch", "patch", "update"]}],
    }))?;
    Api::<Role>::namespaced(c.client.clone(), ns)
        .create(&pp, &role)
        .await?;
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "sim"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "sim"},
        "subjects": [{"kind": "ServiceAccount", "name": "sim", "namespace": ns}],
    }))?;
    Api::<RoleBinding>::namespaced(c.client.clone(), ns)
        .create(&pp, &binding)
        .await?;
    let request: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))?;
    let token = Api::<ServiceAccount>::namespaced(c.client.clone(), ns)
        .create_token_request("sim", &pp, &request)
        .await?
        .status
        .context("a TokenRequest without status")?
        .token;
    let mut kubeconfig = Kubeconfig::read_from(&c.kubeconfig)?;
    let user: NamedAuthInfo =
        serde_json::from_value(json!({"name": "sim", "user": {"token": token}}))?;
    kubeconfig.auth_infos = vec![user];
    for named in &mut kubeconfig.contexts {
        if let Some(context) = &mut named.context {
            context.user = Some("sim".into());
        }
    }
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    let client = Client::try_from(config)?;
    let vrs = volume_replications(&client, ns);
    wait_for(
        "the ServiceAccount may list VolumeReplications",
        SETTLE,
        || {
            let vrs = vrs.clone();
            async move {
                match vrs.list_metadata(&ListParams::default()).await {
                    Ok(_) => Ok(Some(())),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await?;
    Ok(client)
}

#[tokio::test]
async fn pods_that_cannot_be_listed_are_recorded_unknown() -> Result<()> {
    in_namespace("sim-unknown", |env, ns| async move {
        let client = client_without_pods(&env.east, &ns.name).await?;
        let sim = StorageSim::start(
            vec![("east".into(), client)],
            SimOptions {
                latency: Duration::from_millis(100),
                violations_file: None,
                namespace: Some(ns.name.clone()),
            },
        )
        .await?;
        // The demotion happens; neither pod check can be made.
        create_volume_replication(
            &env.east.client,
            &ns.name,
            "data",
            DesiredState::Secondary,
            "data-pvc",
        )
        .await?;
        wait_settled(&env.east.client, &ns.name, "data", "Secondary", SETTLE).await?;
        for check in ["DemotedWithPods", "PodsOnSecondary"] {
            let v = sim
                .wait_for_violation(
                    SETTLE,
                    move |v| matches!(v, Violation::Unknown { check: c, .. } if c == check),
                )
                .await?;
            let Violation::Unknown {
                cluster,
                namespace,
                name,
                error,
                ..
            } = &v
            else {
                unreachable!()
            };
            ensure!(
                cluster == "east" && *namespace == ns.name && name == "data",
                "{v:?}"
            );
            ensure!(error.contains("forbidden"), "the error is not named: {v:?}");
        }
        // Once per volume and check until a read succeeds: more pod events add nothing.
        set_workload(
            &env.east.client,
            &ns.name,
            "data",
            Some(("Deployment", "x")),
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let vs = sim.violations();
        sim.shutdown();
        ensure!(
            vs.len() == 2 && vs.iter().all(|v| v.kind() == "Unknown"),
            "{vs:#?}"
        );
        Ok(vs)
    })
    .await
}
