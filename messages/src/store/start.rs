//! Protocol step 1, starting an operation: the coordinator's two writes (the `Pending`
//! operation item, then the group state that puts it in flight), their retries and the
//! read-back after an unknown outcome.

use aws_sdk_dynamodb::operation::put_item::PutItemError;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::{SignedDuration, Timestamp};

use super::error::{Cause, StoreError};
use super::outcome::{StartOutcome, StartRequest};
use super::{Store, calls, key_map, names, values};
use crate::keys::{self};
use crate::protocol::start::{AgentSeen, Observed, Request, decide_start};
use crate::records::{
    GroupState, Item, Operation, Phase, Record, Timings, attr, av_bool, av_ms, av_n, av_s,
};

/// How often a start re-reads and retries when the group state changed under it without
/// another operation holding it (e.g. a concurrent start that already finished).
const START_ATTEMPTS: u32 = 3;

impl Store {
    /// Protocol step 1: starts an operation: puts the operation item (`Pending`), then one
    /// conditional `UpdateItem` of the group state carries the start's authority.
    ///
    /// Reads the group state (consistent), then updates it (condition:
    /// `epoch` unchanged, no operation in flight or its lease expired, not suspended, and
    /// unless `force`: `activeCluster = source` and no promotion claimed
    /// (`attribute_not_exists(promotionClaimedBy)`); sets `epoch + 1`, `opId`, the lease; a
    /// forced start keeps `promotionClaimedBy`). A refused start deletes its `Pending`
    /// operation item; a start that stopped between the two writes leaves it `Pending`
    /// (never in flight: the group state does not name it).
    ///
    /// Outcomes: `Started`; `LeaseHeld` when a live operation held the group before we
    /// wrote; `LostRace` when another start committed between our read and our write;
    /// `PromotionClaimed` (a claimed promotion was never completed: only forward, or
    /// `force`), `NotActive`, `NotRegistered`, `Suspended`. After a timeout or transport failure the
    /// group state is read back and `opId = id` is reported as `Started`, so a committed
    /// start is never reported as a conflict. Calling it again with the same `op_id` while
    /// that operation is in flight returns `Started` with the stored operation.
    pub async fn start_operation(&self, req: StartRequest) -> Result<StartOutcome, StoreError> {
        let op_id = req
            .op_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        self.start_inner(&req, &op_id)
            .await
            .map_err(|source| StoreError::StartOperation {
                group: req.group.clone(),
                op_id,
                table: self.table.to_string(),
                source,
            })
    }

