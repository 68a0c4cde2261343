//! Two FailoverGroups moved by one command: the fixture application in two namespaces
//! (each with its own Flux namespace and its own storage-simulator process), both active in
//! east, then `failoverctl failover ns1/shop ns2/shop --to west --wait` with the real agents.
//! Each group gets its own operation; both end active in west, each with one history entry,
//! `Failover` objects Succeeded in both clusters, and the simulator saw nothing unsafe.

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
use failover_tests::kube::{TestEnv, TestNamespace};
use serde_json::Value;

/// (application namespace, its Flux namespace) per group.
type Apps<'a> = [(&'a str, &'a str); 2];

async fn body(env: &TestEnv, stack: &mut Stack, apps: Apps<'_>) -> Result<()> {
    let namespaces: Vec<&str> = apps.iter().map(|(ns, _)| *ns).collect();
    stack.start_storage_sim(&namespaces, Duration::from_millis(200))?;
    for (ns, flux_ns) in apps {
        Box::pin(create_application(env, ns, flux_ns)).await?;
    }
    for (ns, _) in apps {
        wait_starting_point(env, ns).await?;
    }
    stack.start_agents().await?;

    let groups: Vec<GroupRef> = apps
        .iter()
        .map(|(ns, _)| GroupRef::new(*ns, GROUP))
        .collect::<Result<_, _>>()?;
    let names: Vec<String> = groups.iter().map(ToString::to_string).collect();
    for g in &names {
        let out = stack.failoverctl(&["register", g, "--active", "east"])?;
        expect_exit(&out, 0, "register")?;
    }

    let mut args = vec!["-o", "json", "failover"];
    args.extend(names.iter().map(String::as_str));
    args.extend(["--to", "west", "--wait", "--timeout", "90s"]);
    let started = Instant::now();
    let out = stack.failoverctl(&args)?;
    let (stdout, stderr) = expect_exit(&out, 0, &args.join(" "))?;
    eprintln!("two-group failover took {:?}", started.elapsed());
    let v: Value =
        serde_json::from_str(&stdout).with_context(|| format!("failover -o json: {stdout}"))?;
    let started_ops = v["operations"].as_array().context("no operations")?;
    ensure!(started_ops.len() == 2, "one operation per group: {v}");
    let waited = v["wait"]["operations"].as_array().context("no wait")?;
    ensure!(waited.len() == 2, "both operations waited for: {v}");
    ensure!(v["wait"]["timedOut"] == false, "timed out: {v}");
    let mut ids = Vec::new();
    for (g, op) in names.iter().zip(started_ops) {
        ensure!(op["group"] == g.as_str(), "command-line order: {v}");
        ensure!(
            op["source"] == "east"
                && op["target"] == "west"
                && op["mode"] == "CONSISTENCY"
                && op["epoch"] == 1,
            "started: {op}"
        );
        let id = op["operationId"].as_str().context("no operationId")?;
        ensure!(
            waited.iter().any(|w| w["operationId"] == id
                && w["phase"] == "Succeeded"
                && w["finished"] == true),
            "{id} did not finish Succeeded: {v}"
        );
        ensure!(
            stderr.contains(id),
            "no progress for {id} on stderr: {stderr}"
        );
        ids.push(id.to_owned());
    }
    ensure!(ids[0] != ids[1], "one operation for two groups: {ids:?}");

    for ((group, id), (ns, flux_ns)) in groups.iter().zip(&ids).zip(apps) {
        wait_group_idle_on(&stack.store, group, "west", OPERATION_DEADLINE).await?;
        let op = stack
            .store
            .get_operation(id)
            .await?
            .with_context(|| format!("operation {id} not stored"))?;
        ensure!(
            &op.group == group && op.mode == Mode::Consistency && op.epoch == 1,
            "operation {id}: {op:?}"
        );
        assert_records_moved(&stack.store, group, &op).await?;
        let history = stack.store.history(group, None).await?;
        ensure!(
            history.len() == 1
                && history[0].operation.id == *id
                && history[0].operation.phase == Phase::Succeeded,
            "history of {group}: {history:?}"
        );
        assert_side_settled(&env.west, ns, flux_ns, true).await?;
        assert_side_settled(&env.east, ns, flux_ns, false).await?;
        for c in env.clusters() {
            wait_group_status(c, ns, "west", op.epoch).await?;
        }
        assert_failover_objects_succeeded(env, ns, &op).await?;
    }

    // `failoverctl history` of every group shows both operations.
    let out = stack.failoverctl(&["-o", "json", "history"])?;
    let (stdout, _) = expect_exit(&out, 0, "history -o json")?;
    let h: Value = serde_json::from_str(&stdout).with_context(|| format!("history: {stdout}"))?;
    let rows = h["operations"]
        .as_array()
        .context("history: no operations")?;
    for id in &ids {
        ensure!(
            rows.iter()
                .any(|r| r["operationId"] == id.as_str() && r["phase"] == "Succeeded"),
            "history does not list {id}: {h}"
        );
    }

    stack.check_agents()?;
    let found = stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failoverctl_command_moves_two_groups_with_real_agent_processes() -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let mut namespaces: Vec<TestNamespace> = Vec::new();
    for prefix in ["fo-two-a", "fo-two-a-flux", "fo-two-b", "fo-two-b-flux"] {
        match env.namespace(prefix).await {
            Ok(ns) => namespaces.push(ns),
            Err(e) => {
                for ns in &namespaces {
                    ns.cleanup().await;
                }
                return Err(e);
            }
        }
    }
    let apps: Apps<'_> = [
        (&namespaces[0].name, &namespaces[1].name),
        (&namespaces[2].name, &namespaces[3].name),
    ];
    let mut stack = Stack::new(&env, apps[0].0, "e2e-two").await?;
    let res = Box::pin(body(&env, &mut stack, apps)).await;
    let out = match res {
        Ok(()) => Ok(()),
        Err(e) => {
            stack.print_logs();
            let mut dump = String::new();
            for ns in [&namespaces[0], &namespaces[2]] {
                dump.push_str(&ns.dump().await);
            }
            Err(anyhow!("{e:#}\n\n{dump}"))
        }
    };
    stack.cleanup(out.is_ok()).await;
    for ns in &namespaces {
        ns.cleanup().await;
    }
    out
}
