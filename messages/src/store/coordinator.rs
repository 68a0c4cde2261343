//! Coordinator-side writes: registering a group, starting an operation (protocol step 1),
//! suspending a group and requesting an abort.

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use jiff::{SignedDuration, Timestamp};

use super::error::{Cause, StoreError};
use super::outcome::{
    OpRef, Outcome, RegisterOutcome, Stale, StartOutcome, StartRequest, SuspendOutcome,
};
use super::{Store, TxResult, calls, key_map, names, start_request_token, values};
use crate::keys::{self, GroupRef};
use crate::protocol::start::{AgentSeen, Observed, Request, decide_start};
use crate::records::{
    GroupState, Item, Operation, Phase, Record, Timings, attr, av_bool, av_ms, av_n, av_s,
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

    /// Protocol step 1: starts an operation in one conditional `TransactWriteItems`.
    ///
    /// Reads the group state (consistent), then in one transaction updates it (condition:
    /// `epoch` unchanged, no operation in flight or its lease expired, not suspended, and
    /// unless `force`: `activeCluster = source` and no promotion claimed
    /// (`attribute_not_exists(promotionClaimedBy)`); sets `epoch + 1`, `opId`, the lease; a
    /// forced start keeps `promotionClaimedBy`) and puts the operation (condition: it does
    /// not exist). The transaction's client request token
    /// is derived from the operation id and the epoch it starts from
    /// ([`super::start_request_token`]).
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

        for _ in 0..START_ATTEMPTS {
            let Some(state) = self.read_state(OP, &req.group).await? else {
                return Ok(StartOutcome::NotRegistered {
                    group: req.group.clone(),
                });
            };
            let now = self.now();
            if state.op_id.as_deref() == Some(op_id) {
                return self.started(op_id).await;
            }
            if let Some(refused) = recheck(req, op_id, &state, now, lost) {
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
            let items = self.start_items(req, &op, state.epoch, expires, now)?;

            match self
                .transact(OP, items, Some(start_request_token(op_id, state.epoch)))
                .await
            {
                Ok(TxResult::Committed) => {
                    tracing::info!(group = %req.group, op_id, epoch, "operation started");
                    if let Some(old) = state.op_id.as_deref() {
                        self.mark_superseded(old, op_id, now).await;
                    }
                    return Ok(StartOutcome::Started(op));
                }
                Ok(TxResult::Cancelled(cancelled)) => {
                    if cancelled.failed(1).is_some() {
                        // The operation record exists: either an earlier attempt of ours
                        // committed, or the id is taken.
                        if let Some(now_state) = self.read_state(OP, &req.group).await?
                            && now_state.op_id.as_deref() == Some(op_id)
                        {
                            return self.started(op_id).await;
                        }
                        return Err(Cause::Invalid(format!(
                            "operation id {op_id} is already used by another operation"
                        )));
                    }
                    lost = true;
                }
                Err(failed) => {
                    let ambiguous = failed.kind.is_ambiguous()
                        || matches!(
                            aws_sdk_dynamodb::error::ProvideErrorMetadata::code(&failed.err),
                            Some(
                                "IdempotentParameterMismatchException"
                                    | "TransactionInProgressException"
                            )
                        );
                    if ambiguous
                        && let Ok(Some(now_state)) = self.read_state(OP, &req.group).await
                        && now_state.op_id.as_deref() == Some(op_id)
                    {
                        tracing::info!(
                            group = %req.group, op_id, kind = ?failed.kind,
                            "the start's answer was lost, but reading back shows it committed"
                        );
                        return self.started(op_id).await;
                    }
                    return Err(failed.into_cause());
                }
            }
        }
        Err(Cause::Contention {
            attempts: START_ATTEMPTS,
        })
    }

    /// The start's transaction: the group-state update (condition: `epoch` unchanged, no
    /// operation in flight or its lease expired, not suspended, and unless forced the source
    /// active and no promotion claimed) and the operation's put (condition: it is new).
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

    fn start_items(
        &self,
        req: &StartRequest,
        op: &Operation,
        from_epoch: u64,
        expires: Timestamp,
        now: Timestamp,
    ) -> Result<Vec<TransactWriteItem>, Cause> {
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
        ]);
        if !req.force {
            condition.push_str(
                " AND #activeCluster = :source AND attribute_not_exists(#promotionClaimedBy)",
            );
            attr_names.extend([attr::ACTIVE_CLUSTER, attr::PROMOTION_CLAIMED_BY]);
            attr_values.insert(":source".into(), av_s(&req.source));
        }
        let update = Update::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::group_state_key(&req.group))))
            .update_expression(
                "SET #epoch = :new, #opId = :id, #leaseHolder = :holder, #leaseExpiresAt = :exp, \
                 #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now",
            )
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(&attr_names)))
            .set_expression_attribute_values(Some(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        let put = Put::builder()
            .table_name(self.table.as_ref())
            .set_item(Some(op.to_item()))
            .condition_expression("attribute_not_exists(#PK)")
            .set_expression_attribute_names(Some(names(&[attr::PK])))
            .build()?;
        Ok(vec![
            TransactWriteItem::builder().update(update).build(),
            TransactWriteItem::builder().put(put).build(),
        ])
    }

    /// `Started` with the stored operation.
    async fn started(&self, op_id: &str) -> Result<StartOutcome, Cause> {
        let item = self
            .get_item("start_operation", keys::operation_key(op_id))
            .await?
            .ok_or_else(|| {
                Cause::Invalid(format!(
                    "the group names operation {op_id} but its record does not exist"
                ))
            })?;
        Ok(StartOutcome::Started(Operation::from_item(&item)?))
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

    /// A consistent read of an operation, decoded.
    pub(super) async fn read_operation(
        &self,
        operation: &'static str,
        op_id: &str,
    ) -> Result<Option<Operation>, Cause> {
        match self.get_item(operation, keys::operation_key(op_id)).await? {
            Some(item) => Ok(Some(Operation::from_item(&item)?)),
            None => Ok(None),
        }
    }

    /// Requests an abort, in one transaction: the operation gets `abortRequestedAt` (and
    /// phase `Aborting`), condition: no promotion claimed (`promotionStartedAt` absent) and
    /// not closed (a `Failed` operation the group still names counts as open); with a `ConditionCheck` on the group state: `opId = id AND
    /// attribute_not_exists(promotionClaimedBy)`. Claim and abort exclude each other, so after
    /// a successful abort the target can never promote. Reads the operation first (to find
    /// its group).
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
            return Ok(answer);
        }
        let op = OpRef::from(&stored);
        let now = self.now();
        let items = vec![
            self.tx_check(
                keys::group_state_key(&op.group),
                "#opId = :id AND attribute_not_exists(#promotionClaimedBy)",
                &[attr::OP_ID, attr::PROMOTION_CLAIMED_BY],
                values([(":id", av_s(op_id))]),
            )?,
            self.tx_update(
                keys::operation_key(op_id),
                "SET #abortRequestedAt = if_not_exists(#abortRequestedAt, :now), #phase = :aborting",
                Some(
                    "attribute_exists(#PK) AND attribute_not_exists(#promotionStartedAt) \
                     AND NOT (#phase IN (:t1, :t3, :t4))",
                ),
                &[
                    attr::PK,
                    attr::ABORT_REQUESTED_AT,
                    attr::PROMOTION_STARTED_AT,
                    attr::PHASE,
                ],
                values([
                    (":now", av_ms(now)),
                    (":aborting", av_s(Phase::Aborting.as_str())),
                    (":t1", av_s(Phase::Succeeded.as_str())),
                    (":t3", av_s(Phase::Aborted.as_str())),
                    (":t4", av_s(Phase::RolledBack.as_str())),
                ]),
            )?,
        ];
        let result = match self.transact(OP, items, None).await {
            Ok(r) => r,
            Err(failed) => {
                if failed.kind.is_ambiguous()
                    && let Ok(Some(now_stored)) = self.read_operation(OP, op_id).await
                    && let Some(at) = now_stored.abort_requested_at
                {
                    return Ok(Outcome::Done(at));
                }
                return Err(failed.into_cause());
            }
        };
        if let TxResult::Committed = result {
            tracing::info!(op_id, "abort requested");
            return Ok(Outcome::Done(now));
        }
        // Lost: look at both items again.
        let Some(now_stored) = self.read_operation(OP, op_id).await? else {
            return Ok(Outcome::OperationNotFound {
                op_id: op_id.to_owned(),
            });
        };
        let state = self.read_state(OP, &op.group).await?;
        let claimed_by = state.as_ref().and_then(|s| s.promotion_claimed_by.clone());
        if let Some(at) = now_stored.promotion_started_at {
            return Ok(Outcome::PromotionClaimed {
                at: Some(at),
                by: claimed_by,
            });
        }
        if let Some(answer) = abort_precheck(&now_stored) {
            return Ok(answer);
        }
        if state.as_ref().and_then(|s| s.op_id.as_deref()) != Some(op_id) {
            return Ok(Outcome::StaleEpoch(Stale {
                expected_epoch: op.epoch,
                current_epoch: state.as_ref().map(|s| s.epoch),
                current_op: state.and_then(|s| s.op_id),
            }));
        }
        if claimed_by.is_some() {
            return Ok(Outcome::PromotionClaimed {
                at: None,
                by: claimed_by,
            });
        }
        Err(Cause::Invalid(format!(
            "the abort of operation {op_id} lost a condition, but the operation looks abortable"
        )))
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
    // the transaction makes sure it still does).
    if op.phase.is_terminal() && op.phase != Phase::Failed {
        return Some(Outcome::AlreadyFinished { phase: op.phase });
    }
    op.abort_requested_at.map(Outcome::Done)
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
