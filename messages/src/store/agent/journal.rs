//! Protocol step 3, the journal as DynamoDB keeps it: one published record per stage and
//! cluster, and notes on long waits. Each agent journals every step's intent and outcome in
//! its own cluster (the `Failover` object); DynamoDB gets what the other side and the
//! coordinator need to see, once per stage.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;

use super::check_step;
use crate::keys;
use crate::records::{JournalStage, JournalStep, Record, StepStatus, attr, av_ms, av_n, av_s};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::OpRef;
use crate::store::{Store, calls, values};

impl Store {
    /// Publishes one stage of `cluster`'s journal of operation `op`: one `PutItem` of
    /// `OP#<id>` / `JOURNAL#<cluster>#<stage>` carrying `steps` (the stage's steps at the
    /// operation's epoch, as the agent journaled them in its cluster). Written again, it
    /// replaces the earlier copy (a resumed agent publishes again). It carries no protocol
    /// authority: every decision another cluster takes on it is also guarded by an
    /// epoch-conditioned write (the READY records, the claim).
    pub async fn publish_stage(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        steps: &[JournalStep],
    ) -> Result<JournalStage, StoreError> {
        let wrap = |source: Cause| StoreError::PublishStage {
            op_id: op.id.clone(),
            cluster: cluster.to_owned(),
            stage: stage.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(&op.id).map_err(|e| wrap(e.into()))?;
        for s in steps {
            check_step(cluster, stage, &s.task).map_err(wrap)?;
            if s.stage != stage || s.cluster != cluster || s.op_id != op.id {
                return Err(wrap(Cause::Invalid(format!(
                    "step {}/{} of {} (operation {}) is not of stage {stage} of {cluster}",
                    s.stage, s.task, s.cluster, s.op_id
                ))));
            }
        }
        let record = JournalStage {
            op_id: op.id.clone(),
            cluster: cluster.to_owned(),
            stage: stage.to_owned(),
            epoch: op.epoch,
            published_at: self.now(),
            steps: steps.to_vec(),
        };
        let req = self
            .client
            .put_item()
            .table_name(self.table.as_ref())
            .set_item(Some(record.to_item()));
        self.send("publish_stage", "PutItem", calls::classify_error, || {
            req.clone().send()
        })
        .await
        .map_err(|f| wrap(f.into_cause()))?;
        Ok(record)
    }

    /// Notes where a long wait of `cluster`'s step stands (e.g. what a forced target waits
    /// for, and until when), for `failoverctl watch`: an `UpdateItem` of the step's own record
    /// `OP#<id>` / `JOURNAL#<cluster>#<stage>#<task>`, status `STARTED`. Informational: it
    /// carries no protocol authority; `false` when the record already belongs to another
    /// epoch or is no longer `STARTED`. Once the stage is published the note is ignored.
    pub async fn journal_note(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let wrap = |source: Cause| StoreError::JournalNote {
            op_id: op.id.clone(),
            cluster: cluster.to_owned(),
            stage: stage.to_owned(),
            task: task.to_owned(),
            table: self.table.to_string(),
            source,
        };
        keys::validate_operation_id(&op.id).map_err(|e| wrap(e.into()))?;
        check_step(cluster, stage, task).map_err(wrap)?;
        let req = self
            .client
            .update_item()
            .table_name(self.table.as_ref())
            .set_key(Some(crate::store::key_map(keys::journal_key(
                &op.id, cluster, stage, task,
            ))))
            .update_expression(
                "SET #message = :m, #opId = :id, #cluster = :c, #stage = :s, #task = :t, \
                 #epoch = :e, #status = :started, #startedAt = if_not_exists(#startedAt, :now)",
            )
            .condition_expression(
                "attribute_not_exists(#status) OR (#status = :started AND #epoch = :e)",
            )
            .set_expression_attribute_names(Some(crate::store::names(&[
                attr::MESSAGE,
                attr::OP_ID,
                attr::CLUSTER,
                attr::STAGE,
                attr::TASK,
                attr::EPOCH,
                attr::STATUS,
                attr::STARTED_AT,
            ])))
            .set_expression_attribute_values(Some(values([
                (":m", av_s(message)),
                (":id", av_s(&op.id)),
                (":c", av_s(cluster)),
                (":s", av_s(stage)),
                (":t", av_s(task)),
                (":e", av_n(op.epoch)),
                (":started", av_s(StepStatus::Started.as_str())),
                (":now", av_ms(self.now())),
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
}