    async fn start_inner(&self, req: &StartRequest, op_id: &str) -> Result<StartOutcome, Cause> {
        const OP: &str = "start_operation";
        let ttl = validate_start(req, op_id)?;
        let mut lost = false;
        // A caller-chosen id may be taken already; only this start's own `Pending` item
        // (from an attempt that stopped between its two writes) may be reused.
        let mut put = false;
        if req.op_id.is_some()
            && let Some(taken) = self.read_operation_item(OP, op_id).await?
        {
            if taken.group != req.group {
                return Err(used_id(op_id));
            }
            put = taken.phase == Phase::Pending;
        }

        for _ in 0..START_ATTEMPTS {
            let Some(state) = self.read_state(OP, &req.group).await? else {
                self.drop_pending(op_id, put).await;
                return Ok(StartOutcome::NotRegistered {
                    group: req.group.clone(),
                });
            };
            let now = self.now();
            if state.op_id.as_deref() == Some(op_id) {
                return self.started(req, op_id, &state).await;
            }
            if req.op_id.is_some() && !put && self.read_operation_item(OP, op_id).await?.is_some() {
                return Err(used_id(op_id));
            }
            if let Some(refused) = recheck(req, op_id, &state, now, lost) {
                self.drop_pending(op_id, put).await;
                return Ok(refused);
            }
            let epoch = state
                .epoch
                .checked_add(1)
                .ok_or_else(|| Cause::Invalid("the group's epoch cannot grow any more".into()))?;
            let expires = now
                .checked_add(ttl)
                .map_err(|_| Cause::Invalid("the lease would expire after the year 9999".into()))?;
            let op = new_operation(req, op_id, epoch, now);
            // The operation item first: an interrupted start leaves a `Pending` item no group
            // names, never a group held by an operation nobody can read.
            self.put_pending(&op).await?;
            put = true;
            match self.take_group(req, &op, state.epoch, expires, now).await {
                Ok(true) => {
                    tracing::info!(group = %req.group, op_id, epoch, "operation started");
                    if let Some(old) = state.op_id.as_deref() {
                        self.mark_superseded(old, op_id, now).await;
                    }
                    return Ok(StartOutcome::Started(op));
                }
                Ok(false) => lost = true,
                Err(cause) => {
                    // The effect is unknown: read back before reporting a failure.
                    if let Ok(Some(now_state)) = self.read_state(OP, &req.group).await
                        && now_state.op_id.as_deref() == Some(op_id)
                    {
                        tracing::info!(
                            group = %req.group, op_id, error = %cause,
                            "the start's answer was lost, but reading back shows it committed"
                        );
                        return self.started(req, op_id, &now_state).await;
                    }
                    return Err(cause);
                }
            }
        }
        self.drop_pending(op_id, put).await;
        Err(Cause::Contention {
            attempts: START_ATTEMPTS,
        })
    }

