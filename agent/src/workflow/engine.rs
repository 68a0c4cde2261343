//! The seed's Engine: runs one cluster's workflow for one operation, stage by stage, step
//! by step, and stops at the first failure with an error naming the task.
//!
//! # Flow, for each step in order
//!
//! 1. **Done before?** At the start the engine reads this cluster's journal of the
//!    operation once. A journaled step whose entry is `DONE` is skipped (resume after a
//!    restart); so is one whose intent write answers `AlreadyDone`.
//! 2. **Intent.** The engine writes the step's intent (`STARTED`), conditioned on the
//!    operation's epoch. A refused write ([`EngineError::StaleEpoch`]) stops the workflow
//!    at once: the step does not run and nothing is retried. A journal that cannot be
//!    written stops it too ([`EngineError::Journal`]): no step runs without its intent.
//!    A step marked [`BoundStep::checks_current`] also has the group state read, alongside
//!    the intent's write, and does not run unless it still has the operation in flight at
//!    its epoch.
//! 3. **Run.** The task runs under a tokio timeout: what is left of its stage's time limit,
//!    or of the step's own limit for steps that wait for the other cluster. Limits count
//!    from the first start the journal recorded (`firstStartedAt`), not from this run's: a
//!    step that fails and is run again, or an agent that restarts, does not get the whole
//!    limit again, so a failure that repeats ends in [`EngineError::DeadlineExceeded`]
//!    (see [`deadline`]). The task gets a [`TaskContext`] describing the step, including
//!    the journaled status of an earlier attempt ([`Attempt`]).
//! 4. **Outcome.** `DONE`, or `FAILED` with the error; then the next step, or the error:
//!    [`EngineError::TaskFailed`] / [`EngineError::DeadlineExceeded`] name the stage, the
//!    task, the object and the cluster.
//!
//! Steps that may run after the operation is closed (completion, notifications, status
//! updates; see [`Step::journaled`](super::Step::journaled)) skip steps 1, 2 and 4: they run
//! every time, and are idempotent.
//!
//! # Batches
//!
//! Consecutive Kubernetes steps of one kind (ten `Demote`, ten `WaitPrimary`; see
//! [`BoundStep::batch`]) run side by side as one batch: one epoch check, their intents in one
//! journal write, the tasks concurrently, then every outcome in step order (see `batch.rs`).
//! The guarantees below hold for each step of a batch as for a step run alone.
//!
//! # Carried publications
//!
//! Each stage is published to DynamoDB once ([`Journal::publish`]), after its publication
//! step ([`BoundStage::publication`]). A step marked [`BoundStep::carries`] writes the
//! operation item anyway (the replica counts, the close), so a publication can ride on that
//! write instead of costing one of its own:
//!
//! * a carrying step that is its own stage's publication step publishes the stage with its
//!   write, itself shown `DONE` (that write is its effect);
//! * a stage published after its last step (nobody waits for it: the other side's waits
//!   mark the steps they wait for) whose run is followed by a carrying step waits for that
//!   step, which publishes it with its write.
//!
//! The engine hands the stages to the step ([`TaskContext::carried`], [`Carry`]), after
//! writing the outcomes still unwritten so nothing is published that this cluster's journal
//! does not hold. When the step fails or its write did not take them, each is published
//! with a write of its own; so is a waiting stage when the run stops before the carrying
//! step (unless the run is no longer current: then nothing more is written), and a resumed
//! run that skips steps publishes what waits at once.
//!
//! # Guarantees
//!
//! * A journaled step never runs before its intent is written at the operation's epoch,
//!   except a step marked [`BoundStep::intent_alongside`] (the claim), whose intent is
//!   written while it acts: it is harmless to repeat, and a refused or failed intent still
//!   stops the run.
//! * A `DONE` step never runs again for the same operation on the same cluster.
//! * A step journaled `STARTED` (the agent stopped during it, its effect unknown) runs
//!   again, but its task is told so ([`Attempt::interrupted`]) and must look at the current
//!   state before changing anything. For a claim or a promotion
//!   ([`Step::is_promotion`](super::Step::is_promotion)) this is the protocol's "never redo a
//!   promote blindly": the engine does not decide on its own whether the earlier attempt
//!   took effect; the task, which can read the VolumeReplication and the claim, does. The
//!   engine logs such a resume as a warning.
//! * A lost conditional write (the journal's or a task's) stops the run at once with
//!   [`EngineError::StaleEpoch`] or [`EngineError::AbortRequested`]; the engine never
//!   retries it. The caller re-reads the operation to learn what happened (it may have been
//!   completed by the peer, aborted, or superseded).
//!
//! # Progress
//!
//! Every stage and step start, skip, finish and failure is sent as a [`Progress`] through a
//! [`seam::Sender`](crate::seam::Sender), with durations, so the agent can update the
//! `Failover` status and metrics; [`Engine::run`] returns a [`RunReport`] with the same
//! times.

