//! [`FailoverJournal`]: the engine's journal as the agent keeps it. Every step's intent and
//! outcome is written to the operation's `Failover` object in this cluster
//! (`status.journal`, the whole list in one merge patch of the status subresource), so a
//! restarted agent resumes from its own cluster; DynamoDB gets each stage once, when the
//! engine publishes it ([`Store::publish_stage`]), for the other cluster and the coordinator.
//! An outcome goes out with the next write (the next step's intent, a publication, the end
//! of the run): one write per step. Lost in a crash, it only makes the step run again (every
//! step is idempotent), exactly as a crash just before it was recorded would; an intent is
//! always written before its step acts.
//!
//! Whether the operation is still current is a consistent read of the group state
//! ([`Journal::current`]), which the engine asks for before the first of each run of
//! Kubernetes steps of one kind (ten `Demote` steps in a row share one read), so none of
//! them starts for an operation that is closed or superseded. Safety never rests on the
//! journal itself: every write that carries authority is conditioned on its own, and the
//! promotion and the reactivation re-check the group state on their own.
//!
//! The object is the one the run's [`FailoverReporter`](super::failover_reporter) keeps
//! (created before the run starts), written through the same [`StatusWriter`]: each journal
//! write sends the whole status, the run's progress folded so far included, so the reporter
//! rarely needs a write of its own. A journal write that fails (the API server did not
//! answer, the object was deleted) fails the step's intent or outcome: the run ends and the
//! runner starts it again.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use failover_messages::crd::{FailoverStatus, journal_line};
use failover_messages::records::{JournalStep, StepStatus, truncate_to_millis};
use failover_messages::store::{Clock, OpRef, Outcome, Stale, Store, SystemClock};
use jiff::Timestamp;

use super::status_writer::StatusWriter;
use crate::boxed::boxed;
use crate::errors::error_chain_without_repeats;
use crate::workflow::{Journal, JournalError, check_outcome, intent_step, outcome_step};

