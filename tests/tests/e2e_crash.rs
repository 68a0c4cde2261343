//! Crashes at every step boundary, end to end with real processes: agents built with
//! failpoints (`failover_messages::failpoint`) abort the way SIGKILL would at chosen places,
//! the harness restarts them as a Deployment would, and the operation still ends
//! Succeeded, with both clusters as the operation says and no volume ever Primary in two
//! clusters (CONSISTENCY) or the same pods on a Secondary volume.
//!
//! * **every step, after it acted and before its outcome is journaled**
//!   (`engine::done::before`), both agents, CONSISTENCY: each restart crashes at the next
//!   step (`1*off->1*return(crash)`: the resumed step passes, the one after it crashes), so
//!   every step of both sides is re-run after a crash;
//! * **every step, after its intent is journaled and before it acts** (`engine::run::
//!   before`), both agents, UPTIME;
//! * **protocol writes whose answer was lost**: the source crashes right after writing READY,
//!   the target right after its claim, after a volume's PROMOTED and right after its close
//!   released the group (the history record and the operation's phase not yet written);
//!   each restart continues without redoing what the records say is done, and finishes the
//!   interrupted close;
//! * **`failoverctl` killed right after its start write**: the agents run the operation
//!   anyway, and `failoverctl watch` reports its success;
//! * **a failure whose agent crashes between its two writes**: the source's run fails (a
//!   volume never demotes) and its agent crashes right after the failure mark landed on the
//!   group state, before the operation item's `Failed`: the operation reads `Failed` all the
//!   same, `failoverctl failover --wait` reports it, and `failoverctl abort` rolls the
//!   source back.
//!
//! Re-reads are 30 s apart, so the agents move on SQS wake-ups and their start-up reads.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use failover_messages::crd::FailoverGroup;
use failover_messages::records::{Mode, Phase};
use failover_tests::agents::AgentStart;
use failover_tests::fixtures::{
    GROUP, OPERATION_DEADLINE, assert_side_settled, wait_group_idle_on,
};
use failover_tests::scenario::{
    CrashReport, Scenario, crash_points, failpoints_built, with_failpoints,
};
use failover_tests::storage_sim::set_stuck;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// How long one operation with its crashes and restarts may take.
const DEADLINE: Duration = Duration::from_secs(240);

async fn scenario(label: &str) -> Result<Scenario> {
    ensure!(
        failpoints_built()?,
        "the agent under test was built without failpoints: nothing would be injected"
    );
    let mut s = Scenario::new(label).await?;
    s.stack.agent_options.reread_interval = Duration::from_secs(30);
    Ok(s)
}

/// Both clusters as a finished failover to west leaves them, the operation Succeeded in
/// `mode`, and no storage violation.
async fn assert_moved_to_west(s: &mut Scenario, reason: &str, mode: Mode) -> Result<()> {
    let op = s.succeeded_on("west", reason).await?;
    ensure!(
        op.mode == mode,
        "the operation ran in {:?}: {op:?}",
        op.mode
    );
    assert_side_settled(&s.env.west, &s.ns.name, &s.flux_ns.name, true).await?;
    assert_side_settled(&s.env.east, &s.ns.name, &s.flux_ns.name, false).await?;
    s.assert_no_violations().await
}

fn assert_finished(report: &CrashReport) -> Result<()> {
    ensure!(
        report.exit == Some(0),
        "failoverctl exited {:?}\nstdout: {}\nstderr: {}",
        report.exit,
        report.stdout,
        report.stderr
    );
    eprintln!(
        "{} crashes ({} east, {} west) in {:.1} s:",
        report.crashes.len(),
        report.crashes_of("east"),
        report.crashes_of("west"),
        report.elapsed.as_secs_f64()
    );
    for (cluster, point) in &report.crashes {
        eprintln!("  {cluster}: {point}");
    }
    Ok(())
}

