//! Losing a region, end to end with real processes: each agent reaches DynamoDB, SQS and its
//! kube-apiserver through its own toxiproxy proxies (one moto behind both clusters' proxies
//! stands for a strongly consistent global table; `failoverctl` reaches it directly, as the
//! surviving region's endpoint), and `failoverctl setup --queue-endpoint` records each
//! cluster's inbox behind that cluster's SQS proxy, so a notification to east travels
//! through east's "region".
//!
//! "East's region lost" is east's DynamoDB and SQS proxies cut and east's agent killed;
//! Kubernetes restarts the agent at once (its cluster is still there), and the restarted agent
//! cannot take its serving lease. A forced failover to west must then complete (its wait for
//! east's lease included) without waiting on the notifications it cannot deliver to east;
//! east must fence on its own before west promotes (the storage simulator sees no volume
//! Primary in both clusters), and stay fenced when its region returns.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use failover_messages::records::Mode;
use failover_tests::agents::AgentStart;
use failover_tests::faults::Service;
use failover_tests::fixtures::{assert_side_settled, wait_group_status};
use failover_tests::kube::wait_for;
use failover_tests::observe::lease_version;
use failover_tests::scenario::Scenario;

/// Both agents' `--lease-duration`.
const LEASE: Duration = Duration::from_secs(6);

fn through_proxies() -> AgentStart {
    AgentStart {
        faults: true,
        ..AgentStart::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_easts_region_lost_a_forced_failover_completes_in_west_and_east_fences() -> Result<()>
{
    let mut s = Scenario::new("e2e-region").await?;
    s.stack.agent_options.lease_duration = Some(LEASE);
    let res = Box::pin(region_lost(&mut s)).await;
    s.finish(res).await
}

async fn region_lost(s: &mut Scenario) -> Result<()> {
    s.start(through_proxies(), through_proxies()).await?;
    let ns = s.ns.name.clone();
    let flux_ns = s.flux_ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());

    // Each cluster's inbox recorded behind its own SQS proxy, as `setup` does for queues in
    // their own regions.
    let east_sqs = s.stack.faults().url("east", Service::Sqs).await?;
    let west_sqs = s.stack.faults().url("west", Service::Sqs).await?;
    let setup = s.stack.failoverctl(&[
        "setup",
        "--cluster",
        "east,west",
        "--queue-endpoint",
        &format!("east={east_sqs}"),
        "--queue-endpoint",
        &format!("west={west_sqs}"),
    ])?;
    ensure!(
        setup.status.success(),
        "failoverctl setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );
    for (cluster, endpoint) in [("east", &east_sqs), ("west", &west_sqs)] {
        let route = s
            .stack
            .store
            .get_inbox_route(cluster)
            .await?
            .with_context(|| format!("no inbox route recorded for {cluster}"))?;
        ensure!(
            route.endpoint.as_deref() == Some(endpoint.as_str())
                && route
                    .queue_url
                    .ends_with(&format!("{}{cluster}", s.stack.prefix)),
            "{route:?}"
        );
    }

    // East's agent has recorded the group in the FailoverGroup's status, as it does on its
    // re-reads: a restarted agent that cannot read the table fences the groups it recorded.
    wait_group_status(&east, &ns, "east", 0).await?;

    // East's region goes: its AWS endpoints black-holed, its agent killed and restarted at
    // once (its cluster is still up), unable to take its lease.
    s.stack.faults().cut("east", Service::Dynamo).await?;
    s.stack.faults().cut("east", Service::Sqs).await?;
    s.stack.kill_agent("east")?;
    s.stack.spawn_agent_with("east", through_proxies()).await?;
    let lost_at = Instant::now();

    let reason = "east's region lost";
    let args = s.failover_args("west", reason, &["--force"]);
    let started = Instant::now();
    let out = s
        .stack
        .failoverctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let took = started.elapsed();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --force --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    // The notification to east could not be delivered and was reported, not waited for.
    ensure!(
        stderr.lines().any(|l| l.contains("notification failed")
            && l.contains("got no answer within 3s")
            && l.contains("cluster=east")),
        "no warning about east's notification:\n{stderr}"
    );
    let op = s.succeeded_on("west", reason).await?;
    ensure!(op.force && op.mode == Mode::Consistency, "{op:?}");
    assert_side_settled(&west, &ns, &flux_ns, true).await?;
    // East fenced on its own, without DynamoDB, before west promoted.
    assert_side_settled(&east, &ns, &flux_ns, false).await?;
    let violations = s.stack.violations_so_far()?;
    ensure!(violations.is_empty(), "storage violations: {violations:#?}");
    eprintln!(
        "region lost: failoverctl (with --wait) answered after {:.1} s; checked {:.1} s after the loss",
        took.as_secs_f64(),
        lost_at.elapsed().as_secs_f64(),
    );

    // East's region returns: it renews its lease again, and stays fenced (not entitled).
    s.stack.faults().heal("east", Service::Dynamo).await?;
    s.stack.faults().heal("east", Service::Sqs).await?;
    let before = lease_version(&s.stack.store, "east").await.ok();
    {
        let store = &s.stack.store;
        wait_for("east's lease renewed after the heal", LEASE * 4, || async {
            let now = lease_version(store, "east").await?;
            Ok((Some(now) > before).then_some(()))
        })
        .await?;
    }
    s.stack.wait_agent_ready("east").await?;
    let store = &s.stack.store;
    tokio::time::sleep(LEASE).await;
    assert_side_settled(&east, &ns, &flux_ns, false)
        .await
        .context("east after its region returned")?;
    assert_side_settled(&west, &ns, &flux_ns, true)
        .await
        .context("west after east's region returned")?;
    let state = store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(
        state.active_cluster == "west" && state.op_id.is_none(),
        "{state:?}"
    );
    s.assert_no_violations().await
}
