//! Batches: consecutive steps of one batch kind run side by side, their intents journaled
//! before any of them acts, every outcome recorded even when one fails.

use super::*;

/// `Stage` [x, d1, d2, d3, y]: the three `d` steps are one batch (`Demote`).
fn batched(script: &Arc<Script>) -> BoundWorkflow {
    let mut stage = BoundStage::new("Stage", 1, MINUTE).step(BoundStep::new("x", script.task("x")));
    for (i, d) in ["d1", "d2", "d3"].into_iter().enumerate() {
        let mut step = BoundStep::new(d, script.task(d)).batched("Demote");
        if i == 0 {
            step = step.checking_current();
        }
        stage = stage.step(step);
    }
    BoundWorkflow {
        stages: vec![stage.step(BoundStep::new("y", script.task("y")))],
    }
}

/// Runs `workflow`, failing (instead of hanging) when it takes more than ten seconds.
async fn run_bounded(
    workflow: &BoundWorkflow,
    journal: Arc<MemoryJournal>,
) -> Result<RunReport, EngineError> {
    tokio::time::timeout(
        Duration::from_secs(10),
        Engine::new(journal).run(workflow, &ctx()),
    )
    .await
    .expect("the steps of the batch did not run side by side")
}

#[tokio::test]
async fn a_batch_runs_its_steps_side_by_side_after_journaling_every_intent() {
    // Each `d` step waits until all three have started: one after the other, none ends.
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let script = Script::new()
        .on("d1", Behaviour::Meet(barrier.clone()))
        .on("d2", Behaviour::Meet(barrier.clone()))
        .on("d3", Behaviour::Meet(barrier));
    let journal = journal();
    let report = run_bounded(&batched(&script), journal.clone())
        .await
        .unwrap();
    assert_eq!(report.ran(), ["x", "d1", "d2", "d3", "y"]);
    assert_eq!(
        journal.writes(),
        [
            intent("Stage", "x", "Done"),
            outcome("Stage", "x", StepStatus::Done, None),
            intent("Stage", "d1", "Done"),
            intent("Stage", "d2", "Done"),
            intent("Stage", "d3", "Done"),
            outcome("Stage", "d1", StepStatus::Done, None),
            outcome("Stage", "d2", StepStatus::Done, None),
            outcome("Stage", "d3", StepStatus::Done, None),
            intent("Stage", "y", "Done"),
            outcome("Stage", "y", StepStatus::Done, None),
            publish("Stage", &["x", "d1", "d2", "d3", "y"]),
        ]
    );
}

#[tokio::test]
async fn a_failed_step_of_a_batch_lets_the_others_finish_and_stops_the_run_naming_it() {
    let script = Script::new().on("d2", Behaviour::FailOn("refused", "VolumeReplication/db"));
    let journal = journal();
    let err = run_bounded(&batched(&script), journal.clone())
        .await
        .unwrap_err();
    match &err {
        EngineError::TaskFailed { task, object, .. } => {
            assert_eq!(
                (task.as_str(), object.as_deref()),
                ("d2", Some("VolumeReplication/db"))
            );
        }
        other => panic!("{other:?}"),
    }
    let mut ran = script.ran();
    ran.sort();
    assert_eq!(ran, ["d1", "d2", "d3", "x"], "y never starts");
    let status = |t: &str| journal.get("op-1", "east", "Stage", t).unwrap().status;
    assert_eq!(
        [status("d1"), status("d2"), status("d3")],
        [StepStatus::Done, StepStatus::Failed, StepStatus::Done]
    );
    assert!(journal.get("op-1", "east", "Stage", "y").is_none());
}

#[tokio::test]
async fn a_resumed_batch_runs_only_its_steps_not_done() {
    let script = Script::new();
    let journal = journal();
    for t in ["x", "d2"] {
        journal.insert(journaled("Stage", t, StepStatus::Done, 1));
    }
    journal.insert(journaled("Stage", "d3", StepStatus::Started, 1));
    let report = run_bounded(&batched(&script), journal.clone())
        .await
        .unwrap();
    assert_eq!(report.skipped(), ["x", "d2"]);
    let mut ran = script.ran();
    ran.sort();
    assert_eq!(ran, ["d1", "d3", "y"]);
    assert_eq!(
        script.seen("d3").attempt,
        Attempt::Resumed {
            previous: StepStatus::Started,
            attempts: 1
        }
    );
}

#[tokio::test]
async fn a_batch_for_an_operation_no_longer_current_stops_before_any_step_acts() {
    let script = Script::new();
    let journal = journal();
    journal.insert(journaled("Stage", "x", StepStatus::Done, 1));
    journal.set_current(Some((8, "op-2")));
    let err = run_bounded(&batched(&script), journal.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleEpoch { task, .. } if task == "d1"),
        "{err:?}"
    );
    assert!(script.ran().is_empty());
    // The intents went out alongside the read (refused here: this journal checks the epoch).
    assert!(
        journal.writes().iter().all(|w| matches!(
            w,
            JournalWrite::Intent {
                answer: "StaleEpoch",
                ..
            }
        )),
        "{:?}",
        journal.writes()
    );
}

#[tokio::test]
async fn a_lost_condition_in_one_step_of_a_batch_wins_over_another_steps_failure() {
    let script = Script::new()
        .on("d1", Behaviour::Fail("refused"))
        .on("d3", Behaviour::Stale);
    let journal = journal();
    let err = run_bounded(&batched(&script), journal.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::StaleEpoch { task, .. } if task == "d3"),
        "{err:?}"
    );
    assert!(err.must_stop_working());
    assert!(
        !journal
            .writes()
            .iter()
            .any(|w| matches!(w, JournalWrite::Publish { .. })),
        "a run that is no longer current publishes nothing: {:?}",
        journal.writes()
    );
}

#[test]
fn the_factory_batches_runs_of_one_kubernetes_step_kind_and_nothing_else() {
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
    let batches = |role: Role| -> Vec<(String, usize)> {
        let workflow = Factory::build(Mode::Consistency, role, &spec, false).unwrap();
        let script = Script::new();
        let builder = move |step: &Step| script.task(&step.key());
        let bound = workflow.bind(&builder);
        let mut out = Vec::new();
        for stage in &bound.stages {
            let mut i = 0;
            while i < stage.steps.len() {
                let end = stage.batch_end(i);
                if end - i > 1 {
                    let kind = stage.steps[i].key.split(':').next().unwrap().to_owned();
                    out.push((kind, end - i));
                }
                i = end;
            }
        }
        out
    };
    let two = |kinds: &[&str]| -> Vec<(String, usize)> {
        kinds.iter().map(|k| ((*k).to_owned(), 2)).collect()
    };
    // Two workloads, two volumes: every Kubernetes kind runs as one batch of two; records,
    // waits for the other cluster and notifications run alone.
    assert_eq!(
        batches(Role::Source),
        two(&["ScaleDown", "WaitPodsGone", "Demote", "WaitSecondary"])
    );
    assert_eq!(
        batches(Role::Target),
        two(&[
            "Promote",
            "WaitPrimary",
            "VerifyData",
            "ScaleUp",
            "WaitReady"
        ])
    );
}
