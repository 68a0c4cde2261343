//! The failure paths, end to end with real processes (see `failover_tests::agents`):
//!
//! * a VolumeReplication that never reaches Secondary: the operation fails by its stage
//!   deadline with a message naming the volume, the target never promotes, and
//!   `failoverctl abort` rolls the source back (volumes Primary, workloads, Flux and traffic
//!   on, operation `Aborted`);
//! * `failoverctl failover --force` while the source's agent is down: the target takes
//!   over; when the source's agent starts again it fences its side (traffic off, workloads
//!   at 0, volumes Secondary) before anything else;
//! * a forced failover while the source's agent is alive: for a group whose source keeps
//!   serving without DynamoDB (`onCoordinationLoss: KeepServing`), `failoverctl` and a
//!   `Failover` object created with kubectl both refuse it with the same words and nothing
//!   starts; under the default (`Fence`) the forced `Failover` goes ahead, the source shuts
//!   down and releases its side, and the target promotes only after (no dual Primary);
//! * steps that run out of time after the promotion claim (a volume of the target that
//!   never becomes Primary, short limits): both sides' failure marks are refused by the
//!   group state's claim, nothing is recorded `Failed`, and once the volume recovers the
//!   operation completes.
//!
//! Each checks the objects in both clusters, the records in DynamoDB, the `Failover`
//! status, the CLI's exit codes and output, and the storage simulator's violations.

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::crd::{FailoverGroup, FailoverPhase};
use failover_messages::records::Phase;
use failover_tests::agents::AgentStart;
use failover_tests::fixtures::{
    GROUP, OPERATION_DEADLINE, SETTLE, VOLUMES, assert_side_settled, wait_failover_object,
    wait_group_idle_on, wait_starting_point,
};
use failover_tests::kube::wait_for;
use failover_tests::scenario::Scenario;
use failover_tests::storage_sim::{Violation, set_stuck};
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The volume the stuck scenario holds back.
const STUCK: &str = "db-data";

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- a volume that never demotes, then abort ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_volume_fails_the_operation_by_its_deadline_and_abort_restores_the_source()
-> Result<()> {
    let mut s = Scenario::new("e2e-stuck").await?;
    let res = Box::pin(stuck_then_abort(&mut s)).await;
    s.finish(res).await
}

async fn stuck_then_abort(s: &mut Scenario) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());
    // A short demotion limit, and one of east's volumes never completes a change.
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
    set_stuck(&east.client, &ns, STUCK, true).await?;

    // The failover fails by its deadline, naming the volume (exit 4).
    let g = s.group.to_string();
    let out =
        s.stack
            .failoverctl(&["failover", &g, "--to", "west", "--wait", "--timeout", "90s"])?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(4),
        "failoverctl failover --wait exited {:?} (want 4, failed)\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let state = s
        .stack
        .store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    let op_id = state
        .op_id
        .clone()
        .context("the failed operation no longer holds the group")?;
    let op = s
        .stack
        .store
        .get_operation(&op_id)
        .await?
        .context("no operation record")?;
    ensure!(op.phase == Phase::Failed, "phase {:?}", op.phase);
    let message = op.message.clone().unwrap_or_default();
    ensure!(
        message.contains(STUCK) && message.contains("east") && message.contains("WaitSecondary"),
        "the failure names the volume, the cluster and the task: {message:?}"
    );
    ensure!(
        stdout.contains(STUCK) || stderr.contains(STUCK),
        "failoverctl's output names the volume {STUCK}:\nstdout: {stdout}\nstderr: {stderr}"
    );
    // The target never promoted: no claim, no handoff record, west's volumes Secondary.
    ensure!(state.active_cluster == "east", "{state:?}");
    ensure!(state.promotion_claimed_by.is_none(), "{state:?}");
    ensure!(op.promotion_started_at.is_none(), "{op:?}");
    let handoffs = s.stack.store.list_handoffs(&op_id).await?;
    ensure!(handoffs.is_empty(), "handoff records: {handoffs:?}");
    for (volume, _, _) in VOLUMES {
        failover_tests::storage_sim::wait_settled(&west.client, &ns, volume, "Secondary", SETTLE)
            .await
            .with_context(|| format!("{volume} in west"))?;
    }
    wait_failover_object(&east, &ns, &op_id, FailoverPhase::Failed).await?;

    // The storage recovers; the operator aborts: east comes back as it was.
    set_stuck(&east.client, &ns, STUCK, false).await?;
    let out = s.stack.failoverctl(&["abort", &op_id])?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.success(),
        "failoverctl abort exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    ensure!(
        stdout.contains(&op_id),
        "abort names the operation: {stdout}"
    );
    let state = wait_group_idle_on(&s.stack.store, &s.group, "east", OPERATION_DEADLINE).await?;
    ensure!(state.epoch == op.epoch, "no new epoch: {state:?}");
    let op = s
        .stack
        .store
        .get_operation(&op_id)
        .await?
        .context("no operation record")?;
    ensure!(op.phase == Phase::Aborted, "phase {:?}", op.phase);
    let history = s.stack.store.history(&s.group, None).await?;
    ensure!(
        history
            .first()
            .is_some_and(|h| h.operation.id == op_id && h.operation.phase == Phase::Aborted),
        "history: {history:?}"
    );
    assert_side_settled(&east, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&west, &ns, &s.flux_ns.name, false).await?;
    wait_failover_object(&east, &ns, &op_id, FailoverPhase::Aborted).await?;

    s.stack.check_agents()?;
    let found = s.stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}

