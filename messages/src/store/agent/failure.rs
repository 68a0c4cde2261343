//! A failed operation: the failure mark on the group state, then the operation item's phase.
//!
//! The mark is decided on the group state, the item the claim and the abort are written on:
//! it is conditioned on no claim and the claim on no mark, so a failure can only be recorded
//! before the promotion is claimed and, once claimed, the operation only goes forward. A mark
//! on the operation item alone, decided on a read of the group state, could land after a
//! claim made meanwhile and leave a claimed group with a `Failed` operation that nothing
//! moves on.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::GroupWrite;
use crate::keys;
use crate::records::{GroupState, HandoffView, Item, Phase, Record, attr, av_ms, av_s};
use crate::store::coordinator::s_attr;
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, values};

impl Store {
    /// Records that `op` failed in `by`'s run (a deadline ran out, or a problem running
    /// again cannot mend), in two writes:
    ///
    /// 1. one `UpdateItem` of the group state carries the decision: `failedAt`, `failedBy`
    ///    and `failureMessage` (the first mark is kept), condition `epoch = e AND opId = id`,
    ///    no promotion claimed (`promotionClaimedBy` and `promotionStartedAt` absent) and no
    ///    abort requested. The claim requires no `failedAt` on the same item, so the failure
    ///    mark and the claim exclude each other as the abort and the claim do;
    /// 2. the operation item gets `phase = Failed`, `finishedAt` and `message`
    ///    ([`Store::set_phase`]'s write). It carries no authority: while the group state
    ///    names the operation, reads of it ([`Store::get_operation`]) show it `Failed` from
    ///    the mark already, so a stop between the two writes changes nothing a decision
    ///    reads.
    ///
    /// A `Failed` operation is not run forward; it holds the group until it is aborted (the
    /// active cluster rolls back), a forced start takes over, or its lease expires and a new
    /// start takes over (the start clears the mark). After a timeout or transport failure of
    /// the first write the group state is read back: the mark there, for this operation,
    /// means it committed. Repeating the call is harmless.
    ///
    /// Outcomes: `Done(())`; `PromotionClaimed` (nothing recorded: the operation only goes
    /// forward); `AbortRequested` (an abort came first and nothing was recorded, or it came
    /// between the two writes and the operation item shows it); `StaleEpoch`;
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn fail_operation(
        &self,
        op: &OpRef,
        by: &str,
        message: &str,
    ) -> Result<Outcome<()>, StoreError> {
        self.fail_inner(op, by, message)
            .await
            .map_err(|source| StoreError::FailOperation {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn fail_inner(&self, op: &OpRef, by: &str, message: &str) -> Result<Outcome<()>, Cause> {
        const OP: &str = "fail_operation";
        keys::validate_cluster(by)?;
        let written = self
            .update_group_for_op(
                OP,
                op,
                "SET #failedAt = if_not_exists(#failedAt, :now), \
                 #failedBy = if_not_exists(#failedBy, :by), \
                 #failureMessage = if_not_exists(#failureMessage, :m)",
                "attribute_not_exists(#promotionClaimedBy) \
                 AND attribute_not_exists(#promotionStartedAt) \
                 AND attribute_not_exists(#abortRequestedAt)",
                &[
                    attr::FAILED_AT,
                    attr::FAILED_BY,
                    attr::FAILURE_MESSAGE,
                    attr::PROMOTION_CLAIMED_BY,
                    attr::PROMOTION_STARTED_AT,
                    attr::ABORT_REQUESTED_AT,
                ],
                HashMap::new(),
                values([
                    (":now", av_ms(self.now())),
                    (":by", av_s(by)),
                    (":m", av_s(message)),
                ]),
            )
            .await;
        match written {
            Ok(GroupWrite::Done(_)) => {}
            Ok(GroupWrite::Stale(stale)) => return Ok(Outcome::StaleEpoch(stale)),
            Ok(GroupWrite::Refused(old)) => return refusal(op, &old),
            Err(cause) => {
                // The effect is unknown: read back before reporting a failure.
                match self.get_item(OP, keys::group_state_key(&op.group)).await {
                    Ok(Some(state)) if marked(&state, op) => tracing::info!(
                        op_id = %op.id, error = %cause,
                        "the failure mark's answer was lost, but reading back shows it committed"
                    ),
                    _ => return Err(cause),
                }
            }
        }
        tracing::info!(op_id = %op.id, epoch = op.epoch, by, "failure marked on the group state");
        Ok(
            match self
                .set_phase_inner(op, Phase::Failed, Some(message))
                .await?
            {
                Outcome::AlreadyFinished {
                    phase: Phase::Failed,
                } => Outcome::Done(()),
                other => other,
            },
        )
    }
}

/// The answer to a failure mark the group state refused while it still names the operation:
/// a claim is there (only forward), or an abort.
fn refusal(op: &OpRef, old: &Item) -> Result<Outcome<()>, Cause> {
    let view = HandoffView::from_item(GroupState::KIND, old)?;
    let by = s_attr(old, attr::PROMOTION_CLAIMED_BY).map(str::to_owned);
    if by.is_some() || view.promotion_started_at.is_some() {
        return Ok(Outcome::PromotionClaimed {
            at: view.promotion_started_at,
            by,
        });
    }
    if let Some(at) = view.abort_requested_at {
        return Ok(Outcome::AbortRequested { at });
    }
    Err(Cause::Invalid(format!(
        "the failure mark of operation {} lost a condition, but the group state looks markable",
        op.id
    )))
}

/// Whether the group state `state` carries the failure mark of `op` (in flight, at its epoch).
fn marked(state: &Item, op: &OpRef) -> bool {
    s_attr(state, attr::OP_ID) == Some(op.id.as_str())
        && matches!(state.get(attr::EPOCH), Some(AttributeValue::N(n)) if n.parse() == Ok(op.epoch))
        && state.contains_key(attr::FAILED_AT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::GroupRef;

    fn op() -> OpRef {
        OpRef {
            id: "op-1".into(),
            group: GroupRef::new("shop", "shop").unwrap(),
            epoch: 3,
        }
    }

    fn state(pairs: &[(&str, AttributeValue)]) -> Item {
        let mut item = Item::from([
            (attr::OP_ID.to_owned(), av_s("op-1")),
            (attr::EPOCH.to_owned(), AttributeValue::N("3".into())),
        ]);
        item.extend(pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        item
    }

    #[test]
    fn a_refused_mark_names_the_claim_or_the_abort() {
        let at = jiff::Timestamp::from_millisecond(5_000).unwrap();
        let claimed = state(&[
            (attr::PROMOTION_CLAIMED_BY, av_s("west")),
            (attr::PROMOTION_STARTED_AT, av_ms(at)),
        ]);
        assert_eq!(
            refusal(&op(), &claimed).unwrap(),
            Outcome::PromotionClaimed {
                at: Some(at),
                by: Some("west".into())
            }
        );
        // A claim a forced start kept: the group state has no `promotionStartedAt`.
        let kept = state(&[(attr::PROMOTION_CLAIMED_BY, av_s("west"))]);
        assert!(matches!(
            refusal(&op(), &kept).unwrap(),
            Outcome::PromotionClaimed { at: None, .. }
        ));
        let aborted = state(&[(attr::ABORT_REQUESTED_AT, av_ms(at))]);
        assert_eq!(
            refusal(&op(), &aborted).unwrap(),
            Outcome::AbortRequested { at }
        );
        assert!(refusal(&op(), &state(&[])).is_err());
    }

    #[test]
    fn a_mark_read_back_counts_only_for_its_operation_and_epoch() {
        let at = av_ms(jiff::Timestamp::from_millisecond(5_000).unwrap());
        assert!(marked(&state(&[(attr::FAILED_AT, at.clone())]), &op()));
        assert!(!marked(&state(&[]), &op()));
        let later = OpRef { epoch: 4, ..op() };
        assert!(!marked(&state(&[(attr::FAILED_AT, at)]), &later));
    }
}
