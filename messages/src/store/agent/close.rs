//! Closing an operation: protocol step 6 (`Succeeded`, the target takes the group over) and
//! the end of an abort (`Aborted`, the source keeps it), each with its history record.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

use crate::keys;
use crate::records::{
    GroupState, HANDOFF_ATTRIBUTES, HandoffView, HistoryEntry, Item, Operation, Phase, Record,
    Timings, attr, av_ms, av_s, handoff_attributes, timings_to_av,
};
use crate::store::coordinator::s_attr;
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, values};

use super::{CarriedStages, GroupWrite, StageSets};

impl Store {
    /// Protocol step 6 (rule 5): closes the operation as `Succeeded`. One conditional
    /// `UpdateItem` of the group state carries the authority: `activeCluster = target`,
    /// `opId`, `promotionClaimedBy` and lease removed (condition `opId = id AND epoch = e`,
    /// promotion claimed, no abort requested); then the history record is put and the
    /// operation item gets `phase = Succeeded`, `finishedAt` and `timings`.
    /// `timings.total_ms` defaults to `finishedAt - requestedAt`. Reads the operation and the
    /// group state first (one `BatchGetItem`, for the history copy); repeating it after a
    /// success returns the same entry.
    ///
    /// Outcomes: `Done(history)`; `StaleEpoch`; `NotClaimed`; `AbortRequested`;
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn complete_operation(
        &self,
        op: &OpRef,
        timings: Timings,
    ) -> Result<Outcome<HistoryEntry>, StoreError> {
        self.complete_operation_with(op, std::future::ready(timings), &CarriedStages::default())
            .await
    }

