use std::time::Duration;

use failover_messages::records::{Mode, Phase};

use super::*;
use crate::chaos::schedule::{Fault, FaultKind, Role};
use crate::faults::Service;

fn plan(index: usize, faults: Vec<Fault>) -> OpPlan {
    OpPlan {
        index,
        group: 0,
        mode: Mode::Consistency,
        force: false,
        abort_after: None,
        faults,
    }
}

fn record(index: usize, faults: Vec<Fault>, outcome: Outcome, secs: u64) -> OpRecord {
    let applied = (0..faults.len()).collect();
    OpRecord {
        plan: plan(index, faults),
        group: "ns-a/shop".into(),
        from: "east".into(),
        to: "west".into(),
        op_id: Some(format!("op-{index}")),
        outcome,
        duration: Some(Duration::from_secs(secs)),
        abort: None,
        applied,
        crashes: Vec::new(),
        startup_failures: Vec::new(),
        problems: Vec::new(),
    }
}

fn cut(service: Service) -> Fault {
    Fault {
        at: Duration::from_secs(1),
        role: Role::Source,
        kind: FaultKind::Cut {
            service,
            hold: Duration::from_secs(3),
        },
    }
}

fn report() -> RunReport {
    let succeeded = Outcome::Closed(Phase::Succeeded);
    let mut aborted = record(
        2,
        vec![cut(Service::Sqs)],
        Outcome::Closed(Phase::Aborted),
        9,
    );
    aborted.plan.abort_after = Some(Duration::from_secs(2));
    aborted.abort = Some(AbortAnswer::Accepted);
    let mut late = record(
        3,
        vec![
            cut(Service::Dynamo),
            Fault {
                at: Duration::from_secs(9),
                role: Role::Target,
                kind: FaultKind::CrashPoint,
            },
        ],
        succeeded.clone(),
        30,
    );
    late.applied = vec![0];
    RunReport {
        seed: 42,
        ops: 4,
        groups: vec!["ns-a/shop".into(), "ns-b/shop".into()],
        baseline: Some(record(0, Vec::new(), succeeded.clone(), 12)),
        records: vec![
            record(1, Vec::new(), succeeded.clone(), 10),
            aborted,
            late,
            record(4, vec![cut(Service::ApiServer)], succeeded, 20),
        ],
        ..RunReport::default()
    }
}

#[test]
fn a_clean_run_counts_applied_faults_and_exits_zero() {
    let r = report();
    assert_eq!(r.faults_applied(), 3);
    assert!(r.violations().is_empty());
    assert_eq!(r.exit_code(), 0);
    assert_eq!(
        r.summary_line(),
        "chaos: 4 operations, 3 faults, 0 violations"
    );
}

#[test]
fn problems_during_an_operation_and_at_the_end_are_violations() {
    let mut r = report();
    r.records[2].outcome = Outcome::Stuck(Some(Phase::Running));
    r.records[2].problems.push("operation op-3 stuck".into());
    r.final_problems.push("storage: dual Primary".into());
    assert_eq!(
        r.violations(),
        vec![
            ("operation 3".to_owned(), "operation op-3 stuck".to_owned()),
            ("end of run".to_owned(), "storage: dual Primary".to_owned()),
        ]
    );
    assert_eq!(r.exit_code(), 1);
    assert!(r.summary_line().ends_with(", 2 violations"));
    r.error = Some("toxiproxy went away".into());
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn the_worst_added_latency_is_the_slowest_success_against_the_fastest_clean_one() {
    let r = report();
    let (reference, slowest, added) = r.worst_added_latency().unwrap();
    // The un-faulted operation 1 (10 s) beat the baseline (12 s); operation 3 took 30 s.
    assert_eq!(reference, Duration::from_secs(10));
    assert_eq!(slowest.plan.index, 3);
    assert_eq!(added, Duration::from_secs(20));
    let none = RunReport::default();
    assert!(none.worst_added_latency().is_none());
}

#[test]
fn the_markdown_has_every_section_and_the_counts() {
    let mut r = report();
    r.records[0].problems.push("line one\nline two".into());
    r.records[1].crashes.push("east: failpoint x: crash".into());
    r.records[1]
        .startup_failures
        .push("west: failover-agent: error: cannot list".into());
    let md = r.markdown();
    for section in [
        "# Chaos run, seed 42",
        "`make chaos SEED=42 OPS=4`",
        "## Operations by outcome",
        "## Faults applied by kind",
        "## Violations",
        "## Operations",
        "## Schedule",
    ] {
        assert!(md.contains(section), "{section} missing:\n{md}");
    }
    assert!(md.contains("| Succeeded | 3 |"), "{md}");
    assert!(md.contains("| Aborted | 1 |"), "{md}");
    assert!(md.contains("Aborts: 1 accepted, 0 refused"), "{md}");
    assert!(md.contains("| DynamoDB cut | 1 | 1 |"), "{md}");
    assert!(
        md.contains("| restart with a one-shot crash failpoint | 0 | 1 |"),
        "{md}"
    );
    assert!(md.contains("| faults | 3 applied of 4 planned"), "{md}");
    assert!(
        md.contains("20.0 s (operation 3: 30.0 s against 10.0 s"),
        "{md}"
    );
    assert!(md.contains("- operation 1: line one\n  line two"), "{md}");
    assert!(md.contains("return(crash) (not applied)"), "{md}");
    assert!(
        md.contains("Failpoint crashes seen: 1. Agents that failed"),
        "{md}"
    );
    assert!(
        md.contains("  - failed its start-up checks: west: failover-agent: error: cannot list"),
        "{md}"
    );
    assert!(
        md.contains("| baseline | ns-a/shop | CONSISTENCY | east → west |"),
        "{md}"
    );
}
