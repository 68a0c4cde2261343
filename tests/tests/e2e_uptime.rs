//! An UPTIME failover east → west with real processes (two `failover-agent` binaries with
//! least-privilege tokens, the storage simulator, `failoverctl`), then a CONSISTENCY fail-back
//! west → east onto the volumes the UPTIME source resynced.
//!
//! UPTIME promotes the target before the source shuts down, so the storage simulator does
//! record dual-Primary intervals: the test asserts there is one per volume, each closed and
//! inside the dual-active window the agents recorded on the operation (within the agents'
//! observation latency, [`OBSERVATION_SLACK`]); any other violation, or any violation in the
//! fail-back, fails it. The run checker (`failover_tests::checker`) must then find nothing:
//! it allows those intervals by the same rule, from the operation records.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::{HandoffState, Mode, Operation, Phase};
use failover_tests::agents::{Stack, expect_exit};
use failover_tests::checker::check_run;
use failover_tests::fixtures::{
    GROUP, OPERATION_DEADLINE, SETTLE, VOLUMES, assert_failover_objects_succeeded,
    assert_records_moved, assert_side_settled, create_application, install_crds,
    wait_group_idle_on, wait_group_status, wait_starting_point,
};
use failover_tests::kube::TestEnv;
use failover_tests::storage_sim::{COND_RESYNCING, Violation, wait_volume};
use jiff::{SignedDuration, Timestamp};

/// The agents record each end of the dual-active window when they have *observed* it (the
/// target after every volume reports Primary, the source after every volume reports
/// Secondary), while the simulator records the moment it wrote the status. A dual-Primary
/// interval may therefore start up to this much before the recorded start.
const OBSERVATION_SLACK: SignedDuration = SignedDuration::from_secs(1);

/// The operation the single `failoverctl failover` of `args` started (from its plain
/// output), after checking it exited 0 and reported `finished Succeeded`.
async fn run_failover(stack: &Stack, group: &GroupRef, args: &[&str]) -> Result<Operation> {
    let started = Instant::now();
    let out = stack.failoverctl(args)?;
    let (stdout, stderr) = expect_exit(&out, 0, &args.join(" "))?;
    eprintln!(
        "failoverctl {} took {:?}",
        args.join(" "),
        started.elapsed()
    );
    let prefix = format!("{group}: operation ");
    let line = stdout
        .lines()
        .find(|l| l.starts_with(&prefix) && l.contains(" started ("))
        .with_context(|| format!("no 'started' line in: {stdout}"))?;
    let id = line[prefix.len()..]
        .split_whitespace()
        .next()
        .context("no operation id")?;
    ensure!(
        stdout.contains(&format!("{group}: operation {id} finished Succeeded")),
        "no 'finished Succeeded' line: {stdout}\nstderr: {stderr}"
    );
    stack
        .store
        .get_operation(id)
        .await?
        .with_context(|| format!("operation {id} not stored"))
}

/// East's volumes after the UPTIME source resynced them: `spec.replicationState: resync`,
/// `status.state: Secondary`, `Completed=True`, `Resyncing` not true, the generation
/// observed — what the agent's WaitResynced waits for.
async fn assert_resynced(env: &TestEnv, ns: &str) -> Result<()> {
    for (volume, _, _) in VOLUMES {
        wait_volume(
            &env.east.client,
            ns,
            volume,
            "resync, Secondary, Completed=True, Resyncing not true",
            SETTLE,
            |v| {
                v.desired_raw.as_deref() == Some("resync")
                    && v.is_settled("Secondary")
                    && !v.condition(COND_RESYNCING).is_some_and(|c| c.is_true())
            },
        )
        .await
        .with_context(|| format!("{volume} in east after the UPTIME resync"))?;
    }
    Ok(())
}

