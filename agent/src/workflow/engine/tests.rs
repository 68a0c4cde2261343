//! The engine with fake tasks and the in-memory journal: order, journaling, resume,
//! failures naming the task, deadlines, stale epochs, progress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_messages::crd::{FailoverGroupSpec, VolumeReplicationRef, WorkloadKind, WorkloadRef};
use failover_messages::records::{JournalStage, JournalStep, Mode, StepStatus};
use failover_messages::store::ManualClock;

use crate::workflow::WorkflowContext;
use jiff::Timestamp;

use super::*;
use crate::seam;
use crate::workflow::context::tests::workflow_context;
use crate::workflow::journal::{JournalWrite, MemoryJournal};
use crate::workflow::task::{BoxedTask, WorkflowTask};
use crate::workflow::{Factory, ProgressEvent, Role, Step};

// ---------------------------------------------------------------------------------------------
// Fakes
// ---------------------------------------------------------------------------------------------

/// What a fake task does.
enum Behaviour {
    Fail(&'static str),
    FailOn(&'static str, &'static str),
    Sleep(Duration),
    Hang(Arc<AtomicBool>),
    Stale,
    Abort,
    /// Runs a side effect (e.g. on the journal), then succeeds.
    Effect(Box<dyn Fn() + Send + Sync>),
    /// Waits until every task sharing the barrier has reached it, then succeeds.
    Meet(Arc<tokio::sync::Barrier>),
    /// Publishes what the engine handed it with its (pretend) write, and keeps a copy.
    Carry(Arc<Mutex<Vec<JournalStage>>>),
}

/// What the fake tasks did, and what they are told to do.
#[derive(Default)]
struct Script {
    behaviours: Mutex<HashMap<String, Behaviour>>,
    ran: Mutex<Vec<String>>,
    seen: Mutex<Vec<(String, StepInfo)>>,
}

impl Script {
    fn new() -> Arc<Self> {
        Arc::default()
    }

    fn on(self: &Arc<Self>, key: &str, behaviour: Behaviour) -> Arc<Self> {
        self.behaviours
            .lock()
            .unwrap()
            .insert(key.to_owned(), behaviour);
        self.clone()
    }

    fn task(self: &Arc<Self>, key: &str) -> BoxedTask {
        Arc::new(Fake {
            key: key.to_owned(),
            script: self.clone(),
        })
    }

    fn ran(&self) -> Vec<String> {
        self.ran.lock().unwrap().clone()
    }

    /// What step `key` of stage `stage` was told (keys are unique within a stage only).
    fn seen_in(&self, stage: &str, key: &str) -> StepInfo {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(k, s)| k == key && s.stage == stage)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{stage}/{key} did not run"))
    }

    fn seen(&self, key: &str) -> StepInfo {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
            .unwrap_or_else(|| panic!("{key} did not run"))
    }
}

struct Fake {
    key: String,
    script: Arc<Script>,
}

/// Sets its flag when dropped: shows that a cancelled task's future was dropped.
struct DropFlag(Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

enum Action {
    Ok,
    Err(TaskError),
    Sleep(Duration),
    Hang(Arc<AtomicBool>),
    Meet(Arc<tokio::sync::Barrier>),
}

impl WorkflowTask for Fake {
    fn name(&self) -> &str {
        &self.key
    }

    fn description(&self) -> String {
        format!("fake {}", self.key)
    }

    async fn execute(&self, ctx: &TaskContext) -> Result<(), TaskError> {
        self.script.ran.lock().unwrap().push(self.key.clone());
        self.script
            .seen
            .lock()
            .unwrap()
            .push((self.key.clone(), ctx.step().unwrap().clone()));
        let action = match self.script.behaviours.lock().unwrap().get(&self.key) {
            None => Action::Ok,
            Some(Behaviour::Fail(m)) => Action::Err(TaskError::failed(*m)),
            Some(Behaviour::FailOn(m, object)) => Action::Err(
                TaskError::caused_by(*m, std::io::Error::other("connection reset")).on(*object),
            ),
            Some(Behaviour::Sleep(d)) => Action::Sleep(*d),
            Some(Behaviour::Hang(flag)) => Action::Hang(flag.clone()),
            Some(Behaviour::Stale) => Action::Err(TaskError::StaleEpoch(Stale {
                expected_epoch: 7,
                current_epoch: Some(8),
                current_op: Some("op-2".into()),
            })),
            Some(Behaviour::Abort) => Action::Err(TaskError::AbortRequested {
                at: Timestamp::from_second(1_780_000_100).unwrap(),
            }),
            Some(Behaviour::Effect(f)) => {
                f();
                Action::Ok
            }
            Some(Behaviour::Meet(barrier)) => Action::Meet(barrier.clone()),
            Some(Behaviour::Carry(seen)) => {
                let carried = ctx.carried();
                seen.lock()
                    .unwrap()
                    .extend(carried.stages().iter().cloned());
                carried.mark_written();
                Action::Ok
            }
        };
        match action {
            Action::Ok => Ok(()),
            Action::Err(e) => Err(e),
            Action::Sleep(d) => {
                tokio::time::sleep(d).await;
                Ok(())
            }
            Action::Hang(flag) => {
                let _guard = DropFlag(flag);
                std::future::pending::<()>().await;
                Ok(())
            }
            Action::Meet(barrier) => {
                barrier.wait().await;
                Ok(())
            }
        }
    }
}

const MINUTE: Duration = Duration::from_secs(60);

fn ctx() -> TaskContext {
    TaskContext::new(workflow_context(Mode::Consistency, false), "east").unwrap()
}

fn journal() -> Arc<MemoryJournal> {
    Arc::new(MemoryJournal::new(&ctx().op_ref()))
}

/// Two stages: `First` [a, b], `Second` [c], every step journaled, limits of a minute.
fn abc(script: &Arc<Script>) -> BoundWorkflow {
    BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("a", script.task("a")))
                .step(BoundStep::new("b", script.task("b")).on("Deployment/orders-api")),
            BoundStage::new("Second", 2, MINUTE).step(BoundStep::new("c", script.task("c"))),
        ],
    }
}

