//! Agent-side writes, each conditioned on the group state (protocol rule 2): lease
//! renewal, journal, READY_FOR_PROMOTION, promotion claim, PROMOTED, completion, abort
//! closing, dual-active marks and phases.
//!
//! Every write for operation (`e`, `id`) is either an update of the group state under the
//! condition `epoch = e AND opId = id` (lease renewal, claim, completion, abort closing), or
//! one `TransactWriteItems` whose first item is a `ConditionCheck` on the group state with
//! that condition. So once the operation is closed or superseded, every later write of its
//! agents is refused as [`Outcome::StaleEpoch`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use jiff::{SignedDuration, Timestamp};

use super::coordinator::{ms_attr, s_attr};
use super::error::{Cause, StoreError};
use super::outcome::{DualActiveMark, OpRef, Outcome};
use super::{MAX_TRANSACTION_ITEMS, Store, TxResult, TxVerdict, calls, key_map, names, values};
use crate::keys;
use crate::records::{
    Handoff, HandoffState, HistoryEntry, Item, JournalStep, Lease, Mode, Operation, Phase, Record,
    StepStatus, Timings, attr, av_ms, av_n, av_s, replicas_to_av, timings_to_av,
};

fn opt_values(v: HashMap<String, AttributeValue>) -> Option<HashMap<String, AttributeValue>> {
    if v.is_empty() { None } else { Some(v) }
}

