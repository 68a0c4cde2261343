//! Protocol steps 4 and 5, the volume handoff: the source marks the group
//! `READY_FOR_PROMOTION`, the target claims the promotion and marks volumes `PROMOTED`.
//!
//! Each is one conditional `UpdateItem` of the group state item, which carries the handoff of
//! the operation in flight (see [`crate::records::HandoffView`]): the `epoch`/`opId`
//! condition, the abort and the claim are all on that one item, so no write needs a
//! transaction and each is linearizable on its own.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::{GroupWrite, check_volumes};
use crate::keys;
use crate::records::{Handoff, HandoffView, Item, Mark, Mode, Phase, attr, av_s};
use crate::store::coordinator::s_attr;
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, values};

const KIND: &str = "group state";

impl Store {
    /// Protocol step 4: the source marks every volume `READY_FOR_PROMOTION` and the group
    /// handed off (`groupReadyAt`) in one `UpdateItem` of the group state, condition
    /// `epoch = e AND opId = id`, no abort requested, no promotion claimed, not marked
    /// before. All or nothing. Repeating it is harmless (the first marks are kept and
    /// returned).
    ///
    /// Outcomes: `Done(records)`; `StaleEpoch`; `AbortRequested`; `AlreadyPromoted` (the
    /// target claimed without waiting: a forced operation).
    pub async fn mark_all_ready(
        &self,
        op: &OpRef,
        writer: &str,
        volumes: &[String],
    ) -> Result<Outcome<Vec<Handoff>>, StoreError> {
        check_volumes(volumes).map_err(|source| self.ready_error(op, writer, source))?;
        self.mark_ready_inner(op, writer, volumes)
            .await
            .map_err(|source| self.ready_error(op, writer, source))
    }

    fn ready_error(&self, op: &OpRef, writer: &str, source: Cause) -> StoreError {
        StoreError::PutHandoffRecord {
            group: op.group.clone(),
            op_id: op.id.clone(),
            writer: writer.to_owned(),
            table: self.table.to_string(),
            source,
        }
    }

    /// [`Store::mark_all_ready`] for the volumes given (none for a group without volumes).
    pub(in crate::store) async fn mark_ready_inner(
        &self,
        op: &OpRef,
        writer: &str,
        volumes: &[String],
    ) -> Result<Outcome<Vec<Handoff>>, Cause> {
        const OP: &str = "mark_all_ready";
        if !volumes.is_empty() {
            keys::validate_cluster(writer)?;
        }
        let now = self.now();
        let mark = Mark {
            writer: writer.to_owned(),
            at: now,
        };
        let ready: Item = volumes.iter().map(|v| (v.clone(), mark.to_av())).collect();
        let written = self
            .update_group_for_op(
                OP,
                op,
                "SET #groupReadyAt = :now, #ready = :ready",
                "attribute_not_exists(#abortRequestedAt) AND attribute_not_exists(#groupReadyAt) \
                 AND attribute_not_exists(#promotionStartedAt)",
                &[
                    attr::GROUP_READY_AT,
                    attr::READY,
                    attr::ABORT_REQUESTED_AT,
                    attr::PROMOTION_STARTED_AT,
                ],
                HashMap::new(),
                values([
                    (":now", crate::records::av_ms(now)),
                    (":ready", AttributeValue::M(ready)),
                ]),
            )
            .await?;
        let old = match written {
            GroupWrite::Done(_) => {
                tracing::info!(op_id = %op.id, epoch = op.epoch, volumes = volumes.len(), "group READY_FOR_PROMOTION");
                let view = HandoffView {
                    group_ready_at: Some(now),
                    ready: volumes.iter().map(|v| (v.clone(), mark.clone())).collect(),
                    ..HandoffView::default()
                };
                return Ok(Outcome::Done(view.handoffs(&op.id, op.epoch)));
            }
            GroupWrite::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            GroupWrite::Refused(old) => HandoffView::from_item(KIND, &old)?,
        };
        if let Some(at) = old.abort_requested_at {
            return Ok(Outcome::AbortRequested { at });
        }
        if old.group_ready_at.is_some() {
            // Marked before (a repeated step): what was marked then.
            return Ok(Outcome::Done(old.handoffs(&op.id, op.epoch)));
        }
        // Claimed without waiting for this handoff (UPTIME, or a forced operation): name a
        // volume already promoted, if one is.
        let volume = old
            .promoted
            .keys()
            .find(|v| volumes.contains(v))
            .or(volumes.first())
            .cloned()
            .unwrap_or_default();
        Ok(Outcome::AlreadyPromoted { volume })
    }

