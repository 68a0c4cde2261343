//! The tasks of the steps on the operation's records ([`RecordStep`]): the store's
//! conditional writes, each conditioned on the group's epoch; a lost race becomes
//! [`TaskError::StaleEpoch`] / [`TaskError::AbortRequested`] and stops the engine.
//!
//! # Replica counts
//!
//! `RecordReplicas` (source, end of Initialization, before any change) writes each
//! workload's count as the `failover.io/original-replicas` annotation and then the whole map
//! on the operation (`originalReplicas`, keyed `<Kind>/<name>`; the first map written wins),
//! in the write that also marks the operation `Running`. `ScaleUp` (target,
//! [`super::kube`]) scales to it.
//!
//! # Closing the operation
//!
//! `CompleteOperation` (target) computes the operation's timings from both journals
//! ([`super::timings`]) and closes it `Succeeded`; `FinishAbort` (source, rollback) closes
//! it `Aborted`. A repeated attempt that finds it closed as intended succeeds.

use std::collections::BTreeMap;
use std::time::Duration;

use failover_messages::crd::WorkloadKind;
use failover_messages::records::{HistoryEntry, Phase, Timings};
use failover_messages::store::{DualActiveMark, Outcome};
use futures::future::BoxFuture;

use crate::boxed::boxed;
use crate::errors::error_chain;
use crate::kube_ops::workloads;
use crate::workflow::{DualActiveEnd, RecordStep, Role, TaskContext, TaskError};

use super::support::{
    TasksConfig, ValidatedState, cluster_client, current_in, group_state, kube_err, namespace,
    operation_and_state, outcome, stamp, store_err, workload_key,
};

/// Carries out `step` on the operation's records.
///
/// Each step's future is boxed on its own (see `super::run`).
pub(super) fn run<'a>(
    step: &'a RecordStep,
    config: &'a TasksConfig,
    ctx: &'a TaskContext,
) -> BoxFuture<'a, Result<(), TaskError>> {
    match step {
        RecordStep::ValidateOperation { mark_running } => {
            Box::pin(validate_operation(ctx, *mark_running))
        }
        RecordStep::RenewLease => Box::pin(renew_lease(ctx, config.lease_ttl)),
        RecordStep::RecordReplicas { workloads } => Box::pin(record_replicas(ctx, workloads)),
        RecordStep::MarkAllReady { volumes } => Box::pin(mark_all_ready(ctx, volumes)),
        RecordStep::ClaimPromotion { ready_volumes } => {
            Box::pin(claim_promotion(ctx, config, ready_volumes))
        }
        RecordStep::MarkPromoted { volumes } => Box::pin(mark_promoted(ctx, volumes)),
        RecordStep::RecordDualActive { end } => Box::pin(record_dual_active(ctx, *end)),
        RecordStep::CompleteOperation => Box::pin(complete(ctx)),
        RecordStep::FinishAbort => Box::pin(finish_abort(ctx)),
    }
}

async fn validate_operation(ctx: &TaskContext, mark_running: bool) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let (op, state) = operation_and_state(ctx).await?;
    if op.epoch != wf.epoch
        || op.group != wf.group
        || op.source != wf.source
        || op.target != wf.target
    {
        return Err(TaskError::failed(format!(
            "operation {} changed under the agent: epoch {}, group {}, {} -> {}",
            op.id, op.epoch, op.group, op.source, op.target
        )));
    }
    if let Some(at) = op.abort_requested_at {
        return Err(TaskError::AbortRequested { at });
    }
    if op.phase.is_terminal() {
        return Err(TaskError::failed(format!(
            "operation {} is already closed ({})",
            op.id, op.phase
        )));
    }
    current_in(ctx, state.as_ref())?;
    if let (Some(state), Ok(kept)) = (state, ctx.handle::<ValidatedState>()) {
        kept.keep(state);
    }
    if op.phase == Phase::Pending && mark_running {
        // One side marks the operation Running here (repeating it after a restart is
        // harmless): the target of a forced operation, whose source may be gone, or a source
        // without replica counts to record (`RecordReplicas` marks it otherwise).
        let o = ctx
            .store()?
            .set_phase(&wf.op_ref(), Phase::Running, None)
            .await
            .map_err(store_err)?;
        match o {
            // The other side may have closed it meanwhile; the engine finds out next step.
            Outcome::Done(()) | Outcome::AlreadyFinished { .. } => {}
            other => outcome("marking the operation Running", other)?,
        }
    }
    Ok(())
}