fn intent(stage: &str, task: &str, answer: &'static str) -> JournalWrite {
    JournalWrite::Intent {
        stage: stage.into(),
        task: task.into(),
        answer,
    }
}

fn outcome(stage: &str, task: &str, status: StepStatus, message: Option<&str>) -> JournalWrite {
    JournalWrite::Outcome {
        stage: stage.into(),
        task: task.into(),
        status,
        message: message.map(Into::into),
        answer: "Done",
    }
}

fn publish(stage: &str, tasks: &[&str]) -> JournalWrite {
    JournalWrite::Publish {
        stage: stage.into(),
        tasks: tasks.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn journaled(stage: &str, task: &str, status: StepStatus, attempts: u32) -> JournalStep {
    JournalStep {
        op_id: "op-1".into(),
        cluster: "east".into(),
        stage: stage.into(),
        task: task.into(),
        epoch: 7,
        status,
        attempts,
        // Now: `ctx()` reads the system clock, and the stage's limit counts from here.
        started_at: Timestamp::now(),
        first_started_at: None,
        finished_at: None,
        message: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Order, journal, progress
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn stages_and_steps_run_in_order_each_journaled_intent_then_outcome() {
    let script = Script::new();
    let journal = journal();
    let report = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap();
    assert_eq!(script.ran(), ["a", "b", "c"]);
    assert_eq!(report.ran(), ["a", "b", "c"]);
    assert!(report.skipped().is_empty());
    assert_eq!(
        journal.writes(),
        [
            intent("First", "a", "Done"),
            outcome("First", "a", StepStatus::Done, None),
            intent("First", "b", "Done"),
            outcome("First", "b", StepStatus::Done, None),
            publish("First", &["a", "b"]),
            intent("Second", "c", "Done"),
            outcome("Second", "c", StepStatus::Done, None),
            publish("Second", &["c"]),
        ]
    );
    let step = journal.get("op-1", "east", "Second", "c").unwrap();
    assert_eq!(
        (step.status, step.attempts, step.epoch),
        (StepStatus::Done, 1, 7)
    );
    // Tasks learn which step they run as.
    let b = script.seen("b");
    assert_eq!((b.stage.as_str(), b.task.as_str()), ("First", "b"));
    assert_eq!(b.object.as_deref(), Some("Deployment/orders-api"));
    assert_eq!(b.attempt, Attempt::First);
}

#[tokio::test]
async fn progress_reports_every_stage_and_task_with_durations() {
    let script = Script::new().on("b", Behaviour::Sleep(Duration::from_millis(20)));
    let (progress, mut events) = seam::channel();
    let report = Engine::new(journal())
        .with_progress(progress)
        .run(&abc(&script), &ctx())
        .await
        .unwrap();
    let mut seen = Vec::new();
    while let Ok(p) = events.try_recv() {
        assert_eq!(
            (p.operation_id.as_str(), p.cluster.as_str()),
            ("op-1", "east")
        );
        seen.push(p.event);
    }
    let names: Vec<String> = seen
        .iter()
        .map(|e| match e {
            ProgressEvent::StageStarted { stage, number, .. } => format!("stage {number} {stage}"),
            ProgressEvent::StageFinished { stage, .. } => format!("/stage {stage}"),
            ProgressEvent::TaskStarted { task, .. } => format!("task {task}"),
            ProgressEvent::TaskFinished { task, .. } => format!("/task {task}"),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        names,
        [
            "stage 1 First",
            "task a",
            "/task a",
            "task b",
            "/task b",
            "/stage First",
            "stage 2 Second",
            "task c",
            "/task c",
            "/stage Second",
        ]
    );
    let b_took = seen
        .iter()
        .find_map(|e| match e {
            ProgressEvent::TaskFinished { task, elapsed, .. } if task == "b" => Some(*elapsed),
            _ => None,
        })
        .unwrap();
    assert!(b_took >= Duration::from_millis(20), "{b_took:?}");
    assert!(report.stages[0].elapsed >= b_took);
    assert!(report.elapsed >= report.stages[0].elapsed);
}

// ---------------------------------------------------------------------------------------------
// Resume
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_resumed_run_skips_the_steps_the_journal_shows_done() {
    let script = Script::new();
    let journal = journal();
    journal.insert(journaled("First", "a", StepStatus::Done, 1));
    journal.insert(journaled("First", "b", StepStatus::Done, 2));
    let (progress, mut events) = seam::channel();
    let report = Engine::new(journal.clone())
        .with_progress(progress)
        .run(&abc(&script), &ctx())
        .await
        .unwrap();
    assert_eq!(script.ran(), ["c"]);
    assert_eq!(report.skipped(), ["a", "b"]);
    assert_eq!(
        journal.writes(),
        [
            // The stage whose publication step was done earlier is published again (the
            // earlier run may have stopped before publishing it).
            publish("First", &["a", "b"]),
            intent("Second", "c", "Done"),
            outcome("Second", "c", StepStatus::Done, None),
            publish("Second", &["c"]),
        ],
        "no intent is written for a step already done"
    );
    let mut skipped = Vec::new();
    while let Ok(p) = events.try_recv() {
        if let ProgressEvent::TaskSkipped { task, .. } = p.event {
            skipped.push(task);
        }
    }
    assert_eq!(skipped, ["a", "b"]);
}

#[tokio::test]
async fn a_promotion_interrupted_earlier_runs_again_and_is_told_to_check_first() {
    let script = Script::new();
    let journal = journal();
    journal.insert(journaled("First", "a", StepStatus::Done, 1));
    journal.insert(journaled("First", "promote", StepStatus::Started, 1));
    journal.insert(journaled("First", "retry", StepStatus::Failed, 3));
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("a", script.task("a")))
                .step(BoundStep {
                    promotion: true,
                    ..BoundStep::new("promote", script.task("promote"))
                })
                .step(BoundStep::new("retry", script.task("retry"))),
        ],
    };
    Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap();
    assert_eq!(script.ran(), ["promote", "retry"]);
    let promote = script.seen("promote").attempt;
    assert_eq!(
        promote,
        Attempt::Resumed {
            previous: StepStatus::Started,
            attempts: 1
        }
    );
    assert!(promote.interrupted());
    let retry = script.seen("retry").attempt;
    assert!(!retry.interrupted());
    let step = journal.get("op-1", "east", "First", "promote").unwrap();
    assert_eq!((step.status, step.attempts), (StepStatus::Done, 2));
}

#[tokio::test]
async fn an_intent_answered_already_done_is_skipped() {
    // Another run finished `b` after this run read the journal.
    let journal = journal();
    let j = journal.clone();
    let script = Script::new().on(
        "a",
        Behaviour::Effect(Box::new(move || {
            j.insert(JournalStep {
                finished_at: Some(Timestamp::from_second(1_780_000_001).unwrap()),
                ..journaled("First", "b", StepStatus::Done, 1)
            })
        })),
    );
    let report = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap();
    assert_eq!(script.ran(), ["a", "c"]);
    assert_eq!(report.skipped(), ["b"]);
    assert!(
        journal
            .writes()
            .contains(&intent("First", "b", "AlreadyDone"))
    );
}

#[tokio::test]
async fn steps_left_out_of_the_journal_run_every_time_without_writes() {
    let script = Script::new();
    let journal = journal();
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("Completion", 6, MINUTE)
                .step(BoundStep::new("a", script.task("a")))
                .step(BoundStep::new("notify", script.task("notify")).unjournaled()),
        ],
    };
    Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap();
    // Even once the operation is closed, they still run.
    journal.set_current(None);
    let report = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap();
    assert_eq!(script.ran(), ["a", "notify", "notify"]);
    assert_eq!(report.skipped(), ["a"]);
    assert!(journal.writes().iter().all(|w| !matches!(
        w,
        JournalWrite::Intent { task, .. } | JournalWrite::Outcome { task, .. } if task == "notify"
    )));
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_task_stops_the_workflow_with_an_error_naming_it() {
    let script = Script::new().on("b", Behaviour::Fail("replicas did not drop"));
    let journal = journal();
    let (progress, mut events) = seam::channel();
    let err = Engine::new(journal.clone())
        .with_progress(progress)
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert_eq!(script.ran(), ["a", "b"], "nothing runs after a failure");
    match &err {
        EngineError::TaskFailed {
            stage,
            task,
            object,
            cluster,
            source,
        } => {
            assert_eq!((stage.as_str(), task.as_str()), ("First", "b"));
            assert_eq!(object.as_deref(), Some("Deployment/orders-api"));
            assert_eq!(cluster, "east");
            assert_eq!(source.to_string(), "replicas did not drop");
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    for part in ["b", "First", "Deployment/orders-api", "east"] {
        assert!(msg.contains(part), "{msg} should name {part}");
    }
    assert_eq!((err.stage(), err.task()), (Some("First"), Some("b")));
    assert!(!err.must_stop_working());
    // The failure is journaled, then its stage published (b is its last journaled step).
    let writes = journal.writes();
    assert_eq!(
        writes[writes.len() - 2..],
        [
            outcome(
                "First",
                "b",
                StepStatus::Failed,
                Some("replicas did not drop")
            ),
            publish("First", &["a", "b"]),
        ]
    );
    let mut failed = None;
    while let Ok(p) = events.try_recv() {
        if let ProgressEvent::TaskFailed { task, error, .. } = p.event {
            failed = Some((task, error));
        }
    }
    assert_eq!(failed, Some(("b".into(), "replicas did not drop".into())));
}

#[tokio::test]
async fn the_object_a_task_names_wins_and_the_cause_is_journaled() {
    let script = Script::new().on(
        "b",
        Behaviour::FailOn("patch failed", "StatefulSet/orders-db"),
    );
    let journal = journal();
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::TaskFailed { object: Some(o), .. } if o == "StatefulSet/orders-db")
    );
    let step = journal.get("op-1", "east", "First", "b").unwrap();
    assert_eq!(
        step.message.as_deref(),
        Some("patch failed: connection reset")
    );
}

#[tokio::test]
async fn a_task_past_its_deadline_is_cancelled_and_named() {
    let dropped = Arc::new(AtomicBool::new(false));
    let script = Script::new().on("a", Behaviour::Hang(dropped.clone()));
    let journal = journal();
    let limit = Duration::from_millis(50);
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, limit)
                .step(BoundStep::new("a", script.task("a")).on("VolumeReplication/orders-db-data"))
                .step(BoundStep::new("b", script.task("b"))),
        ],
    };
    let started = std::time::Instant::now();
    let err = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    match &err {
        EngineError::DeadlineExceeded {
            stage,
            task,
            object,
            cluster,
            after,
            last_failure,
        } => {
            assert_eq!(
                (stage.as_str(), task.as_str(), cluster.as_str()),
                ("First", "a", "east")
            );
            assert_eq!(*last_failure, None, "the first attempt");
            assert_eq!(object.as_deref(), Some("VolumeReplication/orders-db-data"));
            assert_eq!(*after, limit);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("VolumeReplication/orders-db-data"));
    assert!(
        dropped.load(Ordering::SeqCst),
        "the task's future was dropped"
    );
    assert_eq!(script.ran(), ["a"]);
    assert_eq!(script.seen("a").deadline, limit);
    let step = journal.get("op-1", "east", "First", "a").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    assert!(step.message.unwrap().contains("deadline exceeded"));
}

