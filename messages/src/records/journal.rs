//! The journal as DynamoDB keeps it. Each agent journals every step in its own cluster (the
//! `Failover` object's `status.journal`); what crosses to DynamoDB is one record per stage
//! and cluster, [`JournalStage`] (attribute `JOURNAL#<cluster>#<stage>` of the operation item
//! `OP#<id>` / `OP`), written once when the stage reaches its publication step, with the
//! stage's steps as a list. A long wait may
//! also leave a note on its own step, [`JournalStep`] (`OP#<id>` /
//! `JOURNAL#<cluster>#<stage>#<task>`), which the published stage supersedes.
//! [`flatten_journal`] turns both into one list of steps.

use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, Item, Problem, Record, StepStatus, attr};
use crate::keys;

/// Journal step `OP#<id>` / `JOURNAL#<cluster>#<stage>#<task>`: intent and outcome of one task.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JournalStep {
    /// Operation id.
    pub op_id: String,
    /// Cluster whose agent ran the task.
    pub cluster: String,
    /// Workflow stage.
    pub stage: String,
    /// Task name.
    pub task: String,
    /// Epoch of the operation.
    pub epoch: u64,
    /// STARTED, DONE or FAILED.
    pub status: StepStatus,
    /// How many intents were written (more than one after a restart).
    pub attempts: u32,
    /// When the last intent was written.
    pub started_at: Timestamp,
    /// When the first intent was written (kept by every later intent; absent on steps
    /// journaled before it existed, which count from `started_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_started_at: Option<Timestamp>,
    /// When the outcome was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Timestamp>,
    /// Error or note from the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl JournalStep {
    /// When the step was first started: its first intent, or its last one for steps
    /// journaled without the first.
    pub fn first_started(&self) -> Timestamp {
        self.first_started_at.unwrap_or(self.started_at)
    }
}

impl Record for JournalStep {
    const KIND: &'static str = "journal step";

    fn key(&self) -> (String, String) {
        keys::journal_key(&self.op_id, &self.cluster, &self.stage, &self.task)
    }

    fn to_item(&self) -> Item {
        Builder::new(self.key())
            .s(attr::OP_ID, &self.op_id)
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::STAGE, &self.stage)
            .s(attr::TASK, &self.task)
            .n(attr::EPOCH, self.epoch)
            .s(attr::STATUS, self.status.as_str())
            .n(attr::ATTEMPTS, self.attempts)
            .ms(attr::STARTED_AT, self.started_at)
            .opt_ms(attr::FIRST_STARTED_AT, self.first_started_at)
            .opt_ms(attr::FINISHED_AT, self.finished_at)
            .opt_s(attr::MESSAGE, self.message.as_deref())
            .0
    }

    fn from_item(item: &Item) -> Result<Self, DecodeError> {
        let r = Reader::new(Self::KIND, item);
        Ok(Self {
            op_id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            stage: r.checked(attr::STAGE, |s| keys::validate_step_name("stage", s))?,
            task: r.checked(attr::TASK, |s| keys::validate_step_name("task", s))?,
            epoch: r.u64(attr::EPOCH)?,
            status: r.parsed(attr::STATUS)?,
            attempts: r
                .opt_number(attr::ATTEMPTS, "an unsigned 32-bit integer")?
                .unwrap_or(1),
            started_at: r.millis(attr::STARTED_AT)?,
            first_started_at: r.opt_millis(attr::FIRST_STARTED_AT)?,
            finished_at: r.opt_millis(attr::FINISHED_AT)?,
            message: r.opt_string(attr::MESSAGE)?,
        })
    }
}

/// A published stage: attribute `JOURNAL#<cluster>#<stage>` of the operation item
/// (`OP#<id>` / `OP`), the steps of one stage of one cluster's journal as they stood when the
/// stage reached its publication step (the preflight, the handoff, or else its last journaled
/// step). Written with the `UpdateItem` of the operation item that publishes it, or carried by
/// an agent write of that item which happens anyway (the replica counts, the close).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JournalStage {
    /// Operation id.
    pub op_id: String,
    /// Cluster whose agent ran the stage.
    pub cluster: String,
    /// Workflow stage.
    pub stage: String,
    /// Epoch of the operation.
    pub epoch: u64,
    /// When the stage was published.
    pub published_at: Timestamp,
    /// The stage's steps in the order they were started.
    pub steps: Vec<JournalStep>,
}

impl JournalStage {
    /// The record's kind in decoding errors.
    pub const KIND: &'static str = "journal stage";