/// The UPTIME operation's record: mode, phase, the dual-active window recorded and ordered,
/// inside the operation's lifetime. Returns the window.
fn assert_uptime_record(op: &Operation) -> Result<(Timestamp, Timestamp)> {
    ensure!(op.mode == Mode::Uptime, "mode: {op:?}");
    ensure!(op.phase == Phase::Succeeded, "phase: {op:?}");
    ensure!(
        op.source == "east" && op.target == "west",
        "direction: {op:?}"
    );
    let start = op
        .dual_active_started_at
        .with_context(|| format!("no dualActiveStartedAt: {op:?}"))?;
    let end = op
        .dual_active_ended_at
        .with_context(|| format!("no dualActiveEndedAt: {op:?}"))?;
    ensure!(
        start <= end,
        "dual-active window ends before it starts: {op:?}"
    );
    ensure!(
        op.requested_at <= start,
        "window starts before the request: {op:?}"
    );
    let finished = op.finished_at.context("no finishedAt")?;
    ensure!(end <= finished, "window ends after the operation: {op:?}");
    ensure!(
        op.dual_active_window().is_some_and(|w| !w.is_negative()),
        "dual_active_window: {:?}",
        op.dual_active_window()
    );
    Ok((start, end))
}

/// Every violation must be a closed dual-Primary interval of this namespace inside the
/// recorded window (start within [`OBSERVATION_SLACK`] of it), and every volume must have
/// one (the target promotes while the source is still Primary).
fn assert_violations_in_window(
    found: &[Violation],
    ns: &str,
    (start, end): (Timestamp, Timestamp),
) -> Result<()> {
    let mut bad = Vec::new();
    for v in found {
        match v {
            Violation::DualPrimary {
                namespace,
                start: s,
                end: Some(e),
                ..
            } if namespace == ns && *s >= start - OBSERVATION_SLACK && *e <= end => {
                eprintln!(
                    "dual-Primary {} {s} .. {e}: {} before the recorded start, {} before the recorded end",
                    v.name(),
                    start.duration_since(*s),
                    end.duration_since(*e)
                );
            }
            other => bad.push(other.clone()),
        }
    }
    ensure!(
        bad.is_empty(),
        "violations outside the recorded dual-active window {start} .. {end}: {bad:#?}"
    );
    for (volume, _, _) in VOLUMES {
        ensure!(
            found.iter().any(|v| v.name() == volume),
            "no dual-Primary interval of {volume} recorded in UPTIME mode: {found:#?}"
        );
    }
    Ok(())
}

/// The dual-active window histogram of `agent/src/metrics.rs` (observed by the
/// source side when its UPTIME run ends).
const WINDOW_METRIC: &str = "failover_dual_active_window_seconds";