#[tokio::test]
async fn a_stage_limit_bounds_its_steps_together() {
    let script = Script::new()
        .on("a", Behaviour::Sleep(Duration::from_millis(60)))
        .on("b", Behaviour::Sleep(Duration::from_millis(60)));
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, Duration::from_millis(100))
                .step(BoundStep::new("a", script.task("a")))
                .step(BoundStep::new("b", script.task("b"))),
        ],
    };
    let err = Engine::new(journal())
        .run(&workflow, &ctx())
        .await
        .unwrap_err();
    match err {
        EngineError::DeadlineExceeded { task, after, .. } => {
            assert_eq!(task, "b");
            assert_eq!(after, Duration::from_millis(100), "the stage's whole limit");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn waits_for_the_peer_have_their_own_limit_outside_the_stage() {
    // The wait takes twice the stage's limit; the stage's own work still gets all of it.
    let script = Script::new().on("wait", Behaviour::Sleep(Duration::from_millis(80)));
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, Duration::from_millis(40))
                .step(BoundStep::new("wait", script.task("wait")).within(Duration::from_secs(5)))
                .step(BoundStep::new("work", script.task("work"))),
        ],
    };
    Engine::new(journal()).run(&workflow, &ctx()).await.unwrap();
    assert_eq!(script.seen("wait").deadline, Duration::from_secs(5));
    assert_eq!(script.seen("work").deadline, Duration::from_millis(40));
}

