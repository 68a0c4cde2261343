//! Automatic failover end to end (`spec.autoFailover`), with real agents on a lease of
//! `L` = 6 s, `after` = 12 s (the least allowed, `2·L`; `FAILOVER_TEST_LEASE` and
//! `FAILOVER_TEST_AUTO_AFTER` set others, e.g. the defaults `30s` and `60s`), east's agent
//! (and in the second test west's too) reaching DynamoDB and SQS through a
//! [`failover_tests::netcut::CutProxy`], and
//! the storage simulator watching both clusters:
//!
//! * **active cluster cut off, alive**: east's link is cut. West's agent shows it counting
//!   (condition, Event), starts a forced operation on its own (`requestedBy: auto:west`) and
//!   promotes once east's lease is certainly over; east has fenced itself; no volume is ever
//!   Primary in both clusters. West serves within `after + L·(1+ε) + 15 s` of the cut. After
//!   the heal east stays fenced and standby, the group stays in west, and no second operation
//!   starts. Then west is cut off in turn, within the cooldown (`5·after`): east is held back
//!   until the cooldown ends, then takes the group over.
//! * **both cut off**: nothing starts — west cannot read and its own lease is not live, so it
//!   never takes over during the cut; its link heals one lease before east's, and it counts
//!   afresh from its heal rather than taking the gap for east standing still — and the spec
//!   with `onCoordinationLoss: KeepServing` is then reported invalid, naming the field.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::crd::FailoverGroup;
use failover_messages::records::Phase;
use failover_tests::agents::AgentStart;
use failover_tests::fixtures::{GROUP, assert_side_settled, duration_from_env, group_settled};
use failover_tests::kube::{Cluster, wait_for};
use failover_tests::observe::{counter, group_events, lease_version};
use failover_tests::scenario::Scenario;
use jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Both agents' `--lease-duration` (`L`): 6 s, or `FAILOVER_TEST_LEASE` (e.g. `30s`).
fn lease() -> Duration {
    duration_from_env("FAILOVER_TEST_LEASE", Duration::from_secs(6))
}

/// `spec.autoFailover.after`: 12 s, or `FAILOVER_TEST_AUTO_AFTER` (e.g. `60s`, with a 30 s
/// lease: the defaults, measured for the README).
fn after() -> Duration {
    duration_from_env("FAILOVER_TEST_AUTO_AFTER", Duration::from_secs(12))
}

/// `spec.autoFailover.cooldown`: five times `after`, long enough that a second loss right
/// after the first failover is held back by it.
fn cooldown() -> Duration {
    after() * 5
}

/// The bound of the issue: `after + L·(1+ε) + 15 s`.
fn takeover_bound() -> Duration {
    after() + lease().mul_f64(1.05) + Duration::from_secs(15)
}

/// The scenario with automatic failover enabled in both clusters before the agents start.
async fn scenario(label: &str, east: AgentStart, west: AgentStart) -> Result<Scenario> {
    let mut s = Scenario::new(label).await?;
    s.stack.agent_options.lease_duration = Some(lease());
    s.stack.agent_options.log_filter = "info,failover_agent::runtime::auto=debug".into();
    s.prepare_application().await?;
    set_spec(
        &s,
        json!({"autoFailover": {"enabled": true, "after": format!("{}s", after().as_secs()), "cooldown": format!("{}s", cooldown().as_secs())}}),
    )
    .await?;
    s.start_agents(east, west).await?;
    Ok(s)
}

