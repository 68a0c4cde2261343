//! Racing coordinators against real agents: while the source is slowed (east's `api-data`
//! is stuck in the storage simulator, so the source's demotion cannot complete), twenty
//! `failoverctl failover <group> --to west` processes launched at the same moment get
//! exactly one start (exit 0) and nineteen refusals (exit 3) naming the group and the
//! operation in flight, and every later attempt is refused the same way. Once the stuck volume is
//! lifted the started operation finishes on its own (`failoverctl watch` exits 0): the group
//! ends in west with exactly one history entry and the storage simulator saw nothing unsafe
//! (protocol rule 1).

use std::process::Output;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Phase};
use failover_tests::agents::{Stack, expect_exit};
use failover_tests::fixtures::{
    GROUP, OPERATION_DEADLINE, SETTLE, assert_failover_objects_succeeded, assert_records_moved,
    assert_side_settled, create_application, install_crds, wait_group_idle_on, wait_group_status,
    wait_starting_point,
};
use failover_tests::kube::TestEnv;
use failover_tests::storage_sim::{COND_COMPLETED, set_stuck, wait_volume};
use serde_json::Value;

/// The volume that holds the source up.
const STUCK: &str = "api-data";

/// How many `failoverctl failover` race for one group.
const RACERS: usize = 20;

/// Runs `failoverctl args` in `n` threads released by one barrier, so the processes start
/// at the same moment.
fn launch_at_once(stack: &Stack, args: &[&str], n: usize) -> Result<Vec<Output>> {
    let barrier = Barrier::new(n);
    let joined: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    stack.failoverctl(args)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    joined
        .into_iter()
        .map(|r| r.map_err(|_| anyhow!("failoverctl thread panicked"))?)
        .collect()
}

