//! A whole CONSISTENCY failover east → west with real processes: two `failover-agent`
//! binaries (one per cluster, each with only its own cluster's kubeconfig, whose credential is
//! a ServiceAccount token bound to nothing but the ClusterRole shipped in
//! `deploy/kustomize/base/clusterrole.yaml`, so a missing permission fails the test) and the
//! `failover-storage-sim` binary playing the volume driver in both clusters, against the
//! two real kube-apiservers of the test environment and one moto table plus two SQS inboxes
//! (see `failover_tests::agents`).
//!
//! After the failover the run checker (`failover_tests::checker`) must find nothing: no
//! storage violation, every operation terminal, nothing left held on the group state, and
//! both clusters agreeing with it. A last test shows the checker on a broken run: with no
//! agent, a workload scaled up by hand on the standby side and a volume promoted by hand
//! there are reported, and nothing else.
//!
//! The test takes its own namespace (plus one for its Flux objects), table and queue names.
//! A failing test prints both clusters' objects and the logs of every process it started.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation, Phase};
use failover_messages::store::{StartOutcome, StartRequest};
use failover_tests::agents::Stack;
use failover_tests::bench::probe::{Scrape, scrape_agents};
use failover_tests::checker::{Problem, check_run};
use failover_tests::fixtures::{
    self, GROUP, SETTLE, VOLUMES, assert_records, create_application, install_crds,
    wait_ready_replicas, wait_starting_point,
};
use failover_tests::kube::{Cluster, TestEnv};
use failover_tests::storage_sim::{DesiredState, Violation, set_replication_state, wait_settled};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

// ---- assertions --------------------------------------------------------------------------------

/// One cluster's side: active (`true`) or passive. The shared checks, then the workloads'
/// readiness and the volumes' states read from the cluster.
async fn assert_side(c: &Cluster, ns: &str, flux_ns: &str, active: bool) -> Result<()> {
    fixtures::assert_side(c, ns, flux_ns, active).await?;
    if active {
        wait_ready_replicas(c, ns, "Deployment", "api", 2).await?;
        wait_ready_replicas(c, ns, "StatefulSet", "db", 1).await?;
    }
    let state = if active { "Primary" } else { "Secondary" };
    for (volume, _, _) in VOLUMES {
        wait_settled(&c.client, ns, volume, state, Duration::from_secs(10))
            .await
            .with_context(|| format!("{volume} in {}", c.name))?;
    }
    Ok(())
}

// ---- the coordinator's part -------------------------------------------------------------------

async fn start_with_library(stack: &Stack, group: &GroupRef) -> Result<Operation> {
    let store = &stack.store;
    store.register_group(group, "east").await?;
    let op = match store
        .start_operation(StartRequest {
            group: group.clone(),
            source: "east".into(),
            target: "west".into(),
            mode: Mode::Consistency,
            force: false,
            source_is_down: false,
            reason: "real-process failover test".into(),
            requested_by: "e2e-agents-test".into(),
            lease_ttl: Duration::from_secs(120),
            op_id: None,
        })
        .await?
    {
        StartOutcome::Started(op) => op,
        other => bail!("the operation did not start: {other:?}"),
    };
    for cluster in ["east", "west"] {
        let envelope = Envelope {
            kind: EnvelopeKind::OperationStarted,
            operation_id: op.id.clone(),
            group: group.clone(),
            epoch: op.epoch,
            sender: "coordinator".into(),
            sent_at: jiff::Timestamp::now(),
        };
        stack
            .inbox
            .send(cluster, &envelope)
            .await
            .with_context(|| format!("notifying {cluster}"))?;
    }
    Ok(op)
}

/// Runs `failoverctl register` and `failoverctl failover --wait` as a user would, checks
/// their exit codes and output, and returns the operation the command reported.
async fn start_with_failoverctl(stack: &Stack, group: &GroupRef) -> Result<Operation> {
    let g = group.to_string();
    let out = stack.failoverctl(&["register", &g, "--active", "east"])?;
    ensure!(
        out.status.success(),
        "failoverctl register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = stack.failoverctl(&[
        "-o",
        "json",
        "failover",
        &g,
        "--to",
        "west",
        "--wait",
        "--timeout",
        "60s",
    ])?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let history = stack.store.history(group, None).await?;
    let entry = history
        .first()
        .context("no history entry after failoverctl succeeded")?;
    let op = entry.operation.clone();
    ensure!(
        stdout.contains(&op.id),
        "failoverctl's output names the operation {}: {stdout}",
        op.id
    );
    ensure!(
        op.phase == Phase::Succeeded,
        "operation phase {:?}",
        op.phase
    );
    Ok(op)
}

