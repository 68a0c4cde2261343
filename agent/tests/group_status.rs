//! The FailoverGroup status kept current by the real `failover-agent` binaries of east and
//! west (kubeconfig of each cluster, one moto table, two inboxes, the storage simulator
//! playing the volume driver):
//!
//! * right after start: east Primary, west Standby, both `Ready=True` and `SpecValid=True`,
//!   the per-resource states as each cluster sees them;
//! * an operation east → west started in DynamoDB (as `failoverctl failover` does) runs
//!   through both agents; afterwards west is Primary and east Standby at epoch 1 with the
//!   operation as `lastOperation`;
//! * an invalid spec (a volume naming no workload of the group) gets `SpecValid=False`
//!   naming the field and a Warning Event on the group; the agent keeps running.
//!
//! The test takes its own namespaces, table and queue names.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use failover_agent::failover_group::group_status::{COND_READY, COND_SPEC_VALID};
use failover_messages::crd::{
    FailoverGroup, FailoverGroupStatus, FailoverPhase, GroupRole, VolumeReplicationRef,
};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::Mode;
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::fixtures::{self, GROUP, SETTLE, VOLUMES, install_crds};
use failover_tests::kube::{Cluster, TestEnv};
use failover_tests::storage_sim::{SimOptions, StorageSim};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::process::{Child, Command};

const AGENT: &str = env!("CARGO_BIN_EXE_failover-agent");
const DEADLINE: Duration = Duration::from_secs(120);

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

struct Agent {
    child: Child,
    log: PathBuf,
}