// ---------------------------------------------------------------------------------------------
// Limits count from the first start
// ---------------------------------------------------------------------------------------------

/// Seconds after a reference time.
fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_780_000_000 + seconds).unwrap()
}

/// A step an earlier run journaled, first started at `first` and last at `last`.
fn earlier(task: &str, status: StepStatus, first: i64, last: i64, end: Option<i64>) -> JournalStep {
    JournalStep {
        started_at: t(last),
        first_started_at: Some(t(first)),
        finished_at: end.map(t),
        ..journaled("First", task, status, 2)
    }
}

/// `ctx()` reading `clock`, and a journal writing with it.
fn clocked(clock: &Arc<ManualClock>) -> (TaskContext, Arc<MemoryJournal>) {
    let ctx = ctx().with_clock(clock.clone());
    let journal = Arc::new(MemoryJournal::new(&ctx.op_ref()).with_clock(clock.clone()));
    (ctx, journal)
}

#[tokio::test]
async fn a_resumed_stage_gets_only_what_is_left_of_its_limit() {
    // `a` took 20 s and is done; `b` first started at 25 s, failed, and runs again at 50 s:
    // 20 + 25 of the minute are used, 15 s are left.
    let clock = Arc::new(ManualClock::new(t(50)));
    let (ctx, journal) = clocked(&clock);
    journal.insert(earlier("a", StepStatus::Done, 0, 0, Some(20)));
    journal.insert(earlier("b", StepStatus::Failed, 25, 40, Some(41)));
    let script = Script::new();
    Engine::new(journal.clone())
        .run(&abc(&script), &ctx)
        .await
        .unwrap();
    assert_eq!(script.ran(), ["b", "c"]);
    assert_eq!(script.seen("b").deadline, Duration::from_secs(15));
    assert_eq!(script.seen("c").deadline, MINUTE, "the next stage is new");
    let b = journal.get("op-1", "east", "First", "b").unwrap();
    assert_eq!(
        b.first_started_at,
        Some(t(25)),
        "a new intent keeps the first start"
    );
    assert_eq!(b.started_at, t(50));
}

#[tokio::test]
async fn a_step_resumed_past_its_stage_limit_fails_at_once_naming_it() {
    let clock = Arc::new(ManualClock::new(t(61)));
    let (ctx, journal) = clocked(&clock);
    journal.insert(JournalStep {
        message: Some("still Secondary".into()),
        ..earlier("a", StepStatus::Failed, 0, 45, Some(46))
    });
    let script = Script::new();
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx)
        .await
        .unwrap_err();
    assert!(script.ran().is_empty(), "{:?}", script.ran());
    match &err {
        EngineError::DeadlineExceeded {
            stage, task, after, ..
        } => {
            assert_eq!((stage.as_str(), task.as_str()), ("First", "a"));
            assert_eq!(*after, MINUTE);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("counted from its first start"),
        "{err}"
    );
    assert!(
        err.to_string()
            .ends_with("its last attempt failed: still Secondary"),
        "the error says what kept the step from finishing: {err}"
    );
    let a = journal.get("op-1", "east", "First", "a").unwrap();
    assert_eq!(a.status, StepStatus::Failed);
    assert!(a.message.unwrap().contains("deadline exceeded"));
}

