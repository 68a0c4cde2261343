//! Agent writes on the operation item that neither hand off nor close it: the original
//! replica counts, the UPTIME dual-active marks and the phase.
//!
//! They carry no authority (nothing another cluster's safety depends on reads them as
//! permission), so each is one `UpdateItem` of the operation item conditioned on that item
//! alone: it exists, and for a phase, is not closed. A stale run's write lands on its own
//! operation only; the engine's read of the group state before each run of Kubernetes steps
//! stops that run.

use std::collections::BTreeMap;

use crate::keys;
use crate::records::{Phase, attr, av_ms, av_s, replicas_to_av};
use crate::store::coordinator::{ms_attr, s_attr};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::DualActiveMark;
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, values};

use super::CarriedStages;

impl Store {
    /// Records the source workloads' replica counts on the operation before any change,
    /// keyed `<Kind>/<name>`, and marks a `Pending` operation `Running` in the same
    /// `UpdateItem` (condition: the operation exists and is `Pending`). The first map
    /// recorded wins, so an agent restarted after the scale-down cannot overwrite the
    /// originals with zeros. When the operation is no longer `Pending` (a repeat, an abort
    /// requested, a forced target that marked it) the counts alone are written, unless the
    /// refused write's answer shows them recorded already (then nothing more is written).
    ///
    /// Outcomes: `Done(())`; `OperationNotFound`.
    pub async fn record_original_replicas(
        &self,
        op: &OpRef,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<Outcome<()>, StoreError> {
        self.record_original_replicas_carrying(op, replicas, &CarriedStages::default())
            .await
    }

    /// [`Store::record_original_replicas`], publishing the `carried` stages in the same
    /// `UpdateItem` (marked written when it lands; a repeat finding the counts recorded
    /// writes them once more, so they are never left out).
    pub async fn record_original_replicas_carrying(
        &self,
        op: &OpRef,
        replicas: &BTreeMap<String, u32>,
        carried: &CarriedStages,
    ) -> Result<Outcome<()>, StoreError> {
        self.record_replicas_inner(op, replicas, carried)
            .await
            .map_err(|source| StoreError::RecordOriginalReplicas {
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn record_replicas_inner(
        &self,
        op: &OpRef,
        replicas: &BTreeMap<String, u32>,
        carried: &CarriedStages,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "record_original_replicas";
        let not_found = || Outcome::OperationNotFound {
            op_id: op.id.clone(),
        };
        let stages = carried.sets(op)?;
        let mut vals = values([
            (":r", replicas_to_av(replicas)),
            (":running", av_s(Phase::Running.as_str())),
            (":pending", av_s(Phase::Pending.as_str())),
        ]);
        vals.extend(stages.values.clone());
        let written = self
            .update_if_named(
                OP,
                keys::operation_key(&op.id),
                &stages.extend(
                    "SET #originalReplicas = if_not_exists(#originalReplicas, :r), #phase = :running",
                ),
                "attribute_exists(#PK) AND #phase = :pending",
                &[attr::PK, attr::ORIGINAL_REPLICAS, attr::PHASE],
                stages.names.clone(),
                vals,
            )
            .await?;
        let old = match written {
            Ok(_) => {
                carried.mark_written();
                return Ok(Outcome::Done(()));
            }
            Err(None) => return Ok(not_found()),
            Err(Some(old)) => old,
        };
        if old.contains_key(attr::ORIGINAL_REPLICAS) && carried.stages().is_empty() {
            return Ok(Outcome::Done(()));
        }
        let mut vals = values([(":r", replicas_to_av(replicas))]);
        vals.extend(stages.values.clone());
        let written = self
            .update_if_named(
                OP,
                keys::operation_key(&op.id),
                &stages.extend("SET #originalReplicas = if_not_exists(#originalReplicas, :r)"),
                "attribute_exists(#PK)",
                &[attr::PK, attr::ORIGINAL_REPLICAS],
                stages.names,
                vals,
            )
            .await?;
        Ok(match written {
            Ok(_) => {
                carried.mark_written();
                Outcome::Done(())
            }
            Err(_) => not_found(),
        })
    }

    /// Records one end of the UPTIME dual-active window on the operation (condition: the
    /// operation exists). The earliest start and the latest end are kept.
    ///
    /// Outcomes: `Done(())`; `OperationNotFound`.
    pub async fn record_dual_active(
        &self,
        op: &OpRef,
        mark: DualActiveMark,
    ) -> Result<Outcome<()>, StoreError> {
        self.dual_active_inner(op, mark)
            .await
            .map_err(|source| StoreError::RecordDualActive {
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn dual_active_inner(
        &self,
        op: &OpRef,
        mark: DualActiveMark,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "record_dual_active";
        let (name, at, cmp) = match mark {
            DualActiveMark::Started(at) => (attr::DUAL_ACTIVE_STARTED_AT, at, ">"),
            DualActiveMark::Ended(at) => (attr::DUAL_ACTIVE_ENDED_AT, at, "<"),
        };
        let at = crate::records::truncate_to_millis(at);
        let condition = format!(
            "attribute_exists(#PK) AND (attribute_not_exists(#{name}) OR #{name} {cmp} :t)"
        );
        let refused = self
            .update_if(
                OP,
                keys::operation_key(&op.id),
                &format!("SET #{name} = :t"),
                &condition,
                &[attr::PK, name],
                values([(":t", av_ms(at))]),
            )
            .await?;
        match refused {
            // Recorded, or a better mark already is.
            None | Some(Some(_)) => Ok(Outcome::Done(())),
            Some(None) => Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            }),
        }
    }

    /// Sets the operation's phase (and message), condition: the operation exists and is not
    /// closed (a superseded one counts as closed). `Succeeded`, `Aborted` and `Failed` are
    /// refused: they are written by [`Store::complete_operation`] and
    /// [`Store::finish_abort`], which also release the group, and by
    /// [`Store::fail_operation`], which first marks the failure on the group state. Another
    /// closing phase (`RolledBack`) also sets `finishedAt`.
    ///
    /// Outcomes: `Done(())`; `AlreadyFinished`; `OperationNotFound`.
    pub async fn set_phase(
        &self,
        op: &OpRef,
        phase: Phase,
        message: Option<&str>,
    ) -> Result<Outcome<()>, StoreError> {
        let result = if phase == Phase::Failed {
            Err(Cause::Invalid(format!(
                "phase {phase} is set by fail_operation"
            )))
        } else {
            self.set_phase_inner(op, phase, message).await
        };
        result.map_err(|source| StoreError::SetPhase {
            op_id: op.id.clone(),
            phase: phase.to_string(),
            table: self.table.to_string(),
            source,
        })
    }

    /// [`Store::set_phase`], `Failed` included (the second write of
    /// [`Store::fail_operation`]): for `Failed` the condition also requires no abort copied
    /// onto the operation item.
    pub(super) async fn set_phase_inner(
        &self,
        op: &OpRef,
        phase: Phase,
        message: Option<&str>,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "set_phase";
        if matches!(phase, Phase::Succeeded | Phase::Aborted) {
            return Err(Cause::Invalid(format!(
                "phase {phase} is set by complete_operation / finish_abort"
            )));
        }
        let now = self.now();
        let mut update = "SET #phase = :p".to_owned();
        let mut attr_names = vec![attr::PK, attr::PHASE];
        let mut vals = values([
            (":p", av_s(phase.as_str())),
            (":t1", av_s(Phase::Succeeded.as_str())),
            (":t2", av_s(Phase::Failed.as_str())),
            (":t3", av_s(Phase::Aborted.as_str())),
            (":t4", av_s(Phase::RolledBack.as_str())),
            (":t5", av_s(Phase::Superseded.as_str())),
        ]);
        if let Some(m) = message {
            update.push_str(", #message = :m");
            attr_names.push(attr::MESSAGE);
            vals.insert(":m".into(), av_s(m));
        }
        if phase.is_terminal() {
            update.push_str(", #finishedAt = :now");
            attr_names.push(attr::FINISHED_AT);
            vals.insert(":now".into(), av_ms(now));
        }
        // A failure never overwrites an abort: once one is requested, the source rolls back
        // and the operation closes as Aborted.
        let condition = if phase == Phase::Failed {
            attr_names.push(attr::ABORT_REQUESTED_AT);
            "attribute_exists(#PK) AND NOT (#phase IN (:t1, :t2, :t3, :t4, :t5)) \
             AND attribute_not_exists(#abortRequestedAt)"
        } else {
            "attribute_exists(#PK) AND NOT (#phase IN (:t1, :t2, :t3, :t4, :t5))"
        };
        let Some(old) = self
            .update_if(
                OP,
                keys::operation_key(&op.id),
                &update,
                condition,
                &attr_names,
                vals,
            )
            .await?
        else {
            return Ok(Outcome::Done(()));
        };
        if let Some(at) = old
            .as_ref()
            .and_then(|i| ms_attr(i, attr::ABORT_REQUESTED_AT))
            && phase == Phase::Failed
        {
            return Ok(Outcome::AbortRequested { at });
        }
        match old
            .as_ref()
            .and_then(|i| s_attr(i, attr::PHASE))
            .map(str::parse::<Phase>)
        {
            Some(Ok(phase)) => Ok(Outcome::AlreadyFinished { phase }),
            _ if old.is_none() => Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            }),
            _ => Err(Cause::Invalid(format!(
                "operation {} has no valid phase",
                op.id
            ))),
        }
    }
}