/// Whether the operation lease, expiring at `expires_at`, needs renewing at `now`: when less
/// than two thirds of `ttl` is left (the run renews it every third of `ttl` from then on), so
/// an operation picked up soon after its start costs no renewal.
fn lease_needs_renewal(
    expires_at: Option<jiff::Timestamp>,
    now: jiff::Timestamp,
    ttl: Duration,
) -> bool {
    let Some(expires_at) = expires_at else {
        return true;
    };
    let left = expires_at.duration_since(now);
    left < jiff::SignedDuration::try_from(ttl.mul_f64(2.0 / 3.0))
        .unwrap_or(jiff::SignedDuration::MAX)
}

async fn renew_lease(ctx: &TaskContext, ttl: Duration) -> Result<(), TaskError> {
    let kept = ctx.handle::<ValidatedState>().ok().and_then(|v| v.take());
    let state = match kept {
        Some(state) => state,
        None => group_state(ctx).await?,
    };
    let wf = ctx.workflow();
    if state.epoch == wf.epoch
        && state.op_id.as_deref() == Some(wf.operation_id.as_str())
        && !lease_needs_renewal(state.lease.map(|l| l.expires_at), ctx.now(), ttl)
    {
        return Ok(());
    }
    let o = ctx
        .store()?
        .renew_lease(&ctx.op_ref(), ctx.cluster(), ttl)
        .await
        .map_err(store_err)?;
    outcome("renewing the lease", o).map(drop)
}

async fn record_replicas(
    ctx: &TaskContext,
    list: &[(WorkloadKind, String)],
) -> Result<(), TaskError> {
    let cc = cluster_client(ctx)?;
    let stamp = stamp(ctx);
    // Every workload at once: ten workloads cost one round trip, not ten.
    let (cc, stamp) = (&cc, &stamp);
    let counts: BTreeMap<String, u32> =
        futures::future::try_join_all(list.iter().map(|(kind, name)| async move {
            let s = workloads::record_replicas(cc, *kind, namespace(ctx), name, stamp)
                .await
                .map_err(kube_err)?;
            Ok::<_, TaskError>((workload_key(*kind, name), s.replicas))
        }))
        .await?
        .into_iter()
        .collect();
    // The write may also publish journal stages the engine handed over (its own among them).
    let carried = ctx.carried();
    let o = ctx
        .store()?
        .record_original_replicas_carrying(&ctx.op_ref(), &counts, &carried)
        .await
        .map_err(store_err)?;
    outcome("recording the original replicas", o)
}

async fn mark_all_ready(ctx: &TaskContext, volumes: &[String]) -> Result<(), TaskError> {
    // With no volumes the operation itself is marked ready: the target's claim
    // without handoff records is accepted only after it.
    if volumes.is_empty() {
        let o = ctx
            .store()?
            .mark_group_ready(&ctx.op_ref())
            .await
            .map_err(store_err)?;
        return outcome("marking the group READY_FOR_PROMOTION", o);
    }
    let o = ctx
        .store()?
        .mark_all_ready(&ctx.op_ref(), ctx.cluster(), volumes)
        .await
        .map_err(store_err)?;
    outcome("marking the volumes READY_FOR_PROMOTION", o).map(drop)
}

