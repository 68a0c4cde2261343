//! The forced target's wait before its claim ([`WaitStep::WaitSourceReleased`]): force means
//! "do not wait for the graceful handoff", never "two writers".
//!
//! The wait ends when, for every other cluster that may still serve the group (the
//! operation's source, and a cluster holding a claimed promotion from an earlier operation):
//!
//! * it *released* its side — only the source can: an alive, connected source runs its usual
//!   shutdown and writes the handoff records ([`Release`]); or
//! * its serving lease is certainly over: its lease record (`CLUSTER#<name>`) has kept one
//!   version for `L·(1+ε) + L/4` on this agent's monotonic clock, counted from this process's
//!   first read of that version ([`LeaseWatch`], shared as
//!   [`super::support::LeaseSightings`]: the automatic failover watch's reads count, so an
//!   automatic failover that counted `after ≥ 2L` claims at once) — unless its record says it
//!   keeps serving the group without DynamoDB (`KeepServing`), which proves nothing;
//!
//! or at once when the requester vouched that the source is down (`sourceIsDown`). What it
//! waits for, and until about when, is written as the step's journal message (at most every
//! 5 s, when it changes), which `failoverctl watch` and `--wait` show.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use failover_messages::protocol::lease::{LeaseWatch, PeerLease};
use failover_messages::records::StepStatus;

use crate::workflow::{PeerStep, Release, TaskContext, TaskError};

use super::support::{TasksConfig, ensure_open, group_state, not_ready, operation, store_err};
use super::wake::{Check, Rereads, Wakeups, wait_until};

/// Waits until the source released its side or every other cluster that may serve the
/// group certainly lost its lease.
pub(super) async fn wait_source_released(
    ctx: &TaskContext,
    config: &TasksConfig,
    release: &Release,
) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let op = operation(ctx).await?;
    if op.source_is_down {
        tracing::warn!(op = %wf.operation_id, source = %op.source, "the requester vouched that the source is down: promoting without waiting for its release or its lease");
        return Ok(());
    }
    let state = group_state(ctx).await?;
    let others: BTreeSet<String> = [Some(op.source.clone()), state.promotion_claimed_by]
        .into_iter()
        .flatten()
        .filter(|c| c != &wf.target)
        .collect();
    let group = wf.group.to_string();
    let watch = &*config.sightings;
    let poll = (config.lease.duration / 12).clamp(
        Duration::from_millis(100),
        config.reread_interval.max(Duration::from_millis(100)),
    );
    let noted = std::sync::Mutex::new(None::<(String, Instant)>);
    let (others, group, noted) = (&others, &group, &noted);
    let source = op.source.as_str();
    wait_until(
        "the source's release or the end of its serving lease",
        ctx.handle::<Wakeups>().ok().map(|w| w.for_group(&wf.group)),
        Rereads::for_step(poll, ctx),
        move || async move {
            ensure_open(ctx).await?;
            let released = others.contains(source) && released(ctx, release).await?;
            let mut waiting = Vec::new();
            for cluster in others.iter().filter(|c| !(released && *c == source)) {
                if let Some(why) = lease_pending(ctx, watch, cluster, group).await? {
                    waiting.push(why);
                }
            }
            Ok(if waiting.is_empty() {
                Check::Done(())
            } else {
                let text = waiting.join("; ");
                note(ctx, noted, &text).await;
                Check::Pending(text)
            })
        },
    )
    .await?;
    tracing::info!(op = %wf.operation_id, "the clusters that may have served the group are down or released it: claiming");
    Ok(())
}

/// Why `cluster` may still serve `group`, or `None` when its lease is certainly over.
async fn lease_pending(
    ctx: &TaskContext,
    watch: &std::sync::Mutex<LeaseWatch>,
    cluster: &str,
    group: &str,
) -> Result<Option<String>, TaskError> {
    let record = ctx
        .store()?
        .get_heartbeat(cluster)
        .await
        .map_err(store_err)?;
    let now = Instant::now();
    let mut watch = watch.lock().unwrap();
    watch.observe(cluster, record.as_ref().map(|r| &r.heartbeat), now);
    if watch.keeps_serving(cluster, group) {
        return Ok(Some(format!(
            "{cluster} keeps serving {group} without DynamoDB (onCoordinationLoss: KeepServing): \
             waiting for it to release its side (or force with --source-is-down)"
        )));
    }
    Ok(match watch.peer(cluster, now) {
        PeerLease::Over => None,
        PeerLease::Live(left) => {
            let by = jiff::SignedDuration::try_from(left)
                .ok()
                .and_then(|d| ctx.now().checked_add(d).ok())
                .map(|t| t.round(jiff::Unit::Second).unwrap_or(t).to_string())
                .unwrap_or_else(|| "later".to_owned());
            Some(format!(
                "{cluster} may still be serving: waiting for it to release its side, or for \
                 its serving lease to be certainly over (about {by}, unless renewed)"
            ))
        }
        PeerLease::Unknown => Some(format!("{cluster}: lease not read yet")),
    })
}

/// Writes `text` as the step's journal message (what `failoverctl watch` shows) when it says
/// something new, at most every 5 s. Best effort.
async fn note(ctx: &TaskContext, noted: &std::sync::Mutex<Option<(String, Instant)>>, text: &str) {
    let due = match &*noted.lock().unwrap() {
        Some((last, at)) => last != text && at.elapsed() >= Duration::from_secs(5),
        None => true,
    };
    let (Some(step), Ok(store)) = (ctx.step(), ctx.store()) else {
        return;
    };
    if !due {
        return;
    }
    *noted.lock().unwrap() = Some((text.to_owned(), Instant::now()));
    if let Err(e) = store
        .journal_note(&ctx.op_ref(), ctx.cluster(), &step.stage, &step.task, text)
        .await
    {
        tracing::debug!(error = %crate::errors::error_chain(&e), "cannot note the wait in the journal");
    }
}

/// True when the source released its side at this epoch.
async fn released(ctx: &TaskContext, release: &Release) -> Result<bool, TaskError> {
    let wf = ctx.workflow();
    let store = ctx.store()?;
    match release {
        Release::Volumes(volumes) => {
            let handoffs = store
                .list_handoffs_of(&wf.group, &wf.operation_id)
                .await
                .map_err(store_err)?;
            Ok(not_ready(volumes, &handoffs, wf.epoch).is_empty())
        }
        Release::Step(PeerStep { stage, task, .. }) => {
            let steps = store
                .published_journals(&wf.operation_id, &[&wf.source])
                .await
                .map_err(store_err)?
                .concat();
            Ok(steps.iter().any(|s| {
                s.stage == stage.key()
                    && &s.task == task
                    && s.epoch == wf.epoch
                    && s.status == StepStatus::Done
            }))
        }
    }
}
