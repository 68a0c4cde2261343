use std::collections::BTreeMap;

use failover_messages::crd::{VolumeReplicationRef, WorkloadRef};
use failover_messages::records::{Lease, Timings};

use super::*;
use crate::storage_sim::{COND_COMPLETED, VrCondition, VrStatus};

fn ts(s: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + s).unwrap()
}

fn group() -> GroupRef {
    GroupRef::new("ns", "shop").unwrap()
}

fn op(id: &str, mode: Mode, phase: Phase) -> Operation {
    Operation {
        id: id.into(),
        group: group(),
        epoch: 1,
        mode,
        source: "east".into(),
        target: "west".into(),
        force: false,
        source_is_down: false,
        reason: "unit test".into(),
        requested_by: "unit".into(),
        phase,
        requested_at: ts(0),
        promotion_started_at: None,
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: phase.is_terminal().then(|| ts(30)),
        timings: Timings::default(),
        original_replicas: BTreeMap::new(),
        message: None,
    }
}

/// A VolumeReplication settled in `state` (`Completed` as given).
fn volume(state: &str, completed: bool) -> Option<VrView> {
    Some(VrView {
        namespace: "ns".into(),
        name: "data".into(),
        generation: 2,
        status: VrStatus {
            state: Some(state.into()),
            observed_generation: Some(2),
            conditions: vec![VrCondition {
                type_: COND_COMPLETED.into(),
                status: if completed { "True" } else { "False" }.into(),
                reason: Some("Done".into()),
                observed_generation: Some(2),
                ..VrCondition::default()
            }],
            ..VrStatus::default()
        },
        ..VrView::default()
    })
}

fn side(cluster: &str, state: &str, app: Scale) -> Side {
    Side {
        cluster: cluster.into(),
        volumes: vec![("data".into(), volume(state, true))],
        workloads: vec![("Deployment/app".into(), Some(app))],
    }
}

/// A clean run: one CONSISTENCY failover east → west, succeeded and closed.
fn clean() -> RunFacts {
    let mut state = GroupState::registered(group(), "west", ts(0));
    state.epoch = 1;
    state.last_op_id = Some("op-1".into());
    RunFacts {
        violations: Vec::new(),
        groups: vec![GroupFacts {
            group: group(),
            state: Some(state),
            operations: vec![op("op-1", Mode::Consistency, Phase::Succeeded)],
            spec: Some(FailoverGroupSpec {
                workloads: vec![WorkloadRef {
                    kind: WorkloadKind::Deployment,
                    name: "app".into(),
                    replicas: None,
                }],
                volume_replications: vec![VolumeReplicationRef {
                    name: "data".into(),
                    workload: Some("app".into()),
                }],
                ..FailoverGroupSpec::default()
            }),
            sides: vec![
                side("east", STATE_SECONDARY, Scale::Replicas(0)),
                side("west", STATE_PRIMARY, Scale::Replicas(2)),
            ],
        }],
    }
}

fn verdict(facts: &RunFacts) -> Verdict {
    judge(facts, &CheckOptions::default())
}

fn dual(start: Timestamp, end: Option<Timestamp>) -> Violation {
    Violation::DualPrimary {
        namespace: "ns".into(),
        name: "data".into(),
        start,
        end,
    }
}

#[test]
fn a_clean_run_passes() {
    let v = verdict(&clean());
    assert!(v.is_clean(), "{v}");
    v.ensure_clean().unwrap();
    assert_eq!(v.to_string(), "clean");
}