// ---- failures after the claim only go forward --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_after_the_claim_are_not_recorded_and_the_operation_completes() -> Result<()> {
    let mut s = Scenario::new("e2e-after-claim").await?;
    let res = Box::pin(fail_after_claim(&mut s)).await;
    s.finish(res).await
}

async fn fail_after_claim(s: &mut Scenario) -> Result<()> {
    const LINE: &str = "a step failed after the promotion was claimed";
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());
    // Short limits for the target's stages (the source's wait for the close is their sum),
    // and one of west's volumes never completes a change: west's promotion and east's
    // wait for the close both run out of time after west's claim.
    for c in s.env.clusters() {
        Api::<FailoverGroup>::namespaced(c.client.clone(), &ns)
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"timeouts": {
                    "volumePromotion": "3s", "targetActivation": "3s", "completion": "3s"
                }}})),
            )
            .await
            .with_context(|| format!("shortening the target's limits in {}", c.name))?;
    }
    set_stuck(&west.client, &ns, STUCK, true).await?;
    let reason = "failures after the claim";
    let ctl = s.spawn_failoverctl(&s.failover_args("west", reason, &[]))?;
    for cluster in ["west", "east"] {
        wait_for(
            &format!("{cluster}'s failure refused after the claim"),
            OPERATION_DEADLINE,
            || {
                let log = s.stack.agent_log(cluster).map_err(|e| e.to_string());
                async move { Ok(log?.contains(LINE).then_some(())) }
            },
        )
        .await?;
    }
    let state = s
        .stack
        .store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    let op_id = state.op_id.clone().context("no operation in flight")?;
    ensure!(
        state.promotion_claimed_by.as_deref() == Some("west"),
        "{state:?}"
    );
    let op = s
        .stack
        .store
        .get_operation(&op_id)
        .await?
        .context("no operation record")?;
    ensure!(op.phase == Phase::Running, "phase {:?}: {op:?}", op.phase);

    // The volume recovers: the runs going forward finish the operation.
    set_stuck(&west.client, &ns, STUCK, false).await?;
    ctl.finish(OPERATION_DEADLINE * 2).await?.ensure_success()?;
    let op = s.succeeded_on("west", reason).await?;
    ensure!(op.id == op_id && op.message.is_none(), "{op:?}");
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&east, &ns, &s.flux_ns.name, false).await?;
    s.assert_no_violations().await
}

// ---- forced failover with the source's agent down, then fencing --------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_without_the_source_agent_is_fenced_when_it_returns() -> Result<()> {
    let mut s = Scenario::new("e2e-force").await?;
    let res = Box::pin(force_then_fence(&mut s)).await;
    s.finish(res).await
}