/// The operation id in `g: operation <id> started (…)`.
fn started_id(stdout: &str, g: &str) -> Result<String> {
    let prefix = format!("{g}: operation ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(" started ("))
        .with_context(|| format!("no 'started' line in: {stdout}"))?;
    ensure!(
        line.ends_with("(east -> west, CONSISTENCY, epoch 1)"),
        "started line: {line}"
    );
    Ok(line[prefix.len()..]
        .split_whitespace()
        .next()
        .context("no operation id")?
        .to_owned())
}

/// A refused start: exit 3, stderr naming the group and the operation in flight.
fn assert_refused(out: &Output, g: &str, op_id: &str, what: &str) -> Result<String> {
    let (stdout, stderr) = expect_exit(out, 3, what)?;
    ensure!(
        stderr.contains(g) && stderr.contains(op_id),
        "the refusal ({what}) does not name group {g} and operation {op_id}: {stderr}"
    );
    ensure!(
        !stdout.contains(" started ("),
        "a refused command reports a start ({what}): {stdout}"
    );
    Ok(stderr)
}

async fn body(env: &TestEnv, stack: &mut Stack, ns: &str, flux_ns: &str) -> Result<()> {
    stack.start_storage_sim(&[ns], Duration::from_millis(200))?;
    Box::pin(create_application(env, ns, flux_ns)).await?;
    wait_starting_point(env, ns).await?;
    stack.start_agents().await?;
    let group = GroupRef::new(ns, GROUP)?;
    let g = group.to_string();
    let out = stack.failoverctl(&["register", &g, "--active", "east"])?;
    expect_exit(&out, 0, "register")?;

    // Slow the source down: its demotion of api-data will not complete.
    set_stuck(&env.east.client, ns, STUCK, true).await?;

    // Twenty coordinators at the same moment: exactly one starts, every other is refused.
    let args = ["failover", g.as_str(), "--to", "west"];
    let outs = launch_at_once(stack, &args, RACERS)?;
    let codes: Vec<Option<i32>> = outs.iter().map(|o| o.status.code()).collect();
    let winners: Vec<&Output> = outs.iter().filter(|o| o.status.code() == Some(0)).collect();
    let losers: Vec<&Output> = outs.iter().filter(|o| o.status.code() == Some(3)).collect();
    if winners.len() != 1 || losers.len() != RACERS - 1 {
        let text: Vec<String> = outs
            .iter()
            .map(|o| {
                format!(
                    "exit {:?}\nstdout: {}\nstderr: {}",
                    o.status.code(),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                )
            })
            .collect();
        anyhow::bail!(
            "{RACERS} racing failoverctl: want one 0 and {} times 3, got {codes:?}:\n{text:#?}",
            RACERS - 1
        );
    }
    let (stdout, _) = expect_exit(winners[0], 0, "failover (race winner)")?;
    let op_id = started_id(&stdout, &g)?;
    for (i, loser) in losers.iter().enumerate() {
        let why = assert_refused(loser, &g, &op_id, &format!("failover (race loser {i})"))?;
        if i == 0 {
            eprintln!("race loser: {}", why.trim());
        }
    }

    // A second failover right after: refused, naming the operation in flight.
    let out = stack.failoverctl(&args)?;
    let why = assert_refused(&out, &g, &op_id, "failover (while in flight)")?;
    ensure!(why.contains("in flight"), "refusal: {why}");

    // The source really is held up in its demotion, and still nothing else may start.
    wait_volume(
        &env.east.client,
        ns,
        STUCK,
        "demotion requested and stuck",
        SETTLE,
        |v| {
            v.desired_raw.as_deref() == Some("secondary")
                && v.condition(COND_COMPLETED)
                    .is_some_and(|c| c.reason() == "Stuck")
        },
    )
    .await?;
    let out = stack.failoverctl(&[
        "failover",
        &g,
        "--to",
        "west",
        "--mode",
        "uptime",
        "--wait",
        "--timeout",
        "10s",
    ])?;
    assert_refused(
        &out,
        &g,
        &op_id,
        "failover --mode uptime --wait (while stuck)",
    )?;
    let out = stack.failoverctl(&["-o", "json", "status", &g])?;
    let (stdout, _) = expect_exit(&out, 0, "status -o json")?;
    let s: Value = serde_json::from_str(&stdout).with_context(|| format!("status: {stdout}"))?;
    ensure!(
        s["operation"] == op_id.as_str()
            && s["activeCluster"] == "east"
            && s["epoch"] == 1
            && s["lease"]["expired"] == false,
        "status while in flight: {s}"
    );
    let state = stack
        .store
        .get_group_state(&group)
        .await?
        .context("no group state")?;
    ensure!(
        state.op_id.as_deref() == Some(op_id.as_str()) && state.epoch == 1,
        "group state while in flight: {state:?}"
    );

    // Let the source go on; the one operation finishes by itself.
    set_stuck(&env.east.client, ns, STUCK, false).await?;
    let started = Instant::now();
    let out = stack.failoverctl(&["watch", &op_id, "--timeout", "90s"])?;
    let (stdout, _) = expect_exit(&out, 0, "watch")?;
    ensure!(
        stdout.contains(&format!("{g}: operation {op_id} finished Succeeded")),
        "watch output: {stdout}"
    );
    eprintln!(
        "finished {:?} after lifting the stuck volume",
        started.elapsed()
    );

    wait_group_idle_on(&stack.store, &group, "west", OPERATION_DEADLINE).await?;
    let op = stack
        .store
        .get_operation(&op_id)
        .await?
        .context("operation vanished")?;
    ensure!(
        op.mode == Mode::Consistency && op.phase == Phase::Succeeded && op.epoch == 1,
        "operation: {op:?}"
    );
    assert_records_moved(&stack.store, &group, &op).await?;
    let history = stack.store.history(&group, None).await?;
    ensure!(
        history.len() == 1 && history[0].operation.id == op_id,
        "exactly one history entry: {history:?}"
    );
    let ops = stack.store.list_operations(None).await?;
    let ours: Vec<&str> = ops
        .iter()
        .filter(|o| o.group == group)
        .map(|o| o.id.as_str())
        .collect();
    ensure!(ours == [op_id.as_str()], "operations recorded: {ours:?}");
    assert_side_settled(&env.west, ns, flux_ns, true).await?;
    assert_side_settled(&env.east, ns, flux_ns, false).await?;
    for c in env.clusters() {
        wait_group_status(c, ns, "west", 1).await?;
    }
    assert_failover_objects_succeeded(env, ns, &op).await?;

    stack.check_agents()?;
    let found = stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_racing_second_failover_is_refused_while_the_first_runs() -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-race").await?;
    let flux_ns = env.namespace("fo-race-flux").await?;
    let mut stack = Stack::new(&env, &ns.name, "e2e-race").await?;
    let res = Box::pin(body(&env, &mut stack, &ns.name, &flux_ns.name)).await;
    let out = match res {
        Ok(()) => Ok(()),
        Err(e) => {
            stack.print_logs();
            Err(anyhow!("{e:#}\n\n{}", ns.dump().await))
        }
    };
    stack.cleanup(out.is_ok()).await;
    ns.cleanup().await;
    flux_ns.cleanup().await;
    out
}