/// Merges `spec` into the group's spec in both clusters.
async fn set_spec(s: &Scenario, spec: serde_json::Value) -> Result<()> {
    for c in s.env.clusters() {
        Api::<FailoverGroup>::namespaced(c.client.clone(), &s.ns.name)
            .patch(
                GROUP,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?;
    }
    Ok(())
}

fn proxied() -> AgentStart {
    AgentStart {
        aws_proxy: true,
        ..AgentStart::default()
    }
}

/// The `(status, reason, message)` of condition `type_` on the group in `c`.
async fn condition(c: &Cluster, ns: &str, type_: &str) -> Result<Option<(String, String, String)>> {
    let fg = Api::<FailoverGroup>::namespaced(c.client.clone(), ns)
        .get(GROUP)
        .await?;
    Ok(fg.status.and_then(|st| {
        st.conditions
            .into_iter()
            .find(|x| x.type_ == type_)
            .map(|x| (x.status, x.reason, x.message))
    }))
}

/// Waits until condition `type_` on the group in `c` is `False`; its `(reason, message)`.
async fn wait_condition_false(
    c: &Cluster,
    ns: &str,
    type_: &str,
    within: Duration,
) -> Result<(String, String)> {
    wait_for(&format!("{type_}=False in {}", c.name), within, || async {
        match condition(c, ns, type_).await.map_err(|e| e.to_string())? {
            Some((status, reason, message)) if status == "False" => Ok(Some((reason, message))),
            other => Err(format!("{other:?}")),
        }
    })
    .await
}

/// Waits until the group's `AutoFailover` condition in `c` has `reason`.
async fn wait_auto_reason(c: &Cluster, ns: &str, reason: &str, within: Duration) -> Result<String> {
    wait_for(
        &format!("AutoFailover={reason} on the group in {}", c.name),
        within,
        || async {
            match condition(c, ns, "AutoFailover")
                .await
                .map_err(|e| e.to_string())?
            {
                Some((_, r, m)) if r == reason => Ok(Some(m)),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
}

// ---- the active cluster cut off while alive ----------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_from_an_active_cluster_cut_off_from_dynamodb() -> Result<()> {
    let mut s = scenario("e2e-auto-cut", proxied(), proxied()).await?;
    let res = Box::pin(cut_active(&mut s)).await;
    s.finish(res).await
}

async fn cut_active(s: &mut Scenario) -> Result<()> {
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());
    let armed = wait_auto_reason(&west, &ns, "Watching", Duration::from_secs(30)).await?;
    ensure!(armed.contains("watching east's serving lease"), "{armed}");

    let cut_at = Timestamp::now();
    s.stack.aws_proxy("east")?.cut();
    let counting = wait_auto_reason(&west, &ns, "Counting", after()).await?;
    eprintln!(
        "west counting +{:.1} s after the cut",
        Timestamp::now().duration_since(cut_at).as_secs_f64()
    );
    ensure!(
        counting.contains("east's serving lease unrenewed since"),
        "{counting}"
    );
    // `failoverctl status` shows the countdown from west's lease record.
    let g = s.group.to_string();
    let stack = &s.stack;
    wait_for(
        "failoverctl status showing west counting",
        after(),
        || async {
            let out = stack
                .failoverctl(&["status", &g])
                .map_err(|e| e.to_string())?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text.contains("armed in west, counting") && text.contains("acts at about"))
                .then_some(())
                .ok_or(text)
                .map(Some)
        },
    )
    .await?;
    let store = &s.stack.store;
    let group = &s.group;
    let state = wait_for(
        "the group active in west, idle",
        takeover_bound() * 2,
        || async { group_settled(store, group, "west").await },
    )
    .await?;
    let history = store.history(group, None).await?;
    ensure!(history.len() == 1, "one operation expected: {history:#?}");
    let op = &history[0].operation;
    ensure!(
        op.requested_by == "auto:west"
            && op.force
            && op.phase == Phase::Succeeded
            && op.reason.contains("east's serving lease unrenewed since")
            && op.epoch == state.epoch,
        "{op:#?}"
    );
    let served = op.finished_at.context("no finishedAt")?;
    let took = served.duration_since(cut_at);
    let bound = takeover_bound();
    eprintln!(
        "cut at {cut_at}; operation requested +{:.1} s, promotion claimed +{:.1} s, west serving \
         +{:.1} s (bound {:.1} s)",
        op.requested_at.duration_since(cut_at).as_secs_f64(),
        op.promotion_started_at
            .map_or(f64::NAN, |t| t.duration_since(cut_at).as_secs_f64()),
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    ensure!(
        took.as_secs_f64() <= bound.as_secs_f64(),
        "west served {:.1} s after the cut, over the bound of {:.1} s",
        took.as_secs_f64(),
        bound.as_secs_f64()
    );
    // Not before `after`: the count ran its course, from east's last renewal (the version
    // its record kept through the cut, written before west first read it).
    let last_renewal = lease_version(&s.stack.store, "east")
        .await
        .map_err(|e| anyhow!(e))?;
    ensure!(
        op.requested_at.duration_since(last_renewal).as_secs_f64() >= after().as_secs_f64() - 0.1,
        "started too early: {} after east's last renewal at {last_renewal}",
        op.requested_at.duration_since(last_renewal)
    );
    let out = s.stack.failoverctl(&["history", &g])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success()
            && text.contains("east -> west (CONSISTENCY, forced, automatic) Succeeded")
            && text.contains("by auto:west"),
        "failoverctl history: {text}"
    );
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&east, &ns, &s.flux_ns.name, false)
        .await
        .context("east fenced itself")?;
    let violations = s.stack.violations_so_far()?;
    ensure!(violations.is_empty(), "storage violations: {violations:#?}");
    for reason in ["AutoFailoverCounting", "AutoFailoverStarted"] {
        let evs = group_events(&west, &ns, reason).await?;
        ensure!(!evs.is_empty(), "no {reason} Event on the group in west");
    }
    let metrics = s.stack.metrics("west").await?;
    let started = counter(&metrics, "failover_auto_failovers", &[]);
    ensure!(
        started == 1.0,
        "failover_auto_failovers_total: {started}\n{metrics}"
    );

    heal_and_stay(s, state.epoch).await?;
    second_loss_waits_for_the_cooldown(s, op.requested_at).await?;
    s.assert_no_violations().await
}

