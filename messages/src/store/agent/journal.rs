//! Protocol step 3, the journal: the intent and the outcome of each task an agent runs.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::check_step;
use crate::keys;
use crate::records::{JournalStep, Record, StepStatus, attr, av_ms, av_n, av_s};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::{OpRef, Outcome};
use crate::store::{Store, TxVerdict, calls, values};

impl Store {
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
                 #firstStartedAt = if_not_exists(#firstStartedAt, :now), \
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
                    attr::FIRST_STARTED_AT,
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

    /// Sets the message of this cluster's `STARTED` journal step of the operation at its
    /// epoch: where a long wait stands, for `failoverctl watch` (e.g. what a forced target
    /// waits for, and until when). Informational: it carries no protocol authority (the step
    /// record's own `epoch` and `STARTED` status are its condition, no group-state check);
    /// `false` when the step is no longer `STARTED` at that epoch.
    pub async fn journal_note(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let wrap = |source: Cause| StoreError::JournalIntent {
            op_id: op.id.clone(),
            cluster: cluster.to_owned(),
            stage: stage.to_owned(),
            task: task.to_owned(),
            table: self.table.to_string(),
            source,
        };
        check_step(cluster, stage, task).map_err(wrap)?;
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(crate::store::key_map(keys::journal_key(
                &op.id, cluster, stage, task,
            ))))
            .update_expression("SET #message = :m")
            .condition_expression("#status = :started AND #epoch = :e")
            .set_expression_attribute_names(Some(crate::store::names(&[
                attr::MESSAGE,
                attr::STATUS,
                attr::EPOCH,
            ])))
            .set_expression_attribute_values(Some(values([
                (":m", av_s(message)),
                (":started", av_s(StepStatus::Started.as_str())),
                (":e", av_n(op.epoch)),
            ])));
        match self
            .send("journal_note", "UpdateItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(f) => match f.err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(wrap(f.into_cause())),
            },
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
}
