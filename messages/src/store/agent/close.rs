//! Closing an operation: protocol step 6 (`Succeeded`, the target takes the group over) and
//! the end of an abort (`Aborted`, the source keeps it), each with its history record.

use aws_sdk_dynamodb::types::TransactWriteItem;
use jiff::Timestamp;

use crate::keys;
use crate::records::{
    HistoryEntry, Operation, Phase, Record, Timings, attr, av_ms, av_n, av_s, timings_to_av,
};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Cancellation, Store, TxResult, values};

impl Store {
    /// Protocol step 6 (rule 5): closes the operation as `Succeeded` in one transaction:
    /// group state `activeCluster = target`, `opId`, `promotionClaimedBy` and lease removed (condition
    /// `opId = id AND epoch = e`); operation `phase = Succeeded` with `finishedAt` and
    /// `timings` (condition: promotion claimed, no abort requested); history record put.
    /// `timings.total_ms` defaults to `finishedAt - requestedAt`. Reads the operation first
    /// (for the history copy); repeating it after a success returns the same entry.
    ///
    /// Outcomes: `Done(history)`; `StaleEpoch`; `NotClaimed`; `AbortRequested`;
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn complete_operation(
        &self,
        op: &OpRef,
        timings: Timings,
    ) -> Result<Outcome<HistoryEntry>, StoreError> {
        self.close_inner(op, timings, Phase::Succeeded)
            .await
            .map_err(|source| StoreError::CompleteOperation {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    /// Closes an aborted operation as `Aborted` in one transaction: group state `opId` and
    /// lease removed, `activeCluster` unchanged (condition `opId = id AND epoch = e`);
    /// operation `phase = Aborted` (condition: abort requested, no promotion claimed);
    /// history record put. Called by the source after it reactivated its side.
    ///
    /// Outcomes: `Done(history)`; `StaleEpoch`; `NotRequested`; `PromotionClaimed`;
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn finish_abort(
        &self,
        op: &OpRef,
        timings: Timings,
    ) -> Result<Outcome<HistoryEntry>, StoreError> {
        self.close_inner(op, timings, Phase::Aborted)
            .await
            .map_err(|source| StoreError::FinishAbort {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn close_inner(
        &self,
        op: &OpRef,
        timings: Timings,
        phase: Phase,
    ) -> Result<Outcome<HistoryEntry>, Cause> {
        let op_name = if phase == Phase::Succeeded {
            "complete_operation"
        } else {
            "finish_abort"
        };
        let Some(stored) = self.read_operation(op_name, &op.id).await? else {
            return Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            });
        };
        if let Some(outcome) = self.close_precheck(op_name, op, &stored, phase).await? {
            return Ok(outcome);
        }
        let now = self.now();
        let entry = entry_for_closing(&stored, timings, phase, now);
        let items = self.close_items(op, &stored.target, &entry, phase, now)?;
        let result = match self.transact(op_name, items, None).await {
            Ok(r) => r,
            Err(failed) => {
                // The effect is unknown: read back before reporting a failure.
                if failed.kind.is_ambiguous()
                    && let Ok(Some(now_stored)) = self.read_operation(op_name, &op.id).await
                    && now_stored.phase == phase
                {
                    return Ok(Outcome::Done(closed_entry(now_stored, now)));
                }
                return Err(failed.into_cause());
            }
        };
        match result {
            TxResult::Committed => {
                tracing::info!(op_id = %op.id, group = %op.group, %phase, "operation closed");
                Ok(Outcome::Done(entry))
            }
            TxResult::Cancelled(rejected) => {
                self.close_lost(op_name, op, phase, &rejected, now).await
            }
        }
    }

    /// The closing transaction: the group state released (item 0, condition
    /// `epoch = e AND opId = id`; for `Succeeded` also handed to `target`), the operation's
    /// phase, `finishedAt` and timings (item 1), and the history record put (item 2). The
    /// expressions that depend on `phase` come from [`close_expressions`].
    fn close_items(
        &self,
        op: &OpRef,
        target: &str,
        entry: &HistoryEntry,
        phase: Phase,
        now: Timestamp,
    ) -> Result<Vec<TransactWriteItem>, Cause> {
        let (group_update, op_condition) = close_expressions(phase);
        let mut group_names = vec![
            attr::VERSION,
            attr::LAST_OP_ID,
            attr::UPDATED_AT,
            attr::OP_ID,
            attr::LEASE_HOLDER,
            attr::LEASE_EXPIRES_AT,
            attr::EPOCH,
        ];
        let mut group_values = values([
            (":zero", av_n(0)),
            (":one", av_n(1)),
            (":id", av_s(&op.id)),
            (":now", av_ms(now)),
            (":e", av_n(op.epoch)),
        ]);
        if phase == Phase::Succeeded {
            group_names.extend([attr::ACTIVE_CLUSTER, attr::PROMOTION_CLAIMED_BY]);
            group_values.insert(":target".into(), av_s(target));
        }
        Ok(vec![
            self.tx_update(
                keys::group_state_key(&op.group),
                group_update,
                Some("#epoch = :e AND #opId = :id"),
                &group_names,
                group_values,
            )?,
            self.tx_update(
                keys::operation_key(&op.id),
                "SET #phase = :phase, #finishedAt = :now, #timings = :timings",
                Some(op_condition),
                &[
                    attr::PHASE,
                    attr::FINISHED_AT,
                    attr::TIMINGS,
                    attr::PROMOTION_STARTED_AT,
                    attr::ABORT_REQUESTED_AT,
                ],
                values([
                    (":phase", av_s(phase.as_str())),
                    (":now", av_ms(now)),
                    (":timings", timings_to_av(&entry.operation.timings)),
                ]),
            )?,
            self.tx_put_new(entry.to_item())?,
        ])
    }

    /// The answer to a closing transaction that was cancelled. It may have lost to itself
    /// (a retried attempt that had committed), so the operation is read back before the
    /// group state is looked at (not `transact_for_op`).
    async fn close_lost(
        &self,
        op_name: &'static str,
        op: &OpRef,
        phase: Phase,
        rejected: &Cancellation,
        now: Timestamp,
    ) -> Result<Outcome<HistoryEntry>, Cause> {
        let Some(now_stored) = self.read_operation(op_name, &op.id).await? else {
            return Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            });
        };
        if let Some(r) = rejected.failed(0) {
            if now_stored.phase == phase {
                return Ok(Outcome::Done(closed_entry(now_stored, now)));
            }
            return Ok(Outcome::StaleEpoch(
                self.stale(op_name, op, r.item.as_ref()).await?,
            ));
        }
        match self.close_precheck(op_name, op, &now_stored, phase).await? {
            Some(outcome) => Ok(outcome),
            None => Ok(Outcome::StaleEpoch(self.stale(op_name, op, None).await?)),
        }
    }

    /// Decides from the stored operation whether closing it as `phase` can go ahead
    /// (`None`) or what to answer instead.
    async fn close_precheck(
        &self,
        op_name: &'static str,
        op: &OpRef,
        stored: &Operation,
        phase: Phase,
    ) -> Result<Option<Outcome<HistoryEntry>>, Cause> {
        if stored.phase == phase {
            let finished = stored.finished_at.unwrap_or(stored.requested_at);
            return Ok(Some(Outcome::Done(closed_entry(stored.clone(), finished))));
        }
        if stored.phase == Phase::Superseded {
            // A later operation took the group over: to this operation's agents, the epoch
            // moved on.
            return Ok(Some(Outcome::StaleEpoch(
                self.stale(op_name, op, None).await?,
            )));
        }
        if stored.phase.is_terminal() {
            return Ok(Some(Outcome::AlreadyFinished {
                phase: stored.phase,
            }));
        }
        if stored.epoch != op.epoch {
            return Ok(Some(Outcome::StaleEpoch(
                self.stale(op_name, op, None).await?,
            )));
        }
        if phase == Phase::Succeeded {
            if let Some(at) = stored.abort_requested_at {
                return Ok(Some(Outcome::AbortRequested { at }));
            }
            if stored.promotion_started_at.is_none() {
                return Ok(Some(Outcome::NotClaimed));
            }
        } else {
            if let Some(at) = stored.promotion_started_at {
                return Ok(Some(Outcome::PromotionClaimed {
                    at: Some(at),
                    by: None,
                }));
            }
            if stored.abort_requested_at.is_none() {
                return Ok(Some(Outcome::NotRequested));
            }
        }
        Ok(None)
    }
}

fn closed_entry(op: Operation, fallback: Timestamp) -> HistoryEntry {
    let finished = op.finished_at.unwrap_or(fallback);
    HistoryEntry::new(op, finished)
}

/// The history entry of `stored` closed as `phase` at `now`, with `timings`; its total
/// defaults to `now - requestedAt`.
fn entry_for_closing(
    stored: &Operation,
    timings: Timings,
    phase: Phase,
    now: Timestamp,
) -> HistoryEntry {
    let mut closed = stored.clone();
    closed.phase = phase;
    closed.timings = Timings {
        total_ms: timings
            .total_ms
            .or_else(|| u64::try_from(now.duration_since(stored.requested_at).as_millis()).ok()),
        ..timings
    };
    HistoryEntry::new(closed, now)
}

/// The group state's update expression and the operation's condition for closing as
/// `phase`: `Succeeded` hands the group to the target and needs the promotion claimed and
/// no abort; `Aborted` leaves `activeCluster` and needs an abort and no promotion.
fn close_expressions(phase: Phase) -> (&'static str, &'static str) {
    if phase == Phase::Succeeded {
        (
            "SET #activeCluster = :target, #version = if_not_exists(#version, :zero) + :one, \
             #lastOpId = :id, #updatedAt = :now \
             REMOVE #opId, #leaseHolder, #leaseExpiresAt, #promotionClaimedBy",
            "attribute_exists(#promotionStartedAt) AND attribute_not_exists(#abortRequestedAt)",
        )
    } else {
        (
            "SET #version = if_not_exists(#version, :zero) + :one, \
             #lastOpId = :id, #updatedAt = :now REMOVE #opId, #leaseHolder, #leaseExpiresAt",
            "attribute_exists(#abortRequestedAt) AND attribute_not_exists(#promotionStartedAt)",
        )
    }
}
