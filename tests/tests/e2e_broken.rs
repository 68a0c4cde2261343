//! The fault tests would catch a broken agent: east's agent is built the same but told by
//! failpoints to skip stopping its workloads (`engine::skip::ScaleDown`, `engine::skip::
//! WaitPodsGone`: the steps report done without acting), the way a bug that loses the
//! scale-down would. The operation still "succeeds" by its records; the storage simulator
//! and the run checker must say what went wrong: a volume demoted under live pods and pods
//! left running on a Secondary volume, and east's workloads not scaled down.
//!
//! A second broken agent skips its claim (`engine::skip::ClaimPromotion`): its promotions
//! must refuse to act on a claim the group state does not show.
//!
//! If these tests fail, the checks every fault test relies on have gone blind.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use failover_messages::records::Phase;
use failover_tests::agents::AgentStart;
use failover_tests::checker::{Problem, check_run};
use failover_tests::fixtures::VOLUMES;
use failover_tests::scenario::{Scenario, failpoints_built, with_failpoints};
use failover_tests::storage_sim::{DesiredState, get_volume};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_reports_a_source_that_never_stops_its_pods() -> Result<()> {
    ensure!(
        failpoints_built()?,
        "the agent under test was built without failpoints: the broken variant cannot be made"
    );
    let mut s = Scenario::new("e2e-broken").await?;
    let res = async {
        let broken = with_failpoints("engine::skip::ScaleDown=return;engine::skip::WaitPodsGone=return");
        s.start(broken.clone(), AgentStart::default()).await?;
        let reason = "broken source";
        let args = s.failover_args("west", reason, &[]);
        let restart = BTreeMap::from([("east".to_owned(), vec![broken])]);
        let report = s
            .run_through_crashes(&args, &restart, Duration::from_secs(120))
            .await?;
        ensure!(
            report.exit == Some(0),
            "the broken operation should still finish by its records: {report:?}"
        );
        let verdict = check_run(&s.env, &mut s.stack, std::slice::from_ref(&s.group)).await?;
        eprintln!("the checker's verdict on the broken run:\n{verdict}");
        let demoted_under_pods = verdict
            .problems
            .iter()
            .any(|p| matches!(p, Problem::DemotedWithPods { .. }));
        let pods_on_secondary = verdict
            .problems
            .iter()
            .any(|p| matches!(p, Problem::PodsOnSecondary { .. }));
        ensure!(
            demoted_under_pods && pods_on_secondary,
            "the checker missed the broken source (want DemotedWithPods and PodsOnSecondary):\n{verdict}"
        );
        // The harness would have failed a real test on these: stop the simulator quietly.
        let found = s.stack.stop_storage_sim().await?;
        ensure!(!found.is_empty(), "the storage simulator recorded nothing");
        Ok(())
    }
    .await;
    s.finish(res).await
}

/// A target told by a failpoint to skip its claim (`engine::skip::ClaimPromotion`: the step
/// reports done without its conditional write) still refuses to promote: a promotion acts
/// only once a consistent read of the group state shows the claim held by its cluster (one
/// read per run, shared by the batch of promotions). The operation fails (exit 4) naming
/// the refusal, nothing is claimed, and no VolumeReplication in west is asked to become
/// primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_skips_its_claim_refuses_to_promote() -> Result<()> {
    ensure!(
        failpoints_built()?,
        "the agent under test was built without failpoints: the broken variant cannot be made"
    );
    let mut s = Scenario::new("e2e-broken-claim").await?;
    let res = async {
        let broken = with_failpoints("engine::skip::ClaimPromotion=return");
        s.start(AgentStart::default(), broken).await?;
        let g = s.group.to_string();
        let out =
            s.stack
                .failoverctl(&["failover", &g, "--to", "west", "--wait", "--timeout", "90s"])?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        ensure!(
            out.status.code() == Some(4),
            "failoverctl failover --wait exited {:?} (want 4, failed)\nstdout: {stdout}\nstderr: {stderr}",
            out.status.code()
        );
        let store = &s.stack.store;
        let state = store
            .get_group_state(&s.group)
            .await?
            .context("no group state")?;
        let op_id = state.op_id.clone().context("no operation holds the group")?;
        let op = store.get_operation(&op_id).await?.context("no operation")?;
        ensure!(op.phase == Phase::Failed, "phase {:?}", op.phase);
        let message = op.message.clone().unwrap_or_default();
        ensure!(
            message.contains("refusing to promote") && message.contains("nobody"),
            "the failure names the refused promotion: {message:?}"
        );
        ensure!(state.promotion_claimed_by.is_none(), "{state:?}");
        ensure!(state.active_cluster == "east", "{state:?}");
        for (volume, _, _) in VOLUMES {
            let seen = get_volume(&s.env.west.client, &s.ns.name, volume).await?;
            ensure!(
                seen.desired != Some(DesiredState::Primary),
                "west asked {volume} to become primary without a claim: {seen:?}"
            );
        }
        s.assert_no_violations().await
    }
    .await;
    s.finish(res).await
}