/// The value of the sample `name` (exact name with labels, or without labels) in a
/// Prometheus text exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The agents' `/metrics` after the UPTIME operation (and the CONSISTENCY fail-back): each
/// side counted its successful runs and timed its RecordDualActive step, and the source
/// (east) observed one dual-active window of about the recorded length.
async fn assert_metrics(stack: &Stack, op: &Operation) -> Result<()> {
    for (cluster, stage) in [
        ("west", "VolumeTransitionTarget"),
        ("east", "VolumeTransitionSource"),
    ] {
        let m = stack.metrics(cluster).await?;
        let succeeded = sample(&m, "failover_operations_total{result=\"succeeded\"}");
        ensure!(
            succeeded.is_some_and(|n| n >= 2.0),
            "{cluster}: succeeded runs {succeeded:?} in /metrics:\n{m}"
        );
        ensure!(
            m.lines()
                .any(|l| l.starts_with("failover_step_duration_seconds_count{")
                    && l.contains(&format!("stage=\"{stage}\""))
                    && l.contains("task=\"RecordDualActive")
                    && l.contains("outcome=\"done\"")),
            "{cluster}: no RecordDualActive step done in /metrics:\n{m}"
        );
    }
    let m = stack.metrics("east").await?;
    let count = sample(&m, &format!("{WINDOW_METRIC}_count"));
    let sum = sample(&m, &format!("{WINDOW_METRIC}_sum"));
    ensure!(
        count == Some(1.0),
        "east: {WINDOW_METRIC}_count {count:?}, want 1:\n{m}"
    );
    let recorded = op
        .dual_active_window()
        .context("no window recorded")?
        .as_secs_f64();
    let sum = sum.context("no _sum")?;
    ensure!(
        (sum - recorded).abs() < 0.01,
        "east: {WINDOW_METRIC}_sum {sum} s, the operation records {recorded} s"
    );
    eprintln!("{WINDOW_METRIC} on east: count 1, sum {sum} s (recorded {recorded} s)");
    Ok(())
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

    // UPTIME east → west.
    let op = run_failover(
        stack,
        &group,
        &[
            "failover",
            &g,
            "--to",
            "west",
            "--mode",
            "uptime",
            "--wait",
            "--timeout",
            "90s",
        ],
    )
    .await?;
    ensure!(op.epoch == 1, "epoch: {op:?}");
    wait_group_idle_on(&stack.store, &group, "west", OPERATION_DEADLINE).await?;
    // Read the operation again now that nothing is in flight, as a user would query it.
    let op = stack
        .store
        .get_operation(&op.id)
        .await?
        .context("operation vanished")?;
    let window = assert_uptime_record(&op)?;
    eprintln!(
        "dual-active window recorded: {} .. {} ({:?})",
        window.0,
        window.1,
        op.dual_active_window()
    );
    let state = stack
        .store
        .get_group_state(&group)
        .await?
        .context("no group state")?;
    ensure!(
        state.epoch == op.epoch && state.promotion_claimed_by.is_none(),
        "group state: {state:?}"
    );
    let handoffs = stack.store.list_handoffs(&op.id).await?;
    for h in &handoffs {
        ensure!(
            h.state == HandoffState::Promoted && h.epoch == op.epoch,
            "handoff: {h:?}"
        );
    }
    let history = stack.store.history(&group, None).await?;
    ensure!(
        history.len() == 1 && history[0].operation.id == op.id,
        "history: {history:?}"
    );
    ensure!(
        history[0].operation.dual_active_started_at == op.dual_active_started_at
            && history[0].operation.dual_active_ended_at == op.dual_active_ended_at,
        "the history entry lost the window: {:?}",
        history[0]
    );

    let want = std::collections::BTreeMap::from([
        ("Deployment/api".to_owned(), 2),
        ("StatefulSet/db".to_owned(), 1),
    ]);
    ensure!(
        op.original_replicas == want,
        "original replicas: {:?}",
        op.original_replicas
    );
    // What `failoverctl history` shows of it.
    let out = stack.failoverctl(&["-o", "json", "history", &g])?;
    let (stdout, _) = expect_exit(&out, 0, "history -o json")?;
    let h: serde_json::Value =
        serde_json::from_str(&stdout).with_context(|| format!("history: {stdout}"))?;
    let row = &h["operations"][0];
    ensure!(
        row["operationId"] == op.id.as_str()
            && row["mode"] == "UPTIME"
            && row["phase"] == "Succeeded"
            && row["source"] == "east"
            && row["target"] == "west",
        "history -o json: {h}"
    );

    assert_side_settled(&env.west, ns, flux_ns, true).await?;
    assert_side_settled(&env.east, ns, flux_ns, false).await?;
    assert_resynced(env, ns).await?;
    for c in env.clusters() {
        wait_group_status(c, ns, "west", op.epoch).await?;
    }
    assert_failover_objects_succeeded(env, ns, &op).await?;
    stack.check_agents()?;

    // CONSISTENCY back west → east, onto the resynced volumes.
    let back = run_failover(
        stack,
        &group,
        &["failover", &g, "--to", "east", "--wait", "--timeout", "90s"],
    )
    .await?;
    ensure!(
        back.mode == Mode::Consistency && back.epoch == 2 && back.source == "west",
        "fail-back operation: {back:?}"
    );
    wait_group_idle_on(&stack.store, &group, "east", OPERATION_DEADLINE).await?;
    assert_records_moved(&stack.store, &group, &back).await?;
    assert_side_settled(&env.east, ns, flux_ns, true).await?;
    assert_side_settled(&env.west, ns, flux_ns, false).await?;
    for c in env.clusters() {
        wait_group_status(c, ns, "east", back.epoch).await?;
    }
    assert_failover_objects_succeeded(env, ns, &back).await?;
    let history = stack.store.history(&group, None).await?;
    ensure!(history.len() == 2, "history: {history:?}");

    stack.check_agents()?;
    let found = stack.stop_storage_sim().await?;
    assert_violations_in_window(&found, ns, window)?;
    check_run(env, stack, &[group]).await?.ensure_clean()?;
    assert_metrics(stack, &op).await?;
    Ok(())
}

/// The scenario as a user meets it: the fixture fresh (west's workloads at 0 replicas,
/// nothing recorded on them), `failoverctl failover --mode uptime`, then CONSISTENCY back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uptime_failover_then_consistency_back_with_real_agent_processes() -> Result<()> {
    run().await
}

async fn run() -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-up").await?;
    let flux_ns = env.namespace("fo-up-flux").await?;
    let mut stack = Stack::new(&env, &ns.name, "e2e-uptime").await?;
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