/// West, active now, is cut off in turn while the cooldown of the first automatic failover
/// (started at `first`) still runs: east counts, is held back (condition `CoolingDown`,
/// Event `AutoFailoverHeld`) and nothing starts before the cooldown ends; after it, east
/// takes the group over.
async fn second_loss_waits_for_the_cooldown(s: &mut Scenario, first: Timestamp) -> Result<()> {
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());
    let ends = first + cooldown();
    s.stack.aws_proxy("west")?.cut();
    let held = wait_auto_reason(&east, &ns, "CoolingDown", after() + lease() * 2).await?;
    eprintln!("second loss, held back: {held}");
    // The agent sets the condition, then publishes the Event: wait for it.
    wait_for(
        "an AutoFailoverHeld Event on the group in east",
        Duration::from_secs(10),
        || async {
            group_events(&east, &ns, "AutoFailoverHeld")
                .await
                .map(|evs| (!evs.is_empty()).then_some(()))
                .map_err(|e| format!("{e:#}"))
        },
    )
    .await
    .context("no AutoFailoverHeld Event on the group in east")?;
    let store = &s.stack.store;
    let group = &s.group;
    while Timestamp::now() < ends - Duration::from_secs(1) {
        let st = store
            .get_group_state(group)
            .await?
            .context("no group state")?;
        ensure!(
            st.active_cluster == "west" && st.op_id.is_none(),
            "an operation started within the cooldown: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Held checks repeat every 30 s at most; then the forced start and promotion.
    wait_for(
        "the group active in east, idle, after the cooldown",
        Duration::from_secs(30) + takeover_bound(),
        || async {
            group_settled(store, group, "east")
                .await
                .map(|s| s.map(|_| ()))
        },
    )
    .await?;
    let history = store.history(group, None).await?;
    ensure!(history.len() == 2, "two operations expected: {history:#?}");
    let second = history
        .iter()
        .map(|h| &h.operation)
        .find(|op| op.requested_by == "auto:east")
        .context("no operation requested by auto:east")?;
    ensure!(
        second.phase == Phase::Succeeded && second.requested_at >= ends,
        "the second automatic failover: {second:#?} (cooldown ends {ends})"
    );
    eprintln!(
        "second automatic failover requested {:.1} s after the cooldown ended",
        second.requested_at.duration_since(ends).as_secs_f64()
    );
    assert_side_settled(&east, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&west, &ns, &s.flux_ns.name, false)
        .await
        .context("west fenced itself")?;
    s.stack.aws_proxy("west")?.heal();
    Ok(())
}

/// Heals east; through four of its renewals east stays fenced and standby, west active, and
/// no operation starts.
async fn heal_and_stay(s: &mut Scenario, epoch: u64) -> Result<()> {
    let ns = s.ns.name.clone();
    let mut version = lease_version(&s.stack.store, "east")
        .await
        .map_err(|e| anyhow!(e))?;
    s.stack.aws_proxy("east")?.heal();
    for n in 1..=4 {
        let store = &s.stack.store;
        version = wait_for(
            &format!("east's lease renewal {n} after the heal"),
            lease() * 2,
            || async move {
                let now = lease_version(store, "east").await?;
                Ok((now > version).then_some(now))
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
    ensure!(
        state.active_cluster == "west" && state.op_id.is_none() && state.epoch == epoch,
        "the group moved after the heal: {state:?}"
    );
    assert_side_settled(&s.env.east, &ns, &s.flux_ns.name, false)
        .await
        .context("east after the heal")?;
    assert_side_settled(&s.env.west, &ns, &s.flux_ns.name, true)
        .await
        .context("west after the heal")?;
    // East is the standby now and watches west, whose lease is renewed.
    wait_auto_reason(&s.env.east, &ns, "Watching", lease() * 2).await?;
    Ok(())
}

// ---- both clusters cut off ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_fails_over_when_the_standby_is_cut_off_too() -> Result<()> {
    let mut s = scenario("e2e-auto-both", proxied(), proxied()).await?;
    let res = Box::pin(both_cut(&mut s)).await;
    s.finish(res).await
}

async fn both_cut(s: &mut Scenario) -> Result<()> {
    let ns = s.ns.name.clone();
    let west = s.env.west.clone();
    wait_auto_reason(&west, &ns, "Watching", Duration::from_secs(30)).await?;
    s.stack.aws_proxy("east")?.cut();
    s.stack.aws_proxy("west")?.cut();
    // West cannot read, then its own lease runs out (3L/4): not armed, and it says why.
    let (why, _) = wait_condition_false(&west, &ns, "AutoFailover", lease() * 2).await?;
    ensure!(
        why == "StoreUnreadable" || why == "OwnLeaseNotLive",
        "AutoFailover=False because {why}"
    );
    tokio::time::sleep(takeover_bound()).await;
    // West's link heals first: its own lease is live again while east's record still
    // stands where it stood before the cut. West must count afresh from its heal (the gap
    // is not east standing still), and east, healed one lease later, renews well before
    // `after` ends. Watched for longer than `after` from west's heal.
    let until = std::time::Instant::now() + after() + lease();
    s.stack.aws_proxy("west")?.heal();
    tokio::time::sleep(lease()).await;
    s.stack.aws_proxy("east")?.heal();
    while std::time::Instant::now() < until {
        let st = s
            .stack
            .store
            .get_group_state(&s.group)
            .await?
            .context("no group state")?;
        ensure!(
            st.active_cluster == "east" && st.op_id.is_none() && st.epoch == 0,
            "an operation started with both clusters cut off or right after the heal: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    ensure!(
        s.stack.store.history(&s.group, None).await?.is_empty(),
        "an operation ran"
    );
    wait_auto_reason(&west, &ns, "Watching", lease() * 2).await?;

    // KeepServing with automatic failover: refused, naming the field.
    set_spec(s, json!({"onCoordinationLoss": "KeepServing"})).await?;
    let (_, invalid) =
        wait_condition_false(&west, &ns, "SpecValid", Duration::from_secs(30)).await?;
    ensure!(
        invalid.contains("spec.autoFailover.enabled") && invalid.contains("KeepServing"),
        "{invalid}"
    );
    let off = wait_auto_reason(&west, &ns, "SpecInvalid", Duration::from_secs(10)).await?;
    ensure!(off.contains("spec.autoFailover.enabled"), "{off}");
    set_spec(s, json!({"onCoordinationLoss": "Fence"})).await?;
    s.assert_no_violations().await
}
