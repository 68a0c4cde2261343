//! The tasks of the waits for the other cluster ([`WaitStep`]): each is a
//! [`wait_until`](super::wake::wait_until) loop, woken by an SQS wake-up or the re-read timer,
//! whose check is a consistent read of the records. A wait stops as soon as the operation
//! cannot go on (no longer current, aborted or failed).

use failover_messages::envelope::EnvelopeKind;
use failover_messages::records::{Phase, StepStatus};
use futures::future::BoxFuture;

use crate::workflow::{PeerStep, TaskContext, TaskError, WaitStep};

use super::support::{TasksConfig, ensure_open, not_ready, operation, store_err};
use super::wake::{Check, Rereads, Wakeups, wait_until};

/// Waits until what `step` waits for is there (bounded by the engine's deadline).
///
/// Each step's future is boxed on its own (see `super::run`).
pub(super) fn run<'a>(
    step: &'a WaitStep,
    config: &'a TasksConfig,
    ctx: &'a TaskContext,
) -> BoxFuture<'a, Result<(), TaskError>> {
    match step {
        WaitStep::WaitAllReady { volumes, .. } => {
            Box::pin(wait_all_ready(ctx, config, volumes, true))
        }
        WaitStep::WaitSourceReleased { release, .. } => {
            Box::pin(
                async move { super::release::wait_source_released(ctx, config, release).await },
            )
        }
        WaitStep::WaitPeer { peer, .. } => Box::pin(wait_peer(ctx, config, peer)),
        WaitStep::WaitOperationClosed { .. } => Box::pin(wait_operation_closed(ctx, config)),
    }
}

/// Waits until every volume of `volumes` is marked READY at the operation's epoch. With
/// `hints`, a `ReadyForPromotion` wake-up of this operation and epoch ends the wait without
/// a read: the claim that follows checks the marks in its condition (see `super::wake`).
pub(super) async fn wait_all_ready(
    ctx: &TaskContext,
    config: &TasksConfig,
    volumes: &[String],
    hints: bool,
) -> Result<(), TaskError> {
    let store = ctx.store()?;
    let wf = ctx.workflow();
    let wakeups = ctx.handle::<Wakeups>().ok();
    wait_until(
        "every volume READY_FOR_PROMOTION",
        wakeups.map(|w| w.for_group(&wf.group)),
        Rereads::for_step(config.reread_interval, ctx),
        move || async move {
            if hints
                && wakeups.is_some_and(|w| {
                    w.hinted(EnvelopeKind::ReadyForPromotion, &wf.operation_id, wf.epoch)
                })
            {
                return Ok(Check::Done(()));
            }
            let handoffs = store
                .list_handoffs_of(&wf.group, &wf.operation_id)
                .await
                .map_err(store_err)?;
            let missing = not_ready(volumes, &handoffs, wf.epoch);
            if missing.is_empty() {
                return Ok(Check::Done(()));
            }
            // Not ready yet: make sure waiting still makes sense.
            ensure_open(ctx).await?;
            Ok(Check::Pending(format!("not ready: {}", missing.join(", "))))
        },
    )
    .await
}

async fn wait_peer(
    ctx: &TaskContext,
    config: &TasksConfig,
    peer: &PeerStep,
) -> Result<(), TaskError> {
    let store = ctx.store()?;
    let wf = ctx.workflow();
    let peer_cluster: &str = wf.cluster_of(peer.role);
    let stage = peer.stage.key();
    let what = format!("{peer_cluster}: {stage}/{}", peer.task);
    wait_until(
        &what,
        ctx.handle::<Wakeups>().ok().map(|w| w.for_group(&wf.group)),
        Rereads::for_step(config.reread_interval, ctx),
        move || async move {
            // Both reads at once: the wait's check costs one round trip.
            // (Boxed: both futures are large, and a debug build's stack is not.)
            let peers = [peer_cluster];
            let (open, steps) = tokio::join!(
                Box::pin(ensure_open(ctx)),
                Box::pin(store.published_journals(&wf.operation_id, &peers))
            );
            open?;
            let steps = steps.map_err(store_err)?.concat();
            let found = steps
                .iter()
                .find(|s| s.stage == stage && s.task == peer.task && s.epoch == wf.epoch);
            Ok(match found {
                Some(s) if s.status == StepStatus::Done => Check::Done(()),
                Some(s) => Check::Pending(format!("{} is {}", peer.task, s.status)),
                None => Check::Pending(format!("{} not started", peer.task)),
            })
        },
    )
    .await
}

async fn wait_operation_closed(ctx: &TaskContext, config: &TasksConfig) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let phase = wait_until(
        "the operation to close",
        ctx.handle::<Wakeups>().ok().map(|w| w.for_group(&wf.group)),
        Rereads::for_step(config.reread_interval, ctx),
        move || async move {
            let op = operation(ctx).await?;
            if op.phase.is_terminal() {
                return Ok(Check::Done(op.phase));
            }
            // An abort granted (before any claim) closes the operation only once the source
            // has rolled back, and the rollback waits for this run to stop: stop now.
            if let Some(at) = op.abort_requested_at {
                return Err(TaskError::AbortRequested { at });
            }
            Ok(Check::Pending(format!("phase {}", op.phase)))
        },
    )
    .await?;
    if phase == Phase::Succeeded {
        Ok(())
    } else {
        Err(TaskError::failed(format!(
            "operation {} closed as {phase}",
            wf.operation_id
        )))
    }
}