#[tokio::test]
async fn after_the_claim_a_step_past_its_limit_runs_again_with_the_whole_limit() {
    // Only forward once the promotion is claimed: the same resumed run as above is not a
    // failure; the step runs again with the stage's whole limit.
    let clock = Arc::new(ManualClock::new(t(61)));
    let claimed = WorkflowContext {
        claimed: true,
        ..workflow_context(Mode::Consistency, false)
    };
    let ctx = TaskContext::new(claimed, "east")
        .unwrap()
        .with_clock(clock.clone());
    let journal = Arc::new(MemoryJournal::new(&ctx.op_ref()).with_clock(clock.clone()));
    journal.insert(earlier("a", StepStatus::Failed, 0, 45, Some(46)));
    let script = Script::new();
    Engine::new(journal.clone())
        .run(&abc(&script), &ctx)
        .await
        .unwrap();
    assert_eq!(script.ran(), ["a", "b", "c"]);
    assert_eq!(script.seen("a").deadline, MINUTE);
}

#[tokio::test]
async fn a_failure_that_repeats_on_every_resume_ends_at_the_stage_limit() {
    // The wedge this guards against: a step failing on every run, each run started again
    // 15 s later, used to get the whole limit every time and retry for ever.
    let clock = Arc::new(ManualClock::new(t(0)));
    let (ctx, journal) = clocked(&clock);
    let script = Script::new().on("b", Behaviour::Fail("data check failed"));
    let engine = Engine::new(journal.clone());
    let mut runs = 0;
    let err = loop {
        runs += 1;
        assert!(runs < 10, "still retrying after {runs} runs");
        match engine.run(&abc(&script), &ctx).await.unwrap_err() {
            EngineError::TaskFailed { task, .. } => assert_eq!(task, "b"),
            other => break other,
        }
        clock.advance(Duration::from_secs(15));
    };
    assert!(
        matches!(&err, EngineError::DeadlineExceeded { task, after, .. } if task == "b" && *after == MINUTE),
        "{err:?}"
    );
    assert_eq!(
        runs, 5,
        "runs at 0, 15, 30 and 45 s fail; the one at 60 s is out of time"
    );
    assert_eq!(
        journal.get("op-1", "east", "First", "b").unwrap().attempts,
        5
    );
}

#[tokio::test]
async fn a_wait_resumed_gets_only_what_is_left_of_its_own_limit() {
    let clock = Arc::new(ManualClock::new(t(200)));
    let (ctx, journal) = clocked(&clock);
    journal.insert(earlier("wait", StepStatus::Started, 0, 100, None));
    let script = Script::new();
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("wait", script.task("wait")).within(Duration::from_secs(300)))
                .step(BoundStep::new("work", script.task("work"))),
        ],
    };
    Engine::new(journal).run(&workflow, &ctx).await.unwrap();
    assert_eq!(script.seen("wait").deadline, Duration::from_secs(100));
    assert_eq!(
        script.seen("work").deadline,
        MINUTE,
        "the wait does not count against the stage"
    );
}

// ---------------------------------------------------------------------------------------------
// Stale epochs and aborts
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_refused_intent_stops_at_once_without_running_or_retrying() {
    let script = Script::new();
    let journal = journal();
    journal.set_current(Some((8, "op-2")));
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(script.ran().is_empty());
    assert_eq!(journal.writes(), [intent("First", "a", "StaleEpoch")]);
    match &err {
        EngineError::StaleEpoch {
            stage,
            task,
            cluster,
            op_id,
            stale,
        } => {
            assert_eq!(
                (
                    stage.as_str(),
                    task.as_str(),
                    cluster.as_str(),
                    op_id.as_str()
                ),
                ("First", "a", "east", "op-1")
            );
            assert_eq!((stale.expected_epoch, stale.current_epoch), (7, Some(8)));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.must_stop_working());
    assert!(err.to_string().contains("op-2"), "{err}");
}

#[tokio::test]
async fn a_kubernetes_step_reads_whether_the_operation_is_current_before_it_acts() {
    let script = Script::new();
    let journal = journal();
    journal.set_current(Some((8, "op-2")));
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("a", script.task("a")).checking_current()),
        ],
    };
    let err = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleEpoch { task, stale, .. } if task == "a" && stale.current_epoch == Some(8))
    );
    assert!(script.ran().is_empty());
    // The read goes out alongside the intent, and the step waits for both. (This journal
    // refuses the stale intent too; the cluster's journal would keep it `STARTED`, for an
    // operation no run resumes.)
    assert!(
        journal.writes().iter().all(|w| matches!(
            w,
            JournalWrite::Intent {
                answer: "StaleEpoch",
                ..
            }
        )),
        "nothing but the intent: {:?}",
        journal.writes()
    );
}

#[test]
fn the_first_of_each_run_of_kubernetes_steps_of_one_kind_reads_the_group_state() {
    let mut spec = small_group();
    spec.workloads.push(WorkloadRef {
        kind: WorkloadKind::Deployment,
        name: "api".into(),
        replicas: None,
    });
    spec.volume_replications.push(VolumeReplicationRef {
        name: "api-data".into(),
        workload: Some("api".into()),
    });
    let checked = |role: Role| -> Vec<String> {
        let workflow = Factory::build(Mode::Consistency, role, &spec, false).unwrap();
        let script = Script::new();
        let builder = move |step: &Step| script.task(&step.key());
        workflow
            .bind(&builder)
            .stages
            .iter()
            .flat_map(|st| &st.steps)
            .filter(|s| s.checks_current)
            .map(|s| s.key.split(':').next().unwrap_or_default().to_owned())
            .collect()
    };
    // Two volumes, two workloads: one read per kind, not per object; records, waits for the
    // other side and notifications read or write under their own conditions, and waits on
    // the cluster change nothing.
    assert_eq!(checked(Role::Source), ["ScaleDown", "Demote"]);
    // The promotion reads the group state itself (it needs the claim).
    assert_eq!(checked(Role::Target), ["ScaleUp"]);
}

