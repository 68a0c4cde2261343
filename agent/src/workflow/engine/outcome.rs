//! How a step's run ended (step 4 of the engine's flow, module docs): its outcome journaled
//! (`DONE`, or `FAILED` with the error) and reported on the progress stream, or nothing more
//! written when the run is no longer current.

use std::time::Duration;

use failover_messages::records::StepStatus;
use failover_messages::store::Outcome;

use super::{BoundStep, Cursor, Engine, EngineError, Ran, StepReport, TaskContext};
use crate::errors::error_chain;
use crate::workflow::journal::Journal;
use crate::workflow::progress::ProgressEvent;
use crate::workflow::task_error::TaskError;

impl<J: Journal> Engine<J> {
    /// Journals and reports how a step's run ended (step 4 of the module docs' flow);
    /// `written`: a success whose outcome the caller has journaled already.
    pub(super) async fn settle(
        &self,
        cursor: &Cursor<'_>,
        step: &BoundStep,
        ran: Ran,
        elapsed: Duration,
        written: bool,
    ) -> Result<StepReport, EngineError> {
        let ctx = cursor.ctx;
        let (stage, cluster) = (cursor.stage, ctx.cluster());
        match ran {
            Ran::Ok => {
                if !written {
                    self.finish(cursor, step.journaled, StepStatus::Done, None)
                        .await?;
                    if step.promotion && step.journaled {
                        // A claim's or a promotion's outcome is written at once (others go
                        // out with the next step's intent): a resumed run finds it done
                        // instead of checking the storage again.
                        self.journal
                            .flush()
                            .await
                            .map_err(|e| cursor.journal_error("outcome", e))?;
                    }
                }
                tracing::info!(task = %step.key, ?elapsed, "task finished");
                self.emit(
                    ctx,
                    ProgressEvent::TaskFinished {
                        stage: stage.to_owned(),
                        task: step.key.clone(),
                        elapsed,
                    },
                );
                Ok(StepReport::Ran {
                    task: step.key.clone(),
                    elapsed,
                })
            }
            Ran::Failed(TaskError::StaleEpoch(stale)) => {
                // Every further write would be refused too: write nothing more.
                self.failed(ctx, cursor, elapsed, "the operation is no longer current");
                Err(cursor.stale(stale))
            }
            Ran::Failed(TaskError::AbortRequested { at }) => {
                let message = format!("abort requested at {at}");
                self.finish_after_failure(cursor, step.journaled, &message)
                    .await?;
                self.failed(ctx, cursor, elapsed, &message);
                Err(EngineError::AbortRequested {
                    stage: stage.to_owned(),
                    task: step.key.clone(),
                    cluster: cluster.to_owned(),
                    op_id: ctx.workflow().operation_id.clone(),
                    at,
                })
            }
            Ran::Failed(source) => {
                let message = error_chain(&source);
                tracing::warn!(task = %step.key, error = %message, "task failed");
                self.finish_after_failure(cursor, step.journaled, &message)
                    .await?;
                self.failed(ctx, cursor, elapsed, &message);
                Err(EngineError::TaskFailed {
                    stage: stage.to_owned(),
                    task: step.key.clone(),
                    object: source
                        .object()
                        .map(str::to_owned)
                        .or_else(|| step.object.clone()),
                    cluster: cluster.to_owned(),
                    source,
                })
            }
            Ran::TimedOut(after, last_failure) => {
                let message = format!(
                    "deadline exceeded: its limit of {after:?} counted from its first start"
                );
                tracing::warn!(task = %step.key, ?after, "task ran out of time");
                self.finish_after_failure(cursor, step.journaled, &message)
                    .await?;
                self.failed(ctx, cursor, elapsed, &message);
                Err(EngineError::DeadlineExceeded {
                    stage: stage.to_owned(),
                    task: step.key.clone(),
                    object: step.object.clone(),
                    cluster: cluster.to_owned(),
                    after,
                    last_failure,
                })
            }
        }
    }

    pub(super) fn skip(&self, ctx: &TaskContext, cursor: &Cursor<'_>) {
        tracing::info!(task = %cursor.task, "task already done, skipped");
        self.emit(
            ctx,
            ProgressEvent::TaskSkipped {
                stage: cursor.stage.to_owned(),
                task: cursor.task.to_owned(),
            },
        );
    }

    pub(super) fn failed(
        &self,
        ctx: &TaskContext,
        cursor: &Cursor<'_>,
        elapsed: Duration,
        error: &str,
    ) {
        self.emit(
            ctx,
            ProgressEvent::TaskFailed {
                stage: cursor.stage.to_owned(),
                task: cursor.task.to_owned(),
                elapsed,
                error: error.to_owned(),
            },
        );
    }

    /// Writes a step's outcome; a refused write stops the run.
    pub(super) async fn finish(
        &self,
        cursor: &Cursor<'_>,
        journaled: bool,
        status: StepStatus,
        message: Option<&str>,
    ) -> Result<(), EngineError> {
        if !journaled {
            return Ok(());
        }
        let op = cursor.ctx.op_ref();
        match self
            .journal
            .outcome(
                &op,
                cursor.ctx.cluster(),
                cursor.stage,
                cursor.task,
                status,
                message,
            )
            .await
        {
            Ok(Outcome::Done(())) => Ok(()),
            Ok(Outcome::StaleEpoch(stale)) => Err(cursor.stale(stale)),
            Ok(other) => Err(cursor.unexpected("outcome", &other)),
            Err(e) => Err(cursor.journal_error("outcome", e)),
        }
    }

    /// Writes `FAILED` after a failure. A refused write (stale) wins over the failure, since
    /// it tells the caller to stop working on the operation; a journal that cannot be written
    /// does not hide the failure (the step stays `STARTED` and is checked on resume).
    pub(super) async fn finish_after_failure(
        &self,
        cursor: &Cursor<'_>,
        journaled: bool,
        message: &str,
    ) -> Result<(), EngineError> {
        match self
            .finish(cursor, journaled, StepStatus::Failed, Some(message))
            .await
        {
            Err(e @ EngineError::StaleEpoch { .. }) => Err(e),
            Err(e) => {
                tracing::warn!(task = %cursor.task, error = %error_chain(&e), "could not journal the failure");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }
}
