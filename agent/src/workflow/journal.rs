//! The engine's journal: where it writes each step's intent (before) and outcome (after),
//! where it finds, after a restart, what is already done, and where it publishes a stage.
//!
//! The agent's journal is `failover_object::FailoverJournal`: every step lives in this
//! cluster's `Failover` object (`status.journal`), the group state is read on the engine's
//! demand ([`Journal::current`], before the first of each run of Kubernetes steps of one
//! kind: `epoch = e AND opId = id`, else the run stops), and each stage is published to DynamoDB once
//! ([`Journal::publish`]), for the other cluster and the coordinator. [`MemoryJournal`]
//! plays the same rules in memory for tests (its intents also refuse a stale operation, as
//! the store's journal writes did) and logs every write. Both apply a step's intent and outcome with the same pure functions,
//! [`intent_step`] and [`outcome_step`].
//!
//! Answers follow the store's: a write comes back [`Outcome::Done`], [`Outcome::StaleEpoch`]
//! (the epoch moved or the operation is closed: stop) or, for an intent,
//! [`Outcome::AlreadyDone`] (the step finished earlier: skip it).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use failover_messages::records::{JournalStep, StepStatus, truncate_to_millis};
use failover_messages::store::{Clock, OpRef, Outcome, Stale, StoreError, SystemClock};
use jiff::Timestamp;

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

    /// Writes the intents of several steps of `stage` that run together (a batch), in one
    /// write where the journal can: one answer per task, in order, as [`Journal::intent`]
    /// gives them; the answers stop after the first `StaleEpoch`. By default, one
    /// [`Journal::intent`] after the other.
    fn intents(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        tasks: &[&str],
    ) -> impl Future<Output = Result<Vec<Outcome<()>>, JournalError>> + Send {
        async move {
            let mut answers = Vec::with_capacity(tasks.len());
            for task in tasks {
                let answer = self.intent(op, cluster, stage, task).await?;
                let stale = matches!(answer, Outcome::StaleEpoch(_));
                answers.push(answer);
                if stale {
                    break;
                }
            }
            Ok(answers)
        }
    }

    /// Records the outcome of a step (`DONE` or `FAILED`, with an optional message).
    /// Answers `Done(())` or `StaleEpoch`. A journal may keep it unwritten until its next
    /// write ([`Journal::intent`], [`Journal::publish`], [`Journal::flush`]): an outcome lost
    /// in a crash only makes the step run again, as a crash just before it would.
    fn outcome(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
        status: StepStatus,
        message: Option<&str>,
    ) -> impl Future<Output = Result<Outcome<()>, JournalError>> + Send;

    /// `None` while the group state has `op` in flight at its epoch; else where it stands.
    /// Read before the first of each run of Kubernetes steps of one kind, so none of them
    /// starts for an operation that is closed or superseded.
    fn current(
        &self,
        op: &OpRef,
    ) -> impl Future<Output = Result<Option<Stale>, JournalError>> + Send;

    /// Publishes `stage` of `cluster`'s journal (its steps at the operation's epoch) where
    /// the other cluster and the coordinator read it: once per stage, at its publication
    /// step (and again when a resumed run finds that step done).
    fn publish(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
    ) -> impl Future<Output = Result<(), JournalError>> + Send;

    /// Writes the outcomes [`Journal::outcome`] left unwritten (none by default).
    fn flush(&self) -> impl Future<Output = Result<(), JournalError>> + Send {
        async { Ok(()) }
    }

    /// The steps of `stage` of `cluster`'s journal at the operation's epoch, as
    /// [`Journal::publish`] would publish them, for a task's write of the operation item to
    /// carry instead (call [`Journal::flush`] first: nothing is published that this journal
    /// does not hold). Nothing is written.
    fn stage_steps(&self, op: &OpRef, cluster: &str, stage: &str) -> Vec<JournalStep>;

    /// Told that a task's write published `stage` (what [`Journal::stage_steps`] gave);
    /// nothing to do by default.
    fn carried(&self, _op: &OpRef, _cluster: &str, _stage: &str) {}
}

/// The intent of a step over its `existing` entry: `Err(existing)` when it is `DONE` (do
/// not run it again), else the entry `STARTED` with one more attempt, keeping the first
/// start.
pub fn intent_step(
    existing: Option<&JournalStep>,
    op: &OpRef,
    cluster: &str,
    stage: &str,
    task: &str,
    now: Timestamp,
) -> Result<JournalStep, Box<JournalStep>> {
    if let Some(step) = existing.filter(|s| s.status == StepStatus::Done) {
        return Err(Box::new(step.clone()));
    }
    Ok(JournalStep {
        attempts: existing.map_or(0, |s| s.attempts) + 1,
        first_started_at: Some(existing.map_or(now, JournalStep::first_started)),
        ..first_attempt(op, cluster, stage, task, StepStatus::Started, now)
    })
}

/// A step of `op` in `cluster` started for the first time at `now`, with `status`.
fn first_attempt(
    op: &OpRef,
    cluster: &str,
    stage: &str,
    task: &str,
    status: StepStatus,
    now: Timestamp,
) -> JournalStep {
    JournalStep {
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
    }
}

