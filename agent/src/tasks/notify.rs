//! The tasks that tell others what happened ([`NotifyStep`]): an [`Envelope`] sent to the
//! peer cluster's inbox (a hint; a send failure is logged, not fatal), and this cluster's
//! `FailoverGroup` status subresource (role, active cluster, epoch, last operation, by the
//! rules of [`crate::failover_group`]).

use failover_messages::crd::{FailoverGroup, FailoverMode, FailoverPhase, GroupRole};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::Inbox;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::failover_group::group_role::{last_operation, role};
use crate::kube_ops::FIELD_MANAGER;
use crate::workflow::{NotifyStep, Role, TaskContext, TaskError};

use super::support::{group_state, no_state_record, store_err};

/// How long a wake-up may take to send before it is given up (SQS answers in milliseconds).
const NOTIFY_BOUND: std::time::Duration = std::time::Duration::from_secs(3);

/// Tells `step`'s audience; a notification that cannot be sent is not an error.
pub(super) async fn run(step: &NotifyStep, ctx: &TaskContext) -> Result<(), TaskError> {
    match step {
        NotifyStep::Notify { to, kind } => {
            notify(ctx, *to, *kind).await;
            Ok(())
        }
        NotifyStep::UpdateGroupStatus => update_group_status(ctx).await,
    }
}

async fn notify(ctx: &TaskContext, to: Role, kind: EnvelopeKind) {
    let wf = ctx.workflow();
    let peer = wf.cluster_of(to);
    let inbox = match ctx.handle::<Inbox>() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, to = %peer, %kind, "no SQS inbox: the peer learns from its re-read timer");
            return;
        }
    };
    let envelope = Envelope::for_operation(
        kind,
        &wf.operation_id,
        &wf.group,
        wf.epoch,
        ctx.cluster(),
        ctx.now(),
    );
    // A wake-up is a hint: a lost one costs the peer one re-read interval, never safety.
    // Bounded, so an SQS that accepts the connection and never answers cannot hold the
    // step (and its stage's time limit) with it.
    match tokio::time::timeout(NOTIFY_BOUND, inbox.send(peer, &envelope)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, to = %peer, %kind, "could not send the wake-up; the peer re-reads on its timer");
        }
        Err(_) => {
            tracing::warn!(to = %peer, %kind, bound = ?NOTIFY_BOUND, "sending the wake-up got no answer; the peer re-reads on its timer");
        }
    }
}

async fn update_group_status(ctx: &TaskContext) -> Result<(), TaskError> {
    let wf = ctx.workflow();
    let store = ctx.store()?;
    // The operation and the group state in one read (the state alone if the operation is
    // gone).
    let (state, op) = match store
        .get_operation_and_state_of(&wf.group, &wf.operation_id)
        .await
        .map_err(store_err)?
    {
        Some((op, Some(state))) => (state, Some(op)),
        Some((_, None)) => return Err(no_state_record(ctx)),
        None => (group_state(ctx).await?, None),
    };
    // The same rules as the status the group actor keeps (crate::failover_group).
    let role: GroupRole = role(&state, op.as_ref(), ctx.cluster());
    let phase: Option<FailoverPhase> = op.as_ref().map(|o| o.phase.into());
    let summary = op.as_ref().map(last_operation);
    let last_operation = json!({
        "id": wf.operation_id,
        "phase": phase,
        "mode": FailoverMode::from(wf.mode),
        "sourceCluster": wf.source,
        "targetCluster": wf.target,
        "startedAt": summary.as_ref().and_then(|s| s.started_at.clone()),
        "finishedAt": summary.and_then(|s| s.finished_at),
    });
    let patch = json!({
        "status": {
            "role": role,
            "activeCluster": state.active_cluster,
            "epoch": state.epoch,
            "lastOperation": last_operation,
        }
    });
    let api: Api<FailoverGroup> = Api::namespaced(ctx.kube()?.clone(), &wf.group.namespace);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch_status(&wf.group.name, &pp, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            TaskError::caused_by(
                format!(
                    "cannot update the status of FailoverGroup {} in cluster {}",
                    wf.group,
                    ctx.cluster()
                ),
                e,
            )
            .on(format!("FailoverGroup/{}", wf.group))
        })?;
    Ok(())
}
