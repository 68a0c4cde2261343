//! Coordinator-side writes: registering a group, suspending it and requesting an abort
//! (starting an operation, protocol step 1, is in `start.rs`).

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use std::collections::HashMap;

use aws_sdk_dynamodb::types::{ReturnValue, ReturnValuesOnConditionCheckFailure};
use jiff::Timestamp;

use super::agent::GroupWrite;
use super::error::{Cause, StoreError};
use super::outcome::{OpRef, Outcome, RegisterOutcome, SuspendOutcome};
use super::{Store, calls, key_map, names, values};
use crate::keys::{self, GroupRef};
use crate::records::{
    GroupState, Item, Operation, Phase, Record, attr, av_bool, av_ms, av_n, av_s,
};

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
