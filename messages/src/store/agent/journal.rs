//! Protocol step 3, the journal as DynamoDB keeps it: one published record per stage and
//! cluster (an attribute of the operation item), and notes on long waits. Each agent journals every step's intent and outcome in
//! its own cluster (the `Failover` object); DynamoDB gets what the other side and the
//! coordinator need to see, once per stage.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::AttributeValue;

use super::check_step;
use crate::keys;
use crate::records::{JournalStage, JournalStep, StepStatus, attr, av_ms, av_n, av_s};
use crate::store::error::{Cause, StoreError};
use crate::store::outcome::OpRef;
use crate::store::{Store, calls, values};

impl Store {
    /// Publishes one stage of `cluster`'s journal of operation `op`: one `UpdateItem` of the
    /// operation item (`OP#<id>` / `OP`, condition: it exists) setting attribute
    /// `JOURNAL#<cluster>#<stage>` to `steps` (the stage's steps at the operation's epoch, as
    /// the agent journaled them in its cluster). Written again, it replaces the earlier copy
    /// (a resumed agent publishes again). It carries no protocol authority: every decision
    /// another cluster takes on it is also guarded by an epoch-conditioned write (the READY
    /// records, the claim).
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
        let record = self.stage_record(op, cluster, stage, steps).map_err(wrap)?;
        let carried = StageSets::of(std::slice::from_ref(&record));
        let refused = self
            .update_if_named(
                "publish_stage",
                keys::operation_key(&op.id),
                &format!("SET {}", carried.sets.join(", ")),
                "attribute_exists(#PK)",
                &[attr::PK],
                carried.names,
                carried.values,
            )
            .await
            .map_err(wrap)?;
        if refused.is_err() {
            return Err(wrap(Cause::Invalid(format!(
                "operation {} has no item to publish on",
                op.id
            ))));
        }
        Ok(record)
    }

    /// The published record of `stage` of `cluster`'s journal: `steps`, checked to be that
    /// stage's steps of operation `op`, as of now.
    fn stage_record(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        steps: &[JournalStep],
    ) -> Result<JournalStage, Cause> {
        let record = JournalStage {
            op_id: op.id.clone(),
            cluster: cluster.to_owned(),
            stage: stage.to_owned(),
            epoch: op.epoch,
            published_at: self.now(),
            steps: steps.to_vec(),
        };
        check_stage(op, &record)?;
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

/// Published journal stages that an agent's write of the operation item takes along (the
/// replica counts, the close), so that publishing them costs no write of its own.
/// [`CarriedStages::written`] says whether the write that carried them succeeded; when it did
/// not, the agent publishes them with [`Store::publish_stage`].
#[derive(Debug, Default)]
pub struct CarriedStages {
    stages: Vec<JournalStage>,
    written: AtomicBool,
}

impl CarriedStages {
    /// `stages` to carry.
    pub fn new(stages: Vec<JournalStage>) -> Self {
        Self {
            stages,
            written: AtomicBool::new(false),
        }
    }

    /// The stages.
    pub fn stages(&self) -> &[JournalStage] {
        &self.stages
    }

    /// Whether a write carried them.
    pub fn written(&self) -> bool {
        self.written.load(Ordering::SeqCst)
    }

    /// The `SET` clauses that publish the stages of operation `op` (checked to be its).
    pub(crate) fn sets(&self, op: &OpRef) -> Result<StageSets, Cause> {
        for stage in &self.stages {
            check_stage(op, stage)?;
        }
        Ok(StageSets::of(&self.stages))
    }

    /// Marks them written: the store does when the write that carried them landed (a test
    /// double of that write may too).
    pub fn mark_written(&self) {
        if !self.stages.is_empty() {
            self.written.store(true, Ordering::SeqCst);
        }
    }
}

/// Checks that `stage` is a stage of operation `op` at its epoch and that each of its steps
/// is a step of that stage, with keys the journal accepts.
fn check_stage(op: &OpRef, stage: &JournalStage) -> Result<(), Cause> {
    keys::validate_operation_id(&op.id)?;
    if stage.op_id != op.id || stage.epoch != op.epoch {
        return Err(Cause::Invalid(format!(
            "stage {} of {} is not a stage of operation {} at epoch {}",
            stage.stage, stage.cluster, op.id, op.epoch
        )));
    }
    for s in &stage.steps {
        check_step(&stage.cluster, &stage.stage, &s.task)?;
        if s.stage != stage.stage || s.cluster != stage.cluster || s.op_id != op.id {
            return Err(Cause::Invalid(format!(
                "step {}/{} of {} (operation {}) is not of stage {} of {}",
                s.stage, s.task, s.cluster, s.op_id, stage.stage, stage.cluster
            )));
        }
    }
    Ok(())
}

/// What an `UpdateItem` of the operation item adds to publish `stages` with it: one
/// `SET` clause per stage (`#j<i> = :j<i>`), its name placeholder and its value.
#[derive(Default)]
pub(crate) struct StageSets {
    pub(crate) sets: Vec<String>,
    pub(crate) names: HashMap<String, String>,
    pub(crate) values: HashMap<String, AttributeValue>,
}

impl StageSets {
    /// The update expression `base` with the stages' clauses added to its `SET` (`base`
    /// starts with `SET`).
    pub(crate) fn extend(&self, base: &str) -> String {
        if self.sets.is_empty() {
            base.to_owned()
        } else {
            format!("{base}, {}", self.sets.join(", "))
        }
    }

    pub(crate) fn of(stages: &[JournalStage]) -> Self {
        let mut out = Self::default();
        for (i, stage) in stages.iter().enumerate() {
            out.sets.push(format!("#j{i} = :j{i}"));
            out.names.insert(format!("#j{i}"), stage.attribute());
            out.values.insert(format!(":j{i}"), stage.to_attribute());
        }
        out
    }
}
