//! Lost hints and failed calls cost time, never the operation, end to end with real
//! processes:
//!
//! * **a wait whose wake-ups are all lost looks once more before its limit**: the source's
//!   SQS link is black-holed for the whole operation and the target is cut from DynamoDB
//!   for its first seconds, so the target's preflight finishes well after the source began
//!   waiting for it. The re-read interval (30 s) equals the Initialization limit (30 s): the
//!   source's next timed re-read would come after its limit, and only the last look before
//!   the limit sees the preflight done (a chaos run found this operation failed at 30.7 s);
//! * **a run interrupted by a failed DynamoDB call resumes at once**: the source's READY
//!   write fails once (an injected error, not retried), which ends its run early; with a
//!   300 s re-read and nothing else to wake it (the target waits silently for READY), only
//!   the runner's quick resume finishes the operation within the test's limit;
//! * **an abort after the source's READY is rolled back at once**: the source only waits for
//!   the operation to close, and that wait stops on the abort.

use std::time::Duration;

use anyhow::{Result, ensure};
use failover_messages::records::Mode;
use failover_tests::agents::AgentStart;
use failover_tests::faults::Service;
use failover_tests::fixtures::assert_side_settled;
use failover_tests::scenario::{Scenario, failpoints_built, with_failpoints};

/// How long `failoverctl failover --wait` may take.
const DEADLINE: Duration = Duration::from_secs(180);

/// Everything a finished failover east → west leaves: the operation Succeeded, both
/// clusters settled, no storage violation.
async fn assert_moved_to_west(s: &mut Scenario, reason: &str) -> Result<()> {
    let op = s.succeeded_on("west", reason).await?;
    ensure!(op.mode == Mode::Consistency, "the operation ran as {op:?}");
    assert_side_settled(&s.env.west, &s.ns.name, &s.flux_ns.name, true).await?;
    assert_side_settled(&s.env.east, &s.ns.name, &s.flux_ns.name, false).await?;
    s.assert_no_violations().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_whose_wake_ups_are_lost_looks_once_more_before_its_limit() -> Result<()> {
    let mut s = Scenario::new("e2e-live-last-look").await?;
    s.stack.agent_options.reread_interval = Duration::from_secs(30);
    let res = async {
        let proxied = AgentStart {
            faults: true,
            ..AgentStart::default()
        };
        s.start(proxied.clone(), proxied).await?;
        let faults = s.stack.faults();
        faults.cut("east", Service::Sqs).await?;
        faults.cut("west", Service::Dynamo).await?;
        let reason = "wake-ups lost, the target late";
        let args = s.failover_args("west", reason, &[]);
        let ctl = s.spawn_failoverctl(&args)?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        faults.heal("west", Service::Dynamo).await?;
        let report = ctl.finish(DEADLINE).await;
        faults.heal_all().await?;
        let report = report?;
        eprintln!(
            "without the source's wake-ups: failoverctl finished in {:.1} s",
            report.elapsed.as_secs_f64()
        );
        report.ensure_success()?;
        assert_moved_to_west(&mut s, reason).await
    }
    .await;
    s.finish(res).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_interrupted_by_a_failed_call_resumes_without_waiting_for_the_re_read() -> Result<()>
{
    ensure!(
        failpoints_built()?,
        "the agent under test was built without failpoints: nothing would be injected"
    );
    let mut s = Scenario::new("e2e-live-resume").await?;
    s.stack.agent_options.reread_interval = Duration::from_secs(300);
    let res = async {
        let east = with_failpoints("store::mark_all_ready::before=1*return(unavailable)");
        s.start(east, AgentStart::default()).await?;
        let reason = "READY failed once";
        let args = s.failover_args("west", reason, &[]);
        let report = s
            .spawn_failoverctl(&args)?
            .finish(Duration::from_secs(120))
            .await?;
        let log = s.stack.agent_log("east")?;
        ensure!(
            log.contains("store::mark_all_ready::before") && log.contains("resumes_in"),
            "east's READY write did not fail and resume as injected; its log:\n{}",
            failover_tests::scenario::tail(&log, 40)
        );
        report.ensure_success()?;
        assert_moved_to_west(&mut s, reason).await
    }
    .await;
    s.finish(res).await
}

/// An abort that lands after the source's READY, while the source only waits for the
/// operation to close (the target cannot claim: every claim attempt fails), is rolled back at
/// once: the wait stops on the abort, so the rollback, which waits for the forward run to
/// stop, does not wait for the Completion stage's limit (210 s by default; a chaos run, seed
/// 90210, found the operation stuck in `Aborting` that long).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_after_the_sources_ready_rolls_it_back_without_waiting_for_its_completion_limit()
-> Result<()> {
    ensure!(
        failpoints_built()?,
        "the agent under test was built without failpoints: nothing would be injected"
    );
    let mut s = Scenario::new("e2e-live-abort").await?;
    let res = async {
        let west = with_failpoints("store::claim_promotion::before=return(unavailable)");
        s.start(AgentStart::default(), west).await?;
        let reason = "abort after READY";
        let args = s.failover_args("west", reason, &[]);
        let ctl = s.spawn_failoverctl(&args)?;
        let op_id = s.wait_operation(Duration::from_secs(30)).await?;
        let store = &s.stack.store;
        failover_tests::kube::wait_for("east's READY records", Duration::from_secs(60), || async {
            let handoffs = store
                .list_handoffs(&op_id)
                .await
                .map_err(|e| format!("{e:#}"))?;
            if handoffs.is_empty() {
                Err("no READY record yet".to_owned())
            } else {
                Ok(Some(()))
            }
        })
        .await?;
        let out = s.stack.failoverctl(&["abort", &op_id])?;
        ensure!(
            out.status.success(),
            "failoverctl abort exited {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let asked = std::time::Instant::now();
        let state = failover_tests::fixtures::wait_group_idle_on(
            store,
            &s.group,
            "east",
            Duration::from_secs(45),
        )
        .await?;
        eprintln!(
            "abort after READY: east active again {:.1} s after the abort",
            asked.elapsed().as_secs_f64()
        );
        ensure!(state.promotion_claimed_by.is_none(), "{state:?}");
        let op = store.get_operation(&op_id).await?;
        ensure!(
            op.as_ref()
                .is_some_and(|o| o.phase == failover_messages::records::Phase::Aborted),
            "the operation did not close as Aborted: {op:?}"
        );
        let report = ctl.finish(Duration::from_secs(60)).await?;
        ensure!(
            report.exit == Some(6),
            "failoverctl --wait exited {:?}: {}",
            report.exit,
            report.stderr
        );
        assert_side_settled(&s.env.east, &s.ns.name, &s.flux_ns.name, true).await?;
        assert_side_settled(&s.env.west, &s.ns.name, &s.flux_ns.name, false).await?;
        s.assert_no_violations().await
    }
    .await;
    s.finish(res).await
}
