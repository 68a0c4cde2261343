//! CONSISTENCY there and back again with real processes: the fixture application (plus a
//! CronJob and a Kustomization, so every kind a group can hold is moved) fails over
//! east → west and then west → east, each time with `failoverctl failover --wait`, run by two
//! real `failover-agent` processes (least-privilege tokens) and the storage simulator.
//!
//! After each leg: both clusters' objects, the FailoverGroup status and the `Failover`
//! object in both clusters, the records in DynamoDB (the epoch grew by one each time), and
//! `failoverctl status -o json` / `history` as a user reads them. At the end: two history
//! entries, agents alive without RBAC refusals, zero storage-simulator violations.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation, Phase};
use failover_tests::agents::{Stack, expect_exit};
use failover_tests::fixtures::{
    GROUP, OPERATION_DEADLINE, SETTLE, add_cron_job_and_kustomization,
    assert_cron_job_and_kustomization, assert_failover_objects_succeeded, assert_records_moved,
    assert_side_settled, create_application, install_crds, wait_group_idle_on, wait_group_status,
    wait_starting_point,
};
use failover_tests::kube::TestEnv;
use serde_json::Value;

/// `failoverctl -o json status <group>`, parsed.
fn status_json(stack: &Stack, g: &str) -> Result<Value> {
    let out = stack.failoverctl(&["-o", "json", "status", g])?;
    let (stdout, _) = expect_exit(&out, 0, "status -o json")?;
    serde_json::from_str(&stdout).with_context(|| format!("status -o json: {stdout}"))
}

/// Asserts `failoverctl status -o json` shows the group idle on `active` at `epoch`, its
/// last operation `last` (if any).
fn assert_status(
    stack: &Stack,
    g: &str,
    active: &str,
    epoch: u64,
    last: Option<&str>,
) -> Result<()> {
    let s = status_json(stack, g)?;
    ensure!(s["group"] == g, "status group: {s}");
    ensure!(s["activeCluster"] == active, "status activeCluster: {s}");
    ensure!(s["epoch"] == epoch, "status epoch: {s}");
    ensure!(s["operation"].is_null(), "status operation in flight: {s}");
    ensure!(s["suspended"] == false, "status suspended: {s}");
    if let Some(last) = last {
        ensure!(s["lastOperation"] == last, "status lastOperation: {s}");
    }
    Ok(())
}

/// One leg: `failoverctl failover <g> --to <to> --wait` (JSON output for the first leg, the
/// plain output people read for the second), exit 0; returns the operation as stored.
async fn leg(
    stack: &Stack,
    group: &GroupRef,
    from: &str,
    to: &str,
    epoch: u64,
    json: bool,
) -> Result<Operation> {
    let g = group.to_string();
    let mut args = vec![];
    if json {
        args.extend(["-o", "json"]);
    }
    args.extend(["failover", &g, "--to", to, "--wait", "--timeout", "90s"]);
    let started = Instant::now();
    let out = stack.failoverctl(&args)?;
    let (stdout, stderr) = expect_exit(&out, 0, &args.join(" "))?;
    eprintln!("failover {from} -> {to} took {:?}", started.elapsed());
    let op_id = if json {
        let v: Value = serde_json::from_str(&stdout)
            .with_context(|| format!("failover -o json output: {stdout}"))?;
        let op = &v["operations"][0];
        ensure!(op["group"] == g.as_str(), "operations[0].group: {v}");
        ensure!(
            op["source"] == from && op["target"] == to,
            "operations[0]: {v}"
        );
        ensure!(
            op["mode"] == "CONSISTENCY" && op["epoch"] == epoch,
            "operations[0]: {v}"
        );
        ensure!(op["force"] == false, "operations[0].force: {v}");
        let w = &v["wait"]["operations"][0];
        ensure!(
            w["phase"] == "Succeeded" && w["finished"] == true,
            "wait: {v}"
        );
        ensure!(v["wait"]["timedOut"] == false, "wait.timedOut: {v}");
        let id = op["operationId"]
            .as_str()
            .context("no operationId")?
            .to_owned();
        ensure!(
            w["operationId"] == id.as_str(),
            "wait names another operation: {v}"
        );
        id
    } else {
        let prefix = format!("{g}: operation ");
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&prefix) && l.contains(" started ("))
            .with_context(|| format!("no 'started' line in: {stdout}"))?;
        let id = line[prefix.len()..]
            .split_whitespace()
            .next()
            .context("no operation id")?
            .to_owned();
        ensure!(
            line.ends_with(&format!("({from} -> {to}, CONSISTENCY, epoch {epoch})")),
            "started line: {line}"
        );
        ensure!(
            stdout.contains(&format!("{g}: operation {id} finished Succeeded in ")),
            "no 'finished Succeeded in …' line: {stdout}"
        );
        ensure!(
            stdout.contains("(downtime "),
            "the result shows no downtime: {stdout}"
        );
        id
    };
    // --wait shows progress on stderr.
    ensure!(
        stderr.contains(&op_id),
        "no progress for {op_id} on stderr: {stderr}"
    );

    let op = stack
        .store
        .get_operation(&op_id)
        .await?
        .with_context(|| format!("operation {op_id} not stored"))?;
    ensure!(
        op.source == from && op.target == to && op.mode == Mode::Consistency && op.epoch == epoch,
        "stored operation: {op:?}"
    );
    ensure!(!op.force, "forced: {op:?}");
    ensure!(
        op.requested_by == "failoverctl:e2e-test",
        "requestedBy: {op:?}"
    );
    ensure!(op.phase == Phase::Succeeded, "phase: {op:?}");
    ensure!(
        op.dual_active_started_at.is_none() && op.dual_active_ended_at.is_none(),
        "a CONSISTENCY operation recorded a dual-active window: {op:?}"
    );
    Ok(op)
}