mod batch;
mod bound;
mod carry;
mod deadline;
mod error;
mod outcome;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use failover_messages::failpoint;
use failover_messages::records::{JournalStep, StepStatus};
use failover_messages::store::{Outcome, Stale};
use tokio::time::Instant;
use tracing::Instrument;

pub use self::bound::{BoundStage, BoundStep, BoundWorkflow};
pub use self::error::EngineError;
use super::context::{Attempt, Carry, StepInfo, TaskContext};
use super::journal::{Journal, JournalError};
use super::progress::{Progress, ProgressEvent, RunReport, StageReport, StepReport};
use super::task_error::TaskError;
use crate::boxed::boxed;
use crate::errors::error_chain;
use crate::seam::Sender;

/// Runs workflows, journaling through `J`. See the module docs.
pub struct Engine<J> {
    journal: J,
    progress: Sender<Progress>,
    /// Carried publications (module docs): the stage running now if its publication is to
    /// wait for a later carrying step, and the stages waiting so.
    deferring: Mutex<Option<String>>,
    deferred: Mutex<Vec<String>>,
}

impl<J> std::fmt::Debug for Engine<J> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

/// Where the run stands, for building errors and events.
struct Cursor<'a> {
    ctx: &'a TaskContext,
    stage: &'a str,
    task: &'a str,
}

impl Cursor<'_> {
    fn stale(&self, stale: Stale) -> EngineError {
        EngineError::StaleEpoch {
            stage: self.stage.to_owned(),
            task: self.task.to_owned(),
            cluster: self.ctx.cluster().to_owned(),
            op_id: self.ctx.workflow().operation_id.clone(),
            stale,
        }
    }

    fn journal_error(&self, what: &'static str, source: JournalError) -> EngineError {
        EngineError::Journal {
            what,
            stage: self.stage.to_owned(),
            task: self.task.to_owned(),
            cluster: self.ctx.cluster().to_owned(),
            source,
        }
    }

    fn unexpected<T: std::fmt::Debug>(
        &self,
        what: &'static str,
        answer: &Outcome<T>,
    ) -> EngineError {
        EngineError::UnexpectedJournalAnswer {
            what,
            stage: self.stage.to_owned(),
            task: self.task.to_owned(),
            cluster: self.ctx.cluster().to_owned(),
            answer: format!("{answer:?}"),
        }
    }
}

/// This cluster's journal of an operation at its epoch, by (stage key, step key).
type Journaled = HashMap<(String, String), JournalStep>;

/// How a step's run ended.
enum Ran {
    Ok,
    Failed(TaskError),
    /// The limit (the whole of it, counted from the first start) ran out; the error of the
    /// earlier attempt, if it failed.
    TimedOut(Duration, Option<String>),
}

