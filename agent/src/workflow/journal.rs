//! The engine's journal: where it writes each step's intent (before) and outcome (after),
//! and where it finds, after a restart, what is already done.
//!
//! [`Journal`] is implemented for the DynamoDB [`Store`] (records `OP#<id>` /
//! `JOURNAL#<cluster>#<stage>#<task>`, every write conditioned on the group state
//! `epoch = e AND opId = id`) and by [`MemoryJournal`] for tests, which plays the same
//! conditions against an in-memory group state and logs every write.
//!
//! Answers follow the store's: a write comes back [`Outcome::Done`], [`Outcome::StaleEpoch`]
//! (the epoch moved or the operation is closed: stop) or, for an intent,
//! [`Outcome::AlreadyDone`] (the step finished earlier: skip it).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use failover_messages::records::{JournalStep, StepStatus, truncate_to_millis};
use failover_messages::store::{Clock, OpRef, Outcome, Stale, Store, StoreError, SystemClock};

/// A journal read or write that failed (not a lost condition: that is an [`Outcome`]).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The DynamoDB store failed (after its retries).
    #[error(transparent)]
    Store(Box<StoreError>),
    /// Another journal failed.
    #[error("the journal is unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for JournalError {
    fn from(e: StoreError) -> Self {
        Self::Store(Box::new(e))
    }
}

/// Where the engine journals steps. Every write is conditioned on the operation's epoch.
pub trait Journal: Send + Sync {
    /// `cluster`'s journal of operation `op`, in the order the steps were started.
    fn steps(
        &self,
        op: &OpRef,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<JournalStep>, JournalError>> + Send;

    /// Writes the intent of a step (`STARTED`, one more attempt).
    /// Answers `Done(())`, `StaleEpoch` or `AlreadyDone(step)`.
    fn intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> impl Future<Output = Result<Outcome<()>, JournalError>> + Send;

    /// Writes the outcome of a step (`DONE` or `FAILED`, with an optional message).
    /// Answers `Done(())` or `StaleEpoch`.
    fn outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> impl Future<Output = Result<Outcome<()>, JournalError>> + Send;
}

impl Journal for Store {
    async fn steps(&self, op: &OpRef, cluster: &str) -> Result<Vec<JournalStep>, JournalError> {
        Ok(self.journal(&op.id, cluster).await?)
    }

    async fn intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, JournalError> {
        Ok(self.journal_intent(op, cluster, stage, task).await?)
    }

    async fn outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<Outcome<()>, JournalError> {
        Ok(self
            .journal_outcome(op, cluster, stage, task, status, message)
            .await?)
    }
}

impl<J: Journal> Journal for Arc<J> {
    fn steps(
        &self,
        op: &OpRef,
        cluster: &str,
    ) -> impl Future<Output = Result<Vec<JournalStep>, JournalError>> + Send {
        (**self).steps(op, cluster)
    }

    fn intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> impl Future<Output = Result<Outcome<()>, JournalError>> + Send {
        (**self).intent(op, cluster, stage, task)
    }

    fn outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> impl Future<Output = Result<Outcome<()>, JournalError>> + Send {
        (**self).outcome(op, cluster, stage, task, status, message)
    }
}

/// One write [`MemoryJournal`] accepted or refused, for assertions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JournalWrite {
    /// An intent.
    Intent {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// What the journal answered (`Done`, `AlreadyDone`, `StaleEpoch`).
        answer: &'static str,
    },
    /// An outcome.
    Outcome {
        /// Stage key.
        stage: String,
        /// Step key.
        task: String,
        /// `DONE` or `FAILED`.
        status: StepStatus,
        /// The message written.
        message: Option<String>,
        /// What the journal answered (`Done`, `StaleEpoch`).
        answer: &'static str,
    },
}

type StepKey = (String, String, String, String);

#[derive(Default)]
struct MemoryState {
    /// The group state's `(epoch, opId)`; `None` when no operation is in flight.
    current: Option<(u64, String)>,
    steps: BTreeMap<StepKey, JournalStep>,
    writes: Vec<JournalWrite>,
    unavailable: bool,
}