/// Claims the promotion. The claim's condition requires every volume of `ready_volumes`
/// marked READY at the epoch; when it finds some not marked (the wait before it ended on a
/// wake-up's hint that was ahead of the records, or forged: see `super::wake`), this waits
/// for them on consistent reads alone and claims again.
async fn claim_promotion(
    ctx: &TaskContext,
    config: &TasksConfig,
    ready_volumes: &[String],
) -> Result<(), TaskError> {
    loop {
        // Repeating a claim is harmless (the store keeps the first), so an interrupted
        // earlier attempt needs no special care here.
        let o = ctx
            .store()?
            .claim_promotion(&ctx.op_ref(), ctx.cluster(), ready_volumes)
            .await
            .map_err(store_err)?;
        match o {
            Outcome::NotReady { missing } if !ready_volumes.is_empty() => {
                tracing::info!(
                    missing = %missing.join(", "),
                    "the claim found volumes not READY_FOR_PROMOTION: waiting for them on reads"
                );
                super::wait::wait_all_ready(ctx, config, ready_volumes, false).await?;
            }
            other => return outcome("claiming the promotion", other),
        }
    }
}

async fn mark_promoted(ctx: &TaskContext, volumes: &[String]) -> Result<(), TaskError> {
    let o = ctx
        .store()?
        .mark_all_promoted(&ctx.op_ref(), volumes, ctx.cluster())
        .await
        .map_err(store_err)?;
    outcome("marking the volumes PROMOTED", o)
}

async fn record_dual_active(ctx: &TaskContext, end: DualActiveEnd) -> Result<(), TaskError> {
    let mark = match end {
        DualActiveEnd::Started => DualActiveMark::Started(ctx.now()),
        DualActiveEnd::Ended => DualActiveMark::Ended(ctx.now()),
    };
    let o = ctx
        .store()?
        .record_dual_active(&ctx.op_ref(), mark)
        .await
        .map_err(store_err)?;
    outcome("recording the dual-active window", o)
}

// ---- closing the operation --------------------------------------------------------------------

async fn complete(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let store = ctx.store()?;
    // The close's write of the operation item also publishes the stages the engine handed
    // over (this cluster's last stage).
    let carried = ctx.carried();
    // Timings from both clusters' published stages (one read, while the close reads the
    // operation), this cluster's with the stages its close publishes; without them the
    // operation still completes.
    let timings = async {
        match store
            .published_journals(&wf.operation_id, &[&wf.source, &wf.target])
            .await
        {
            Ok(mut journals) if journals.len() == 2 => {
                let own = usize::from(ctx.role() == Role::Target);
                super::timings::with_stages(&mut journals[own], carried.stages());
                super::timings::from_journals(&journals[0], &journals[1])
            }
            Ok(_) => Timings::default(),
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "cannot read the journals for the operation's timings");
                Timings::default()
            }
        }
    };
    let op = ctx.op_ref();
    let o = boxed(|| store.complete_operation_with(&op, timings, &carried))
        .await
        .map_err(store_err)?;
    closed(o, Phase::Succeeded, "completing the operation")
}

async fn finish_abort(ctx: &TaskContext) -> Result<(), TaskError> {
    let o = ctx
        .store()?
        .finish_abort(&ctx.op_ref(), Timings::default())
        .await
        .map_err(store_err)?;
    closed(o, Phase::Aborted, "closing the aborted operation")
}

/// A closing write's answer: done, or closed as `phase` already (a repeated attempt).
fn closed(o: Outcome<HistoryEntry>, phase: Phase, what: &str) -> Result<(), TaskError> {
    match o {
        Outcome::Done(entry) => {
            tracing::info!(finished_at = %entry.finished_at, %phase, "operation closed");
            Ok(())
        }
        Outcome::AlreadyFinished { phase: p } if p == phase => Ok(()),
        other => outcome(what, other).map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_operation_lease_is_not_renewed_at_pick_up() {
        let now: jiff::Timestamp = "2026-12-04T10:00:00Z".parse().unwrap();
        let ttl = Duration::from_secs(60);
        let at = |s: i64| Some(now + jiff::SignedDuration::from_secs(s));
        assert!(!lease_needs_renewal(at(59), now, ttl));
        assert!(!lease_needs_renewal(at(41), now, ttl));
        assert!(lease_needs_renewal(at(39), now, ttl));
        assert!(lease_needs_renewal(at(-5), now, ttl), "expired");
        assert!(lease_needs_renewal(None, now, ttl), "no lease");
    }
}
