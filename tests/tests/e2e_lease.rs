//! The serving lease, end to end with real processes (see `failover_tests::agents`), both
//! agents on a lease of [`lease()`] (`--lease-duration`), the group on the default
//! `onCoordinationLoss: Fence`:
//!
//! * **source cut off while alive**: east's agent reaches DynamoDB and SQS through a
//!   [`failover_tests::netcut::CutProxy`]; the link is cut and a forced failover to west is
//!   asked for at once. East's agent, its lease lost, fences its side on its own (Warning
//!   Event `LeaseExpired`, `failover_fencings_total{occasion="lease_expired"}`); west promotes
//!   only after that; the storage simulator sees no volume Primary in both clusters. After
//!   the heal east stays fenced;
//! * **source agent paused**: east's agent is stopped (SIGSTOP) and a forced failover to
//!   west asked for; within a bound shorter than the lease the harness kills and restarts it,
//!   as a liveness probe would (or lets it run on, SIGCONT); the operation succeeds, and no
//!   volume is ever Primary in both clusters.
//!
//! Each checks the records in DynamoDB, the objects in both clusters, the agents' logs,
//! Events and metrics, and the storage simulator's violations, and prints its timings.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::records::{Mode, Operation};
use failover_tests::agents::AgentStart;
use failover_tests::fixtures::assert_side_settled;
use failover_tests::kube::wait_for;
use failover_tests::observe::{counter, group_events, lease_version};
use failover_tests::scenario::Scenario;
use jiff::{SignedDuration, Timestamp};

/// Both agents' `--lease-duration` (`L`): 6 s, or `FAILOVER_TEST_LEASE` (e.g. `30s`, to
/// measure the default lease for the README).
fn lease() -> Duration {
    failover_tests::fixtures::duration_from_env("FAILOVER_TEST_LEASE", Duration::from_secs(6))
}
/// How long after east's agent stops the harness restarts it (less than `L`), as a liveness
/// probe would.
const RESTART_BOUND: Duration = Duration::from_secs(3);

/// The shared scenario with both agents on a lease of [`lease()`].
async fn scenario(label: &str) -> Result<Scenario> {
    let mut s = Scenario::new(label).await?;
    s.stack.agent_options.lease_duration = Some(lease());
    Ok(s)
}

/// The forced failover to west's arguments, with `reason`.
fn force_args(s: &Scenario, reason: &str) -> Vec<String> {
    s.failover_args("west", reason, &["--force"])
}