async fn force_then_fence(s: &mut Scenario) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());

    // While the group is idle, east's agent records its replica counts in DynamoDB: what
    // west scales up to when no operation recorded them (as in a forced one without east).
    let store = s.stack.store.clone();
    let group = s.group.clone();
    let deadline = s.stack.agent_options.reread_interval * 2 + SETTLE;
    wait_for("east's known replica counts in DynamoDB", deadline, || {
        let (store, group) = (store.clone(), group.clone());
        async move {
            let known = store
                .get_known_replicas(&group)
                .await
                .map_err(|e| e.to_string())?;
            let want = std::collections::BTreeMap::from([
                ("Deployment/api".to_owned(), 2),
                ("StatefulSet/db".to_owned(), 1),
            ]);
            match known {
                Some(k) if k.cluster == "east" && k.replicas == want => Ok(Some(())),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await?;

    // East's agent dies; its heartbeat goes stale.
    s.stack.kill_agent("east")?;
    wait_for("east's heartbeat to expire", SETTLE, || {
        let store = store.clone();
        async move {
            match store
                .get_heartbeat("east")
                .await
                .map_err(|e| e.to_string())?
            {
                Some(h) if !h.stale => Err(format!("alive: {h:?}")),
                _ => Ok(Some(())),
            }
        }
    })
    .await?;

    // A failover without --force needs the source; with it, west takes over alone.
    let g = s.group.to_string();
    let out = s.stack.failoverctl(&[
        "failover",
        &g,
        "--to",
        "west",
        "--force",
        "--reason",
        "east lost",
        "--wait",
        "--timeout",
        "90s",
    ])?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --force --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let state = wait_group_idle_on(&store, &s.group, "west", OPERATION_DEADLINE).await?;
    let history = store.history(&s.group, None).await?;
    let op = history
        .first()
        .map(|h| h.operation.clone())
        .context("no history entry")?;
    ensure!(
        op.force && op.reason == "east lost" && op.phase == Phase::Succeeded,
        "{op:?}"
    );
    ensure!(state.epoch == op.epoch, "{state:?}");
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;
    wait_failover_object(&west, &ns, &op.id, FailoverPhase::Succeeded).await?;
    // East's side is still up: nobody there to shut it down.
    failover_tests::fixtures::wait_ready_replicas(&east, &ns, "Deployment", "api", 2).await?;

    // East's agent returns and fences its side before anything else.
    s.stack.start_agent("east").await?;
    assert_side_settled(&east, &ns, &s.flux_ns.name, false).await?;
    let log = s.stack.proc_mut("agent-east")?.log_text();
    let restarted = log
        .rfind("admin endpoints listening")
        .context("east's agent did not log its start")?;
    let after = &log[restarted..];
    let fenced = after
        .find("fencing it")
        .context("east's agent did not log a fencing")?;
    let started = after
        .find("agent started")
        .context("east's agent did not finish starting")?;
    ensure!(
        fenced < started,
        "the fencing must come before the agent's other work:\n{after}"
    );
    let metrics = s.stack.metrics("east").await?;
    ensure!(
        metrics
            .lines()
            .any(|l| l.starts_with("failover_fencings_total")
                && l.contains("occasion=\"startup\"")
                && !l.ends_with(" 0")),
        "no startup fencing in east's metrics:\n{metrics}"
    );
    // Nothing moved back: west stays active.
    let now = store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(
        now.active_cluster == "west" && now.op_id.is_none(),
        "{now:?}"
    );
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;

    // While east's agent was away both sides were Primary (the price of --force with the
    // old side still running); the fencing ended it. Nothing else is allowed.
    s.stack.check_agents()?;
    let found = s.stack.stop_storage_sim().await?;
    for v in &found {
        match v {
            Violation::DualPrimary { end, .. } => {
                ensure!(end.is_some(), "a dual-Primary interval never ended: {v:?}")
            }
            _ => return Err(anyhow!("{}: {v:#?}", v.kind())),
        }
    }
    Ok(())
}

// ---- force while the source's agent is alive ---------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_with_the_source_alive_waits_for_its_release_and_keep_serving_refuses_it()
-> Result<()> {
    let mut s = Scenario::new("e2e-force-alive").await?;
    let res = Box::pin(force_while_alive(&mut s)).await;
    s.finish(res).await
}

/// The words of a refusal from "the agent of" on, without the heartbeat's time (each front
/// end read the heartbeat at its own moment).
fn refusal_words(text: &str) -> Option<String> {
    let from = text.find("the agent of east is alive")?;
    let rest = &text[from..];
    let (head, tail) = rest.split_once("(heartbeat at ")?;
    let (_, tail) = tail.split_once(')')?;
    let tail = tail.lines().next().unwrap_or_default();
    Some(format!("{head}{tail}"))
}

/// Sets `spec.onCoordinationLoss` of the group in both clusters and waits until east's lease
/// record publishes it (what every front end decides on).
async fn set_policy(s: &Scenario, policy: &str) -> Result<()> {
    for c in s.env.clusters() {
        let api: Api<FailoverGroup> = Api::namespaced(c.client.clone(), &s.ns.name);
        api.patch(
            GROUP,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"onCoordinationLoss": policy}})),
        )
        .await?;
    }
    let (store, group) = (s.stack.store.clone(), s.group.to_string());
    let keep = policy == "KeepServing";
    wait_for(&format!("east's lease to publish {policy}"), SETTLE, || {
        let (store, group) = (store.clone(), group.clone());
        async move {
            let hb = store
                .get_heartbeat("east")
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no lease record")?;
            let listed = hb.heartbeat.keep_serving.contains(&group);
            if listed == keep {
                Ok(Some(()))
            } else {
                Err(format!("keepServing {:?}", hb.heartbeat.keep_serving))
            }
        }
    })
    .await
}