    /// Protocol step 5: `claimed_by` (the operation's target) claims the promotion in one
    /// `UpdateItem` of the group state: `promotionClaimedBy = claimed_by` and
    /// `promotionStartedAt`, condition `epoch = e AND opId = id`, `opTarget = claimed_by`, no
    /// abort requested, no failure marked (`failedAt`, [`Store::fail_operation`]), and every
    /// volume in `ready_volumes` marked ready. From then on the
    /// claimer is the cluster entitled to an active side
    /// ([`GroupState::entitled_cluster`](crate::records::GroupState::entitled_cluster)), an
    /// abort is refused and only a forced operation may start.
    /// Pass the group's volumes for CONSISTENCY; pass none for a forced or UPTIME promotion,
    /// which needs no handoff marks, or for a group without volumes (then a CONSISTENCY
    /// operation without `force` is accepted only once the source marked the group handed
    /// off, `groupReadyAt`). Repeating it is harmless (the first time is kept).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AbortRequested`; `AlreadyFinished { phase:
    /// Failed }` (the operation failed first); `NotReady { missing }`.
    pub async fn claim_promotion(
        &self,
        op: &OpRef,
        claimed_by: &str,
        ready_volumes: &[String],
    ) -> Result<Outcome<()>, StoreError> {
        self.claim_promotion_inner(op, claimed_by, ready_volumes)
            .await
            .map_err(|source| StoreError::ClaimPromotion {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn claim_promotion_inner(
        &self,
        op: &OpRef,
        claimed_by: &str,
        ready_volumes: &[String],
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "claim_promotion";
        keys::validate_cluster(claimed_by)?;
        if !ready_volumes.is_empty() {
            check_volumes(ready_volumes)?;
        }
        let (condition, mut attr_names, attr_values, volume_names) =
            claim_condition(claimed_by, ready_volumes);
        attr_names.extend([attr::PROMOTION_CLAIMED_BY, attr::PROMOTION_STARTED_AT]);
        let written = self
            .update_group_for_op(
                OP,
                op,
                "SET #promotionClaimedBy = :by, \
                 #promotionStartedAt = if_not_exists(#promotionStartedAt, :now)",
                &condition,
                &attr_names,
                volume_names,
                attr_values,
            )
            .await?;
        let old = match written {
            GroupWrite::Done(_) => {
                tracing::info!(op_id = %op.id, epoch = op.epoch, claimed_by, "promotion claimed");
                return Ok(Outcome::Done(()));
            }
            GroupWrite::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            GroupWrite::Refused(old) => old,
        };
        if let Some(target) = s_attr(&old, attr::OP_TARGET)
            && target != claimed_by
        {
            return Err(Cause::Invalid(format!(
                "{claimed_by} is not the target of operation {} ({target} is)",
                op.id
            )));
        }
        let view = HandoffView::from_item(KIND, &old)?;
        if let Some(at) = view.abort_requested_at {
            return Ok(Outcome::AbortRequested { at });
        }
        if view.failure.is_some() {
            return Ok(Outcome::AlreadyFinished {
                phase: Phase::Failed,
            });
        }
        let missing = ready_volumes
            .iter()
            .filter(|v| !view.ready.contains_key(*v))
            .cloned()
            .collect();
        Ok(Outcome::NotReady { missing })
    }

    /// Marks one volume `PROMOTED` (condition: group `epoch = e AND opId = id`, promotion
    /// claimed). Without a READY mark (forced or UPTIME promotion) the line shows `writer`
    /// as its writer. Repeating it is harmless (the first `promotedAt` is kept).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `NotClaimed`.
    pub async fn mark_promoted(
        &self,
        op: &OpRef,
        volume: &str,
        writer: &str,
    ) -> Result<Outcome<()>, StoreError> {
        self.mark_promoted_inner(op, std::slice::from_ref(&volume), writer)
            .await
            .map_err(|source| StoreError::MarkPromoted {
                op_id: op.id.clone(),
                volume: volume.to_owned(),
                table: self.table.to_string(),
                source,
            })
    }

    /// [`Store::mark_promoted`] for several volumes in one `UpdateItem`.
    pub async fn mark_all_promoted(
        &self,
        op: &OpRef,
        volumes: &[String],
        writer: &str,
    ) -> Result<Outcome<()>, StoreError> {
        let names: Vec<&str> = volumes.iter().map(String::as_str).collect();
        self.mark_promoted_inner(op, &names, writer)
            .await
            .map_err(|source| StoreError::MarkPromoted {
                op_id: op.id.clone(),
                volume: volumes.join(","),
                table: self.table.to_string(),
                source,
            })
    }

    async fn mark_promoted_inner(
        &self,
        op: &OpRef,
        volumes: &[&str],
        writer: &str,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "mark_promoted";
        let owned: Vec<String> = volumes.iter().map(|v| (*v).to_owned()).collect();
        check_volumes(&owned)?;
        keys::validate_cluster(writer)?;
        let now = self.now();
        let mark = Mark {
            writer: writer.to_owned(),
            at: now,
        };
        let mut sets = Vec::with_capacity(volumes.len());
        let mut volume_names = HashMap::new();
        let mut vals = values([(":mark", mark.to_av())]);
        for (i, volume) in volumes.iter().enumerate() {
            sets.push(format!(
                "#promoted.#v{i} = if_not_exists(#promoted.#v{i}, :mark)"
            ));
            volume_names.insert(format!("#v{i}"), (*volume).to_owned());
        }
        vals.insert(":now".into(), crate::records::av_ms(now));
        let written = self
            .update_group_for_op(
                OP,
                op,
                &format!("SET {}", sets.join(", ")),
                "attribute_exists(#promotionStartedAt) AND attribute_exists(#promoted)",
                &[attr::PROMOTED, attr::PROMOTION_STARTED_AT],
                volume_names,
                vals,
            )
            .await?;
        match written {
            GroupWrite::Done(_) => Ok(Outcome::Done(())),
            GroupWrite::Stale(stale) => Ok(Outcome::StaleEpoch(stale)),
            GroupWrite::Refused(old) if old.contains_key(attr::PROMOTION_STARTED_AT) => {
                Err(Cause::Invalid(format!(
                    "the group state of operation {} has no `promoted` map: the operation \
                     was started by an older version",
                    op.id
                )))
            }
            GroupWrite::Refused(_) => Ok(Outcome::NotClaimed),
        }
    }
}

/// The claim's extra condition (besides `epoch`/`opId`), its attribute names and values,
/// and the placeholders of the volume names: the target is `claimed_by`, no abort was
/// requested, no failure marked, and every ready volume is marked ready; without ready
/// volumes the operation must be forced, UPTIME, or marked ready as a whole (a group
/// without volumes).
fn claim_condition(
    claimed_by: &str,
    ready_volumes: &[String],
) -> (
    String,
    Vec<&'static str>,
    HashMap<String, AttributeValue>,
    HashMap<String, String>,
) {
    let mut condition = "#opTarget = :by AND attribute_not_exists(#abortRequestedAt) \
                         AND attribute_not_exists(#failedAt)"
        .to_owned();
    let mut attr_names = vec![attr::OP_TARGET, attr::ABORT_REQUESTED_AT, attr::FAILED_AT];
    let mut attr_values = values([(":by", av_s(claimed_by))]);
    let mut volume_names = HashMap::new();
    if ready_volumes.is_empty() {
        condition.push_str(
            " AND (#opForce = :true OR #opMode = :uptime OR attribute_exists(#groupReadyAt))",
        );
        attr_names.extend([attr::OP_FORCE, attr::OP_MODE, attr::GROUP_READY_AT]);
        attr_values.insert(":true".into(), AttributeValue::Bool(true));
        attr_values.insert(":uptime".into(), av_s(Mode::Uptime.as_str()));
    } else {
        attr_names.push(attr::READY);
        for (i, volume) in ready_volumes.iter().enumerate() {
            condition.push_str(&format!(" AND attribute_exists(#ready.#v{i})"));
            volume_names.insert(format!("#v{i}"), volume.clone());
        }
    }
    (condition, attr_names, attr_values, volume_names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_names_each_ready_volume_or_needs_force_uptime_or_the_whole_group() {
        let (c, names, _, vols) =
            claim_condition("west", &["data-0".to_owned(), "data-1".to_owned()]);
        assert_eq!(
            c,
            "#opTarget = :by AND attribute_not_exists(#abortRequestedAt) \
             AND attribute_not_exists(#failedAt) \
             AND attribute_exists(#ready.#v0) AND attribute_exists(#ready.#v1)"
        );
        assert!(names.contains(&attr::READY) && names.contains(&attr::FAILED_AT));
        assert_eq!(vols.get("#v1").map(String::as_str), Some("data-1"));
        let (c, names, values, vols) = claim_condition("west", &[]);
        assert!(c.ends_with(
            "(#opForce = :true OR #opMode = :uptime OR attribute_exists(#groupReadyAt))"
        ));
        assert!(names.contains(&attr::GROUP_READY_AT) && vols.is_empty());
        assert!(values.contains_key(":uptime"));
    }
}