#[test]
fn a_dual_primary_passes_only_inside_a_recorded_uptime_window() {
    let mut facts = clean();
    let mut up = op("op-1", Mode::Uptime, Phase::Succeeded);
    up.dual_active_started_at = Some(ts(10));
    up.dual_active_ended_at = Some(ts(20));
    facts.groups[0].operations = vec![up.clone()];
    // Inside, starting within the observation slack before the recorded start.
    facts.violations = vec![dual(
        ts(10) - SignedDuration::from_millis(500),
        Some(ts(19)),
    )];
    assert!(verdict(&facts).is_clean(), "{}", verdict(&facts));

    let outside = [
        dual(ts(5), Some(ts(12))),
        dual(ts(12), Some(ts(25))),
        dual(ts(12), None),
    ];
    for v in outside {
        facts.violations = vec![v.clone()];
        let Violation::DualPrimary { start, end, .. } = v else {
            unreachable!()
        };
        assert_eq!(
            verdict(&facts).problems,
            [Problem::DualPrimary {
                namespace: "ns".into(),
                volume: "data".into(),
                start,
                end
            }]
        );
    }
    // The same window on a CONSISTENCY operation covers nothing.
    facts.violations = vec![dual(ts(12), Some(ts(15)))];
    let mut consistency = up.clone();
    consistency.mode = Mode::Consistency;
    facts.groups[0].operations = vec![consistency];
    assert_eq!(verdict(&facts).problems.len(), 1);
    // Nor does an UPTIME window of a group without that volume.
    facts.groups[0].operations = vec![up];
    facts.groups[0]
        .spec
        .as_mut()
        .unwrap()
        .volume_replications
        .clear();
    facts.groups[0]
        .sides
        .iter_mut()
        .for_each(|s| s.volumes.clear());
    assert_eq!(verdict(&facts).problems.len(), 1);
}

#[test]
fn every_pod_and_unknown_violation_is_a_problem() {
    let mut facts = clean();
    facts.violations = vec![
        Violation::DemotedWithPods {
            cluster: "east".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec!["app-1".into()],
            at: ts(3),
        },
        Violation::PodsOnSecondary {
            cluster: "east".into(),
            namespace: "ns".into(),
            name: "data".into(),
            pods: vec!["app-1".into()],
            start: ts(3),
            end: Some(ts(4)),
        },
        Violation::Unknown {
            cluster: "west".into(),
            namespace: "ns".into(),
            name: "data".into(),
            check: "PodsOnSecondary".into(),
            error: "pods is forbidden".into(),
            at: ts(5),
        },
    ];
    let v = verdict(&facts);
    assert_eq!(
        v.problems,
        [
            Problem::DemotedWithPods {
                cluster: "east".into(),
                namespace: "ns".into(),
                volume: "data".into(),
                pods: vec!["app-1".into()],
            },
            Problem::PodsOnSecondary {
                cluster: "east".into(),
                namespace: "ns".into(),
                volume: "data".into(),
                pods: vec!["app-1".into()],
            },
            Problem::Unknown {
                cluster: "west".into(),
                namespace: "ns".into(),
                volume: "data".into(),
                check: "PodsOnSecondary".into(),
                error: "pods is forbidden".into(),
            },
        ]
    );
    let text = v.ensure_clean().unwrap_err().to_string();
    assert!(text.contains("pods [\"app-1\"] existed in east while ns/data was Secondary"));
    assert!(text.contains("pods is forbidden"), "{text}");
}

#[test]
fn operations_must_end_and_a_failure_must_say_why() {
    let mut facts = clean();
    let mut failed = op("op-2", Mode::Consistency, Phase::Failed);
    facts.groups[0].operations.extend([
        op("op-3", Mode::Consistency, Phase::Running),
        failed.clone(),
        op("op-4", Mode::Consistency, Phase::Aborted),
        op("op-5", Mode::Consistency, Phase::Superseded),
    ]);
    assert_eq!(
        verdict(&facts).problems,
        [
            Problem::NotTerminal {
                group: group(),
                op_id: "op-3".into(),
                phase: Phase::Running,
            },
            Problem::FailedWithoutReason {
                group: group(),
                op_id: "op-2".into(),
            },
        ]
    );
    failed.message = Some("stage VolumeDemotion ran out of time: db-data".into());
    facts.groups[0].operations[2] = failed;
    assert_eq!(verdict(&facts).problems.len(), 1);
}