/// Everything after one leg: records, both clusters, FailoverGroup and Failover status,
/// `failoverctl status`.
async fn assert_moved(
    env: &TestEnv,
    stack: &Stack,
    group: &GroupRef,
    flux_ns: &str,
    op: &Operation,
) -> Result<()> {
    let ns = &group.namespace;
    wait_group_idle_on(&stack.store, group, &op.target, OPERATION_DEADLINE).await?;
    assert_records_moved(&stack.store, group, op).await?;
    for c in env.clusters() {
        let active = c.name == op.target;
        assert_side_settled(c, ns, flux_ns, active).await?;
        assert_cron_job_and_kustomization(c, ns, flux_ns, active, true).await?;
        wait_group_status(c, ns, &op.target, op.epoch).await?;
    }
    assert_failover_objects_succeeded(env, ns, op).await?;
    assert_status(
        stack,
        &group.to_string(),
        &op.target,
        op.epoch,
        Some(&op.id),
    )?;
    Ok(())
}

async fn body(env: &TestEnv, stack: &mut Stack, ns: &str, flux_ns: &str) -> Result<()> {
    stack.start_storage_sim(&[ns], Duration::from_millis(200))?;
    Box::pin(create_application(env, ns, flux_ns)).await?;
    add_cron_job_and_kustomization(env, ns, flux_ns).await?;
    wait_starting_point(env, ns).await?;
    for c in env.clusters() {
        assert_cron_job_and_kustomization(c, ns, flux_ns, c.name == "east", false).await?;
    }
    stack.start_agents().await?;

    let group = GroupRef::new(ns, GROUP)?;
    let g = group.to_string();
    let out = stack.failoverctl(&["register", &g, "--active", "east"])?;
    expect_exit(&out, 0, "register")?;
    assert_status(stack, &g, "east", 0, None)?;

    // There …
    let there = leg(stack, &group, "east", "west", 1, true).await?;
    assert_moved(env, stack, &group, flux_ns, &there).await?;

    // … and back again.
    let back = leg(stack, &group, "west", "east", 2, false).await?;
    assert_moved(env, stack, &group, flux_ns, &back).await?;
    ensure!(back.id != there.id, "the same operation twice");

    // Two history entries, newest first, in the records and in `failoverctl history`.
    let history = stack.store.history(&group, None).await?;
    let ids: Vec<&str> = history.iter().map(|h| h.operation.id.as_str()).collect();
    ensure!(
        ids == [back.id.as_str(), there.id.as_str()],
        "history: {history:?}"
    );
    for h in &history {
        ensure!(
            h.operation.phase == Phase::Succeeded,
            "history entry: {h:?}"
        );
    }
    let out = stack.failoverctl(&["-o", "json", "history", &g])?;
    let (stdout, _) = expect_exit(&out, 0, "history -o json")?;
    let v: Value = serde_json::from_str(&stdout).with_context(|| format!("history: {stdout}"))?;
    let rows = v["operations"]
        .as_array()
        .context("history: no operations")?;
    ensure!(rows.len() == 2, "history -o json: {v}");
    for (row, (op, from, to)) in rows
        .iter()
        .zip([(&back, "west", "east"), (&there, "east", "west")])
    {
        ensure!(
            row["operationId"] == op.id.as_str()
                && row["source"] == from
                && row["target"] == to
                && row["phase"] == "Succeeded"
                && row["mode"] == "CONSISTENCY"
                && row["group"] == g.as_str(),
            "history row: {row}"
        );
    }
    let out = stack.failoverctl(&["history", &g])?;
    let (stdout, _) = expect_exit(&out, 0, "history")?;
    for (op, dir) in [(&back, "west -> east"), (&there, "east -> west")] {
        ensure!(
            stdout
                .lines()
                .any(|l| l.contains(&op.id) && l.contains(dir) && l.contains("Succeeded")),
            "history does not show {} ({dir}): {stdout}",
            op.id
        );
    }

    stack.check_agents()?;
    let found = stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_failover_there_and_back_again_with_failoverctl() -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-baf").await?;
    let flux_ns = env.namespace("fo-baf-flux").await?;
    let mut stack = Stack::new(&env, &ns.name, "e2e-baf").await?;
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