/// Creates a forced Failover of the group to west in west and waits for its final
/// `Accepted` condition and phase.
async fn forced_failover_object(
    s: &Scenario,
    name: &str,
) -> Result<(failover_messages::crd::FailoverStatus, String, String)> {
    let failovers: Api<failover_messages::crd::Failover> =
        Api::namespaced(s.env.west.client.clone(), &s.ns.name);
    let fo: failover_messages::crd::Failover = serde_json::from_value(json!({
        "apiVersion": "failover.io/v1alpha1",
        "kind": "Failover",
        "metadata": {"name": name, "namespace": s.ns.name},
        "spec": {
            "targetCluster": "west",
            "groups": [{"name": GROUP}],
            "force": true,
            "reason": "drill"
        }
    }))?;
    failovers.create(&Default::default(), &fo).await?;
    wait_for("the Failover's Accepted condition", SETTLE, || {
        let failovers = failovers.clone();
        async move {
            let fo = failovers.get(name).await.map_err(|e| e.to_string())?;
            let status = fo.status.unwrap_or_default();
            // Agents of other tests share the cluster with their own tables: to them the
            // group is not registered, which is not final (this test's agent answers too).
            match status.conditions.iter().find(|c| c.type_ == "Accepted") {
                Some(c) if c.reason != "GroupNotRegistered" => {
                    Ok(Some((status.clone(), c.reason.clone(), c.message.clone())))
                }
                other => Err(format!("no final Accepted condition yet: {other:?}")),
            }
        }
    })
    .await
}

async fn force_while_alive(s: &mut Scenario) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let ns = s.ns.name.clone();
    let g = s.group.to_string();
    let store = s.stack.store.clone();
    let before = store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;

    // 1. East keeps serving the group without DynamoDB: a forced failover would not wait
    //    for it, so both front ends refuse, with the same words, and nothing starts.
    set_policy(s, "KeepServing").await?;
    let out = s.stack.failoverctl(&[
        "failover", &g, "--to", "west", "--force", "--reason", "drill",
    ])?;
    let (_, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(3),
        "failoverctl exited {:?}: {stderr}",
        out.status.code()
    );
    let cli = refusal_words(&stderr).with_context(|| format!("failoverctl said: {stderr}"))?;
    let (status, reason, message) = forced_failover_object(s, "forced-drill").await?;
    ensure!(reason == "SourceAgentAlive", "{reason}: {message}");
    ensure!(status.phase == Some(FailoverPhase::Failed), "{status:?}");
    let object =
        refusal_words(&message).with_context(|| format!("the Failover says: {message}"))?;
    ensure!(
        object == cli,
        "different words:\n failoverctl: {cli}\n Failover:    {object}"
    );
    ensure!(message.contains(&g), "{message}");
    let after = store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(
        after.epoch == before.epoch && after.op_id.is_none() && after.active_cluster == "east",
        "{after:?}"
    );
    wait_starting_point(&s.env, &ns).await?;

    // 2. Under the default (Fence) the same forced Failover goes ahead: east's agent, alive
    //    and connected, shuts its side down and releases it (its handoff records), and only
    //    then does west claim and promote. Never two Primary volumes.
    set_policy(s, "Fence").await?;
    let (status, reason, message) = forced_failover_object(s, "forced-drill-2").await?;
    ensure!(reason == "Started", "{reason}: {message} {status:?}");
    let state = wait_group_idle_on(&store, &s.group, "west", OPERATION_DEADLINE).await?;
    let op_id = state.last_op_id.clone().context("no last operation")?;
    let op = store.get_operation(&op_id).await?.context("no operation")?;
    ensure!(
        op.force
            && op.phase == Phase::Succeeded
            && op.mode == failover_messages::records::Mode::Consistency,
        "{op:?}"
    );
    // The release: every volume was handed off READY_FOR_PROMOTION by east at this epoch
    // before west's claim.
    let handoffs = store.list_handoffs(&op_id).await?;
    let claimed = op.promotion_started_at.context("no claim time")?;
    for (volume, _, _) in VOLUMES {
        let h = handoffs
            .iter()
            .find(|h| h.volume == *volume)
            .with_context(|| format!("no handoff record for {volume}: {handoffs:?}"))?;
        ensure!(
            h.epoch == op.epoch && h.ready_at.is_some_and(|r| r <= claimed),
            "{h:?} (claimed at {claimed})"
        );
    }
    let west_journal = store.journal(&op_id, "west").await?;
    ensure!(
        west_journal.iter().any(|j| j.task == "WaitSourceReleased"
            && j.status == failover_messages::records::StepStatus::Done),
        "no WaitSourceReleased in west's journal: {west_journal:?}"
    );
    assert_side_settled(&s.env.west, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&s.env.east, &ns, &s.flux_ns.name, false).await?;
    s.stack.check_agents()?;
    let found = s.stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "violations: {found:#?}");
    Ok(())
}