#[tokio::test]
async fn an_epoch_that_moves_mid_run_stops_the_run_at_the_next_journal_write() {
    let journal = journal();
    let j = journal.clone();
    let script = Script::new().on(
        "a",
        Behaviour::Effect(Box::new(move || j.set_current(Some((8, "op-2"))))),
    );
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(&err, EngineError::StaleEpoch { task, .. } if task == "a"));
    assert_eq!(script.ran(), ["a"]);
    let writes = journal.writes();
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(matches!(
        &writes[1],
        JournalWrite::Outcome {
            answer: "StaleEpoch",
            ..
        }
    ));
}

#[tokio::test]
async fn a_task_reporting_a_stale_epoch_stops_without_journaling_a_failure() {
    let script = Script::new().on("b", Behaviour::Stale);
    let journal = journal();
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleEpoch { task, stale, .. } if task == "b" && stale.current_epoch == Some(8))
    );
    assert_eq!(
        journal.writes().last().unwrap(),
        &intent("First", "b", "Done"),
        "no outcome is written after a stale epoch"
    );
    assert_eq!(script.ran(), ["a", "b"]);
}

#[tokio::test]
async fn an_abort_request_stops_the_workflow_and_is_journaled() {
    let script = Script::new().on("b", Behaviour::Abort);
    let journal = journal();
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(&err, EngineError::AbortRequested { task, .. } if task == "b"));
    assert!(err.must_stop_working());
    let step = journal.get("op-1", "east", "First", "b").unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    assert!(step.message.unwrap().starts_with("abort requested"));
    assert_eq!(script.ran(), ["a", "b"]);
}

// ---------------------------------------------------------------------------------------------
// An unavailable journal
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn an_unreadable_journal_stops_the_run_before_any_step() {
    let script = Script::new();
    let journal = journal();
    journal.set_unavailable(true);
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(err, EngineError::ReadJournal { .. }));
    assert!(err.to_string().contains("east") && err.to_string().contains("op-1"));
    assert!(script.ran().is_empty());
}

#[tokio::test]
async fn no_step_runs_without_its_intent() {
    let journal = journal();
    let j = journal.clone();
    let script = Script::new().on(
        "a",
        Behaviour::Effect(Box::new(move || j.set_unavailable(true))),
    );
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("a", script.task("a")).unjournaled())
                .step(BoundStep::new("b", script.task("b"))),
        ],
    };
    let err = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap_err();
    assert!(matches!(&err, EngineError::Journal { what: "intent", task, .. } if task == "b"));
    assert_eq!(script.ran(), ["a"]);
}

#[tokio::test]
async fn an_unwritable_outcome_stops_the_run() {
    let journal = journal();
    let j = journal.clone();
    let script = Script::new().on(
        "a",
        Behaviour::Effect(Box::new(move || j.set_unavailable(true))),
    );
    let err = Engine::new(journal.clone())
        .run(&abc(&script), &ctx())
        .await
        .unwrap_err();
    assert!(matches!(&err, EngineError::Journal { what: "outcome", task, .. } if task == "a"));
    assert_eq!(script.ran(), ["a"]);
    // The step stays STARTED: a resume will tell its task it was interrupted.
    journal.set_unavailable(false);
    assert_eq!(
        journal.get("op-1", "east", "First", "a").unwrap().status,
        StepStatus::Started
    );
}

// ---------------------------------------------------------------------------------------------
// Factory plans through the engine
// ---------------------------------------------------------------------------------------------

fn small_group() -> FailoverGroupSpec {
    FailoverGroupSpec {
        workloads: vec![WorkloadRef {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
            replicas: None,
        }],
        volume_replications: vec![VolumeReplicationRef {
            name: "db-data".into(),
            workload: Some("db".into()),
        }],
        ..FailoverGroupSpec::default()
    }
}

