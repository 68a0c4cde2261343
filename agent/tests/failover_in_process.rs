//! A whole CONSISTENCY failover east → west, in process: the east and west
//! [`ManagerAdapter`]s run concurrently against the two real kube-apiservers of the test
//! environment, one moto table and two SQS inboxes, with the storage simulator playing the
//! volume driver in both clusters.
//!
//! Each test takes its own namespace (plus one for its Flux objects), table and queue names.
//! A failing test prints both clusters' objects.

use std::future::Future;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use failover_agent::adapter::ManagerAdapter;
use failover_agent::failover_object::failover_names::{
    LABEL_GROUP, LABEL_OPERATION, failover_name, label_value,
};
use failover_agent::kube_ops::{ClusterClient, workloads};
use failover_agent::seam;
use failover_agent::tasks::TasksConfig;
use failover_agent::workflow::{Progress, ProgressEvent, RunReport};
use failover_messages::crd::{Failover, FailoverGroup, FailoverPhase, GroupRole, WorkloadKind};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::{JournalStep, Mode, Operation, StepStatus};
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::fixtures::{self, GROUP, SETTLE, VOLUMES, install_crds};
use failover_tests::kube::{Cluster, TestEnv, TestNamespace};
use failover_tests::storage_sim::{SimHandle, SimOptions, StorageSim};
use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::watcher::watch_object;

const RUN_LIMIT: Duration = Duration::from_secs(240);

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
                source_is_down: false,
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
        install_crds(c, SETTLE).await?;
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

/// The application in both clusters (active in east, passive in west), settled as the
/// storage simulator sees it.
async fn create_application(s: &Scenario) -> Result<()> {
    let ns = s.ns.name.as_str();
    fixtures::create_application(&s.env, ns, &s.flux_ns.name).await?;
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

/// The shared records checks, plus: the first epoch, the claim time, and this operation as
/// the group's only history entry.
async fn assert_records(s: &Scenario, op: &Operation) -> Result<()> {
    fixtures::assert_records(&s.store, &s.group, op).await?;
    let state = s
        .store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(state.epoch == 1, "epoch: {state:?}");
    let stored = s
        .store
        .get_operation(&op.id)
        .await?
        .context("no operation")?;
    ensure!(
        stored.promotion_started_at.is_some(),
        "no claim time: {stored:?}"
    );
    let history = s.store.history(&s.group, None).await?;
    ensure!(
        history.len() == 1 && history[0].operation.id == op.id,
        "history: {history:?}"
    );
    Ok(())
}

/// One cluster's side: active (`true`) or passive. The shared checks, then the workloads
/// ready right now, the volumes as the storage simulator sees them, and the FailoverGroup
/// status.
async fn assert_side(s: &Scenario, c: &Cluster, active: bool) -> Result<()> {
    let ns = s.ns.name.as_str();
    let what = |x: &str| format!("{x} in {}", c.name);
    let (d, st) = fixtures::assert_side(c, ns, &s.flux_ns.name, active).await?;
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

/// One version of a `Failover` status as a watch saw it.
#[derive(Debug, Clone)]
struct Version {
    phase: Option<FailoverPhase>,
    stage: Option<String>,
    journal: Vec<String>,
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
        // Watches west's Failover while the operation runs: every status write that changed
        // it is one version (phase, stage, journal).
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let watcher = tokio::spawn({
            let api = Api::<Failover>::namespaced(s.env.west.client.clone(), &s.ns.name);
            let name = failover_name(&op.id);
            let seen = std::sync::Arc::clone(&seen);
            async move {
                let mut versions = std::pin::pin!(watch_object(api, &name));
                while let Some(v) = versions.next().await {
                    if let Ok(Some(fo)) = v {
                        let st = fo.status.unwrap_or_default();
                        seen.lock().unwrap().push(Version {
                            phase: st.phase,
                            stage: st.groups.first().and_then(|g| g.stage.clone()),
                            journal: st.journal,
                        });
                    }
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
        let path: Vec<_> = seen.iter().map(|v| (v.phase, v.stage.clone())).collect();
        eprintln!("west's Failover went through {path:?}");
        let running_stages: std::collections::BTreeSet<_> = seen
            .iter()
            .filter(|v| v.phase == Some(FailoverPhase::Running))
            .filter_map(|v| v.stage.clone())
            .collect();
        // The progress rides on the journal's writes: few versions change the progress alone.
        let progress_only = seen
            .windows(2)
            .filter(|w| w[0].journal == w[1].journal)
            .count();
        eprintln!(
            "west's Failover status: {} versions, {progress_only} without a journal change",
            seen.len()
        );
        ensure!(
            running_stages.len() >= 2,
            "west's Failover status was not kept current while it ran: {path:?}"
        );
        Ok(())
    }))
    .await
}

/// West's journal of `op_id`, as its agent keeps it in the operation's `Failover` object.
async fn local_journal(s: &Scenario, op_id: &str) -> Result<Vec<JournalStep>> {
    let fo = Api::<Failover>::namespaced(s.env.west.client.clone(), &s.ns.name)
        .get(&failover_name(op_id))
        .await
        .context("reading the operation's Failover in west")?;
    Ok(fo
        .status
        .map(|st| st.journal_of(op_id, "west"))
        .unwrap_or_default())
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
        // The journal the resumed run reads: west's own, in its Failover object.
        let before = local_journal(s, &op.id).await?;
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
        let after = local_journal(s, &op.id).await?;
        for j in after.iter().filter(|j| j.task == "ClaimPromotion" || j.task == kill_after) {
            ensure!(j.attempts == 1 && j.status == StepStatus::Done, "re-attempted: {j:?}");
        }
        // Every outcome reached the Failover object by the end of the run (outcomes go out
        // with the next write; the run's end writes the last ones).
        let open: Vec<&str> = after
            .iter()
            .filter(|j| j.status != StepStatus::Done)
            .map(|j| j.task.as_str())
            .collect();
        ensure!(open.is_empty(), "steps not journaled DONE after the run: {open:?}");

        let source = with_limit("the source", east_run).await??.context("east (source) failed")?;
        ensure!(source.ran().contains(&"MarkAllReady"), "source ran {:?}", source.ran());
        assert_records(s, &op).await?;
        assert_side(s, &s.env.east, false).await?;
        assert_side(s, &s.env.west, true).await?;
        Ok(())
    }))
    .await
}

