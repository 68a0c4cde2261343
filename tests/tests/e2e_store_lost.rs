//! The coordination store losing its data: the scenario's own moto server is restarted with
//! every table and queue gone while both agents run and the group is idle in east. The
//! group is set to `onCoordinationLoss: KeepServing`, so the agents' own reaction shows
//! apart from lease fencing (which `e2e_lease.rs` covers): they report a clear error naming
//! the table, stay alive, and change nothing in either cluster; `failoverctl failover`
//! fails with an error naming the table, and no volume is ever Primary in both clusters.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use failover_messages::crd::FailoverGroup;
use failover_tests::agents::AgentStart;
use failover_tests::aws::PrivateMoto;
use failover_tests::fixtures::GROUP;
use failover_tests::kube::{TestEnv, wait_for};
use failover_tests::observe::side_snapshot;
use failover_tests::scenario::Scenario;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// How long the harness watches both clusters after the agents reported the loss: longer
/// than the agents' lease (`SCENARIO_LEASE`), long enough for any reaction to show.
const WATCH: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_lost_its_data_is_reported_and_changes_nothing() -> Result<()> {
    let mut env = TestEnv::attach().await?;
    let dir = failover_tests::env::repo_root().join("target/tmp/e2e-store-lost-moto");
    std::fs::create_dir_all(&dir)?;
    let mut moto = PrivateMoto::start(&dir).await?;
    env.aws = moto.aws.clone();
    let mut s = Scenario::with_env(env, "e2e-store-lost").await?;
    let res = body(&mut s, &mut moto).await;
    s.finish(res).await
}

async fn body(s: &mut Scenario, moto: &mut PrivateMoto) -> Result<()> {
    s.prepare_application().await?;
    for c in s.env.clusters() {
        Api::<FailoverGroup>::namespaced(c.client.clone(), &s.ns.name)
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"onCoordinationLoss": "KeepServing"}})),
            )
            .await
            .with_context(|| format!("setting KeepServing in {}", c.name))?;
    }
    s.start_agents(AgentStart::default(), AgentStart::default())
        .await?;
    let before = sides(s).await?;

    moto.restart().await?;
    let lost_at = Instant::now();
    let table = s.stack.table.clone();
    // Each agent says what is wrong, naming the table.
    for cluster in ["east", "west"] {
        let log = s.stack.dir.join(format!("agent-{cluster}.log"));
        let table = &table;
        wait_for(
            &format!("the {cluster} agent to report the missing table {table}"),
            Duration::from_secs(30),
            || {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let found = text
                    .lines()
                    .find(|l| l.contains("ResourceNotFoundException") && l.contains(table.as_str()))
                    .map(str::to_owned);
                async move { Ok::<_, String>(found) }
            },
        )
        .await?;
    }
    eprintln!(
        "both agents reported the lost table within {:?}",
        lost_at.elapsed()
    );
    tokio::time::sleep(WATCH.saturating_sub(lost_at.elapsed())).await;

    // Nothing moved in either cluster, and both agents are alive.
    let after = sides(s).await?;
    ensure!(
        before == after,
        "the clusters changed after the store lost its data:\nbefore: {before:#?}\nafter: {after:#?}"
    );
    s.stack.check_agents()?;

    // A coordinator gets an error naming what is gone, not a start.
    let args = s.failover_args("west", "store lost", &[]);
    let out = s
        .stack
        .failoverctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Whichever it reads first is gone: the table or the target's inbox queue.
    let names_it = stderr.contains(&table) || stderr.contains(&s.stack.prefix);
    ensure!(
        !out.status.success() && names_it && stderr.contains("does not exist"),
        "failoverctl failover against the lost table: {:?}\n{stderr}",
        out.status
    );
    eprintln!(
        "failoverctl: exit {:?}: {}",
        out.status.code(),
        stderr.trim()
    );
    s.assert_no_violations().await
}

/// Both clusters' sides: each object's generation and traffic annotation.
async fn sides(s: &Scenario) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for c in s.env.clusters() {
        for (k, v) in side_snapshot(c, &s.ns.name, &s.flux_ns.name).await? {
            out.push((format!("{}: {k}", c.name), v));
        }
    }
    Ok(out)
}