#[tokio::test]
async fn every_factory_plan_runs_in_plan_order_journaling_each_journaled_step() {
    for mode in [Mode::Consistency, Mode::Uptime] {
        for role in Role::ALL {
            let workflow = Factory::build(mode, role, &small_group(), false).unwrap();
            let script = Script::new();
            let s = script.clone();
            let builder = move |step: &Step| s.task(&step.key());
            let bound = workflow.bind(&builder);
            let cluster = if role == Role::Source { "east" } else { "west" };
            let ctx = TaskContext::new(workflow_context(mode, false), cluster).unwrap();
            let journal = Arc::new(MemoryJournal::new(&ctx.op_ref()));
            let report = Engine::new(journal.clone())
                .run(&bound, &ctx)
                .await
                .unwrap();

            let planned: Vec<String> = workflow.steps().map(|(_, s)| s.key()).collect();
            assert_eq!(script.ran(), planned, "{mode} {role}");
            assert_eq!(report.ran(), planned);
            // Every journaled step: its intent, then its outcome, nothing in between; each
            // stage published once, after its publication step (a trailing notification
            // included).
            // A stage published after its last step waits for a later step that carries
            // publications; the fake tasks take none, so it is published after that step.
            let mut expected: Vec<JournalWrite> = Vec::new();
            let mut waiting: Vec<JournalWrite> = Vec::new();
            for (k, stage) in bound.stages.iter().enumerate() {
                let defers = bound.stages[k + 1..]
                    .iter()
                    .flat_map(|s| &s.steps)
                    .any(|s| s.carries)
                    && !stage.steps.last().unwrap().carries
                    && stage.publication() == [stage.steps.len() - 1];
                let mut tasks: Vec<&str> = Vec::new();
                for (i, s) in stage.steps.iter().enumerate() {
                    if s.journaled {
                        tasks.push(&s.key);
                        expected.push(intent(&stage.key, &s.key, "Done"));
                        expected.push(outcome(&stage.key, &s.key, StepStatus::Done, None));
                    }
                    if s.carries {
                        expected.append(&mut waiting);
                    }
                    if stage.publication().contains(&i) {
                        if defers {
                            waiting.push(publish(&stage.key, &tasks));
                        } else {
                            expected.push(publish(&stage.key, &tasks));
                        }
                    }
                }
            }
            assert!(waiting.is_empty(), "{mode} {role}: {waiting:?}");
            // The preflight publishes its stage before the wait for the other side's, except
            // a CONSISTENCY source's, which nobody waits for: its replica counts do.
            let init = &bound.stages[0];
            let first = if (mode, role) == (Mode::Consistency, Role::Source) {
                "RecordReplicas"
            } else {
                "Preflight"
            };
            assert_eq!(
                init.steps[init.publication()[0]].key,
                first,
                "{mode} {role}"
            );
            assert_eq!(journal.writes(), expected, "{mode} {role}");
            // Waits for the peer get their own limit, the rest what is left of their stage's.
            for (stage, step) in workflow.steps() {
                let deadline = script.seen_in(stage.key(), &step.key()).deadline;
                if step.own_deadline().is_some() {
                    assert_eq!(deadline, stage.deadline_of(step));
                } else {
                    assert!(
                        deadline <= stage.timeout && deadline > stage.timeout / 2,
                        "{mode} {role} {}: {deadline:?} of {:?}",
                        step.key(),
                        stage.timeout
                    );
                }
            }
            // Promotion steps are flagged for the resume warning.
            for (stage, step) in bound
                .stages
                .iter()
                .flat_map(|s| s.steps.iter().map(move |t| (s, t)))
            {
                let planned = workflow.find(
                    workflow
                        .stages
                        .iter()
                        .find(|s| s.key() == stage.key)
                        .unwrap()
                        .id,
                    &step.key,
                );
                assert_eq!(step.promotion, planned.unwrap().is_promotion());
            }
        }
    }
}

#[tokio::test]
async fn a_restarted_source_resumes_after_its_last_done_step() {
    let workflow = Factory::build(Mode::Consistency, Role::Source, &small_group(), false).unwrap();
    let ctx = ctx();
    let journal = Arc::new(MemoryJournal::new(&ctx.op_ref()));
    // First run: the demotion wait fails.
    let script = Script::new().on(
        "WaitSecondary:VolumeReplication/db-data",
        Behaviour::Fail("still Primary"),
    );
    let s = script.clone();
    let bound = workflow.bind(&move |step: &Step| s.task(&step.key()));
    let err = Engine::new(journal.clone())
        .run(&bound, &ctx)
        .await
        .unwrap_err();
    assert_eq!(err.task(), Some("WaitSecondary:VolumeReplication/db-data"));
    assert_eq!(err.stage(), Some("VolumeTransitionSource"));
    // Second run (the agent restarted): only the failed step and what follows run (and the
    // unjournaled wake-up of the Initialization stage, which runs on every resume).
    let script = Script::new();
    let s = script.clone();
    let bound = workflow.bind(&move |step: &Step| s.task(&step.key()));
    Engine::new(journal.clone())
        .run(&bound, &ctx)
        .await
        .unwrap();
    assert_eq!(
        script.ran(),
        [
            "Notify:target:Wake",
            "WaitSecondary:VolumeReplication/db-data",
            "MarkAllReady",
            "Notify:target:ReadyForPromotion",
            "WaitOperationClosed",
            "UpdateGroupStatus",
        ]
    );
    assert_eq!(
        script
            .seen("WaitSecondary:VolumeReplication/db-data")
            .attempt,
        Attempt::Resumed {
            previous: StepStatus::Failed,
            attempts: 1
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Intent alongside (the claim)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_step_with_its_intent_alongside_is_journaled_like_any_other() {
    let script = Script::new();
    let journal = journal();
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("claim", script.task("claim")).intent_alongside()),
        ],
    };
    let report = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap();
    assert_eq!(report.ran(), ["claim"]);
    assert_eq!(
        journal.writes(),
        [
            intent("First", "claim", "Done"),
            outcome("First", "claim", StepStatus::Done, None),
            publish("First", &["claim"]),
        ]
    );
}

#[tokio::test]
async fn a_refused_intent_alongside_stops_the_run_though_the_step_acted() {
    // The step's own conditional write meets the same refusal; the run stops all the same.
    let script = Script::new();
    let journal = journal();
    journal.set_current(Some((8, "op-2")));
    let workflow = BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("claim", script.task("claim")).intent_alongside())
                .step(BoundStep::new("after", script.task("after"))),
        ],
    };
    let err = Engine::new(journal.clone())
        .run(&workflow, &ctx())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleEpoch { task, .. } if task == "claim"),
        "{err:?}"
    );
    assert_eq!(script.ran(), ["claim"]);
    assert_eq!(journal.writes(), [intent("First", "claim", "StaleEpoch")]);
}

