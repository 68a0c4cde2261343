//! Protocol steps 4 and 5, the volume handoff: the source marks its volumes
//! `READY_FOR_PROMOTION`, the target claims the promotion and marks volumes `PROMOTED`.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use jiff::Timestamp;

use super::check_volumes;
use crate::keys;
use crate::records::{Handoff, HandoffState, Item, Mode, Record, attr, av_ms, av_n, av_s};
use crate::store::coordinator::s_attr;
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Cancellation, Store, TxVerdict, values};

impl Store {
    /// Protocol step 4: puts a `READY_FOR_PROMOTION` record for every volume in one
    /// transaction, with a `ConditionCheck` on the group state (`epoch = e AND opId = id`)
    /// and on the operation (`attribute_not_exists(abortRequestedAt)`). All or nothing.
    /// Repeating it is harmless (the first `readyAt` is kept).
    ///
    /// Outcomes: `Done(records)`; `StaleEpoch`; `AbortRequested`; `AlreadyPromoted`;
    /// `OperationNotFound`.
    pub async fn mark_all_ready(
        &self,
        op: &OpRef,
        writer: &str,
        volumes: &[String],
    ) -> Result<Outcome<Vec<Handoff>>, StoreError> {
        self.mark_all_ready_inner(op, writer, volumes)
            .await
            .map_err(|source| StoreError::PutHandoffRecord {
                group: op.group.clone(),
                op_id: op.id.clone(),
                writer: writer.to_owned(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn mark_all_ready_inner(
        &self,
        op: &OpRef,
        writer: &str,
        volumes: &[String],
    ) -> Result<Outcome<Vec<Handoff>>, Cause> {
        const OP: &str = "mark_all_ready";
        keys::validate_cluster(writer)?;
        check_volumes(volumes, 2)?;
        let now = self.now();
        let mut items = vec![
            self.group_check(op)?,
            self.tx_check(
                keys::operation_key(&op.id),
                "attribute_exists(#PK) AND attribute_not_exists(#abortRequestedAt)",
                &[attr::PK, attr::ABORT_REQUESTED_AT],
                HashMap::new(),
            )?,
        ];
        let mut records = Vec::with_capacity(volumes.len());
        for volume in volumes {
            items.push(self.tx_update(
                keys::handoff_key(&op.id, volume),
                "SET #opId = :id, #volume = :v, #state = :ready, #epoch = :e, #writer = :w, \
                 #readyAt = if_not_exists(#readyAt, :now)",
                Some("attribute_not_exists(#PK) OR (#state = :ready AND #epoch = :e)"),
                &[
                    attr::PK,
                    attr::OP_ID,
                    attr::VOLUME,
                    attr::STATE,
                    attr::EPOCH,
                    attr::WRITER,
                    attr::READY_AT,
                ],
                values([
                    (":id", av_s(&op.id)),
                    (":v", av_s(volume)),
                    (":ready", av_s(HandoffState::ReadyForPromotion.as_str())),
                    (":e", av_n(op.epoch)),
                    (":w", av_s(writer)),
                    (":now", av_ms(now)),
                ]),
            )?);
            records.push(Handoff {
                op_id: op.id.clone(),
                volume: volume.clone(),
                state: HandoffState::ReadyForPromotion,
                epoch: op.epoch,
                writer: writer.to_owned(),
                ready_at: Some(now),
                promoted_at: None,
            });
        }
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => {
                tracing::info!(op_id = %op.id, epoch = op.epoch, volumes = volumes.len(), "volumes READY_FOR_PROMOTION");
                return Ok(Outcome::Done(records));
            }
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        if let Some(r) = rejected.failed(1) {
            return self.op_conflict(OP, op, r.item.as_ref(), false).await;
        }
        for (i, volume) in volumes.iter().enumerate() {
            if let Some(r) = rejected.failed(i + 2) {
                let promoted = r.item.as_ref().and_then(|it| s_attr(it, attr::STATE))
                    == Some(HandoffState::Promoted.as_str());
                if promoted {
                    return Ok(Outcome::AlreadyPromoted {
                        volume: volume.clone(),
                    });
                }
                return Ok(Outcome::StaleEpoch(self.stale(OP, op, None).await?));
            }
        }
        Err(Cause::Invalid(
            "the transaction was cancelled without a reason".into(),
        ))
    }

    /// Protocol step 5: `claimed_by` (the operation's target) claims the promotion in one
    /// transaction: the group state gets `promotionClaimedBy = claimed_by` (condition
    /// `epoch = e AND opId = id`), the operation gets `promotionStartedAt` (condition
    /// `attribute_not_exists(abortRequestedAt)` and `target = claimed_by`), and every volume
    /// in `ready_volumes` must have a `READY_FOR_PROMOTION` (or `PROMOTED`) record at epoch
    /// `e`. From then on the claimer is the cluster entitled to an active side
    /// ([`GroupState::entitled_cluster`](crate::records::GroupState::entitled_cluster)), an
    /// abort is refused and only a forced operation may start.
    /// Pass the group's volumes for CONSISTENCY; pass none for a forced or UPTIME promotion,
    /// which needs no handoff records, or for a group without volumes (then a CONSISTENCY
    /// operation without `force` is accepted only once the source marked the group ready
    /// with [`Store::mark_group_ready`]). Repeating it is harmless (the first time is kept).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AbortRequested`; `NotReady { missing }`;
    /// `AlreadyFinished`; `OperationNotFound`.
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
            check_volumes(ready_volumes, 2)?;
        }
        let now = self.now();
        let items = self.claim_items(op, claimed_by, ready_volumes, now)?;
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => {
                tracing::info!(op_id = %op.id, epoch = op.epoch, claimed_by, "promotion claimed");
                return Ok(Outcome::Done(()));
            }
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        if let Some(r) = rejected.failed(1) {
            return self
                .claim_lost_on_operation(op, claimed_by, ready_volumes, r.item.as_ref())
                .await;
        }
        let missing = self.missing_handoffs(op, ready_volumes, &rejected).await?;
        Ok(Outcome::NotReady { missing })
    }

    /// The claim's transaction: the group state's `promotionClaimedBy` (item 0), the
    /// operation's `promotionStartedAt` (item 1) under [`claim_condition`], and a check of
    /// each ready volume's handoff record (items 2…).
    fn claim_items(
        &self,
        op: &OpRef,
        claimed_by: &str,
        ready_volumes: &[String],
        now: Timestamp,
    ) -> Result<Vec<TransactWriteItem>, Cause> {
        let (condition, attr_names, attr_values) =
            claim_condition(op, claimed_by, ready_volumes.is_empty(), now);
        let mut items = vec![
            self.tx_update(
                keys::group_state_key(&op.group),
                "SET #promotionClaimedBy = :by, \
                 #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now",
                Some("#epoch = :e AND #opId = :id"),
                &[
                    attr::PROMOTION_CLAIMED_BY,
                    attr::VERSION,
                    attr::UPDATED_AT,
                    attr::EPOCH,
                    attr::OP_ID,
                ],
                values([
                    (":by", av_s(claimed_by)),
                    (":zero", av_n(0)),
                    (":one", av_n(1)),
                    (":now", av_ms(now)),
                    (":e", av_n(op.epoch)),
                    (":id", av_s(&op.id)),
                ]),
            )?,
            self.tx_update(
                keys::operation_key(&op.id),
                "SET #promotionStartedAt = if_not_exists(#promotionStartedAt, :now)",
                Some(&condition),
                &attr_names,
                attr_values,
            )?,
        ];
        for volume in ready_volumes {
            items.push(self.tx_check(
                keys::handoff_key(&op.id, volume),
                "#state IN (:ready, :promoted) AND #epoch = :e",
                &[attr::STATE, attr::EPOCH],
                values([
                    (":ready", av_s(HandoffState::ReadyForPromotion.as_str())),
                    (":promoted", av_s(HandoffState::Promoted.as_str())),
                    (":e", av_n(op.epoch)),
                ]),
            )?);
        }
        Ok(items)
    }

    /// The answer to a claim whose condition on the operation (item 1) failed, from the
    /// returned old item or a read of the operation.
    async fn claim_lost_on_operation(
        &self,
        op: &OpRef,
        claimed_by: &str,
        ready_volumes: &[String],
        old: Option<&Item>,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "claim_promotion";
        let old = self
            .item_or_read(OP, old, keys::operation_key(&op.id))
            .await?;
        let old = old.as_deref();
        if let Some(target) = old.and_then(|i| s_attr(i, attr::TARGET))
            && target != claimed_by
        {
            return Err(Cause::Invalid(format!(
                "{claimed_by} is not the target of operation {} ({target} is)",
                op.id
            )));
        }
        let outcome = self.op_conflict(OP, op, old, false).await?;
        match outcome {
            // Claimed before (a repeated claim): nothing more to do.
            Outcome::PromotionClaimed { .. } => Ok(Outcome::Done(())),
            // A non-forced CONSISTENCY operation without handoff records, and the
            // source has not marked the group ready (`mark_group_ready`): not yet.
            Outcome::StaleEpoch(_) if ready_volumes.is_empty() => Ok(Outcome::NotReady {
                missing: Vec::new(),
            }),
            other => Ok(other),
        }
    }

    /// The ready volumes whose handoff record at the operation's epoch is missing, for a
    /// claim a handoff check rejected: listed from a query (the cancellation reasons may
    /// stop at the first), else those the cancellation named.
    async fn missing_handoffs(
        &self,
        op: &OpRef,
        ready_volumes: &[String],
        rejected: &Cancellation,
    ) -> Result<Vec<String>, Cause> {
        const OP: &str = "claim_promotion";
        let present: HashSet<String> = self
            .query_partition(
                OP,
                &keys::operation_pk(&op.id),
                keys::HANDOFF_PREFIX,
                None,
                true,
            )
            .await?
            .iter()
            .map(Handoff::from_item)
            .filter_map(Result::ok)
            .filter(|h| h.epoch == op.epoch)
            .map(|h| h.volume)
            .collect();
        let mut missing: Vec<String> = ready_volumes
            .iter()
            .filter(|v| !present.contains(*v))
            .cloned()
            .collect();
        if missing.is_empty() {
            // Became ready in between; report what the cancellation said.
            missing = ready_volumes
                .iter()
                .enumerate()
                .filter(|(i, _)| rejected.failed(i + 2).is_some())
                .map(|(_, v)| v.clone())
                .collect();
        }
        Ok(missing)
    }

    /// Marks one volume's handoff record `PROMOTED` (condition: group `epoch = e AND
    /// opId = id`, promotion claimed, the record absent or at epoch `e`). Without a
    /// READY record (forced or UPTIME promotion) it creates one with `writer` as the writer.
    /// Repeating it is harmless (the first `promotedAt` is kept).
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `NotClaimed`; `AbortRequested`;
    /// `AlreadyFinished`; `OperationNotFound`.
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

    /// [`Store::mark_promoted`] for several volumes in one transaction (one AWS call
    /// whatever the number of volumes, at most 98).
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
        check_volumes(&owned, 2)?;
        keys::validate_cluster(writer)?;
        let now = self.now();
        let mut items = vec![
            self.group_check(op)?,
            self.tx_check(
                keys::operation_key(&op.id),
                "attribute_exists(#promotionStartedAt)",
                &[attr::PROMOTION_STARTED_AT],
                HashMap::new(),
            )?,
        ];
        for volume in volumes {
            items.push(self.tx_update(
                keys::handoff_key(&op.id, volume),
                "SET #opId = :id, #volume = :v, #state = :promoted, #epoch = :e, \
                 #promotedAt = if_not_exists(#promotedAt, :now), #writer = if_not_exists(#writer, :w)",
                Some("attribute_not_exists(#PK) OR #epoch = :e"),
                &[
                    attr::PK,
                    attr::OP_ID,
                    attr::VOLUME,
                    attr::STATE,
                    attr::EPOCH,
                    attr::PROMOTED_AT,
                    attr::WRITER,
                ],
                values([
                    (":id", av_s(&op.id)),
                    (":v", av_s(*volume)),
                    (":promoted", av_s(HandoffState::Promoted.as_str())),
                    (":e", av_n(op.epoch)),
                    (":now", av_ms(now)),
                    (":w", av_s(writer)),
                ]),
            )?);
        }
        match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => Ok(Outcome::Done(())),
            TxVerdict::Stale(stale) => Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => match rejected.failed(1) {
                Some(r) => self.op_conflict(OP, op, r.item.as_ref(), true).await,
                None => Ok(Outcome::StaleEpoch(self.stale(OP, op, None).await?)),
            },
        }
    }
}

