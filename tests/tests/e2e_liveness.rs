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
//!   the runner's quick resume finishes the operation within the test's limit.

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
