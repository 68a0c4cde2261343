//! `failoverctl suspend` and `failoverctl resume` end to end: the real binary against moto
//! and both agents running (the shared [`Scenario`]).
//!
//! A suspended group refuses `failoverctl failover` (exit 3, saying it is suspended) and
//! `plan` names the blocker; suspending twice changes nothing; after `resume` the same
//! failover runs to its end and moves the group to west. An unregistered group is exit 7,
//! naming the group and the table.
//!
//! The agents here run bound to the ClusterRole the Helm chart renders
//! (`deploy/helm/failover-agent`, with the environment's `helm`) instead of the kustomize
//! base's, so a rule missing from the chart fails a real failover (the harness fails on any
//! RBAC refusal in an agent's log).

use anyhow::{Result, ensure};
use failover_tests::agents::{AgentStart, expect_exit};
use failover_tests::chart;
use failover_tests::scenario::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_group_refuses_a_failover_until_it_is_resumed() -> Result<()> {
    let mut s = Scenario::new("e2e-suspend").await?;
    s.stack.agent_options.cluster_role = Some(chart::cluster_role(&s.env, "east")?);
    let res = Box::pin(suspend_then_resume(&mut s)).await;
    s.finish(res).await
}

async fn suspend_then_resume(s: &mut Scenario) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let g = s.group.to_string();
    let table = s.stack.table.clone();

    let (out, _) = expect_exit(&s.stack.failoverctl(&["suspend", &g])?, 0, "suspend")?;
    ensure!(
        out.contains(&format!("suspended group {g} in table {table}")),
        "{out}"
    );
    let state = s.stack.store.get_group_state(&s.group).await?;
    ensure!(state.is_some_and(|st| st.suspended), "the flag is not set");

    let (again, _) = expect_exit(&s.stack.failoverctl(&["suspend", &g])?, 0, "suspend again")?;
    ensure!(
        again.contains("already suspended; nothing changed"),
        "{again}"
    );

    let args = s.failover_args("west", "e2e suspend", &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (_, err) = expect_exit(&s.stack.failoverctl(&args)?, 3, "failover while suspended")?;
    ensure!(err.contains(&g) && err.contains("suspended"), "{err}");
    ensure!(
        s.stack.store.history(&s.group, None).await?.is_empty(),
        "a refused failover left an operation"
    );
    let (_, blocked) = expect_exit(
        &s.stack.failoverctl(&["plan", &g, "--to", "west"])?,
        3,
        "plan while suspended",
    )?;
    ensure!(blocked.contains("suspended"), "{blocked}");

    let (resumed, _) = expect_exit(&s.stack.failoverctl(&["resume", &g])?, 0, "resume")?;
    ensure!(
        resumed.contains(&format!("resumed group {g} in table {table}")),
        "{resumed}"
    );
    let (again, _) = expect_exit(&s.stack.failoverctl(&["resume", &g])?, 0, "resume again")?;
    ensure!(
        again.contains("is not suspended; nothing changed"),
        "{again}"
    );

    expect_exit(&s.stack.failoverctl(&args)?, 0, "failover after resume")?;
    s.succeeded_on("west", "e2e suspend").await?;

    let missing = format!("{}/not-registered", s.ns.name);
    let (_, err) = expect_exit(
        &s.stack.failoverctl(&["suspend", &missing])?,
        7,
        "suspend of an unregistered group",
    )?;
    ensure!(
        err.contains(&missing) && err.contains(&table) && err.contains("not registered"),
        "{err}"
    );
    s.stack.check_agents()
}