/// The condition of a claim on the operation item, with its attribute names and values:
/// it exists at epoch `e`, `claimed_by` is its target and no abort was requested; without
/// handoff records (`no_volumes`) it must also be forced, UPTIME, or marked ready as a
/// whole (a group without volumes, see `mark_group_ready`).
fn claim_condition(
    op: &OpRef,
    claimed_by: &str,
    no_volumes: bool,
    now: Timestamp,
) -> (String, Vec<&'static str>, HashMap<String, AttributeValue>) {
    let mut condition = "attribute_exists(#PK) AND #epoch = :e AND #target = :by \
                         AND attribute_not_exists(#abortRequestedAt)"
        .to_owned();
    let mut attr_names = vec![
        attr::PK,
        attr::PROMOTION_STARTED_AT,
        attr::EPOCH,
        attr::TARGET,
        attr::ABORT_REQUESTED_AT,
    ];
    let mut attr_values = values([
        (":now", av_ms(now)),
        (":e", av_n(op.epoch)),
        (":by", av_s(claimed_by)),
    ]);
    if no_volumes {
        // Without handoff records only a forced or UPTIME operation may promote, or a
        // CONSISTENCY one whose source marked the whole group ready (a group without
        // volumes, see `mark_group_ready`).
        condition.push_str(
            " AND (#force = :true OR #mode = :uptime OR attribute_exists(#groupReadyAt))",
        );
        attr_names.extend([attr::FORCE, attr::MODE, attr::GROUP_READY_AT]);
        attr_values.insert(":true".into(), AttributeValue::Bool(true));
        attr_values.insert(":uptime".into(), av_s(Mode::Uptime.as_str()));
    }
    (condition, attr_names, attr_values)
}