#[tokio::test]
async fn a_group_without_volumes_fails_over_in_consistency_mode() -> Result<()> {
    Box::pin(scenario("fo-inproc-novol", async |s: &Scenario| {
        // The same application, but the group leaves its volumes out (a stateless group).
        for c in s.env.clusters() {
            Api::<FailoverGroup>::namespaced(c.client.clone(), &s.ns.name)
                .patch(
                    GROUP,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(serde_json::json!({
                        "spec": {"volumeReplications": []}
                    })),
                )
                .await
                .with_context(|| format!("dropping the volumes from the group in {}", c.name))?;
        }
        // A stateless application has no replicated volumes at all: without this, the
        // storage simulator would rightly flag the workloads starting in west on its
        // Secondary copies.
        delete_volume_replications(s).await?;
        let op = s.start_operation().await?;
        let (east, west) = (s.adapter(&s.env.east), s.adapter(&s.env.west));
        let (e, w) = with_limit("the failover", async {
            tokio::join!(
                Box::pin(east.process_failover(&op)),
                Box::pin(west.process_failover(&op))
            )
        })
        .await?;
        e.context("east (source) failed")?;
        w.context("west (target) failed")?;
        let state = s
            .store
            .get_group_state(&s.group)
            .await?
            .context("no group state")?;
        ensure!(
            state.active_cluster == "west" && state.op_id.is_none(),
            "{state:?}"
        );
        // No volume, so no handoff record: the claim rested on the source's group mark.
        let handoffs = s.store.list_handoffs(&op.id).await?;
        ensure!(handoffs.is_empty(), "{handoffs:?}");
        let source_journal = s.store.journal(&op.id, "east").await?;
        ensure!(
            source_journal
                .iter()
                .any(|j| j.task == "MarkAllReady" && j.status == StepStatus::Done),
            "{source_journal:?}"
        );
        let west_api = ClusterClient::new(s.env.west.client.clone(), "west");
        workloads::wait_ready(
            &west_api,
            WorkloadKind::Deployment,
            &s.ns.name,
            "api",
            SETTLE,
        )
        .await?;
        let east_api = ClusterClient::new(s.env.east.client.clone(), "east");
        let view =
            workloads::get_workload(&east_api, WorkloadKind::Deployment, &s.ns.name, "api").await?;
        ensure!(view.replicas == 0, "east api: {}", view.describe());
        Ok(())
    }))
    .await
}

/// Deletes the namespace's VolumeReplications in both clusters.
async fn delete_volume_replications(s: &Scenario) -> Result<()> {
    for c in s.env.clusters() {
        let api = Api::<kube::api::DynamicObject>::namespaced_with(
            c.client.clone(),
            &s.ns.name,
            &failover_tests::kube::volume_replication_resource(),
        );
        for (volume, _, _) in failover_tests::fixtures::VOLUMES {
            let name = volume.rsplit('/').next().unwrap_or(volume);
            api.delete(name, &kube::api::DeleteParams::default())
                .await
                .with_context(|| format!("deleting VolumeReplication {name} in {}", c.name))?;
        }
    }
    Ok(())
}