    /// The operation item's attribute that holds this stage, `JOURNAL#<cluster>#<stage>`.
    pub fn attribute(&self) -> String {
        keys::journal_stage_attribute(&self.cluster, &self.stage)
    }

    /// The stage as the value of its attribute: a map whose `steps` is one string, the
    /// steps as a JSON array (one value to read and write however many steps the stage has;
    /// times in RFC 3339).
    pub fn to_attribute(&self) -> AttributeValue {
        let steps = serde_json::to_string(&self.steps).unwrap_or_else(|_| "[]".to_owned());
        let mut m = Builder::new((String::new(), String::new()))
            .s(attr::OP_ID, &self.op_id)
            .s(attr::CLUSTER, &self.cluster)
            .s(attr::STAGE, &self.stage)
            .n(attr::EPOCH, self.epoch)
            .ms(attr::PUBLISHED_AT, self.published_at)
            .s(attr::STEPS, steps)
            .0;
        m.remove(keys::PK);
        m.remove(keys::SK);
        AttributeValue::M(m)
    }

    /// The stage held by attribute `name` of the operation item `item`.
    pub fn from_attribute(item: &Item, name: &str) -> Result<Self, DecodeError> {
        let parent = Reader::new(Self::KIND, item);
        let stage = match parent.get(name) {
            Some(AttributeValue::M(m)) => m,
            Some(other) => return Err(parent.wrong(name, "a map", other)),
            None => return Err(parent.err(name, Problem::Missing)),
        };
        let r = parent.nested(name, stage);
        let steps: Vec<JournalStep> = match r.get(attr::STEPS) {
            Some(AttributeValue::S(json)) => serde_json::from_str(json).map_err(|e| {
                r.err(
                    attr::STEPS,
                    Problem::BadValue(format!("not a JSON list of steps: {e}")),
                )
            })?,
            Some(other) => return Err(r.wrong(attr::STEPS, "a JSON string", other)),
            None => return Err(r.err(attr::STEPS, Problem::Missing)),
        };
        for step in &steps {
            keys::validate_operation_id(&step.op_id)
                .and_then(|()| keys::validate_cluster(&step.cluster))
                .and_then(|()| keys::validate_step_name("stage", &step.stage))
                .and_then(|()| keys::validate_step_name("task", &step.task))
                .map_err(|e| r.err(attr::STEPS, Problem::BadValue(e.to_string())))?;
        }
        Ok(Self {
            op_id: r.checked(attr::OP_ID, keys::validate_operation_id)?,
            cluster: r.checked(attr::CLUSTER, keys::validate_cluster)?,
            stage: r.checked(attr::STAGE, |s| keys::validate_step_name("stage", s))?,
            epoch: r.u64(attr::EPOCH)?,
            published_at: r.millis(attr::PUBLISHED_AT)?,
            steps,
        })
    }
}

/// `cluster`'s journal of an operation from the items of its partition `OP#<id>`: every
/// stage published on the operation item (attributes `JOURNAL#<cluster>#<stage>`), and each
/// note (items `JOURNAL#<cluster>#<stage>#<task>`) of a step whose stage is not published (a
/// published stage supersedes its notes); sorted by start time (ties keep stage order).
/// Other items and attributes are not the journal's and are passed over.
pub fn flatten_journal(items: &[Item], cluster: &str) -> Result<Vec<JournalStep>, DecodeError> {
    let prefix = keys::journal_prefix(cluster);
    let mut stages = Vec::new();
    let mut notes = Vec::new();
    for item in items {
        match item.get(keys::SK) {
            Some(AttributeValue::S(sk)) if sk == keys::OPERATION_SK => {
                let mut published: Vec<&String> = item
                    .keys()
                    .filter(|name| name.starts_with(&prefix))
                    .collect();
                published.sort();
                for name in published {
                    stages.push(JournalStage::from_attribute(item, name)?);
                }
            }
            Some(AttributeValue::S(sk)) if sk.starts_with(&prefix) => {
                notes.push(JournalStep::from_item(item)?);
            }
            _ => {}
        }
    }
    let published: std::collections::HashSet<&str> =
        stages.iter().map(|s| s.stage.as_str()).collect();
    let mut steps: Vec<JournalStep> = notes
        .into_iter()
        .filter(|n| !published.contains(n.stage.as_str()))
        .collect();
    steps.extend(stages.into_iter().flat_map(|s| s.steps));
    steps.sort_by_key(|s| s.started_at);
    Ok(steps)
}