    /// Closes `old`, whose expired lease `new` took over, as `Superseded` (unless it is closed
    /// already). Best effort: the takeover is decided by the start; this only keeps the old
    /// record from reading `Running` for ever. Its agents stop on their next write anyway
    /// (the epoch moved).
    async fn mark_superseded(&self, old: &str, new: &str, now: Timestamp) {
        let terminal = [
            Phase::Succeeded,
            Phase::Failed,
            Phase::Aborted,
            Phase::RolledBack,
            Phase::Superseded,
        ];
        let mut vals = values([
            (":phase", av_s(Phase::Superseded.as_str())),
            (":now", av_ms(now)),
            (
                ":msg",
                av_s(format!(
                    "superseded by operation {new}, which took the group over after this \
                     operation's lease expired"
                )),
            ),
        ]);
        for (i, p) in terminal.iter().enumerate() {
            vals.insert(format!(":t{i}"), av_s(p.as_str()));
        }
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::operation_key(old))))
            .update_expression("SET #phase = :phase, #finishedAt = :now, #message = :msg")
            .condition_expression(
                "attribute_exists(#PK) AND NOT #phase IN (:t0, :t1, :t2, :t3, :t4)",
            )
            .set_expression_attribute_names(Some(names(&[
                attr::PK,
                attr::PHASE,
                attr::FINISHED_AT,
                attr::MESSAGE,
            ])))
            .set_expression_attribute_values(Some(vals));
        match self
            .send(
                "mark_superseded",
                "UpdateItem",
                calls::classify_error,
                || req.clone().send(),
            )
            .await
        {
            Ok(_) => tracing::info!(old, new, "the taken-over operation is marked Superseded"),
            Err(e) => {
                tracing::debug!(old, new, error = ?e.into_cause(), "the taken-over operation was not marked Superseded (closed already, or the write failed)")
            }
        }
    }

    /// The start's one write of authority: the group-state update (condition: `epoch`
    /// unchanged, no operation in flight or its lease expired, not suspended, and unless
    /// forced the source active and no promotion claimed). It records the operation's
    /// target, mode and force for the claim's condition and clears the handoff of the
    /// operation before (its failure mark included). `Ok(false)` when the condition failed.
    async fn take_group(
        &self,
        req: &StartRequest,
        op: &Operation,
        from_epoch: u64,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<bool, Cause> {
        let mut condition =
            "#epoch = :old AND (attribute_not_exists(#opId) OR #leaseExpiresAt < :now) \
             AND (attribute_not_exists(#suspended) OR #suspended = :false)"
                .to_owned();
        let mut attr_names = vec![
            attr::EPOCH,
            attr::OP_ID,
            attr::LEASE_HOLDER,
            attr::LEASE_EXPIRES_AT,
            attr::VERSION,
            attr::UPDATED_AT,
            attr::SUSPENDED,
            attr::OP_TARGET,
            attr::OP_MODE,
            attr::OP_FORCE,
            attr::PROMOTED,
            attr::ABORT_REQUESTED_AT,
            attr::GROUP_READY_AT,
            attr::PROMOTION_STARTED_AT,
            attr::READY,
            attr::FAILED_AT,
            attr::FAILED_BY,
            attr::FAILURE_MESSAGE,
        ];
        let mut attr_values = values([
            (":old", av_n(from_epoch)),
            (":new", av_n(op.epoch)),
            (":id", av_s(&op.id)),
            (":holder", av_s(&req.requested_by)),
            (":exp", av_ms(expires)),
            (":zero", av_n(0)),
            (":one", av_n(1)),
            (":now", av_ms(now)),
            (":false", av_bool(false)),
            (":target", av_s(&op.target)),
            (":mode", av_s(op.mode.as_str())),
            (":force", av_bool(op.force)),
            (":empty", AttributeValue::M(Item::new())),
        ]);
        if !req.force {
            condition.push_str(
                " AND #activeCluster = :source AND attribute_not_exists(#promotionClaimedBy)",
            );
            attr_names.extend([attr::ACTIVE_CLUSTER, attr::PROMOTION_CLAIMED_BY]);
            attr_values.insert(":source".into(), av_s(&req.source));
        }
        let refused = self
            .update_if(
                "start_operation",
                keys::group_state_key(&req.group),
                "SET #epoch = :new, #opId = :id, #leaseHolder = :holder, #leaseExpiresAt = :exp, \
                 #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now, \
                 #opTarget = :target, #opMode = :mode, #opForce = :force, #promoted = :empty \
                 REMOVE #abortRequestedAt, #groupReadyAt, #promotionStartedAt, #ready, \
                 #failedAt, #failedBy, #failureMessage",
                &condition,
                &attr_names,
                attr_values,
            )
            .await?;
        Ok(refused.is_none())
    }

    /// Puts the operation item of a start before its group-state write (condition: it is
    /// new, or it is this start's own `Pending` item for the group, from an earlier attempt
    /// at another epoch).
    async fn put_pending(&self, op: &Operation) -> Result<(), Cause> {
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(op.to_item()))
            .condition_expression(
                "attribute_not_exists(#PK) OR (#group = :g AND #phase = :pending)",
            )
            .set_expression_attribute_names(Some(names(&[attr::PK, attr::GROUP, attr::PHASE])))
            .set_expression_attribute_values(Some(values([
                (":g", av_s(op.group.to_string())),
                (":pending", av_s(Phase::Pending.as_str())),
            ])));
        match self
            .send("start_operation", "PutItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => Ok(()),
            Err(f) => match f.err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Err(used_id(&op.id)),
                _ => Err(f.into_cause()),
            },
        }
    }

    /// Deletes this start's `Pending` operation item (`put`: one was written) when the start
    /// was refused: no group names it. Best effort: a leftover stays `Pending`, named by no
    /// group.
    async fn drop_pending(&self, op_id: &str, put: bool) {
        if !put {
            return;
        }
        let req = self
            .client
            .delete_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::operation_key(op_id))))
            .condition_expression("#phase = :pending")
            .set_expression_attribute_names(Some(names(&[attr::PHASE])))
            .set_expression_attribute_values(Some(values([(
                ":pending",
                av_s(Phase::Pending.as_str()),
            )])));
        if let Err(e) = self
            .send(
                "start_operation",
                "DeleteItem",
                calls::classify_error,
                || req.clone().send(),
            )
            .await
        {
            tracing::warn!(op_id, error = %e.into_cause(), "the refused start's operation item was not removed");
        }
    }

    /// `Started` with the stored operation; its item is put again if it is missing (written
    /// by hand, or by an older version that wrote the group first).
    async fn started(
        &self,
        req: &StartRequest,
        op_id: &str,
        state: &GroupState,
    ) -> Result<StartOutcome, Cause> {
        if let Some(op) = self.read_operation_item("start_operation", op_id).await? {
            return Ok(StartOutcome::Started(op));
        }
        let op = new_operation(req, op_id, state.epoch, self.now());
        self.put_pending(&op).await?;
        Ok(StartOutcome::Started(op))
    }

    /// The operation item alone, decoded (no handoff from the group state).
    async fn read_operation_item(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        match self.get_item(operation, keys::operation_key(op_id)).await? {
            Some(item) => Ok(Some(Operation::from_item(&item)?)),
            None => Ok(None),
        }
    }
}