/// The operation that moved the group to west: idle on west, first in its history,
/// forced, CONSISTENCY, Succeeded, with `reason`.
async fn succeeded_on_west(s: &Scenario, reason: &str) -> Result<Operation> {
    let op = s.succeeded_on("west", reason).await?;
    ensure!(op.force, "{op:?}");
    ensure!(
        op.mode == Mode::Consistency,
        "a forced operation runs in CONSISTENCY mode: {op:?}"
    );
    Ok(op)
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn secs(d: SignedDuration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

// ---- reading the agents' logs, Events and metrics ----------------------------------------------

/// The agent's log without terminal colours.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The time stamp and text of the first line of `log` from `after` on that contains
/// `needle`.
fn log_line<'a>(log: &'a str, after: Timestamp, needle: &str) -> Option<(Timestamp, &'a str)> {
    log.lines().find_map(|line| {
        let (stamp, rest) = line.trim_start().split_once(' ')?;
        let at: Timestamp = stamp.parse().ok()?;
        (at >= after && rest.contains(needle)).then_some((at, line))
    })
}

// ---- the source cut off from DynamoDB while alive ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_cut_off_from_dynamodb_fences_itself_before_the_forced_target_promotes()
-> Result<()> {
    let mut s = scenario("e2e-lease-cut").await?;
    let res = Box::pin(cut_source(&mut s)).await;
    s.finish(res).await
}

/// When east's agent fenced, by its own account.
struct Fence {
    /// "serving lease lost" logged.
    started: Timestamp,
    /// The fencing finished (traffic off, workloads at 0, volumes Secondary) logged.
    done: Timestamp,
    /// The `LeaseExpired` Event's time.
    event: Timestamp,
}

async fn cut_source(s: &mut Scenario) -> Result<()> {
    let proxied = AgentStart {
        aws_proxy: true,
        ..AgentStart::default()
    };
    s.start(proxied, AgentStart::default()).await?;
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());

    let cut_at = Timestamp::now();
    s.stack.aws_proxy("east")?.cut();
    let reason = "east cut off";
    let args = force_args(s, reason);
    let out = s
        .stack
        .failoverctl(&args.iter().map(String::as_str).collect::<Vec<_>>())?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --force --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let answered = Timestamp::now();
    let op = succeeded_on_west(s, reason).await?;
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;
    // East fenced on its own, without DynamoDB: traffic off, Flux suspended, workloads at
    // 0, volumes Secondary.
    assert_side_settled(&east, &ns, &s.flux_ns.name, false).await?;
    // West promoted only after east had fenced, so no volume was ever Primary in both
    // clusters (both checked, both reported).
    let fence = east_fence(s, cut_at).await?;
    let promoted = op
        .promotion_started_at
        .context("the operation has no promotionStartedAt")?;
    let violations = s.stack.violations_so_far()?;
    ensure!(
        fence.done < promoted && violations.is_empty(),
        "east finished fencing at {} (started {}), west claimed the promotion at {promoted}; \
         storage violations: {violations:#?}",
        fence.done,
        fence.started,
    );
    let served = op.finished_at.context("the operation has no finishedAt")?;
    eprintln!(
        "lease {:?}: cut at {cut_at}; east fence started +{}, done +{}, Event +{}; \
         west promotion claimed +{} (fence margin {}); west serving +{}; failoverctl answered +{}",
        lease(),
        secs(fence.started.duration_since(cut_at)),
        secs(fence.done.duration_since(cut_at)),
        secs(fence.event.duration_since(cut_at)),
        secs(promoted.duration_since(cut_at)),
        secs(promoted.duration_since(fence.done)),
        secs(served.duration_since(cut_at)),
        secs(answered.duration_since(cut_at)),
    );

    heal_and_stay_fenced(s).await?;
    s.assert_no_violations().await
}

/// East's fencing as its log, Events and metrics tell it (all after `cut_at`).
async fn east_fence(s: &mut Scenario, cut_at: Timestamp) -> Result<Fence> {
    let log = plain(&s.stack.proc_mut("agent-east")?.log_text());
    let (started, _) = log_line(&log, cut_at, "serving lease lost")
        .context("east's agent did not log \"serving lease lost\" after the cut")?;
    let (done, _) = log_line(&log, started, "fenced")
        .context("east's agent did not log the end of its fencing")?;
    let events: Vec<_> = group_events(&s.env.east, &s.ns.name, "LeaseExpired")
        .await?
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .collect();
    let event = events
        .iter()
        .filter_map(|e| e.event_time.as_ref().map(|t| t.0))
        .min()
        .with_context(|| format!("no LeaseExpired Warning Event in east: {events:#?}"))?;
    ensure!(
        event >= cut_at,
        "a LeaseExpired Event before the cut at {event}"
    );
    let metrics = s.stack.metrics("east").await?;
    let fencings = counter(
        &metrics,
        "failover_fencings",
        &["occasion=\"lease_expired\""],
    );
    let lost = counter(&metrics, "failover_leases_lost", &[]);
    ensure!(
        fencings >= 1.0 && lost >= 1.0,
        "no lease_expired fencing or no lost lease in east's metrics:\n{metrics}"
    );
    Ok(Fence {
        started,
        done,
        event,
    })
}

