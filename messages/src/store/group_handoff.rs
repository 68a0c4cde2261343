//! The handoff of a group without volumes (CONSISTENCY): with no volume to put a
//! `READY_FOR_PROMOTION` record for, the source marks the operation itself
//! (`groupReadyAt`), and the target's claim without handoff records is accepted for a
//! non-forced CONSISTENCY operation only once that mark is there (see
//! [`Store::claim_promotion`]). The source marks it after its workloads are down, exactly
//! where it would write the volumes' records.

use super::{Cause, Outcome, Store, StoreError, TxVerdict, values};
use crate::keys;
use crate::records::{attr, av_ms};
use crate::store::OpRef;

impl Store {
    /// Marks a group without volumes ready for promotion, in one transaction: the group
    /// state `ConditionCheck` (`epoch = e AND opId = id`) and the operation's
    /// `groupReadyAt` (the first time is kept; condition: no abort requested).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AbortRequested`; `OperationNotFound`.
    pub async fn mark_group_ready(&self, op: &OpRef) -> Result<Outcome<()>, StoreError> {
        self.mark_group_ready_inner(op)
            .await
            .map_err(|source| StoreError::MarkGroupReady {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn mark_group_ready_inner(&self, op: &OpRef) -> Result<Outcome<()>, Cause> {
        const OP: &str = "mark_group_ready";
        let now = self.now();
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::operation_key(&op.id),
                "SET #groupReadyAt = if_not_exists(#groupReadyAt, :now)",
                Some("attribute_exists(#PK) AND attribute_not_exists(#abortRequestedAt)"),
                &[attr::PK, attr::GROUP_READY_AT, attr::ABORT_REQUESTED_AT],
                values([(":now", av_ms(now))]),
            )?,
        ];
        match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => Ok(Outcome::Done(())),
            TxVerdict::Stale(stale) => Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(_) => match self.read_operation(OP, &op.id).await? {
                None => Ok(Outcome::OperationNotFound {
                    op_id: op.id.clone(),
                }),
                Some(stored) => match stored.abort_requested_at {
                    Some(at) => Ok(Outcome::AbortRequested { at }),
                    None => Err(Cause::Invalid(format!(
                        "marking operation {} ready lost a condition, but it looks markable",
                        op.id
                    ))),
                },
            },
        }
    }
}