#[test]
fn a_group_state_holding_something_with_nothing_in_flight_is_a_problem() {
    let held = |facts: &RunFacts| -> Vec<String> {
        verdict(facts)
            .problems
            .into_iter()
            .map(|p| match p {
                Problem::LeftHeld { what, .. } => what,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    let mut facts = clean();
    let state = facts.groups[0].state.as_mut().unwrap();
    state.lease = Some(Lease {
        holder: "west".into(),
        expires_at: ts(60),
    });
    state.promotion_claimed_by = Some("west".into());
    let found = held(&facts);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with("lease held by west"), "{found:?}");
    assert_eq!(found[1], "promotion claimed by west with no operation");

    // A closed operation still named.
    let state = facts.groups[0].state.as_mut().unwrap();
    state.promotion_claimed_by = None;
    state.op_id = Some("op-1".into());
    assert_eq!(
        held(&facts),
        ["still names operation op-1, closed Succeeded"]
    );
    // One that does not exist.
    facts.groups[0].state.as_mut().unwrap().op_id = Some("op-9".into());
    assert_eq!(held(&facts), ["names operation op-9, which does not exist"]);
    // A failed one may stay named (waiting for an abort), never with a claim.
    let mut failed = op("op-2", Mode::Consistency, Phase::Failed);
    failed.message = Some("timed out".into());
    facts.groups[0].operations.push(failed);
    facts.groups[0].state.as_mut().unwrap().op_id = Some("op-2".into());
    assert!(held(&facts).is_empty());
    facts.groups[0].state.as_mut().unwrap().promotion_claimed_by = Some("west".into());
    assert_eq!(
        held(&facts),
        ["promotion claimed by west for failed operation op-2"]
    );
}

#[test]
fn the_clusters_must_agree_with_the_group_state() {
    let mut facts = clean();
    // Promoted by hand in east, scaled up by hand there; west's volume unsettled.
    facts.groups[0].sides[0] = side("east", STATE_PRIMARY, Scale::Replicas(2));
    facts.groups[0].sides[1].volumes[0].1 = volume(STATE_PRIMARY, false);
    // West is active: its scale is not checked.
    facts.groups[0].sides[1].workloads[0].1 = Some(Scale::Replicas(0));
    let problems = verdict(&facts).problems;
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        matches!(&problems[0], Problem::Volume { cluster, want, found, .. }
        if cluster == "east" && *want == STATE_SECONDARY && found.contains("\"Primary\""))
    );
    assert!(
        matches!(&problems[1], Problem::Workload { cluster, workload, found, .. }
        if cluster == "east" && workload == "Deployment/app" && found == "2 replicas")
    );
    assert!(
        matches!(&problems[2], Problem::Volume { cluster, want, found, .. }
        if cluster == "west" && *want == STATE_PRIMARY && found.contains("False"))
    );

    // Missing objects; a CronJob not suspended on the passive side.
    let mut facts = clean();
    facts.groups[0].sides[0].volumes[0].1 = None;
    facts.groups[0].sides[0].workloads = vec![
        ("Deployment/app".into(), None),
        ("CronJob/backup".into(), Some(Scale::Suspended(false))),
    ];
    let found: Vec<String> = verdict(&facts)
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        found,
        [
            "ns/shop: data in east should be settled Secondary, found no such VolumeReplication",
            "ns/shop: Deployment/app in east (not active) should be scaled down, found no such workload",
            "ns/shop: CronJob/backup in east (not active) should be scaled down, found not suspended",
        ]
    );
}

#[test]
fn a_group_never_registered_or_without_its_object_is_a_problem() {
    let mut facts = clean();
    facts.groups[0].spec = None;
    facts.groups[0].sides.clear();
    assert_eq!(
        verdict(&facts).problems,
        [Problem::NoSpec { group: group() }]
    );
    facts.groups[0].state = None;
    assert_eq!(
        verdict(&facts).problems,
        [Problem::NotRegistered { group: group() }]
    );
}
