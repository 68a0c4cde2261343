//! Publishing stages (module docs of the engine: carried publications): right away, after
//! a later step that carries them, or with their own writes when that step did not.

use std::sync::Arc;

use super::{Cursor, Engine, EngineError, lock};
use crate::workflow::context::Carry;
use crate::workflow::engine::{BoundStep, BoundWorkflow};
use crate::workflow::journal::Journal;

impl<J: Journal> Engine<J> {
    /// Publishes the cursor's stage ([`Journal::publish`]); a failed publication stops the
    /// run like a failed journal write (the other cluster may be waiting for it).
    pub(super) async fn publish(&self, cursor: &Cursor<'_>) -> Result<(), EngineError> {
        if lock(&self.deferring).as_deref() == Some(cursor.stage) {
            let mut deferred = lock(&self.deferred);
            if !deferred.iter().any(|s| s == cursor.stage) {
                deferred.push(cursor.stage.to_owned());
            }
            return Ok(());
        }
        let op = cursor.ctx.op_ref();
        self.journal
            .publish(&op, cursor.ctx.cluster(), cursor.stage)
            .await
            .map_err(|e| cursor.journal_error("publication", e))
    }

    /// Publishes, each with its own write, the stages whose publication waited for a step
    /// that carries it (module docs: carried publications).
    pub(super) async fn publish_deferred(&self, cursor: &Cursor<'_>) -> Result<(), EngineError> {
        let stages = std::mem::take(&mut *lock(&self.deferred));
        let op = cursor.ctx.op_ref();
        for stage in &stages {
            self.journal
                .publish(&op, cursor.ctx.cluster(), stage)
                .await
                .map_err(|e| cursor.journal_error("publication", e))?;
        }
        Ok(())
    }

    /// What a carrying step publishes with its write (module docs: carried publications):
    /// the stages waiting for it and, when it `publishes`, its own stage; `None` if nothing.
    /// The outcomes still unwritten are written first: nothing is published that this
    /// cluster's journal does not hold.
    pub(super) async fn carry(
        &self,
        cursor: &Cursor<'_>,
        step: &BoundStep,
        publishes: bool,
    ) -> Result<Option<Arc<Carry>>, EngineError> {
        let own = publishes && lock(&self.deferring).as_deref() != Some(cursor.stage);
        let mut keys = std::mem::take(&mut *lock(&self.deferred));
        if !keys.is_empty()
            && let Err(e) = self.journal.flush().await
        {
            *lock(&self.deferred) = keys;
            return Err(cursor.journal_error("outcome", e));
        }
        if own {
            keys.push(cursor.stage.to_owned());
        }
        if keys.is_empty() {
            return Ok(None);
        }
        let (op, cluster) = (cursor.ctx.op_ref(), cursor.ctx.cluster());
        let stages = keys
            .iter()
            .map(|k| (k.clone(), self.journal.stage_steps(&op, cluster, k)))
            .collect();
        let own = own.then(|| (cursor.stage.to_owned(), step.key.clone()));
        Ok(Some(Arc::new(Carry::new(op, cluster, stages, own))))
    }

    /// After a carrying step: tells the journal what its write published, or publishes the
    /// other stages it was to carry with writes of their own (a step that failed, or whose
    /// write did not take them). `true` when its own stage was published with its write.
    pub(super) async fn settle_carry(
        &self,
        cursor: &Cursor<'_>,
        carry: Option<&Carry>,
        succeeded: bool,
        stop: bool,
    ) -> Result<bool, EngineError> {
        let Some(carry) = carry else {
            return Ok(false);
        };
        let (op, cluster) = (cursor.ctx.op_ref(), cursor.ctx.cluster());
        if succeeded && carry.written() {
            for stage in carry.stage_keys() {
                self.journal.carried(&op, cluster, stage);
            }
            return Ok(carry.stage_keys().any(|s| s == cursor.stage));
        }
        if stop {
            return Ok(false);
        }
        for stage in carry.stage_keys().filter(|s| *s != cursor.stage) {
            self.journal
                .publish(&op, cluster, stage)
                .await
                .map_err(|e| cursor.journal_error("publication", e))?;
        }
        Ok(false)
    }
}

/// The key of stage `k` of `workflow` if its publication is to wait for a later step that
/// carries it: a stage published once, after its last step (nobody waits for it), followed
/// by a carrying step, unless that last step carries it itself.
pub(super) fn deferred_stage(workflow: &BoundWorkflow, k: usize) -> Option<String> {
    let stage = &workflow.stages[k];
    let later_carries = workflow.stages[k + 1..]
        .iter()
        .flat_map(|s| &s.steps)
        .any(|s| s.carries);
    let defers = later_carries
        && stage.steps.last().is_some_and(|s| !s.carries)
        && stage.publication() == [stage.steps.len() - 1];
    defers.then(|| stage.key.clone())
}
