//! A batch: consecutive steps of a stage with the same batch kind
//! ([`BoundStep::batch`]), run side by side. Ten `Demote` steps touch ten volumes and none
//! needs another's result; one after the other they cost ten round trips to the API server
//! and ten journal writes, together one of each.
//!
//! The flow is the one of a single step (module docs of the engine), step by step, with
//! the writes shared:
//!
//! 1. Steps journaled `DONE` are skipped.
//! 2. One epoch check (when any step of the batch asks for it) alongside the intents of all
//!    the others in one journal write ([`Journal::intents`]); a step the journal answers
//!    `AlreadyDone` for is skipped, a stale epoch or a refused write stops the run before
//!    any step acts.
//! 3. Every step runs, each under its own timeout: what the stage's own work left when the
//!    batch started (the batch adds its wall time, not the sum of its steps').
//! 4. Outcomes in step order once all have ended, so one step's failure never leaves
//!    another's effect unrecorded; promotions' outcomes are written together. The run stops
//!    with the error of the first step that failed, or with a lost condition if any step
//!    met one (nothing more is written then).
//!
//! Each boundary's failpoints fire once for the batch (`engine::<at>`) and once per step
//! (`engine::<at>::<stage>::<task>`).

use std::ops::Range;
use std::time::Duration;

use failover_messages::records::StepStatus;
use failover_messages::store::Outcome;
use futures::future::join_all;
use tokio::time::Instant;

use super::{
    BoundStage, Cursor, Engine, EngineError, Journaled, Ran, StepReport, TaskContext,
    batch_boundary, limits,
};
use crate::workflow::journal::Journal;

impl<J: Journal> Engine<J> {
    /// Runs the steps `range` of `stage` as one batch (module docs); `publication` as
    /// [`BoundStage::publication`] gives it.
    pub(super) async fn run_batch(
        &self,
        stage: &BoundStage,
        range: Range<usize>,
        ctx: &TaskContext,
        journaled: &Journaled,
        used: &mut Duration,
        publication: &[usize],
    ) -> Result<Vec<StepReport>, EngineError> {
        let steps = &stage.steps[range.clone()];
        let cursor = |i: usize| Cursor {
            ctx,
            stage: &stage.key,
            task: &steps[i].key,
        };
        let earlier = |i: usize| journaled.get(&(stage.key.clone(), steps[i].key.clone()));
        let publishes = range.clone().any(|i| publication.contains(&i));
        let mut reports: Vec<Option<StepReport>> = steps.iter().map(|_| None).collect();
        let skipped = |i: usize| {
            self.skip(ctx, &cursor(i));
            Some(StepReport::Skipped {
                task: steps[i].key.clone(),
            })
        };

        // 1. Done before.
        let mut pending = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            if step.journaled && earlier(i).is_some_and(|s| s.status == StepStatus::Done) {
                reports[i] = skipped(i);
            } else {
                pending.push(i);
            }
        }
        let Some(&first) = pending.first() else {
            // The run that finished them may have stopped before publishing the stage.
            if publishes {
                self.publish(&cursor(steps.len() - 1)).await?;
            }
            return Ok(reports.into_iter().flatten().collect());
        };

        // 2. Epoch check and intents, side by side: nothing runs before both answered.
        let journaled_step = |c: &Cursor<'_>| steps.iter().any(|s| s.key == c.task && s.journaled);
        let cursors = |idx: &[usize]| idx.iter().map(|&i| cursor(i)).collect::<Vec<_>>();
        batch_boundary("intent::before", &cursors(&pending), journaled_step);
        let to_journal: Vec<usize> = pending
            .iter()
            .copied()
            .filter(|&i| steps[i].journaled)
            .collect();
        let keys: Vec<&str> = to_journal.iter().map(|&i| steps[i].key.as_str()).collect();
        let op = ctx.op_ref();
        let check = async {
            if steps.iter().any(|s| s.checks_current) {
                self.check_current(&cursor(first)).await
            } else {
                Ok(())
            }
        };
        let (current, answers) = tokio::join!(
            check,
            self.journal.intents(&op, ctx.cluster(), &stage.key, &keys)
        );
        current?;
        let answers = answers.map_err(|e| cursor(first).journal_error("intent", e))?;
        for (n, &i) in to_journal.iter().enumerate() {
            match answers.get(n) {
                Some(Outcome::Done(())) => {}
                Some(Outcome::AlreadyDone(_)) => {
                    reports[i] = skipped(i);
                    pending.retain(|&p| p != i);
                }
                Some(Outcome::StaleEpoch(stale)) => return Err(cursor(i).stale(stale.clone())),
                Some(other) => return Err(cursor(i).unexpected("intent", other)),
                None => {
                    return Err(cursor(i).journal_error(
                        "intent",
                        crate::workflow::journal::JournalError::Unavailable(format!(
                            "the journal answered {} of {} intents",
                            answers.len(),
                            keys.len()
                        )),
                    ));
                }
            }
        }

        // 3. Run side by side.
        batch_boundary("run::before", &cursors(&pending), journaled_step);
        let started = Instant::now();
        let runs = join_all(pending.iter().map(|&i| {
            let step = &steps[i];
            let (limit, whole) = limits(stage, step, ctx, earlier(i), *used);
            let at = cursor(i);
            async move {
                self.execute(&at, step, earlier(i), limit, whole, None)
                    .await
            }
        }))
        .await;
        if pending.iter().any(|&i| steps[i].own_deadline.is_none()) {
            *used = used.saturating_add(started.elapsed());
        }

        // 4. Outcomes, in step order; the promotions' first, written together, so that no
        //    promotion is reported finished before its outcome is journaled (as for one).
        let promoted: Vec<usize> = pending
            .iter()
            .zip(&runs)
            .filter(|&(&i, (ran, _))| {
                matches!(ran, Ran::Ok) && steps[i].promotion && steps[i].journaled
            })
            .map(|(&i, _)| i)
            .collect();
        batch_boundary("done::before", &cursors(&pending), journaled_step);
        for &i in &promoted {
            self.finish(&cursor(i), true, StepStatus::Done, None)
                .await?;
        }
        if let Some(&i) = promoted.last() {
            self.journal
                .flush()
                .await
                .map_err(|e| cursor(i).journal_error("outcome", e))?;
        }
        let mut error: Option<EngineError> = None;
        for (&i, (ran, elapsed)) in pending.iter().zip(runs) {
            if error.as_ref().is_some_and(EngineError::must_stop_working) {
                break;
            }
            let step = &steps[i];
            let at = cursor(i);
            match self
                .settle(&at, step, ran, elapsed, promoted.contains(&i))
                .await
            {
                Ok(report) => reports[i] = Some(report),
                Err(e) => {
                    if error.is_none() || e.must_stop_working() {
                        error = Some(e);
                    }
                }
            }
        }
        if error.is_none() {
            batch_boundary("done::after", &cursors(&pending), journaled_step);
        }
        let stop = error.as_ref().is_some_and(EngineError::must_stop_working);
        let last = cursor(pending.last().copied().unwrap_or(first));
        // A failure is published too, but a run that is no longer current writes nothing.
        if publishes && !stop {
            self.publish(&last).await?;
        }
        match error {
            Some(e) => Err(e),
            None => Ok(reports.into_iter().flatten().collect()),
        }
    }
}