impl Store {
    pub(super) fn tx_update(
        &self,
        key: (String, String),
        update: &str,
        condition: Option<&str>,
        attr_names: &[&str],
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, Cause> {
        let u = Update::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .update_expression(update)
            .set_condition_expression(condition.map(str::to_owned))
            .set_expression_attribute_names(Some(names(attr_names)))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        Ok(TransactWriteItem::builder().update(u).build())
    }

    pub(super) fn tx_check(
        &self,
        key: (String, String),
        condition: &str,
        attr_names: &[&str],
        attr_values: HashMap<String, AttributeValue>,
    ) -> Result<TransactWriteItem, Cause> {
        let c = ConditionCheck::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names(attr_names)))
            .set_expression_attribute_values(opt_values(attr_values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        Ok(TransactWriteItem::builder().condition_check(c).build())
    }

    pub(super) fn tx_put_new(&self, item: Item) -> Result<TransactWriteItem, Cause> {
        let p = Put::builder()
            .table_name(self.table.as_ref())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#PK)")
            .set_expression_attribute_names(Some(names(&[attr::PK])))
            .build()?;
        Ok(TransactWriteItem::builder().put(p).build())
    }

    /// Classifies a lost condition on the operation item (`OperationNotFound`,
    /// `AbortRequested`, `PromotionClaimed`, `AlreadyFinished`, `NotClaimed`), reading it
    /// when the cancellation carried no item. `None` when none of these applies.
    async fn op_conflict<T>(
        &self,
        operation: &'static str,
        op: &OpRef,
        old: Option<&Item>,
        expect_claimed: bool,
    ) -> Result<Outcome<T>, Cause> {
        let item = self
            .item_or_read(operation, old, keys::operation_key(&op.id))
            .await?;
        let Some(item) = item.as_deref() else {
            return Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            });
        };
        if let Some(at) = ms_attr(item, attr::ABORT_REQUESTED_AT) {
            return Ok(Outcome::AbortRequested { at });
        }
        if let Some(phase) = s_attr(item, attr::PHASE).and_then(|p| p.parse::<Phase>().ok())
            && phase.is_terminal()
        {
            return Ok(Outcome::AlreadyFinished { phase });
        }
        match ms_attr(item, attr::PROMOTION_STARTED_AT) {
            Some(at) if !expect_claimed => Ok(Outcome::PromotionClaimed {
                at: Some(at),
                by: None,
            }),
            None if expect_claimed => Ok(Outcome::NotClaimed),
            _ => Ok(Outcome::StaleEpoch(self.stale(operation, op, None).await?)),
        }
    }

    /// Renews the lease (condition `opId = id AND epoch = e`).
    ///
    /// Outcomes: `Done(lease)`; `StaleEpoch`.
    pub async fn renew_lease(
        &self,
        op: &OpRef,
        holder: &str,
        ttl: Duration,
    ) -> Result<Outcome<Lease>, StoreError> {
        self.renew_lease_inner(op, holder, ttl)
            .await
            .map_err(|source| StoreError::RenewLease {
                group: op.group.clone(),
                op_id: op.id.clone(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn renew_lease_inner(
        &self,
        op: &OpRef,
        holder: &str,
        ttl: Duration,
    ) -> Result<Outcome<Lease>, Cause> {
        if holder.is_empty() {
            return Err(Cause::Invalid("the lease holder is empty".into()));
        }
        let now = self.now();
        let expires_at = SignedDuration::try_from(ttl)
            .ok()
            .filter(|d| d.is_positive())
            .and_then(|d| now.checked_add(d).ok())
            .ok_or_else(|| Cause::Invalid(format!("lease TTL {ttl:?} is not usable")))?;
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::group_state_key(&op.group))))
            .update_expression(
                "SET #leaseHolder = :h, #leaseExpiresAt = :exp, \
                 #version = if_not_exists(#version, :zero) + :one, #updatedAt = :now",
            )
            .condition_expression("#epoch = :e AND #opId = :id")
            .set_expression_attribute_names(Some(names(&[
                attr::LEASE_HOLDER,
                attr::LEASE_EXPIRES_AT,
                attr::VERSION,
                attr::UPDATED_AT,
                attr::EPOCH,
                attr::OP_ID,
            ])))
            .set_expression_attribute_values(Some(values([
                (":h", av_s(holder)),
                (":exp", av_ms(expires_at)),
                (":zero", av_n(0)),
                (":one", av_n(1)),
                (":now", av_ms(now)),
                (":e", av_n(op.epoch)),
                (":id", av_s(&op.id)),
            ])))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match self
            .send("renew_lease", "UpdateItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => Ok(Outcome::Done(Lease {
                holder: holder.to_owned(),
                expires_at,
            })),
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    let old = e.item().cloned();
                    Ok(Outcome::StaleEpoch(
                        self.stale("renew_lease", op, old.as_ref()).await?,
                    ))
                }
                _ => Err(f.into_cause()),
            },
        }
    }

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
        if ready_volumes.is_empty() {
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
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => {
                tracing::info!(op_id = %op.id, epoch = op.epoch, claimed_by, "promotion claimed");
                return Ok(Outcome::Done(()));
            }
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        if let Some(r) = rejected.failed(1) {
            let old = self
                .item_or_read(OP, r.item.as_ref(), keys::operation_key(&op.id))
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
            return match outcome {
                // Claimed before (a repeated claim): nothing more to do.
                Outcome::PromotionClaimed { .. } => Ok(Outcome::Done(())),
                // A non-forced CONSISTENCY operation without handoff records, and the
                // source has not marked the group ready (`mark_group_ready`): not yet.
                Outcome::StaleEpoch(_) if ready_volumes.is_empty() => Ok(Outcome::NotReady {
                    missing: Vec::new(),
                }),
                other => Ok(other),
            };
        }
        // Some handoff records are missing: list them all (reasons may stop at the first).
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
        Ok(Outcome::NotReady { missing })
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

    /// Journals the intent of a task (status `STARTED`, `attempts + 1`), conditioned on the
    /// group state `epoch = e AND opId = id`. A step already `DONE` is left alone.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AlreadyDone(step)` (do not run it again).
    pub async fn journal_intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, StoreError> {
        self.journal_intent_inner(op, cluster, stage, task)
            .await
            .map_err(|source| StoreError::JournalIntent {
                op_id: op.id.clone(),
                cluster: cluster.to_owned(),
                stage: stage.to_owned(),
                task: task.to_owned(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn journal_intent_inner(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "journal_intent";
        check_step(cluster, stage, task)?;
        let now = self.now();
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::journal_key(&op.id, cluster, stage, task),
                "SET #opId = :id, #cluster = :c, #stage = :s, #task = :t, #epoch = :e, \
                 #status = :started, #startedAt = :now, \
                 #attempts = if_not_exists(#attempts, :zero) + :one \
                 REMOVE #finishedAt, #message",
                Some("attribute_not_exists(#status) OR #status <> :done"),
                &[
                    attr::OP_ID,
                    attr::CLUSTER,
                    attr::STAGE,
                    attr::TASK,
                    attr::EPOCH,
                    attr::STATUS,
                    attr::STARTED_AT,
                    attr::ATTEMPTS,
                    attr::FINISHED_AT,
                    attr::MESSAGE,
                ],
                values([
                    (":id", av_s(&op.id)),
                    (":c", av_s(cluster)),
                    (":s", av_s(stage)),
                    (":t", av_s(task)),
                    (":e", av_n(op.epoch)),
                    (":started", av_s(StepStatus::Started.as_str())),
                    (":done", av_s(StepStatus::Done.as_str())),
                    (":now", av_ms(now)),
                    (":zero", av_n(0)),
                    (":one", av_n(1)),
                ]),
            )?,
        ];
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => return Ok(Outcome::Done(())),
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        let key = keys::journal_key(&op.id, cluster, stage, task);
        match self.item_or_read(OP, rejected.old_item(1), key).await? {
            Some(item) => Ok(Outcome::AlreadyDone(Box::new(JournalStep::from_item(
                &item,
            )?))),
            None => Err(Cause::Invalid(
                "the journal condition failed on a missing step".into(),
            )),
        }
    }

    /// Journals the outcome of a task (`DONE` or `FAILED`, with an optional message),
    /// conditioned on the group state `epoch = e AND opId = id`.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`.
    pub async fn journal_outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<Outcome<()>, StoreError> {
        self.journal_outcome_inner(op, cluster, stage, task, status, message)
            .await
            .map_err(|source| StoreError::JournalOutcome {
                op_id: op.id.clone(),
                cluster: cluster.to_owned(),
                stage: stage.to_owned(),
                task: task.to_owned(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn journal_outcome_inner(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "journal_outcome";
        check_step(cluster, stage, task)?;
        if status == StepStatus::Started {
            return Err(Cause::Invalid(
                "an outcome is DONE or FAILED; STARTED is written by journal_intent".into(),
            ));
        }
        let now = self.now();
        let mut update = "SET #opId = :id, #cluster = :c, #stage = :s, #task = :t, #epoch = :e, \
             #status = :st, #finishedAt = :now, #startedAt = if_not_exists(#startedAt, :now), \
             #attempts = if_not_exists(#attempts, :one)"
            .to_owned();
        let mut vals = values([
            (":id", av_s(&op.id)),
            (":c", av_s(cluster)),
            (":s", av_s(stage)),
            (":t", av_s(task)),
            (":e", av_n(op.epoch)),
            (":st", av_s(status.as_str())),
            (":now", av_ms(now)),
            (":one", av_n(1)),
        ]);
        match message {
            Some(m) => {
                update.push_str(", #message = :m");
                vals.insert(":m".into(), av_s(m));
            }
            None => update.push_str(" REMOVE #message"),
        }
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::journal_key(&op.id, cluster, stage, task),
                &update,
                None,
                &[
                    attr::OP_ID,
                    attr::CLUSTER,
                    attr::STAGE,
                    attr::TASK,
                    attr::EPOCH,
                    attr::STATUS,
                    attr::FINISHED_AT,
                    attr::STARTED_AT,
                    attr::ATTEMPTS,
                    attr::MESSAGE,
                ],
                vals,
            )?,
        ];
        Ok(match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => Outcome::Done(()),
            TxVerdict::Stale(stale) => Outcome::StaleEpoch(stale),
            TxVerdict::Rejected(_) => Outcome::StaleEpoch(self.stale(OP, op, None).await?),
        })
    }

    /// Records the source workloads' replica counts before scale-down on the operation,
    /// keyed `<Kind>/<name>` (condition: group `epoch = e AND opId = id`). The first map
    /// recorded wins, so an agent restarted after the scale-down cannot overwrite the
    /// originals with zeros.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `OperationNotFound`.
    pub async fn record_original_replicas(
        &self,
        op: &OpRef,
        replicas: &BTreeMap<String, u32>,
    ) -> Result<Outcome<()>, StoreError> {
        self.record_replicas_inner(op, replicas)
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
    ) -> Result<Outcome<()>, Cause> {
        const OP: &str = "record_original_replicas";
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::operation_key(&op.id),
                "SET #originalReplicas = if_not_exists(#originalReplicas, :r)",
                Some("attribute_exists(#PK)"),
                &[attr::PK, attr::ORIGINAL_REPLICAS],
                values([(":r", replicas_to_av(replicas))]),
            )?,
        ];
        Ok(match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => Outcome::Done(()),
            TxVerdict::Stale(stale) => Outcome::StaleEpoch(stale),
            TxVerdict::Rejected(_) => Outcome::OperationNotFound {
                op_id: op.id.clone(),
            },
        })
    }

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
        let mut closed = stored.clone();
        closed.phase = phase;
        closed.timings = Timings {
            total_ms: timings.total_ms.or_else(|| {
                u64::try_from(now.duration_since(stored.requested_at).as_millis()).ok()
            }),
            ..timings
        };
        let entry = HistoryEntry::new(closed, now);

        let (group_update, op_condition) = if phase == Phase::Succeeded {
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
        };
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
            group_values.insert(":target".into(), av_s(&stored.target));
        }
        let items = vec![
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
        ];
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
        let rejected = match result {
            TxResult::Committed => {
                tracing::info!(op_id = %op.id, group = %op.group, %phase, "operation closed");
                return Ok(Outcome::Done(entry));
            }
            TxResult::Cancelled(rejected) => rejected,
        };
        // Lost: maybe to ourselves (a retried attempt that had committed). So the operation
        // is read back before the group state is looked at (not `transact_for_op`).
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

    /// Records one end of the UPTIME dual-active window on the operation (condition: the
    /// group state `epoch = e AND opId = id`). The earliest start and the latest end are kept.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `OperationNotFound`.
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
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::operation_key(&op.id),
                &format!("SET #{name} = :t"),
                Some(&condition),
                &[attr::PK, name],
                values([(":t", av_ms(at))]),
            )?,
        ];
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => return Ok(Outcome::Done(())),
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        let key = keys::operation_key(&op.id);
        match self.item_or_read(OP, rejected.old_item(1), key).await? {
            // A better mark is already recorded.
            Some(_) => Ok(Outcome::Done(())),
            None => Ok(Outcome::OperationNotFound {
                op_id: op.id.clone(),
            }),
        }
    }

    /// Sets the operation's phase (and message), condition: the group state `epoch = e AND opId = id` and the
    /// operation not closed. `Succeeded` and `Aborted` are refused: they are written by
    /// [`Store::complete_operation`] and [`Store::finish_abort`], which also release the
    /// group. Other closing phases (`Failed`, `RolledBack`) also set `finishedAt`.
    ///
    /// `Failed` leaves the group state alone: the group stays with the failed operation
    /// until it is aborted (before promotion: the source reactivates), a forced operation
    /// takes over, or its lease expires. It is refused once an abort was requested.
    ///
    /// Outcomes: `Done(())`; `StaleEpoch`; `AbortRequested` (only for `Failed`);
    /// `AlreadyFinished`; `OperationNotFound`.
    pub async fn set_phase(
        &self,
        op: &OpRef,
        phase: Phase,
        message: Option<&str>,
    ) -> Result<Outcome<()>, StoreError> {
        self.set_phase_inner(op, phase, message)
            .await
            .map_err(|source| StoreError::SetPhase {
                op_id: op.id.clone(),
                phase: phase.to_string(),
                table: self.table.to_string(),
                source,
            })
    }

    async fn set_phase_inner(
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
            "attribute_exists(#PK) AND NOT (#phase IN (:t1, :t2, :t3, :t4)) \
             AND attribute_not_exists(#abortRequestedAt)"
        } else {
            "attribute_exists(#PK) AND NOT (#phase IN (:t1, :t2, :t3, :t4))"
        };
        let items = vec![
            self.group_check(op)?,
            self.tx_update(
                keys::operation_key(&op.id),
                &update,
                Some(condition),
                &attr_names,
                vals,
            )?,
        ];
        let rejected = match self.transact_for_op(OP, op, items).await? {
            TxVerdict::Committed => return Ok(Outcome::Done(())),
            TxVerdict::Stale(stale) => return Ok(Outcome::StaleEpoch(stale)),
            TxVerdict::Rejected(rejected) => rejected,
        };
        let old = self
            .item_or_read(OP, rejected.old_item(1), keys::operation_key(&op.id))
            .await?;
        if let Some(at) = old
            .as_deref()
            .and_then(|i| ms_attr(i, attr::ABORT_REQUESTED_AT))
            && phase == Phase::Failed
        {
            return Ok(Outcome::AbortRequested { at });
        }
        match old
            .as_deref()
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

