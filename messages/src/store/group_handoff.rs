//! The handoff of a group without volumes (CONSISTENCY): with no volume to mark
//! `READY_FOR_PROMOTION`, the source marks the group as a whole handed off (`groupReadyAt` on
//! the group state), and the target's claim without volumes is accepted for a non-forced
//! CONSISTENCY operation only once that mark is there (see [`Store::claim_promotion`]). The
//! source marks it after its workloads are down, exactly where it would mark the volumes.

use super::{Outcome, Store, StoreError};
use crate::store::OpRef;

impl Store {
    /// Marks a group without volumes handed off: [`Store::mark_all_ready`] with no volume,
    /// one `UpdateItem` of the group state (`epoch = e AND opId = id`, no abort requested,
    /// no promotion claimed; the first time is kept).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AbortRequested`; `AlreadyPromoted`.
    pub async fn mark_group_ready(&self, op: &OpRef) -> Result<Outcome<()>, StoreError> {
        self.mark_ready_inner(op, "-", &[])
            .await
            .map(|outcome| outcome.map(|_| ()))
            .map_err(|source| StoreError::MarkGroupReady {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }
}