/// An in-memory journal with the store's conditions, for tests: writes for an operation
/// succeed only while [`MemoryJournal::set_current`] names it at its epoch.
pub struct MemoryJournal {
    state: Mutex<MemoryState>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryJournal")
            .field("current", &state.current)
            .field("steps", &state.steps.len())
            .field("writes", &state.writes.len())
            .finish()
    }
}

impl MemoryJournal {
    /// A journal whose group state has `op` in flight at its epoch.
    pub fn new(op: &OpRef) -> Self {
        Self {
            state: Mutex::new(MemoryState {
                current: Some((op.epoch, op.id.clone())),
                ..MemoryState::default()
            }),
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for `startedAt` / `finishedAt`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves the group state: `Some((epoch, op_id))` in flight, or `None` (closed).
    pub fn set_current(&self, current: Option<(u64, &str)>) {
        self.lock().current = current.map(|(e, id)| (e, id.to_owned()));
    }

    /// Makes every call fail with [`JournalError::Unavailable`] (or work again).
    pub fn set_unavailable(&self, unavailable: bool) {
        self.lock().unavailable = unavailable;
    }

    /// Puts a step as if an earlier run had written it.
    pub fn insert(&self, step: JournalStep) {
        let key = (
            step.op_id.clone(),
            step.cluster.clone(),
            step.stage.clone(),
            step.task.clone(),
        );
        self.lock().steps.insert(key, step);
    }

    /// Every write so far, accepted or refused, in order.
    pub fn writes(&self) -> Vec<JournalWrite> {
        self.lock().writes.clone()
    }

    /// The journaled step, if any.
    pub fn get(&self, op_id: &str, cluster: &str, stage: &str, task: &str) -> Option<JournalStep> {
        self.lock()
            .steps
            .get(&(op_id.into(), cluster.into(), stage.into(), task.into()))
            .cloned()
    }

    fn check(state: &MemoryState, op: &OpRef) -> Result<Option<Stale>, JournalError> {
        if state.unavailable {
            return Err(JournalError::Unavailable(
                "set unavailable by the test".into(),
            ));
        }
        Ok(match &state.current {
            Some((epoch, id)) if *epoch == op.epoch && *id == op.id => None,
            current => Some(Stale {
                expected_epoch: op.epoch,
                current_epoch: current.as_ref().map(|(e, _)| *e),
                current_op: current.as_ref().map(|(_, id)| id.clone()),
            }),
        })
    }

    fn record_intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, JournalError> {
        let now = truncate_to_millis(self.clock.now());
        let mut state = self.lock();
        let stale = Self::check(&state, op)?;
        let key = (
            op.id.clone(),
            cluster.to_owned(),
            stage.to_owned(),
            task.to_owned(),
        );
        let answer = match stale {
            Some(stale) => Outcome::StaleEpoch(stale),
            None => match state.steps.get(&key) {
                Some(step) if step.status == StepStatus::Done => {
                    Outcome::AlreadyDone(Box::new(step.clone()))
                }
                existing => {
                    let attempts = existing.map_or(0, |s| s.attempts) + 1;
                    let first = existing.map_or(now, JournalStep::first_started);
                    state.steps.insert(
                        key,
                        JournalStep {
                            op_id: op.id.clone(),
                            cluster: cluster.to_owned(),
                            stage: stage.to_owned(),
                            task: task.to_owned(),
                            epoch: op.epoch,
                            status: StepStatus::Started,
                            attempts,
                            started_at: now,
                            first_started_at: Some(first),
                            finished_at: None,
                            message: None,
                        },
                    );
                    Outcome::Done(())
                }
            },
        };
        state.writes.push(JournalWrite::Intent {
            stage: stage.to_owned(),
            task: task.to_owned(),
            answer: answer_name(&answer),
        });
        Ok(answer)
    }

    #[allow(clippy::too_many_arguments)]
    fn record_outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<Outcome<()>, JournalError> {
        if status == StepStatus::Started {
            return Err(JournalError::Unavailable(
                "an outcome is DONE or FAILED".into(),
            ));
        }
        let now = truncate_to_millis(self.clock.now());
        let mut state = self.lock();
        let stale = Self::check(&state, op)?;
        let answer = match stale {
            Some(stale) => Outcome::StaleEpoch(stale),
            None => {
                let key = (
                    op.id.clone(),
                    cluster.to_owned(),
                    stage.to_owned(),
                    task.to_owned(),
                );
                let step = state.steps.entry(key).or_insert_with(|| JournalStep {
                    op_id: op.id.clone(),
                    cluster: cluster.to_owned(),
                    stage: stage.to_owned(),
                    task: task.to_owned(),
                    epoch: op.epoch,
                    status,
                    attempts: 1,
                    started_at: now,
                    first_started_at: Some(now),
                    finished_at: None,
                    message: None,
                });
                step.status = status;
                step.finished_at = Some(now);
                step.message = message.map(str::to_owned);
                Outcome::Done(())
            }
        };
        state.writes.push(JournalWrite::Outcome {
            stage: stage.to_owned(),
            task: task.to_owned(),
            status,
            message: message.map(str::to_owned),
            answer: answer_name(&answer),
        });
        Ok(answer)
    }
}

fn answer_name<T>(outcome: &Outcome<T>) -> &'static str {
    match outcome {
        Outcome::Done(_) => "Done",
        Outcome::StaleEpoch(_) => "StaleEpoch",
        Outcome::AlreadyDone(_) => "AlreadyDone",
        _ => "Other",
    }
}

impl Journal for MemoryJournal {
    async fn steps(&self, op: &OpRef, cluster: &str) -> Result<Vec<JournalStep>, JournalError> {
        let state = self.lock();
        if state.unavailable {
            return Err(JournalError::Unavailable(
                "set unavailable by the test".into(),
            ));
        }
        let mut steps: Vec<JournalStep> = state
            .steps
            .values()
            .filter(|s| s.op_id == op.id && s.cluster == cluster)
            .cloned()
            .collect();
        steps.sort_by_key(|s| s.started_at);
        Ok(steps)
    }