fn closed_entry(op: Operation, fallback: Timestamp) -> HistoryEntry {
    let finished = op.finished_at.unwrap_or(fallback);
    HistoryEntry::new(op, finished)
}

/// Volumes for one transaction: valid names, no duplicates, within the item limit
/// (`extra` items of the transaction are not volumes).
fn check_volumes(volumes: &[String], extra: usize) -> Result<(), Cause> {
    if volumes.is_empty() {
        return Err(Cause::Invalid("no volumes given".into()));
    }
    if volumes.len() + extra > MAX_TRANSACTION_ITEMS {
        return Err(Cause::Invalid(format!(
            "{} volumes do not fit in one transaction (at most {})",
            volumes.len(),
            MAX_TRANSACTION_ITEMS - extra
        )));
    }
    let mut seen = HashSet::new();
    for v in volumes {
        keys::validate_volume(v)?;
        if !seen.insert(v.as_str()) {
            return Err(Cause::Invalid(format!("volume {v} is named twice")));
        }
    }
    Ok(())
}

fn check_step(cluster: &str, stage: &str, task: &str) -> Result<(), Cause> {
    keys::validate_cluster(cluster)?;
    keys::validate_step_name("stage", stage)?;
    keys::validate_step_name("task", task)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_lists_are_checked_before_any_call() {
        assert!(check_volumes(&[], 2).is_err());
        assert!(
            check_volumes(&["a".into(), "a".into()], 2)
                .unwrap_err()
                .to_string()
                .contains("named twice")
        );
        let many: Vec<String> = (0..99).map(|i| format!("v{i}")).collect();
        assert!(
            check_volumes(&many, 2)
                .unwrap_err()
                .to_string()
                .contains("at most 98")
        );
        assert!(check_volumes(&many[..98], 2).is_ok());
        assert!(check_volumes(&["Bad#name".into()], 2).is_err());
    }
}