/// The outcome of a step (`DONE` or `FAILED`, with `message`) over its `existing` entry (an
/// outcome without an intent counts as one attempt started now).
#[allow(clippy::too_many_arguments)]
pub fn outcome_step(
    existing: Option<JournalStep>,
    op: &OpRef,
    cluster: &str,
    stage: &str,
    task: &str,
    status: StepStatus,
    message: Option<&str>,
    now: Timestamp,
) -> JournalStep {
    let mut step = existing.unwrap_or_else(|| first_attempt(op, cluster, stage, task, status, now));
    step.status = status;
    step.finished_at = Some(now);
    step.message = message.map(str::to_owned);
    step
}

/// Refuses a `STARTED` outcome.
pub fn check_outcome(status: StepStatus) -> Result<(), JournalError> {
    if status == StepStatus::Started {
        return Err(JournalError::Unavailable(
            "an outcome is DONE or FAILED; STARTED is an intent".into(),
        ));
    }
    Ok(())
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

    fn intents(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        tasks: &[&str],
    ) -> impl Future<Output = Result<Vec<Outcome<()>>, JournalError>> + Send {
        (**self).intents(op, cluster, stage, tasks)
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

    fn publish(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
    ) -> impl Future<Output = Result<(), JournalError>> + Send {
        (**self).publish(op, cluster, stage)
    }

    fn flush(&self) -> impl Future<Output = Result<(), JournalError>> + Send {
        (**self).flush()
    }

    fn stage_steps(&self, op: &OpRef, cluster: &str, stage: &str) -> Vec<JournalStep> {
        (**self).stage_steps(op, cluster, stage)
    }

    fn carried(&self, op: &OpRef, cluster: &str, stage: &str) {
        (**self).carried(op, cluster, stage)
    }

    fn current(
        &self,
        op: &OpRef,
    ) -> impl Future<Output = Result<Option<Stale>, JournalError>> + Send {
        (**self).current(op)
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
    /// A stage published.
    Publish {
        /// Stage key.
        stage: String,
        /// The steps published, in order.
        tasks: Vec<String>,
    },
    /// A stage published by a task's write of the operation item.
    Carried {
        /// Stage key.
        stage: String,
        /// The steps published, in order.
        tasks: Vec<String>,
    },
}

type StepKey = (String, String, String, String);

#[derive(Default)]
struct MemoryState {
    /// The group state's `(epoch, opId)`; `None` when no operation is in flight.
    current: Option<(u64, String)>,
    steps: BTreeMap<StepKey, JournalStep>,
    /// Every step key in the order it was first written (what a publication lists).
    order: Vec<StepKey>,
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
    fn stage_tasks(state: &MemoryState, op: &OpRef, cluster: &str, stage: &str) -> Vec<String> {
        state
            .order
            .iter()
            .filter(|(id, c, s, _)| *id == op.id && c == cluster && s == stage)
            .map(|(_, _, _, task)| task.clone())
            .collect()
    }

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
        let mut state = self.lock();
        if !state.order.contains(&key) {
            state.order.push(key.clone());
        }
        state.steps.insert(key, step);
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
            None => match intent_step(state.steps.get(&key), op, cluster, stage, task, now) {
                Err(done) => Outcome::AlreadyDone(done),
                Ok(step) => {
                    if !state.order.contains(&key) {
                        state.order.push(key.clone());
                    }
                    state.steps.insert(key, step);
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
        check_outcome(status)?;
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
                let existing = state.steps.remove(&key);
                let step = outcome_step(existing, op, cluster, stage, task, status, message, now);
                if !state.order.contains(&key) {
                    state.order.push(key.clone());
                }
                state.steps.insert(key, step);
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

    async fn current(&self, op: &OpRef) -> Result<Option<Stale>, JournalError> {
        Self::check(&self.lock(), op)
    }

    async fn publish(&self, op: &OpRef, cluster: &str, stage: &str) -> Result<(), JournalError> {
        let mut state = self.lock();
        if state.unavailable {
            return Err(JournalError::Unavailable(
                "set unavailable by the test".into(),
            ));
        }
        let tasks = Self::stage_tasks(&state, op, cluster, stage);
        state.writes.push(JournalWrite::Publish {
            stage: stage.to_owned(),
            tasks,
        });
        Ok(())
    }

    fn stage_steps(&self, op: &OpRef, cluster: &str, stage: &str) -> Vec<JournalStep> {
        let state = self.lock();
        state
            .order
            .iter()
            .filter(|(id, c, s, _)| *id == op.id && c == cluster && s == stage)
            .filter_map(|key| state.steps.get(key).cloned())
            .filter(|s| s.epoch == op.epoch)
            .collect()
    }

    fn carried(&self, op: &OpRef, cluster: &str, stage: &str) {
        let mut state = self.lock();
        let tasks = Self::stage_tasks(&state, op, cluster, stage);
        state.writes.push(JournalWrite::Carried {
            stage: stage.to_owned(),
            tasks,
        });
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