/// Heals east's link; once east's lease record moves again, east's side must stay fenced
/// and west active through three more renewals (`L`: three re-read intervals and more).
async fn heal_and_stay_fenced(s: &mut Scenario) -> Result<()> {
    let frozen = lease_version(&s.stack.store, "east")
        .await
        .map_err(|e| anyhow!(e))?;
    let ns = &s.ns.name;
    let fenced = failover_tests::observe::side_snapshot(&s.env.east, ns, &s.flux_ns.name).await?;
    s.stack.aws_proxy("east")?.heal();
    let mut version = frozen;
    for n in 1..=4 {
        let stack = &s.stack;
        version = wait_for(
            &format!("east's lease renewal {n} after the heal"),
            lease() * 2,
            || async move {
                let now = lease_version(&stack.store, "east").await?;
                Ok((now > version).then_some(now))
            },
        )
        .await?;
    }
    let after = failover_tests::observe::side_snapshot(&s.env.east, ns, &s.flux_ns.name).await?;
    ensure!(
        after == fenced,
        "east's side changed after the heal:\n fenced: {fenced:#?}\n after:  {after:#?}"
    );
    assert_side_settled(&s.env.east, ns, &s.flux_ns.name, false)
        .await
        .context("east after the heal")?;
    assert_side_settled(&s.env.west, ns, &s.flux_ns.name, true)
        .await
        .context("west after east's heal")?;
    let state = s
        .stack
        .store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    ensure!(
        state.active_cluster == "west" && state.op_id.is_none(),
        "{state:?}"
    );
    Ok(())
}

// ---- the source's agent paused, restarted within the bound -------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_source_agent_restarted_within_the_bound_hands_off_safely() -> Result<()> {
    let mut s = scenario("e2e-lease-pause").await?;
    let res = Box::pin(paused_source(&mut s, Recovery::Restart)).await;
    s.finish(res).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_source_agent_resumed_within_the_bound_hands_off_safely() -> Result<()> {
    let mut s = scenario("e2e-lease-resume").await?;
    let res = Box::pin(paused_source(&mut s, Recovery::Resume)).await;
    s.finish(res).await
}

/// How east's stopped agent comes back after [`RESTART_BOUND`].
#[derive(Clone, Copy, Debug)]
enum Recovery {
    /// Killed and started again, as a liveness probe would.
    Restart,
    /// Let run on (SIGCONT), as after a long stall that no probe caught.
    Resume,
}

async fn paused_source(s: &mut Scenario, recovery: Recovery) -> Result<()> {
    s.start(AgentStart::default(), AgentStart::default())
        .await?;
    let ns = s.ns.name.clone();
    let (east, west) = (s.env.east.clone(), s.env.west.clone());

    let paused_at = tokio::time::Instant::now();
    let paused_ts = Timestamp::now();
    s.stack.pause_agent("east")?;
    let reason = "east hung";
    let args = force_args(s, reason);
    let ctl = s
        .stack
        .failoverctl_command(&args.iter().map(String::as_str).collect::<Vec<_>>())?
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting failoverctl")?;
    // The stall's length: the modelled delay of the scenario, not a wait.
    tokio::time::sleep_until(paused_at + RESTART_BOUND).await;
    let restarted_ts = Timestamp::now();
    match recovery {
        Recovery::Restart => {
            s.stack.kill_agent("east")?;
            s.stack.start_agent("east").await?;
        }
        Recovery::Resume => s.stack.resume_agent("east")?,
    }
    let out = tokio::task::spawn_blocking(move || ctl.wait_with_output())
        .await?
        .context("waiting for failoverctl")?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --force --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let op = succeeded_on_west(s, reason).await?;
    assert_side_settled(&west, &ns, &s.flux_ns.name, true).await?;
    assert_side_settled(&east, &ns, &s.flux_ns.name, false).await?;
    // How west's wait ended: east's release (READY_FOR_PROMOTION for every volume) or the
    // end of its lease.
    let handoffs = s.stack.store.list_handoffs(&op.id).await?;
    let promoted = op
        .promotion_started_at
        .context("the operation has no promotionStartedAt")?;
    let served = op.finished_at.context("the operation has no finishedAt")?;
    eprintln!(
        "lease {:?}: east paused at {paused_ts}, {recovery:?} +{}; west promotion claimed \
         +{}, serving +{}; handoff records: {}",
        lease(),
        secs(restarted_ts.duration_since(paused_ts)),
        secs(promoted.duration_since(paused_ts)),
        secs(served.duration_since(paused_ts)),
        handoffs.len(),
    );
    s.assert_no_violations().await
}