    async fn intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, JournalError> {
        self.record_intent(op, cluster, stage, task)
    }

    async fn outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<Outcome<()>, JournalError> {
        self.record_outcome(op, cluster, stage, task, status, message)
    }
}

#[cfg(test)]
mod tests {
    use failover_messages::keys::GroupRef;

    use super::*;

    fn op(epoch: u64) -> OpRef {
        OpRef {
            id: "op-1".into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch,
        }
    }

    #[tokio::test]
    async fn memory_journal_plays_the_store_conditions() {
        let j = MemoryJournal::new(&op(3));
        assert_eq!(
            j.intent(&op(3), "east", "S", "T").await.unwrap(),
            Outcome::Done(())
        );
        assert_eq!(
            j.get("op-1", "east", "S", "T").unwrap().status,
            StepStatus::Started
        );
        // A second intent counts another attempt.
        j.intent(&op(3), "east", "S", "T").await.unwrap();
        assert_eq!(j.get("op-1", "east", "S", "T").unwrap().attempts, 2);
        j.outcome(&op(3), "east", "S", "T", StepStatus::Done, None)
            .await
            .unwrap();
        // A DONE step is not started again.
        assert!(matches!(
            j.intent(&op(3), "east", "S", "T").await.unwrap(),
            Outcome::AlreadyDone(step) if step.attempts == 2
        ));
        // Another epoch is stale.
        let stale = j.intent(&op(2), "east", "S", "U").await.unwrap();
        assert_eq!(
            stale,
            Outcome::StaleEpoch(Stale {
                expected_epoch: 2,
                current_epoch: Some(3),
                current_op: Some("op-1".into())
            })
        );
        // A closed operation refuses every write.
        j.set_current(None);
        assert!(
            j.outcome(&op(3), "east", "S", "T", StepStatus::Failed, Some("x"))
                .await
                .unwrap()
                .is_stale()
        );
        let steps = j.steps(&op(3), "east").await.unwrap();
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].status, StepStatus::Done);
        assert_eq!(j.steps(&op(3), "west").await.unwrap(), vec![]);
        assert_eq!(j.writes().len(), 6);
    }

    #[tokio::test]
    async fn an_unavailable_journal_errors() {
        let j = MemoryJournal::new(&op(1));
        j.set_unavailable(true);
        assert!(j.intent(&op(1), "east", "S", "T").await.is_err());
        assert!(j.steps(&op(1), "east").await.is_err());
        j.set_unavailable(false);
        assert!(j.intent(&op(1), "east", "S", "T").await.is_ok());
    }
}
