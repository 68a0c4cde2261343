//! Coordinator-side writes: registering a group, starting an operation (protocol step 1),
//! suspending a group and requesting an abort.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValue, ReturnValuesOnConditionCheckFailure,
};
use jiff::{SignedDuration, Timestamp};

use super::agent::GroupWrite;
use super::error::{Cause, StoreError};
use super::outcome::{OpRef, Outcome, RegisterOutcome, StartOutcome, StartRequest, SuspendOutcome};
use super::{Store, calls, key_map, names, values};
use crate::keys::{self, GroupRef};
use crate::protocol::start::{AgentSeen, Observed, Request, decide_start};
use crate::records::{
    GroupState, HandoffView, Item, Operation, Phase, Record, Timings, attr, av_bool, av_ms, av_n,
    av_s,
};

/// How often a start re-reads and retries when the group state changed under it without
/// another operation holding it (e.g. a concurrent start that already finished).
const START_ATTEMPTS: u32 = 3;

pub(super) fn ms_attr(item: &Item, name: &str) -> Option<Timestamp> {
    match item.get(name) {
        Some(aws_sdk_dynamodb::types::AttributeValue::N(n)) => n
            .parse()
            .ok()
            .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
        _ => None,
    }
}

pub(super) fn s_attr<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(aws_sdk_dynamodb::types::AttributeValue::S(s)) => Some(s),
        _ => None,
    }
}