impl<J: Journal> Engine<J> {
    /// An engine journaling through `journal`, reporting progress nowhere.
    pub fn new(journal: J) -> Self {
        Self {
            journal,
            progress: Sender::noop(),
            deferring: Mutex::new(None),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// Reports progress to `progress`.
    pub fn with_progress(mut self, progress: Sender<Progress>) -> Self {
        self.progress = progress;
        self
    }

    /// The journal.
    pub fn journal(&self) -> &J {
        &self.journal
    }

    fn emit(&self, ctx: &TaskContext, event: ProgressEvent) {
        // Progress is best effort: a receiver that is gone must not stop a failover.
        let _ = self.progress.send(Progress {
            operation_id: ctx.workflow().operation_id.clone(),
            cluster: ctx.cluster().to_owned(),
            at: ctx.now(),
            event,
        });
    }

    /// Runs `workflow` for the operation and cluster of `ctx`. See the module docs.
    pub async fn run(
        &self,
        workflow: &BoundWorkflow,
        ctx: &TaskContext,
    ) -> Result<RunReport, EngineError> {
        let span = ctx.span().clone();
        boxed(|| self.run_inner(workflow, ctx).instrument(span)).await
    }

    async fn run_inner(
        &self,
        workflow: &BoundWorkflow,
        ctx: &TaskContext,
    ) -> Result<RunReport, EngineError> {
        let run_start = Instant::now();
        let journaled = self.read_journal(ctx).await?;
        let mut report = RunReport::default();
        lock(&self.deferred).clear();
        for (k, stage) in workflow.stages.iter().enumerate() {
            *lock(&self.deferring) = carry::deferred_stage(workflow, k);
            match boxed(|| self.run_stage(stage, ctx, &journaled)).await {
                Ok(done) => report.stages.push(done),
                Err(e) => {
                    // The failed step's outcome, if the journal still holds it unwritten; a
                    // run that is no longer current writes nothing more.
                    if !e.must_stop_working() {
                        if let Err(unwritten) = self.journal.flush().await {
                            tracing::warn!(error = %error_chain(&unwritten), "the last outcome was not journaled; the step runs again on resume");
                        }
                        let cursor = Cursor {
                            ctx,
                            stage: &stage.key,
                            task: "",
                        };
                        if let Err(unpublished) = self.publish_deferred(&cursor).await {
                            tracing::warn!(error = %error_chain(&unpublished), "a stage was not published; a resumed run publishes it");
                        }
                    }
                    return Err(e);
                }
            }
        }
        *lock(&self.deferring) = None;
        if let Some(stage) = workflow.stages.last() {
            let cursor = Cursor {
                ctx,
                stage: &stage.key,
                task: stage.steps.last().map_or("", |s| s.key.as_str()),
            };
            self.publish_deferred(&cursor).await?;
            self.journal
                .flush()
                .await
                .map_err(|e| cursor.journal_error("outcome", e))?;
        }
        report.elapsed = run_start.elapsed();
        Ok(report)
    }

    /// This cluster's journal of the operation at its epoch, by (stage, task).
    async fn read_journal(&self, ctx: &TaskContext) -> Result<Journaled, EngineError> {
        let op = ctx.op_ref();
        let cluster = ctx.cluster();
        Ok(self
            .journal
            .steps(&op, cluster)
            .await
            .map_err(|source| EngineError::ReadJournal {
                cluster: cluster.to_owned(),
                op_id: op.id.clone(),
                source,
            })?
            .into_iter()
            .filter(|s| s.epoch == op.epoch)
            .map(|s| ((s.stage.clone(), s.task.clone()), s))
            .collect())
    }

    /// Runs one stage's steps in order (module docs: flow).
    async fn run_stage(
        &self,
        stage: &BoundStage,
        ctx: &TaskContext,
        journaled: &Journaled,
    ) -> Result<StageReport, EngineError> {
        let stage_start = Instant::now();
        self.emit(
            ctx,
            ProgressEvent::StageStarted {
                stage: stage.key.clone(),
                number: stage.number,
                title: stage.title.clone(),
            },
        );
        tracing::info!(stage = %stage.key, number = stage.number, "stage started");
        // Time the stage's own work took (waits for the peer excluded), from the first start
        // of each of its steps, earlier runs included.
        let now = ctx.now();
        // After the claim the operation only goes forward: each run has the whole limit.
        let mut used = if ctx.workflow().claimed {
            Duration::ZERO
        } else {
            deadline::carried(
                stage,
                |task| journaled.get(&(stage.key.clone(), task.to_owned())),
                now,
            )
        };
        if !used.is_zero() {
            tracing::info!(stage = %stage.key, ?used, limit = ?stage.timeout, "stage resumed; its limit counts from its first start");
        }
        let mut steps = Vec::with_capacity(stage.steps.len());
        let publication = stage.publication();
        let mut i = 0;
        while i < stage.steps.len() {
            let end = stage.batch_end(i);
            if end - i > 1 {
                let batch = i..end;
                steps.extend(
                    boxed(|| self.run_batch(stage, batch, ctx, journaled, &mut used, &publication))
                        .await?,
                );
            } else {
                let publishes = publication.contains(&i);
                let step = &stage.steps[i];
                steps.push(
                    boxed(|| self.run_step(stage, step, ctx, journaled, &mut used, publishes))
                        .await?,
                );
            }
            i = end;
        }
        let elapsed = stage_start.elapsed();
        tracing::info!(stage = %stage.key, ?elapsed, "stage finished");
        self.emit(
            ctx,
            ProgressEvent::StageFinished {
                stage: stage.key.clone(),
                elapsed,
            },
        );
        Ok(StageReport {
            stage: stage.key.clone(),
            number: stage.number,
            elapsed,
            steps,
        })
    }

    /// Steps 1–4 of the module docs' flow for one step; `used` is the time the stage's own
    /// work took so far in this run (and grows by this step's, unless it has its own limit).
    async fn run_step(
        &self,
        stage: &BoundStage,
        step: &BoundStep,
        ctx: &TaskContext,
        journaled: &Journaled,
        used: &mut Duration,
        publishes: bool,
    ) -> Result<StepReport, EngineError> {
        let cursor = Cursor {
            ctx,
            stage: &stage.key,
            task: &step.key,
        };
        let earlier = journaled.get(&(stage.key.clone(), step.key.clone()));
        if step.journaled && earlier.is_some_and(|s| s.status == StepStatus::Done) {
            return self.skipped(&cursor, publishes).await;
        }
        let (limit, whole) = limits(stage, step, ctx, earlier, *used);
        boundary("intent::before", &cursor, step.journaled);
        let (ran, carry) = if step.journaled && step.intent_alongside {
            // The intent goes out while the step acts (see `BoundStep::intent_alongside`).
            // Its `run::before` boundary fires once the intent is written: a crash there finds
            // the earlier steps' outcomes written with it, as for any other step.
            let (intent, run) = tokio::join!(
                async {
                    let written = self.intent(&cursor).await;
                    boundary("run::before", &cursor, true);
                    written
                },
                self.execute(&cursor, step, earlier, limit, whole, None)
            );
            if !intent? {
                // Done before: acting again was harmless.
                return self.skipped(&cursor, publishes).await;
            }
            (run, None)
        } else {
            // The epoch check reads DynamoDB while the intent is written in the cluster; the
            // step runs only once both have answered.
            let intent = async {
                if step.journaled {
                    self.intent(&cursor).await
                } else {
                    Ok(true)
                }
            };
            let written = if step.checks_current {
                let (current, written) = tokio::join!(self.check_current(&cursor), intent);
                current?;
                written?
            } else {
                intent.await?
            };
            if !written {
                return self.skipped(&cursor, publishes).await;
            }
            boundary("run::before", &cursor, step.journaled);
            let carry = if step.carries {
                self.carry(&cursor, step, publishes).await?
            } else {
                None
            };
            (
                self.execute(&cursor, step, earlier, limit, whole, carry.clone())
                    .await,
                carry,
            )
        };
        let (ran, elapsed) = ran;
        if step.own_deadline.is_none() {
            *used = used.saturating_add(elapsed);
        }
        let succeeded = matches!(ran, Ran::Ok);
        boundary("done::before", &cursor, step.journaled);
        let report = self.settle(&cursor, step, ran, elapsed, false).await;
        // A failure is published too (the other side and `failoverctl watch` see it), but a
        // run that is no longer current writes nothing more.
        let stop = report.as_ref().is_err_and(EngineError::must_stop_working);
        let own_carried = self
            .settle_carry(&cursor, carry.as_deref(), succeeded, stop)
            .await?;
        if publishes && !stop && !own_carried {
            self.publish(&cursor).await?;
        }
        let report = report?;
        boundary("done::after", &cursor, step.journaled);
        Ok(report)
    }

    /// A step found done: reported skipped, and its stage published again when it is the
    /// publication step (the run that finished it may have stopped before publishing).
    async fn skipped(
        &self,
        cursor: &Cursor<'_>,
        publishes: bool,
    ) -> Result<StepReport, EngineError> {
        self.skip(cursor.ctx, cursor);
        self.publish_deferred(cursor).await?;
        if publishes {
            self.publish(cursor).await?;
        }
        Ok(StepReport::Skipped {
            task: cursor.task.to_owned(),
        })
    }

    /// Stops the run unless the group state still has the operation in flight at its epoch
    /// ([`Journal::current`]).
    async fn check_current(&self, cursor: &Cursor<'_>) -> Result<(), EngineError> {
        match self.journal.current(&cursor.ctx.op_ref()).await {
            Ok(None) => Ok(()),
            Ok(Some(stale)) => Err(cursor.stale(stale)),
            Err(e) => Err(cursor.journal_error("epoch check", e)),
        }
    }

    /// Step 3 of the module docs' flow: runs the step's task within `limit` (`whole`: the
    /// limit it is part of, for the error) and says how it ended and how long it took.
    async fn execute(
        &self,
        cursor: &Cursor<'_>,
        step: &BoundStep,
        earlier: Option<&JournalStep>,
        limit: Duration,
        whole: Duration,
        carry: Option<Arc<Carry>>,
    ) -> (Ran, Duration) {
        let (ctx, stage) = (cursor.ctx, cursor.stage);
        let attempt = match earlier {
            Some(s) if step.journaled => Attempt::Resumed {
                previous: s.status,
                attempts: s.attempts,
            },
            _ => Attempt::First,
        };
        if step.promotion && attempt.interrupted() {
            tracing::warn!(
                stage = %stage,
                task = %step.key,
                "an earlier attempt at this promotion step was interrupted; the task checks the current state before acting"
            );
        }
        self.emit(
            ctx,
            ProgressEvent::TaskStarted {
                stage: stage.to_owned(),
                task: step.key.clone(),
                object: step.object.clone(),
                previous: match attempt {
                    Attempt::Resumed { previous, .. } => Some(previous),
                    Attempt::First => None,
                },
            },
        );
        let step_ctx = ctx.for_step(StepInfo {
            stage: stage.to_owned(),
            task: step.key.clone(),
            object: step.object.clone(),
            deadline: limit,
            attempt,
        });
        let step_ctx = match carry {
            Some(carry) => step_ctx.carrying(carry),
            None => step_ctx,
        };
        let started = Instant::now();
        let last_failure = earlier
            .filter(|s| step.journaled && s.status == StepStatus::Failed)
            .and_then(|s| s.message.clone());
        let ran = if skipped_by_failpoint(&step.key) {
            Ran::Ok
        } else if limit.is_zero() {
            Ran::TimedOut(whole, last_failure)
        } else {
            let fut = step.task.execute(&step_ctx);
            match tokio::time::timeout(limit, fut.instrument(step_ctx.span().clone())).await {
                Ok(Ok(())) => Ran::Ok,
                Ok(Err(e)) => Ran::Failed(e),
                Err(_) => Ran::TimedOut(whole, last_failure),
            }
        };
        (ran, started.elapsed())
    }

    /// Writes a step's intent: `true` to run it, `false` when the journal shows it done
    /// already; a refused or failed write stops the run.
    async fn intent(&self, cursor: &Cursor<'_>) -> Result<bool, EngineError> {
        let op = cursor.ctx.op_ref();
        match self
            .journal
            .intent(&op, cursor.ctx.cluster(), cursor.stage, cursor.task)
            .await
        {
            Ok(Outcome::Done(())) => Ok(true),
            Ok(Outcome::AlreadyDone(_)) => Ok(false),
            Ok(Outcome::StaleEpoch(stale)) => Err(cursor.stale(stale)),
            Ok(other) => Err(cursor.unexpected("intent", &other)),
            Err(e) => Err(cursor.journal_error("intent", e)),
        }
    }
}

/// What is left of a step's limit in this run, and the whole limit (for the error): its own
/// (steps waiting for the other cluster), else what the stage's own work (`used`) left.
fn limits(
    stage: &BoundStage,
    step: &BoundStep,
    ctx: &TaskContext,
    earlier: Option<&JournalStep>,
    used: Duration,
) -> (Duration, Duration) {
    match step.own_deadline {
        Some(own) if ctx.workflow().claimed => (own, own),
        Some(own) => (
            deadline::own_left(own, earlier.filter(|_| step.journaled), ctx.now()),
            own,
        ),
        None => (stage.timeout.saturating_sub(used), stage.timeout),
    }
}

/// True when the failpoint `engine::skip::<kind>` (the step key's part before `:`, e.g.
/// `WaitPodsGone`) fires: the step reports done without acting. Only for showing that the
/// fault tests catch a broken agent.
fn skipped_by_failpoint(key: &str) -> bool {
    if !failpoint::enabled() {
        return false;
    }
    let kind = key.split(':').next().unwrap_or(key);
    let skipped = failpoint::hit(&format!("engine::skip::{kind}")).is_some();
    if skipped {
        tracing::warn!(task = %key, "failpoint: step skipped without acting");
    }
    skipped
}

/// The failpoints of the step boundary `at` (`engine::<at>` and
/// `engine::<at>::<stage>::<task>`; see `failover_messages::failpoint`), at journaled steps
/// (the others run again on every resume: they have no boundary to crash at).
fn boundary(at: &str, cursor: &Cursor<'_>, journaled: bool) {
    batch_boundary(at, std::slice::from_ref(cursor), |_| journaled);
}

/// The failpoints of the boundary `at` of steps that run together: `engine::<at>` once
/// for all of them (a batch is one step to a crash that counts boundaries: it makes
/// progress when each run gets one boundary further), then each journaled step's own
/// `engine::<at>::<stage>::<task>`.
fn batch_boundary(at: &str, cursors: &[Cursor<'_>], journaled: impl Fn(&Cursor<'_>) -> bool) {
    if !failpoint::enabled() {
        return;
    }
    let steps: Vec<String> = cursors
        .iter()
        .filter(|c| journaled(c))
        .map(|c| format!("{}::{}", c.stage, c.task))
        .collect();
    let Some(first) = steps.first() else { return };
    let named = match steps.len() {
        1 => first.clone(),
        n => format!("{first} and {} more of its batch", n - 1),
    };
    failpoint::boundary(&format!("engine::{at}"), &named);
    for step in &steps {
        failpoint::boundary(&format!("engine::{at}::{step}"), step);
    }
}

#[cfg(test)]
mod tests;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