    /// [`Store::complete_operation`] with the timings still to be worked out: `timings`
    /// runs while the operation is read, so reading the journals for them adds no round
    /// trip before the close. The operation item's closing write publishes the `carried`
    /// stages too (marked written when it lands).
    pub async fn complete_operation_with(
        &self,
        op: &OpRef,
        timings: impl Future<Output = Timings>,
        carried: &CarriedStages,
    ) -> Result<Outcome<HistoryEntry>, StoreError> {
        self.close_inner(op, timings, Phase::Succeeded, carried)
            .await
            .map_err(|source| StoreError::CompleteOperation {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    /// Closes an aborted operation as `Aborted`: one conditional `UpdateItem` of the group
    /// state removes `opId` and the lease, `activeCluster` unchanged (condition `opId = id
    /// AND epoch = e`, abort requested, no promotion claimed); then the history record is
    /// put and the operation item gets `phase = Aborted`. Called by the source after it reactivated its side.
    ///
    /// Outcomes: `Done(history)`; `StaleEpoch`; `NotRequested`; `PromotionClaimed`;
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn finish_abort(
        &self,
        op: &OpRef,
        timings: Timings,
    ) -> Result<Outcome<HistoryEntry>, StoreError> {
        self.close_inner(
            op,
            std::future::ready(timings),
            Phase::Aborted,
            &CarriedStages::default(),
        )
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
        timings: impl Future<Output = Timings>,
        phase: Phase,
        carried: &CarriedStages,
    ) -> Result<Outcome<HistoryEntry>, Cause> {
        let stages = carried.sets(op)?;
        let op_name = if phase == Phase::Succeeded {
            "complete_operation"
        } else {
            "finish_abort"
        };
        let (stored, timings) =
            // (Boxed: both futures are large, and a debug build's stack is not.)
            tokio::join!(
                Box::pin(self.read_operation_of(op_name, &op.group, &op.id)),
                Box::pin(timings)
            );
        let Some(stored) = stored? else {
            return Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            });
        };
        if let Some(outcome) = self.close_precheck(op_name, op, &stored, phase).await? {
            return Ok(outcome);
        }
        let now = self.now();
        let (update, condition) = close_expressions(phase);
        let mut names = vec![
            attr::LAST_OP_ID,
            attr::OP_ID,
            attr::LEASE_HOLDER,
            attr::LEASE_EXPIRES_AT,
            attr::PROMOTION_STARTED_AT,
            attr::ABORT_REQUESTED_AT,
        ];
        let mut vals = values([(":now", av_ms(now))]);
        if phase == Phase::Succeeded {
            names.extend([attr::ACTIVE_CLUSTER, attr::PROMOTION_CLAIMED_BY]);
            vals.insert(":target".into(), av_s(&stored.target));
        }
        let written = self
            .update_group_for_op(op_name, op, update, condition, &names, HashMap::new(), vals)
            .await?;
        let state = match written {
            GroupWrite::Done(state) => state,
            GroupWrite::Stale(stale) => {
                return match self
                    .closed_before(op_name, op, phase, &stored, now, &stages)
                    .await?
                {
                    Some(outcome) => {
                        if outcome.is_done() {
                            carried.mark_written();
                        }
                        Ok(outcome)
                    }
                    None => Ok(Outcome::StaleEpoch(stale)),
                };
            }
            GroupWrite::Refused(old) => {
                let view = HandoffView::from_item(GroupState::KIND, &old)?;
                let mut seen = stored.clone();
                seen.abort_requested_at = view.abort_requested_at;
                seen.promotion_started_at = view.promotion_started_at;
                return match self.close_precheck(op_name, op, &seen, phase).await? {
                    Some(outcome) => Ok(outcome),
                    None => Err(Cause::Invalid(format!(
                        "closing operation {} lost a condition, but it looks closable",
                        op.id
                    ))),
                };
            }
        };
        tracing::info!(op_id = %op.id, group = %op.group, %phase, "operation closed");
        let entry = entry_for_closing(&stored, timings, phase, now, &state)?;
        self.record_close(op_name, &entry, &state, &stages).await?;
        carried.mark_written();
        Ok(Outcome::Done(entry))
    }

    /// After the group state was released: the history record, then the operation item's
    /// phase, `finishedAt`, timings, a copy of the handoff and the `stages` it publishes.
    /// Neither carries authority; both are idempotent, so a resumed close writes them again.
    async fn record_close(
        &self,
        op_name: &'static str,
        entry: &HistoryEntry,
        state: &Item,
        stages: &StageSets,
    ) -> Result<(), Cause> {
        let handoff = handoff_attributes(state);
        let mut sets = vec![
            "#phase = :phase".to_owned(),
            "#finishedAt = :now".to_owned(),
            "#timings = :timings".to_owned(),
        ];
        sets.extend(stages.sets.iter().cloned());
        let mut names: Vec<&str> = vec![attr::PHASE, attr::FINISHED_AT, attr::TIMINGS, attr::PK];
        let mut vals = values([
            (":phase", av_s(entry.operation.phase.as_str())),
            (":now", av_ms(entry.finished_at)),
            (":timings", timings_to_av(&entry.operation.timings)),
        ]);
        vals.extend(stages.values.clone());
        for (i, name) in HANDOFF_ATTRIBUTES.iter().enumerate() {
            if let Some(v) = handoff.get(*name) {
                sets.push(format!("#{name} = :h{i}"));
                names.push(name);
                vals.insert(format!(":h{i}"), v.clone());
            }
        }
        // The history record first: once the operation item reads closed, its history
        // record is there.
        let mut item = entry.to_item();
        item.extend(handoff);
        self.put_new(op_name, item).await?;
        let written = self
            .update_if_named(
                op_name,
                keys::operation_key(&entry.operation.id),
                &format!("SET {}", sets.join(", ")),
                "attribute_exists(#PK)",
                &names,
                stages.names.clone(),
                vals,
            )
            .await?;
        if written.is_err() {
            return Err(Cause::Invalid(format!(
                "operation {} was closed but its item is gone",
                entry.operation.id
            )));
        }
        Ok(())
    }

    /// The answer for a close whose group-state write found the operation no longer in
    /// flight: `Some` when this close had committed it before (a retried or resumed close),
    /// after writing what it had not; `None` when the group moved on otherwise.
    async fn closed_before(
        &self,
        op_name: &'static str,
        op: &OpRef,
        phase: Phase,
        stored: &Operation,
        now: Timestamp,
        stages: &StageSets,
    ) -> Result<Option<Outcome<HistoryEntry>>, Cause> {
        let Some(state) = self
            .get_item(op_name, keys::group_state_key(&op.group))
            .await?
        else {
            return Ok(None);
        };
        let closed_here = s_attr(&state, attr::LAST_OP_ID) == Some(op.id.as_str())
            && s_attr(&state, attr::OP_ID).is_none_or(|id| id != op.id)
            && matches!(state.get(attr::EPOCH), Some(AttributeValue::N(n)) if n.parse() == Ok(op.epoch));
        if !closed_here {
            return Ok(None);
        }
        let view = HandoffView::from_item(GroupState::KIND, &state)?;
        let closed_as = if view.promotion_started_at.is_some() {
            Phase::Succeeded
        } else {
            Phase::Aborted
        };
        if closed_as != phase {
            return Ok(Some(Outcome::AlreadyFinished { phase: closed_as }));
        }
        let entry = entry_for_closing(stored, Timings::default(), phase, now, &state)?;
        self.record_close(op_name, &entry, &state, stages).await?;
        Ok(Some(Outcome::Done(entry)))
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
        // A `Failed` mark may have landed between the abort's write of the group state and
        // its copy on the operation item: the abort still closes it.
        let failed_then_aborted = phase == Phase::Aborted && stored.phase == Phase::Failed;
        if stored.phase.is_terminal() && !failed_then_aborted {
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

/// The history entry of `stored` closed as `phase` at `now`, with `timings` (total defaults
/// to `now - requestedAt`) and the handoff times the group state carried.
fn entry_for_closing(
    stored: &Operation,
    timings: Timings,
    phase: Phase,
    now: Timestamp,
    state: &Item,
) -> Result<HistoryEntry, Cause> {
    let view = HandoffView::from_item(GroupState::KIND, state)?;
    let mut closed = stored.clone();
    closed.phase = phase;
    closed.abort_requested_at = view.abort_requested_at;
    closed.promotion_started_at = view.promotion_started_at;
    closed.timings = Timings {
        total_ms: timings
            .total_ms
            .or_else(|| u64::try_from(now.duration_since(stored.requested_at).as_millis()).ok()),
        ..timings
    };
    Ok(HistoryEntry::new(closed, now))
}

/// The group state's update expression and the operation's condition for closing as
/// `phase`: `Succeeded` hands the group to the target and needs the promotion claimed and
/// no abort; `Aborted` leaves `activeCluster` and needs an abort and no promotion.
fn close_expressions(phase: Phase) -> (&'static str, &'static str) {
    if phase == Phase::Succeeded {
        (
            "SET #activeCluster = :target, #lastOpId = :id \
             REMOVE #opId, #leaseHolder, #leaseExpiresAt, #promotionClaimedBy",
            "attribute_exists(#promotionStartedAt) AND attribute_not_exists(#abortRequestedAt)",
        )
    } else {
        (
            "SET #lastOpId = :id REMOVE #opId, #leaseHolder, #leaseExpiresAt",
            "attribute_exists(#abortRequestedAt) AND attribute_not_exists(#promotionStartedAt)",
        )
    }
}
