//! The journal step `OP#<id>` / `JOURNAL#<cluster>#<stage>#<task>`: intent and outcome of
//! one task.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decode::Reader;
use super::encode::Builder;
use super::{DecodeError, Item, Record, StepStatus, attr};
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