fn used_id(op_id: &str) -> Cause {
    Cause::Invalid(format!(
        "operation id {op_id} is already used by another operation"
    ))
}

/// The request's own problems (names, source = target, who asks, the lease); the lease's
/// length when it is fine.
fn validate_start(req: &StartRequest, op_id: &str) -> Result<SignedDuration, Cause> {
    keys::validate_operation_id(op_id)?;
    keys::validate_cluster(&req.source)?;
    keys::validate_cluster(&req.target)?;
    if req.source == req.target {
        return Err(Cause::Invalid(format!(
            "source and target are both {}",
            req.source
        )));
    }
    if req.requested_by.is_empty() {
        return Err(Cause::Invalid("requested_by is empty".into()));
    }
    SignedDuration::try_from(req.lease_ttl)
        .ok()
        .filter(|d| d.is_positive())
        .ok_or_else(|| Cause::Invalid(format!("lease TTL {:?} is not positive", req.lease_ttl)))
}

/// The store's re-check right before its write ([`decide_start`] on the state just read):
/// the refusal to answer, or `None` to go ahead.
fn recheck(
    req: &StartRequest,
    op_id: &str,
    state: &GroupState,
    now: Timestamp,
    lost: bool,
) -> Option<StartOutcome> {
    let observed = Observed {
        state: Some(state),
        target_known: None,
        source_agent: AgentSeen::NotRead,
        target_agent: AgentSeen::NotRead,
    };
    let ask = Request {
        group: &req.group,
        target: &req.target,
        source: Some(&req.source),
        force: req.force,
        source_is_down: req.source_is_down,
        op_id: Some(op_id),
    };
    match decide_start(&observed, &ask, now) {
        Ok(plan) => {
            if let Some(expired) = &plan.takes_over {
                tracing::info!(
                    group = %req.group, expired_op = %expired,
                    "taking over a group whose lease expired"
                );
            }
            None
        }
        Err(refusals) => refusals
            .into_iter()
            .next()
            .map(|first| StartOutcome::refused(first, lost)),
    }
}

/// The operation record a start creates.
fn new_operation(req: &StartRequest, op_id: &str, epoch: u64, now: Timestamp) -> Operation {
    Operation {
        id: op_id.to_owned(),
        group: req.group.clone(),
        epoch,
        // A forced operation always runs in CONSISTENCY order: the source, if it is alive,
        // must be down before the target promotes.
        mode: if req.force {
            crate::records::Mode::Consistency
        } else {
            req.mode
        },
        source: req.source.clone(),
        target: req.target.clone(),
        force: req.force,
        source_is_down: req.force && req.source_is_down,
        reason: req.reason.clone(),
        requested_by: req.requested_by.clone(),
        phase: Phase::Pending,
        requested_at: now,
        promotion_started_at: None,
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: None,
        timings: Timings::default(),
        original_replicas: Default::default(),
        message: None,
    }
}