/// Crashes both agents at every step boundary `point` of a failover to west in `mode`.
async fn crash_at_every_step(label: &str, point: &str, mode: Mode) -> Result<()> {
    let mut s = scenario(label).await?;
    let res = async {
        let crashing = with_failpoints(&format!("{point}=1*off->1*return(crash)"));
        s.start(crashing.clone(), crashing.clone()).await?;
        let reason = format!("crash at every {point}");
        let extra: &[&str] = match mode {
            Mode::Uptime => &["--mode", "uptime"],
            Mode::Consistency => &[],
        };
        let args = s.failover_args("west", &reason, extra);
        let restart = BTreeMap::from([
            ("east".to_owned(), vec![crashing.clone()]),
            ("west".to_owned(), vec![crashing]),
        ]);
        let report = s.run_through_crashes(&args, &restart, DEADLINE).await?;
        assert_finished(&report)?;
        // Every step of both sides crashed once (the last of each side's steps may finish
        // before the side's next crash, so at least a handful each).
        ensure!(
            report.crashes_of("east") >= 3 && report.crashes_of("west") >= 3,
            "too few crashes to cover the steps: {report:?}"
        );
        assert_moved_to_west(&mut s, &reason, mode).await
    }
    .await;
    s.finish(res).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consistency_failover_survives_a_crash_after_every_step_acted() -> Result<()> {
    crash_at_every_step("e2e-crash-done", "engine::done::before", Mode::Consistency).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uptime_failover_survives_a_crash_before_every_step_acts() -> Result<()> {
    crash_at_every_step("e2e-crash-run", "engine::run::before", Mode::Uptime).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_writes_whose_answer_was_lost_are_not_redone_after_a_crash() -> Result<()> {
    let mut s = scenario("e2e-crash-proto").await?;
    let res = async {
        let east = with_failpoints("store::mark_all_ready::after=return(crash)");
        let west = with_failpoints("store::claim_promotion::after=return(crash)");
        s.start(east, west).await?;
        let reason = "crash after protocol writes";
        let args = s.failover_args("west", reason, &[]);
        // West crashes again after its first PROMOTED and right after the close released
        // the group (before the history record and the operation's phase); each restart
        // after that runs clean, and the restarted west finds the released group's
        // operation still open and finishes its close.
        let restart = BTreeMap::from([
            ("east".to_owned(), vec![AgentStart::default()]),
            (
                "west".to_owned(),
                vec![
                    with_failpoints("store::mark_promoted::after=return(crash)"),
                    with_failpoints("store::complete_operation::UpdateItem::after=return(crash)"),
                    AgentStart::default(),
                ],
            ),
        ]);
        let report = s.run_through_crashes(&args, &restart, DEADLINE).await?;
        assert_finished(&report)?;
        let crashed_at = |cluster: &str, point: &str| {
            report
                .crashes
                .iter()
                .any(|(c, p)| c == cluster && p.contains(point))
        };
        ensure!(
            crashed_at("east", "store::mark_all_ready::after")
                && crashed_at("west", "store::claim_promotion::after")
                && crashed_at("west", "store::mark_promoted::after")
                && crashed_at("west", "store::complete_operation::UpdateItem::after"),
            "not every protocol write crashed: {report:?}"
        );
        assert_moved_to_west(&mut s, reason, Mode::Consistency).await
    }
    .await;
    s.finish(res).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failoverctl_killed_after_its_start_write_leaves_an_operation_the_agents_finish()
-> Result<()> {
    let mut s = scenario("e2e-crash-ctl").await?;
    let res = async {
        s.start(AgentStart::default(), AgentStart::default())
            .await?;
        let reason = "failoverctl crashed";
        let args = s.failover_args("west", reason, &[]);
        let mut cmd = s
            .stack
            .failoverctl_command(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
        let out = cmd
            .env(
                "FAILPOINTS",
                "store::start_operation::UpdateItem::after=return(crash)",
            )
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code().is_none()
                && stderr.contains("failpoint store::start_operation::UpdateItem::after: crash"),
            "failoverctl did not crash after its start write: {:?}\n{stderr}",
            out.status
        );
        // The agents find the operation on their own (no SQS notice was sent) and finish it.
        let op = s.succeeded_on("west", reason).await?;
        let watch = s
            .stack
            .failoverctl(&["watch", &op.id, "--timeout", "30s"])?;
        ensure!(
            watch.status.code() == Some(0),
            "failoverctl watch: {:?}\n{}",
            watch.status,
            String::from_utf8_lossy(&watch.stderr)
        );
        assert_moved_to_west(&mut s, reason, Mode::Consistency).await
    }
    .await;
    s.finish(res).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_whose_agent_crashes_between_its_two_writes_still_fails_the_operation()
-> Result<()> {
    let mut s = scenario("e2e-crash-failed").await?;
    let res = async {
        let point = "store::fail_operation::UpdateItem::after";
        s.start(
            with_failpoints(&format!("{point}=return(crash)")),
            AgentStart::default(),
        )
        .await?;
        // A short demotion limit, and one of east's volumes never completes a change: east's
        // run fails by its deadline, and east crashes once the failure mark is written.
        let ns = s.ns.name.clone();
        for c in s.env.clusters() {
            Api::<FailoverGroup>::namespaced(c.client.clone(), &ns)
                .patch(
                    GROUP,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"timeouts": {"volumeDemotion": "6s"}}})),
                )
                .await
                .with_context(|| format!("shortening the demotion limit in {}", c.name))?;
        }
        set_stuck(&s.env.east.client, &ns, "db-data", true).await?;
        let reason = "failure mark, then a crash";
        let args = s.failover_args("west", reason, &[]);
        let restart = BTreeMap::from([
            ("east".to_owned(), vec![AgentStart::default()]),
            ("west".to_owned(), vec![AgentStart::default()]),
        ]);
        let report = s.run_through_crashes(&args, &restart, DEADLINE).await?;
        ensure!(
            report.exit == Some(4),
            "failoverctl failover --wait exited {:?} (want 4, failed)\nstdout: {}\nstderr: {}",
            report.exit,
            report.stdout,
            report.stderr
        );
        // failoverctl reads the failure from the mark, so it may exit before the run saw east
        // go down right after writing it: then wait for east's crash and start east again.
        if !report
            .crashes
            .iter()
            .any(|(c, p)| c == "east" && p.contains(point))
        {
            let waiting = tokio::time::Instant::now();
            loop {
                let proc = s.stack.proc_mut("agent-east")?;
                if !proc.running()? && crash_points(&proc.log_text()).any(|p| p.contains(point)) {
                    break;
                }
                ensure!(
                    waiting.elapsed() < Duration::from_secs(10),
                    "east did not crash after its failure mark: {report:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            s.stack
                .start_agent_with("east", AgentStart::default())
                .await?;
        }
        let store = s.stack.store.clone();
        let state = store.get_group_state(&s.group).await?.context("state")?;
        let op_id = state
            .op_id
            .clone()
            .context("the failed operation no longer holds the group")?;
        let op = store.get_operation(&op_id).await?.context("operation")?;
        ensure!(op.phase == Phase::Failed, "phase {:?}", op.phase);
        ensure!(
            op.message.as_deref().is_some_and(|m| m.contains("db-data")),
            "the failure names the volume: {:?}",
            op.message
        );
        ensure!(
            state.promotion_claimed_by.is_none() && op.promotion_started_at.is_none(),
            "a failed operation was claimed: {state:?} {op:?}"
        );

        // The storage recovers; the operator aborts: east comes back as it was.
        set_stuck(&s.env.east.client, &ns, "db-data", false).await?;
        let out = s.stack.failoverctl(&["abort", &op_id])?;
        ensure!(
            out.status.success(),
            "failoverctl abort exited {:?}\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_group_idle_on(&store, &s.group, "east", OPERATION_DEADLINE).await?;
        let op = store.get_operation(&op_id).await?.context("operation")?;
        ensure!(op.phase == Phase::Aborted, "phase {:?}", op.phase);
        assert_side_settled(&s.env.east, &ns, &s.flux_ns.name, true).await?;
        assert_side_settled(&s.env.west, &ns, &s.flux_ns.name, false).await?;
        s.assert_no_violations().await
    }
    .await;
    s.finish(res).await
}