// ---- the test ----------------------------------------------------------------------------------

/// Who plays the coordinator: the store and inbox called directly, or the real
/// `failoverctl` binary (`register`, then `failover --wait`).
#[derive(Clone, Copy, PartialEq)]
enum Coordinator {
    Library,
    Failoverctl,
}

async fn body(
    env: &TestEnv,
    stack: &mut Stack,
    coordinator: Coordinator,
    ns: &str,
    flux_ns: &str,
) -> Result<()> {
    stack.start_storage_sim(&[ns], Duration::from_millis(200))?;
    Box::pin(create_application(env, ns, flux_ns)).await?;
    wait_starting_point(env, ns).await?;
    stack.start_agents().await?;
    let calls_before = scrape_agents(stack).await?;

    // The coordinator's part: register the group, start the operation, wake both agents.
    let group = GroupRef::new(ns, GROUP)?;
    let started = Instant::now();
    let op = match coordinator {
        Coordinator::Library => start_with_library(stack, &group).await?,
        Coordinator::Failoverctl => start_with_failoverctl(stack, &group).await?,
    };

    // The agents carry it out on their own.
    let store = &stack.store;
    // The close releases the group state first, then writes the history and the operation's
    // phase: wait for all of it.
    fixtures::wait_group_idle_on(store, &group, "west", FAILOVER_DEADLINE).await?;
    eprintln!("failover took {:?}", started.elapsed());

    assert_records(store, &group, &op).await?;
    assert_agent_writes(&scrape_agents(stack).await?.since(&calls_before))?;
    assert_side(&env.east, ns, flux_ns, false).await?;
    assert_side(&env.west, ns, flux_ns, true).await?;
    // The Kubernetes steps went through the per-concern actors of each agent.
    for (cluster, concerns) in [
        ("east", ["traffic", "gitops", "workloads", "volumes"]),
        ("west", ["traffic", "gitops", "workloads", "volumes"]),
    ] {
        let metrics = stack.metrics(cluster).await?;
        for concern in concerns {
            let done = metrics
                .lines()
                .filter(|l| {
                    l.starts_with("failover_kube_jobs_total{")
                        && l.contains(&format!("concern=\"{concern}\""))
                        && l.contains("outcome=\"done\"")
                })
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            ensure!(
                done > 0.0,
                "no {concern} steps done by {cluster}'s actor:\n{metrics}"
            );
        }
    }
    stack.check_agents()?;
    let found = stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    check_run(env, stack, &[group]).await?.ensure_clean()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_failover_east_to_west_with_real_agent_processes() -> Result<()> {
    failover_with(Coordinator::Library).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failoverctl_failover_wait_moves_the_group_with_real_agent_processes() -> Result<()> {
    failover_with(Coordinator::Failoverctl).await
}

async fn failover_with(coordinator: Coordinator) -> Result<()> {
    in_stack(|env, stack, ns, flux_ns| Box::pin(body(env, stack, coordinator, ns, flux_ns))).await
}

/// The future of a scenario body borrowing the environment, the stack and the namespaces.
type BodyFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + 'a>>;

/// The agents' DynamoDB writes for one CONSISTENCY failover (the coordinator's start adds
/// two): ten, none a transaction, whatever the group holds. Each stage is published at most
/// once per side, and the replica counts' and the close's writes carry the publications no
/// one waits for. Heartbeats and the fencing check's replica counts run in the background
/// and are not counted.
fn assert_agent_writes(calls: &Scrape) -> Result<()> {
    const BACKGROUND: [&str; 2] = ["put_heartbeat", "record_known_replicas"];
    let writes: Vec<(&String, &u64)> = calls
        .aws_calls
        .iter()
        .filter(|(key, n)| {
            let (operation, api) = key.split_once('/').unwrap_or((key.as_str(), ""));
            **n > 0
                && ["PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"].contains(&api)
                && !BACKGROUND.contains(&operation)
        })
        .collect();
    let total: u64 = writes.iter().map(|(_, n)| **n).sum();
    ensure!(
        total <= 10
            && !writes
                .iter()
                .any(|(k, _)| k.ends_with("/TransactWriteItems")),
        "the agents wrote {total} items for one failover (at most 10): {writes:?}"
    );
    let publications = calls
        .aws_calls
        .get("publish_stage/UpdateItem")
        .copied()
        .unwrap_or(0);
    ensure!(
        publications <= 3,
        "{publications} stages published with writes of their own (at most 3: the source's \
         shutdown and demotion, the target's initialization): {writes:?}"
    );
    Ok(())
}

/// Runs `body` with its namespaces and stack; on failure prints the logs and the objects.
async fn in_stack<F>(body: F) -> Result<()>
where
    F: for<'a> FnOnce(&'a TestEnv, &'a mut Stack, &'a str, &'a str) -> BodyFuture<'a>,
{
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-e2e").await?;
    let flux_ns = env.namespace("fo-e2e-flux").await?;
    let mut stack = Stack::new(&env, &ns.name, "e2e-agents").await?;
    let res = body(&env, &mut stack, &ns.name, &flux_ns.name).await;
    let out = match res {
        Ok(()) => Ok(()),
        Err(e) => {
            stack.print_logs();
            Err(anyhow!("{e:#}\n\n{}", ns.dump().await))
        }
    };
    // Kills every child before the namespaces go.
    stack.cleanup(out.is_ok()).await;
    ns.cleanup().await;
    flux_ns.cleanup().await;
    out
}

// ---- the run checker on a broken run -----------------------------------------------------------

/// Polls the simulators' files until a violation satisfies `pred`.
async fn wait_violation(
    stack: &mut Stack,
    what: &str,
    pred: impl Fn(&Violation) -> bool,
) -> Result<Violation> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let found = stack.violations_so_far()?;
        if let Some(v) = found.iter().find(|v| pred(v)) {
            return Ok(v.clone());
        }
        if Instant::now() > deadline {
            bail!("no {what} recorded after {SETTLE:?}: {found:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn broken_by_hand(env: &TestEnv, stack: &mut Stack, ns: &str, flux_ns: &str) -> Result<()> {
    stack.start_storage_sim(&[ns], Duration::from_millis(200))?;
    Box::pin(create_application(env, ns, flux_ns)).await?;
    wait_starting_point(env, ns).await?;
    let groups = [GroupRef::new(ns, GROUP)?];
    stack.store.register_group(&groups[0], "east").await?;
    // The starting point is clean: west standby, Secondary, its workloads at 0.
    check_run(env, stack, &groups).await?.ensure_clean()?;

    // By hand, no agent: west's api scaled up on its Secondary volume, west's db-data
    // promoted while east's is Primary.
    Api::<Deployment>::namespaced(env.west.client.clone(), ns)
        .patch(
            "api",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await?;
    wait_violation(stack, "PodsOnSecondary", |v| {
        matches!(v, Violation::PodsOnSecondary { .. })
    })
    .await?;
    set_replication_state(&env.west.client, ns, "db-data", DesiredState::Primary).await?;
    wait_settled(&env.west.client, ns, "db-data", "Primary", SETTLE).await?;
    wait_violation(stack, "DualPrimary", |v| {
        matches!(v, Violation::DualPrimary { .. })
    })
    .await?;

    let verdict = check_run(env, stack, &groups).await?;
    let p = &verdict.problems;
    let exactly = p.len() == 4
        && matches!(&p[0], Problem::PodsOnSecondary { cluster, volume, pods, .. }
            if cluster == "west" && volume == "api-data" && !pods.is_empty())
        && matches!(&p[1], Problem::DualPrimary { volume, end: None, .. } if volume == "db-data")
        && matches!(&p[2], Problem::Volume { cluster, volume, want: "Secondary", .. }
            if cluster == "west" && volume == "db-data")
        && matches!(&p[3], Problem::Workload { cluster, workload, found, .. }
            if cluster == "west" && workload == "Deployment/api" && found == "1 replicas");
    ensure!(
        exactly,
        "want exactly the hand-made problems:\n{verdict}\n{p:#?}"
    );
    eprintln!("the run checker on the broken run:\n{verdict}");
    stack.stop_storage_sim().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_checker_reports_exactly_what_was_broken_by_hand() -> Result<()> {
    in_stack(|env, stack, ns, flux_ns| Box::pin(broken_by_hand(env, stack, ns, flux_ns))).await
}