fn spawn_agent(env: &TestEnv, c: &Cluster, table: &str, prefix: &str) -> Result<Agent> {
    let log = std::env::temp_dir().join(format!(
        "failover-agent-group-status-{}-{}-{}.log",
        c.name,
        std::process::id(),
        free_port()?
    ));
    let mut cmd = Command::new(AGENT);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAILOVER_") || k.starts_with("AWS_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("AWS_ENDPOINT_URL", &env.aws.endpoint_url)
        .env("AWS_REGION", &env.aws.region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "info")
        .args([
            "--cluster",
            &c.name,
            "--table",
            table,
            "--queue-prefix",
            prefix,
        ])
        .arg("--kubeconfig")
        .arg(&c.kubeconfig)
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .args(["--heartbeat-interval", "2s", "--reread-interval", "1s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&log)?))
        .kill_on_drop(true)
        .spawn()?;
    Ok(Agent { child, log })
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = tokio::time::Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > DEADLINE {
            bail!("{what} did not happen within {DEADLINE:?} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition<'a>(s: &'a FailoverGroupStatus, t: &str) -> Option<(&'a str, &'a str, &'a str)> {
    s.conditions
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| (c.status.as_str(), c.reason.as_str(), c.message.as_str()))
}

/// Waits until the group in `c` has `role`, `active`, `epoch` and `Ready=True`.
async fn wait_role(
    c: &Cluster,
    ns: &str,
    role: GroupRole,
    active: &str,
    epoch: u64,
) -> Result<FailoverGroupStatus> {
    let api: Api<FailoverGroup> = Api::namespaced(c.client.clone(), ns);
    let last = std::rc::Rc::new(std::cell::RefCell::new(FailoverGroupStatus::default()));
    let res = eventually(&format!("{role:?} with Ready=True in {}", c.name), || {
        let api = api.clone();
        let last = last.clone();
        async move {
            let fg = api.get(GROUP).await?;
            let st = fg.status.unwrap_or_default();
            *last.borrow_mut() = st.clone();
            Ok((st.role == Some(role)
                && st.active_cluster.as_deref() == Some(active)
                && st.epoch == Some(epoch)
                && st.observed_generation == fg.metadata.generation
                && condition(&st, COND_SPEC_VALID).is_some_and(|c| c.0 == "True")
                && condition(&st, COND_READY).is_some_and(|c| c.0 == "True"))
            .then_some(st))
        }
    })
    .await;
    res.with_context(|| format!("last status in {}: {:#?}", c.name, last.borrow()))
}

#[tokio::test]
async fn the_agents_keep_the_group_status_current() -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-gstatus").await?;
    let flux_ns = env.namespace("fo-gstatus-flux").await?;
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
    let table = env.aws.unique("fo-gstatus");
    ensure_table(&ddb, &table).await?;
    let store = Store::new(&ddb, &table);
    let prefix = format!("{}-", env.aws.unique("fo"));
    let setup = Inbox::new(
        env.aws.sqs(),
        "east",
        InboxOptions {
            prefix: prefix.clone(),
            ..InboxOptions::default()
        },
    );
    for c in env.clusters() {
        setup.ensure_queues(&c.name).await?;
    }
    let mut agents = Vec::new();
    let res = async {
        fixtures::create_application(&env, &ns.name, &flux_ns.name).await?;
        fixtures::wait_starting_point(&env, &ns.name).await?;
        let group = GroupRef::new(&ns.name, GROUP)?;
        store.register_group(&group, "east").await?;
        for c in env.clusters() {
            agents.push(spawn_agent(&env, c, &table, &prefix)?);
        }

        // 1. The starting point.
        let east = wait_role(&env.east, &ns.name, GroupRole::Primary, "east", 0).await?;
        let res = |st: &FailoverGroupStatus, kind: &str, name: &str| {
            st.resources
                .iter()
                .find(|r| r.kind == kind && r.name == name)
                .map(|r| r.state.clone())
        };
        ensure!(
            res(&east, "Deployment", "api").as_deref() == Some("Running 2/2"),
            "{east:#?}"
        );
        ensure!(
            res(&east, "VolumeReplication", VOLUMES[0].0).as_deref() == Some("Primary"),
            "{east:#?}"
        );
        ensure!(
            res(&east, "Ingress", "api").as_deref() == Some("Active"),
            "{east:#?}"
        );
        ensure!(
            res(&east, "HelmRelease", &format!("{}/api", flux_ns.name)).as_deref()
                == Some("Reconciling"),
            "{east:#?}"
        );
        let west = wait_role(&env.west, &ns.name, GroupRole::Standby, "east", 0).await?;
        ensure!(
            res(&west, "Deployment", "api").as_deref() == Some("ScaledDown"),
            "{west:#?}"
        );
        ensure!(
            res(&west, "VolumeReplication", VOLUMES[0].0).as_deref() == Some("Secondary"),
            "{west:#?}"
        );
        ensure!(
            res(&west, "VirtualService", "api").as_deref() == Some("Passive"),
            "{west:#?}"
        );

        // 2. An operation east -> west, started as failoverctl does; the agents' re-read
        // timers find it.
        let StartOutcome::Started(op) = store
            .start_operation(StartRequest {
                group: group.clone(),
                source: "east".into(),
                target: "west".into(),
                mode: Mode::Consistency,
                force: false,
                source_is_down: false,
                reason: "group status test".into(),
                requested_by: "failoverctl:test".into(),
                lease_ttl: Duration::from_secs(120),
                op_id: None,
            })
            .await?
        else {
            bail!("the operation did not start");
        };
        wait_role(&env.west, &ns.name, GroupRole::Primary, "west", 1).await?;
        // The close releases the group state before it writes the operation item, so a
        // refresh between the two shows west active with the operation still running; the
        // close's own status update follows it.
        let west_api: Api<FailoverGroup> = Api::namespaced(env.west.client.clone(), &ns.name);
        let west = eventually("the finished operation in west's status", || {
            let api = west_api.clone();
            let id = op.id.clone();
            async move {
                let st = api.get(GROUP).await?.status.unwrap_or_default();
                let finished = st.last_operation.as_ref().is_some_and(|l| {
                    l.id == id && l.phase.is_some_and(|p| p != FailoverPhase::Running)
                });
                Ok(finished.then_some(st))
            }
        })
        .await?;
        let last = west.last_operation.clone().context("no lastOperation")?;
        ensure!(
            last.id == op.id
                && last.phase == Some(FailoverPhase::Succeeded)
                && last.source_cluster.as_deref() == Some("east")
                && last.target_cluster.as_deref() == Some("west"),
            "{west:#?}"
        );
        let east = wait_role(&env.east, &ns.name, GroupRole::Standby, "west", 1).await?;
        ensure!(
            res(&east, "Deployment", "api").as_deref() == Some("ScaledDown"),
            "{east:#?}"
        );
        // East shows the same operation, finished, before its status is expected to settle.
        let east_api: Api<FailoverGroup> = Api::namespaced(env.east.client.clone(), &ns.name);
        eventually("the finished operation in east's status", || {
            let api = east_api.clone();
            let id = op.id.clone();
            async move {
                let st = api.get(GROUP).await?.status.unwrap_or_default();
                Ok(st
                    .last_operation
                    .filter(|l| l.id == id && l.phase == Some(FailoverPhase::Succeeded))
                    .map(|_| ()))
            }
        })
        .await?;
        ensure!(
            res(&west, "Deployment", "api").as_deref() == Some("Running 2/2"),
            "{west:#?}"
        );

        // Settled: re-reads (every second) do not write an unchanged status again.
        let api: Api<FailoverGroup> = Api::namespaced(env.east.client.clone(), &ns.name);
        let before = api.get(GROUP).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let after = api.get(GROUP).await?;
        ensure!(
            before.metadata.resource_version == after.metadata.resource_version,
            "the group was rewritten without a change: {:?} -> {:?}\nbefore: {:#?}\nafter: {:#?}",
            before.metadata.resource_version,
            after.metadata.resource_version,
            before.status,
            after.status
        );

        // 3. An invalid spec in east: a volume naming no workload of the group.
        let mut spec = api.get(GROUP).await?.spec;
        spec.volume_replications.push(VolumeReplicationRef {
            name: "extra".into(),
            workload: Some("nope".into()),
        });
        let patched = api
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "spec": spec })),
            )
            .await?;
        let generation = patched.metadata.generation;
        let st = eventually("SpecValid=False in east", || {
            let api = api.clone();
            async move {
                let fg = api.get(GROUP).await?;
                let st = fg.status.unwrap_or_default();
                Ok((st.observed_generation == generation
                    && condition(&st, COND_SPEC_VALID).is_some_and(|c| c.0 == "False"))
                .then_some(st))
            }
        })
        .await?;
        let (_, reason, message) = condition(&st, COND_SPEC_VALID).context("no SpecValid")?;
        ensure!(reason == "InvalidSpec", "{st:#?}");
        ensure!(
            message.contains("spec.volumeReplications[2].workload: names no workload of the group"),
            "{message}"
        );
        ensure!(
            condition(&st, COND_READY).is_some_and(|c| c.0 == "False"),
            "{st:#?}"
        );
        let events = eventually("the InvalidSpec warning on the group", || async {
            let list = Api::<K8sEvent>::namespaced(env.east.client.clone(), &ns.name)
                .list(&ListParams::default())
                .await?;
            let found: Vec<K8sEvent> = list
                .items
                .into_iter()
                .filter(|e| {
                    e.reason.as_deref() == Some("InvalidSpec")
                        && e.type_.as_deref() == Some("Warning")
                        && e.regarding.as_ref().is_some_and(|r| {
                            r.kind.as_deref() == Some("FailoverGroup")
                                && r.name.as_deref() == Some(GROUP)
                        })
                })
                .collect();
            Ok((!found.is_empty()).then_some(found))
        })
        .await?;
        ensure!(
            events[0]
                .note
                .as_deref()
                .is_some_and(|n| n.contains("spec.volumeReplications[2].workload")),
            "{events:?}"
        );
        // The operation's Events on its Failover in west: stages started and finished.
        let fo_events = Api::<K8sEvent>::namespaced(env.west.client.clone(), &ns.name)
            .list(&ListParams::default())
            .await?;
        for reason in ["StageStarted", "StageFinished", "Succeeded"] {
            ensure!(
                fo_events
                    .items
                    .iter()
                    .any(|e| e.reason.as_deref() == Some(reason)
                        && e.regarding
                            .as_ref()
                            .is_some_and(|r| r.kind.as_deref() == Some("Failover"))),
                "no {reason} event on the Failover in west: {:?}",
                fo_events
                    .items
                    .iter()
                    .map(|e| (&e.reason, &e.note))
                    .collect::<Vec<_>>()
            );
        }
        for a in &mut agents {
            ensure!(a.child.try_wait()?.is_none(), "an agent exited");
        }
        ensure!(sim.violations_in(&ns.name).is_empty(), "storage violations");
        Ok(())
    }
    .await;
    sim.shutdown();
    let mut logs = String::new();
    for mut a in agents {
        let _ = a.child.kill().await;
        logs.push_str(&std::fs::read_to_string(&a.log).unwrap_or_default());
    }
    let res = res.and_then(|()| {
        ensure!(!logs.contains("panicked"), "an agent panicked:\n{logs}");
        Ok(())
    });
    if let Err(e) = &res {
        // The error first: CI shows only the head and tail of a long output.
        eprintln!("test failed: {e:#}");
        eprintln!("agent logs:\n{logs}\n{}", ns.dump().await);
    }
    ns.cleanup().await;
    flux_ns.cleanup().await;
    res
}