#[test]
fn only_the_claim_and_the_waits_for_the_other_cluster_write_their_intent_alongside() {
    const ALONGSIDE: [&str; 3] = ["ClaimPromotion", "WaitPeer", "WaitAllReady"];
    let mut seen = std::collections::BTreeSet::new();
    for mode in [Mode::Consistency, Mode::Uptime] {
        for role in Role::ALL {
            for force in [false, true] {
                let Ok(workflow) = Factory::build(mode, role, &small_group(), force) else {
                    continue;
                };
                for (_, step) in workflow.steps() {
                    let key = step.key();
                    let kind = key.split(':').next().unwrap().to_owned();
                    assert_eq!(
                        step.intent_alongside(),
                        ALONGSIDE.contains(&kind.as_str()),
                        "{mode} {role} {key}"
                    );
                    if step.intent_alongside() {
                        seen.insert(kind);
                    }
                }
            }
        }
    }
    assert!(seen.len() >= ALONGSIDE.len(), "{seen:?}");
}

mod batch;

// ---------------------------------------------------------------------------------------------
// Carried publications
// ---------------------------------------------------------------------------------------------

fn carried(stage: &str, tasks: &[&str]) -> JournalWrite {
    JournalWrite::Carried {
        stage: stage.into(),
        tasks: tasks.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// `First` [a, r (carries, last: publishes First)], `Second` [b], `Third` [d], `Last` [c
/// (carries, unjournaled)]: the publications of `Second` and `Third` wait for `c`.
fn carriers(script: &Arc<Script>) -> BoundWorkflow {
    BoundWorkflow {
        stages: vec![
            BoundStage::new("First", 1, MINUTE)
                .step(BoundStep::new("a", script.task("a")))
                .step(BoundStep::new("r", script.task("r")).carrying()),
            BoundStage::new("Second", 2, MINUTE).step(BoundStep::new("b", script.task("b"))),
            BoundStage::new("Third", 3, MINUTE).step(BoundStep::new("d", script.task("d"))),
            BoundStage::new("Last", 4, MINUTE).step(
                BoundStep::new("c", script.task("c"))
                    .carrying()
                    .unjournaled(),
            ),
        ],
    }
}

/// What a run of [`carriers`] writes, each stage published by `publication` (carried, or
/// with a write of its own), at the points the engine publishes it.
fn carriers_writes(publication: fn(&str, &[&str]) -> JournalWrite) -> Vec<JournalWrite> {
    vec![
        intent("First", "a", "Done"),
        outcome("First", "a", StepStatus::Done, None),
        intent("First", "r", "Done"),
        outcome("First", "r", StepStatus::Done, None),
        publication("First", &["a", "r"]),
        intent("Second", "b", "Done"),
        outcome("Second", "b", StepStatus::Done, None),
        intent("Third", "d", "Done"),
        outcome("Third", "d", StepStatus::Done, None),
        publication("Second", &["b"]),
        publication("Third", &["d"]),
    ]
}

#[tokio::test]
async fn a_carrying_step_publishes_its_own_stage_and_the_one_before_with_its_write() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let script = Script::new()
        .on("r", Behaviour::Carry(seen.clone()))
        .on("c", Behaviour::Carry(seen.clone()));
    let journal = journal();
    Engine::new(journal.clone())
        .run(&carriers(&script), &ctx())
        .await
        .unwrap();
    // No publication of its own: `r` carries `First`, `c` carries `Second` and `Third`.
    assert_eq!(journal.writes(), carriers_writes(carried));
    // What the writes carried: `r` itself as done by its write, `b` as journaled.
    let seen = seen.lock().unwrap();
    let shown: Vec<(String, Vec<(String, StepStatus)>)> = seen
        .iter()
        .map(|st| {
            (
                st.stage.clone(),
                st.steps
                    .iter()
                    .map(|s| (s.task.clone(), s.status))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            (
                "First".to_owned(),
                vec![
                    ("a".to_owned(), StepStatus::Done),
                    ("r".to_owned(), StepStatus::Done)
                ]
            ),
            (
                "Second".to_owned(),
                vec![("b".to_owned(), StepStatus::Done)]
            ),
            ("Third".to_owned(), vec![("d".to_owned(), StepStatus::Done)]),
        ]
    );
    assert!(seen[0].steps[1].finished_at.is_some());
    assert!(
        seen.iter()
            .all(|st| st.op_id == "op-1" && st.epoch == 7 && st.cluster == "east")
    );
}

#[tokio::test]
async fn stages_a_carrier_did_not_write_are_published_on_their_own() {
    // `r` writes without taking what it was handed; `c` fails.
    let script = Script::new().on("c", Behaviour::Fail("the close failed"));
    let journal = journal();
    let err = Engine::new(journal.clone())
        .run(&carriers(&script), &ctx())
        .await
        .unwrap_err();
    let err = error_chain(&err);
    assert!(err.contains("the close failed"), "{err}");
    assert_eq!(journal.writes(), carriers_writes(publish));
}

#[tokio::test]
async fn a_run_that_stops_before_the_carrier_still_publishes_the_stage_waiting_for_it() {
    // `b`, the last step of `Second`, fails: nothing after it starts.
    let script = Script::new().on("b", Behaviour::Fail("scale-up failed"));
    let failed = journal();
    Engine::new(failed.clone())
        .run(&carriers(&script), &ctx())
        .await
        .unwrap_err();
    let writes = failed.writes();
    assert_eq!(
        writes.last(),
        Some(&publish("Second", &["b"])),
        "the failure is published: {writes:?}"
    );
    // A run that is no longer current publishes nothing more.
    let script = Script::new().on("b", Behaviour::Stale);
    let stale = journal();
    Engine::new(stale.clone())
        .run(&carriers(&script), &ctx())
        .await
        .unwrap_err();
    assert!(
        !stale
            .writes()
            .iter()
            .any(|w| matches!(w, JournalWrite::Publish { stage, .. } if stage == "Second")),
        "{:?}",
        stale.writes()
    );
}