impl Store {
    /// Creates the group state (epoch 0, idle, `active_cluster` active) unless it exists.
    ///
    /// Outcomes: `Registered`; `AlreadyRegistered` when it exists with the same active
    /// cluster; `ActiveElsewhere` naming the active cluster otherwise (nothing changed).
    pub async fn register_group(
        &self,
        group: &GroupRef,
        active_cluster: &str,
    ) -> Result<RegisterOutcome, StoreError> {
        self.register_group_inner(group, active_cluster)
            .await
            .map_err(|source| StoreError::RegisterGroup {
                group: group.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn register_group_inner(
        &self,
        group: &GroupRef,
        active_cluster: &str,
    ) -> Result<RegisterOutcome, Cause> {
        keys::validate_cluster(active_cluster)?;
        let state = GroupState::registered(group.clone(), active_cluster, self.now());
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(state.to_item()))
            .condition_expression("attribute_not_exists(#PK)")
            .set_expression_attribute_names(Some(names(&[attr::PK])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let old = match self
            .send("register_group", "PutItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => return Ok(RegisterOutcome::Registered(state)),
            Err(f) => match f.err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                _ => return Err(f.into_cause()),
            },
        };
        let old = self
            .item_or_read("register_group", old.as_ref(), keys::group_state_key(group))
            .await?
            .ok_or_else(|| Cause::Invalid("the group state vanished while registering".into()))?;
        let existing = GroupState::from_item(&old)?;
        if existing.active_cluster == active_cluster {
            Ok(RegisterOutcome::AlreadyRegistered(existing))
        } else {
            Ok(RegisterOutcome::ActiveElsewhere {
                active: existing.active_cluster.clone(),
                state: existing,
            })
        }
    }

    /// Sets or clears `suspended` on a group (a suspended group refuses new operations; an
    /// operation in flight is not affected). One conditional `UpdateItem`: it writes only
    /// when the group exists and its flag differs, so a repeated call changes nothing.
    ///
    /// Outcomes: `Changed` (the new state), `Unchanged` (the flag was already so),
    /// `NotRegistered`.
    pub async fn set_suspended(
        &self,
        group: &GroupRef,
        suspended: bool,
    ) -> Result<SuspendOutcome, StoreError> {
        self.set_suspended_inner(group, suspended)
            .await
            .map_err(|source| StoreError::SetSuspended {
                group: group.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn set_suspended_inner(
        &self,
        group: &GroupRef,
        suspended: bool,
    ) -> Result<SuspendOutcome, Cause> {
        let flag_differs = if suspended {
            "(attribute_not_exists(#suspended) OR #suspended = :false)"
        } else {
            "#suspended = :true"
        };
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::group_state_key(group))))
            .update_expression(
                "SET #suspended = :s, #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now",
            )
            .condition_expression(format!("attribute_exists(#PK) AND {flag_differs}"))
            .set_expression_attribute_names(Some(names(&[
                attr::PK,
                attr::SUSPENDED,
                attr::VERSION,
                attr::UPDATED_AT,
            ])))
            .set_expression_attribute_values(Some(values([
                (":s", av_bool(suspended)),
                (if suspended { ":false" } else { ":true" }, av_bool(!suspended)),
                (":zero", av_n(0)),
                (":one", av_n(1)),
                (":now", av_ms(self.now())),
            ])))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let old = match self
            .send("set_suspended", "UpdateItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(out) => {
                let item = out
                    .attributes()
                    .ok_or_else(|| Cause::Invalid("UpdateItem returned no attributes".into()))?;
                return Ok(SuspendOutcome::Changed(GroupState::from_item(item)?));
            }
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                _ => return Err(f.into_cause()),
            },
        };
        let Some(old) = self
            .item_or_read("set_suspended", old.as_ref(), keys::group_state_key(group))
            .await?
        else {
            return Ok(SuspendOutcome::NotRegistered);
        };
        let state = GroupState::from_item(&old)?;
        if state.suspended == suspended {
            Ok(SuspendOutcome::Unchanged(state))
        } else {
            Err(Cause::Invalid(format!(
                "the suspended flag of group {group} changed while it was being set"
            )))
        }
    }

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

    /// A consistent read of a group state, decoded.
    pub(super) async fn read_state(
        &self,
        operation: &'static str,
        group: &GroupRef,
    ) -> Result<Option<GroupState>, Cause> {
        match self
            .get_item(operation, keys::group_state_key(group))
            .await?
        {
            Some(item) => Ok(Some(GroupState::from_item(&item)?)),
            None => Ok(None),
        }
    }

    /// A consistent read of an operation, decoded, with the handoff attributes the group
    /// state carries while it is in flight ([`Store::handoff_view`]): its abort, claim and
    /// group handoff times.
    pub(super) async fn read_operation(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        Ok(self
            .handoff_view(operation, op_id)
            .await?
            .map(|(mut op, view)| {
                overlay(&mut op, &view);
                op
            }))
    }

    /// An operation (consistent read) and its handoff: from the group state while that
    /// carries it (`opId`, or `lastOpId` before the close copied it, at the operation's
    /// epoch), else from the operation item (the copy a close left; empty for an operation
    /// superseded before it handed off). An operation the group state cannot carry (closed
    /// and copied) costs one read; else two.
    pub(super) async fn handoff_view(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<(Operation, HandoffView)>, Cause> {
        let Some(item) = self.get_item(operation, keys::operation_key(op_id)).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        let copied = op.phase.is_terminal() && op.phase != Phase::Failed;
        let state = if copied {
            None
        } else {
            self.get_item(operation, keys::group_state_key(&op.group))
                .await?
        };
        Ok(Some(handoff_of(op, &item, state.as_ref())?))
    }

    /// The operation item and the group state of `group` in one consistent `BatchGetItem`
    /// (one call instead of two; two reads when it was throttled in part). `None` when the
    /// operation item does not exist.
    async fn op_and_state_items(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Item, Option<Item>)>, Cause> {
        let op_key = keys::operation_key(op_id);
        let state_key = keys::group_state_key(group);
        let keys_and_attrs = KeysAndAttributes::builder()
            .keys(key_map(op_key.clone()))
            .keys(key_map(state_key.clone()))
            .consistent_read(true)
            .build()?;
        let req = self
            .client
            .batch_get_item()
            .request_items(self.table.to_string(), keys_and_attrs);
        let out = self
            .send(operation, "BatchGetItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
            .map_err(super::Failed::into_cause)?;
        let unprocessed = out
            .unprocessed_keys
            .as_ref()
            .is_some_and(|u| u.values().any(|k| !k.keys.is_empty()));
        if unprocessed {
            // Throttled in part: the two reads one by one.
            let Some(item) = self.get_item(operation, op_key).await? else {
                return Ok(None);
            };
            let state = self.get_item(operation, state_key).await?;
            return Ok(Some((item, state)));
        }
        let mut items = out
            .responses
            .and_then(|mut r| r.remove(self.table.as_ref()))
            .unwrap_or_default();
        let is = |item: &Item, (pk, sk): &(String, String)| {
            s_attr(item, keys::PK) == Some(pk.as_str())
                && s_attr(item, keys::SK) == Some(sk.as_str())
        };
        let Some(at) = items.iter().position(|i| is(i, &op_key)) else {
            return Ok(None);
        };
        let item = items.swap_remove(at);
        let state = items.into_iter().find(|i| is(i, &state_key));
        Ok(Some((item, state)))
    }

    /// [`Store::handoff_view`] for an operation of a known `group`, in one call
    /// ([`Store::op_and_state_items`]).
    pub(super) async fn handoff_view_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Operation, HandoffView)>, Cause> {
        let Some((item, state)) = self.op_and_state_items(operation, group, op_id).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        if op.group != *group {
            return self.handoff_view(operation, op_id).await;
        }
        handoff_of(op, &item, state.as_ref()).map(Some)
    }

    /// [`Store::read_operation`] for an operation of `group`, with the group state read in
    /// the same call ([`Store::op_and_state_items`]); the state is `None` when the group
    /// has none.
    pub(super) async fn read_operation_and_state_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<(Operation, Option<GroupState>)>, Cause> {
        let Some((item, state)) = self.op_and_state_items(operation, group, op_id).await? else {
            return Ok(None);
        };
        let op = Operation::from_item(&item)?;
        if op.group != *group {
            return Err(Cause::Invalid(format!(
                "operation {op_id} is of group {}, not of {group}",
                op.group
            )));
        }
        let (mut op, view) = handoff_of(op, &item, state.as_ref())?;
        overlay(&mut op, &view);
        let state = state.map(|s| GroupState::from_item(&s)).transpose()?;
        Ok(Some((op, state)))
    }

    /// [`Store::read_operation`] for an operation of a known `group`, in one call
    /// ([`Store::handoff_view_of`]).
    pub(super) async fn read_operation_of(
        &self,
        operation: &'static str,
        group: &GroupRef,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        Ok(self
            .handoff_view_of(operation, group, op_id)
            .await?
            .map(|(mut op, view)| {
                overlay(&mut op, &view);
                op
            }))
    }
}

/// The handoff of `op` (its item `item`) from the group state `state` when that carries it
/// (`opId`, or `lastOpId` before the close copied it, at the operation's epoch), else from
/// the operation item.
fn handoff_of(
    op: Operation,
    item: &Item,
    state: Option<&Item>,
) -> Result<(Operation, HandoffView), Cause> {
    let copied = op.phase.is_terminal() && op.phase != Phase::Failed;
    if !copied && let Some(state) = state {
        let carries = |a: &str| s_attr(state, a) == Some(op.id.as_str());
        let at_epoch = matches!(
            state.get(attr::EPOCH),
            Some(AttributeValue::N(n)) if n.parse() == Ok(op.epoch)
        );
        if at_epoch && (carries(attr::OP_ID) || carries(attr::LAST_OP_ID)) {
            let view = HandoffView::from_item(GroupState::KIND, state)?;
            return Ok((op, view));
        }
    }
    let view = HandoffView::from_item(Operation::KIND, item)?;
    Ok((op, view))
}

/// `op` with the handoff times of `view` (abort, claim), and `Failed` when the group state
/// carries its failure mark while its item still reads open (the mark decides; the item's
/// phase is its copy, written next, and an abort requested after the mark goes on as an
/// abort).
fn overlay(op: &mut Operation, view: &HandoffView) {
    op.abort_requested_at = view.abort_requested_at;
    op.promotion_started_at = view.promotion_started_at;
    if let Some(failure) = &view.failure
        && view.abort_requested_at.is_none()
        && matches!(op.phase, Phase::Pending | Phase::Running)
    {
        op.phase = Phase::Failed;
        op.finished_at = Some(failure.at);
        if failure.message.is_some() {
            op.message.clone_from(&failure.message);
        }
    }
}

impl Store {
    /// Requests an abort: one `UpdateItem` of the group state, `abortRequestedAt` (the
    /// first time is kept), condition `epoch = e AND opId = id`, no promotion claimed
    /// (`promotionClaimedBy` and `promotionStartedAt` absent). Claim and abort are on the
    /// same item and exclude each other, so after a successful abort the target can never
    /// promote. Then the operation item gets phase `Aborting` and a copy of the time (what
    /// users read; best effort, it carries no authority). Reads the operation first (to
    /// find its group).
    ///
    /// Outcomes: `Done(requested_at)` (repeating it keeps the first time);
    /// `PromotionClaimed` (only forward is possible, or `force`); `AlreadyFinished`;
    /// `StaleEpoch` (the operation is no longer the one in flight); `OperationNotFound`.
    pub async fn request_abort(&self, op_id: &str) -> Result<Outcome<Timestamp>, StoreError> {
        self.request_abort_inner(op_id)
            .await
            .map_err(|source| StoreError::RequestAbort {
                op_id: op_id.to_owned(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn request_abort_inner(&self, op_id: &str) -> Result<Outcome<Timestamp>, Cause> {
        const OP: &str = "request_abort";
        keys::validate_operation_id(op_id)?;
        let Some(stored) = self.read_operation(OP, op_id).await? else {
            return Ok(Outcome::OperationNotFound {
                op_id: op_id.to_owned(),
            });
        };
        if let Some(answer) = abort_precheck(&stored) {
            if let Outcome::Done(at) = answer {
                self.mark_aborting(op_id, at).await;
            }
            return Ok(answer);
        }
        let op = OpRef::from(&stored);
        let now = self.now();
        let written = self
            .update_group_for_op(
                OP,
                &op,
                "SET #abortRequestedAt = if_not_exists(#abortRequestedAt, :now)",
                "attribute_not_exists(#promotionClaimedBy) \
                 AND attribute_not_exists(#promotionStartedAt)",
                &[
                    attr::ABORT_REQUESTED_AT,
                    attr::PROMOTION_CLAIMED_BY,
                    attr::PROMOTION_STARTED_AT,
                ],
                HashMap::new(),
                values([(":now", av_ms(now))]),
            )
            .await;
        match written {
            Ok(GroupWrite::Done(new)) => {
                let at = ms_attr(&new, attr::ABORT_REQUESTED_AT).unwrap_or(now);
                tracing::info!(op_id, "abort requested");
                self.mark_aborting(op_id, at).await;
                Ok(Outcome::Done(at))
            }
            Ok(GroupWrite::Refused(old)) => Ok(Outcome::PromotionClaimed {
                at: ms_attr(&old, attr::PROMOTION_STARTED_AT),
                by: s_attr(&old, attr::PROMOTION_CLAIMED_BY).map(str::to_owned),
            }),
            Ok(GroupWrite::Stale(stale)) => {
                // Closed in between, perhaps: say how.
                match self.read_operation(OP, op_id).await? {
                    Some(now_stored) => {
                        Ok(abort_precheck(&now_stored).unwrap_or(Outcome::StaleEpoch(stale)))
                    }
                    None => Ok(Outcome::StaleEpoch(stale)),
                }
            }
            Err(cause) => {
                // The effect is unknown: read back before reporting a failure.
                if let Ok(Some(now_stored)) = self.read_operation(OP, op_id).await
                    && let Some(at) = now_stored.abort_requested_at
                {
                    self.mark_aborting(op_id, at).await;
                    return Ok(Outcome::Done(at));
                }
                Err(cause)
            }
        }
    }

    /// The operation item's copy of an abort: phase `Aborting` and `abortRequestedAt`, unless
    /// it is closed (a `Failed` one still counts as open). Best effort.
    async fn mark_aborting(&self, op_id: &str, at: Timestamp) {
        let result = self
            .update_if(
                "request_abort",
                keys::operation_key(op_id),
                "SET #abortRequestedAt = if_not_exists(#abortRequestedAt, :at), #phase = :aborting",
                "attribute_exists(#PK) AND NOT (#phase IN (:t1, :t3, :t4, :t5))",
                &[attr::PK, attr::ABORT_REQUESTED_AT, attr::PHASE],
                values([
                    (":at", av_ms(at)),
                    (":aborting", av_s(Phase::Aborting.as_str())),
                    (":t1", av_s(Phase::Succeeded.as_str())),
                    (":t3", av_s(Phase::Aborted.as_str())),
                    (":t4", av_s(Phase::RolledBack.as_str())),
                    (":t5", av_s(Phase::Superseded.as_str())),
                ]),
            )
            .await;
        if let Err(e) = result {
            tracing::warn!(op_id, error = %e, "the operation item does not show the abort yet (the group state has it)");
        }
    }
}

/// What to answer to an abort request without writing, from the stored operation.
fn abort_precheck(op: &Operation) -> Option<Outcome<Timestamp>> {
    if let Some(at) = op.promotion_started_at {
        return Some(Outcome::PromotionClaimed {
            at: Some(at),
            by: None,
        });
    }
    // A failed operation the group still names can be aborted (the group-state check of
    // the conditional write makes sure it still does).
    if op.phase.is_terminal() && op.phase != Phase::Failed {
        return Some(Outcome::AlreadyFinished { phase: op.phase });
    }
    op.abort_requested_at.map(Outcome::Done)
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
