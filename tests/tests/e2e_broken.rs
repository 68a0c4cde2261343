//! The fault tests would catch a broken agent: east's agent is built the same but told by
//! failpoints to skip stopping its workloads (`engine::skip::ScaleDown`, `engine::skip::
//! WaitPodsGone`: the steps report done without acting), the way a bug that loses the
//! scale-down would. The operation still "succeeds" by its records; the storage simulator
//! and the run checker must say what went wrong: a volume demoted under live pods and pods
//! left running on a Secondary volume, and east's workloads not scaled down.
//!
//! If this test fails, the checks every fault test relies on have gone blind.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Result, ensure};
use failover_tests::agents::AgentStart;
use failover_tests::checker::{Problem, check_run};
use failover_tests::scenario::{Scenario, failpoints_built, with_failpoints};

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