/// The journal of one operation's run in this cluster: the `Failover` object a
/// [`StatusWriter`] writes, plus the DynamoDB store for the epoch check and the
/// publications.
pub struct FailoverJournal {
    store: Store,
    writer: Arc<StatusWriter>,
    namespace: String,
    cluster: String,
    clock: std::sync::Arc<dyn Clock>,
    /// The journal as last written (loaded by [`Journal::steps`]), plus the outcomes not
    /// written yet.
    steps: Mutex<Vec<JournalStep>>,
    /// Whether `steps` holds an outcome not written yet ([`Journal::outcome`] defers it to
    /// the next write).
    unwritten: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for FailoverJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailoverJournal")
            .field("name", &self.writer.name())
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl FailoverJournal {
    /// The journal kept in the `Failover` that `writer` writes, in `namespace` of this
    /// cluster (`cluster`).
    pub fn new(store: Store, writer: Arc<StatusWriter>, namespace: &str, cluster: &str) -> Self {
        Self {
            store,
            writer,
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
            clock: std::sync::Arc::new(SystemClock),
            steps: Mutex::new(Vec::new()),
            unwritten: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<JournalStep>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Timestamp {
        truncate_to_millis(self.clock.now())
    }

    fn unavailable(&self, what: &str, e: &dyn std::error::Error) -> JournalError {
        JournalError::Unavailable(format!(
            "{what} the journal of Failover {}/{} in cluster {}: {}",
            self.namespace,
            self.writer.name(),
            self.cluster,
            error_chain_without_repeats(e)
        ))
    }

    /// Writes `steps` as the object's whole `status.journal`.
    async fn write(&self, steps: &[JournalStep]) -> Result<(), JournalError> {
        let entries: Vec<String> = steps.iter().map(journal_line).collect();
        let count = entries.len();
        let written = boxed(|| self.writer.write_journal(entries))
            .await
            .map_err(|e| self.unavailable("writing", &e))?;
        // The whole list went out, deferred outcomes included.
        self.unwritten.store(false, Ordering::SeqCst);
        if !journal_kept(count, written.as_ref()) {
            return Err(JournalError::Unavailable(format!(
                "the API server of cluster {} dropped status.journal from Failover {}/{}: its \
                 failovers.failover.io CRD predates the journal (install this version's CRDs: \
                 `failover-agent crd | kubectl apply --server-side -f -`)",
                self.cluster,
                self.namespace,
                self.writer.name()
            )));
        }
        Ok(())
    }

    /// Replaces the entry of (`stage`, `task`) (or adds one) with what `change` makes of the
    /// current one and writes the journal (`write`), or leaves it for the next write;
    /// `change` refusing with a step done answers [`Outcome::AlreadyDone`] and writes
    /// nothing.
    async fn change(
        &self,
        stage: &str,
        task: &str,
        write: bool,
        change: impl FnOnce(Option<&JournalStep>) -> Result<JournalStep, Box<JournalStep>>,
    ) -> Result<Outcome<()>, JournalError> {
        let steps = {
            let mut steps = self.lock();
            let at = steps
                .iter()
                .position(|s| s.stage == stage && s.task == task);
            match change(at.map(|i| &steps[i])) {
                Err(done) => return Ok(Outcome::AlreadyDone(done)),
                Ok(step) => match at {
                    Some(i) => steps[i] = step,
                    None => steps.push(step),
                },
            }
            if !write {
                self.unwritten.store(true, Ordering::SeqCst);
                return Ok(Outcome::Done(()));
            }
            steps.clone()
        };
        self.write(&steps).await?;
        Ok(Outcome::Done(()))
    }

    /// Writes the journal when an outcome is still unwritten.
    async fn write_unwritten(&self) -> Result<(), JournalError> {
        if !self.unwritten.swap(false, Ordering::SeqCst) {
            return Ok(());
        }
        let steps = self.lock().clone();
        if let Err(e) = self.write(&steps).await {
            self.unwritten.store(true, Ordering::SeqCst);
            return Err(e);
        }
        Ok(())
    }

    /// `None` when the group state still has `op` in flight at its epoch.
    async fn read_current(&self, op: &OpRef) -> Result<Option<Stale>, JournalError> {
        let state = boxed(|| self.store.get_group_state(&op.group))
            .await
            .map_err(JournalError::from)?;
        Ok(match state {
            Some(s) if s.epoch == op.epoch && s.op_id.as_deref() == Some(op.id.as_str()) => None,
            s => Some(Stale {
                expected_epoch: op.epoch,
                current_epoch: s.as_ref().map(|s| s.epoch),
                current_op: s.and_then(|s| s.op_id),
            }),
        })
    }
}

/// Whether the object the API server returned after a journal write still carries the
/// `written` entries: a CRD schema without `status.journal` prunes them without an error.
fn journal_kept(written: usize, returned: Option<&FailoverStatus>) -> bool {
    returned.map_or(0, |s| s.journal.len()) >= written
}

impl Journal for FailoverJournal {
    async fn steps(&self, op: &OpRef, cluster: &str) -> Result<Vec<JournalStep>, JournalError> {
        let fo = self
            .writer
            .read()
            .await
            .map_err(|e| self.unavailable("reading", &e))?;
        let steps = fo
            .and_then(|f| f.status)
            .map(|s| s.journal_of(&op.id, cluster))
            .unwrap_or_default();
        *self.lock() = steps.clone();
        Ok(steps)
    }

    async fn intent(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        task: &str,
    ) -> Result<Outcome<()>, JournalError> {
        let now = self.now();
        self.change(stage, task, true, |existing| {
            intent_step(existing, op, cluster, stage, task, now)
        })
        .await
    }

    async fn intents(
        &self,
        op: &OpRef,
        cluster: &str,
        stage: &str,
        tasks: &[&str],
    ) -> Result<Vec<Outcome<()>>, JournalError> {
        let now = self.now();
        let (answers, steps) = {
            let mut steps = self.lock();
            let answers: Vec<Outcome<()>> = tasks
                .iter()
                .map(|task| {
                    let at = steps
                        .iter()
                        .position(|s| s.stage == stage && s.task == *task);
                    match intent_step(at.map(|i| &steps[i]), op, cluster, stage, task, now) {
                        Err(done) => Outcome::AlreadyDone(done),
                        Ok(step) => {
                            match at {
                                Some(i) => steps[i] = step,
                                None => steps.push(step),
                            }
                            Outcome::Done(())
                        }
                    }
                })
                .collect();
            (answers, steps.clone())
        };
        // One write for every intent of the batch (and any outcome still unwritten).
        if answers.iter().any(|a| matches!(a, Outcome::Done(()))) {
            self.write(&steps).await?;
        }
        Ok(answers)
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
        check_outcome(status)?;
        let now = self.now();
        // Written with the next step's intent (or the publication, or the end of the run):
        // one write per step instead of two.
        self.change(stage, task, false, |existing| {
            Ok(outcome_step(
                existing.cloned(),
                op,
                cluster,
                stage,
                task,
                status,
                message,
                now,
            ))
        })
        .await
    }

    async fn current(&self, op: &OpRef) -> Result<Option<Stale>, JournalError> {
        self.read_current(op).await
    }

    async fn publish(&self, op: &OpRef, cluster: &str, stage: &str) -> Result<(), JournalError> {
        // Never publish what this cluster's journal does not hold yet.
        self.write_unwritten().await?;
        let steps = self.stage_steps(op, cluster, stage);
        boxed(|| self.store.publish_stage(op, cluster, stage, &steps))
            .await
            .map(|_| ())
            .map_err(JournalError::from)
    }

    async fn flush(&self) -> Result<(), JournalError> {
        self.write_unwritten().await
    }

    fn stage_steps(&self, op: &OpRef, cluster: &str, stage: &str) -> Vec<JournalStep> {
        self.lock()
            .iter()
            .filter(|s| s.stage == stage && s.cluster == cluster && s.epoch == op.epoch)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_the_api_server_pruned_is_noticed() {
        let kept = FailoverStatus {
            journal: vec![String::new(); 3],
            ..FailoverStatus::default()
        };
        assert!(journal_kept(3, Some(&kept)));
        // An older CRD without `status.journal`: the write "succeeds", the entries are gone.
        assert!(!journal_kept(3, Some(&FailoverStatus::default())));
        assert!(!journal_kept(1, None));
        assert!(journal_kept(0, None));
    }
}
