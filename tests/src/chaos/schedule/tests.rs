use std::collections::BTreeSet;

use super::*;

fn many() -> Vec<OpPlan> {
    (0..200)
        .flat_map(|seed| plan(seed, 20, &Limits::default()))
        .collect()
}

#[test]
fn one_seed_replays_the_same_schedule_and_another_seed_does_not() {
    let limits = Limits::default();
    assert_eq!(plan(1, 20, &limits), plan(1, 20, &limits));
    assert_ne!(plan(1, 20, &limits), plan(2, 20, &limits));
}

#[test]
fn a_shorter_run_of_a_seed_is_the_start_of_the_longer_one() {
    let limits = Limits::default();
    assert_eq!(plan(7, 3, &limits), plan(7, 20, &limits)[..3]);
}

#[test]
fn every_kind_of_fault_mode_force_and_abort_is_drawn() {
    let ops = many();
    let classes: BTreeSet<FaultClass> = ops
        .iter()
        .flat_map(|op| &op.faults)
        .map(|f| f.kind.class())
        .collect();
    assert_eq!(classes, FaultClass::ALL.into_iter().collect());
    let services: BTreeSet<Service> = ops
        .iter()
        .flat_map(|op| &op.faults)
        .filter_map(|f| match f.kind {
            FaultKind::Latency { service, .. } => Some(service),
            _ => None,
        })
        .collect();
    assert_eq!(services.len(), 3, "latency on every service");
    assert!(ops.iter().any(|op| op.mode == Mode::Uptime));
    assert!(ops.iter().any(|op| op.force));
    assert!(ops.iter().any(|op| op.abort_after.is_some()));
    assert!(ops.iter().any(|op| op.faults.is_empty()));
    assert!(
        ops.iter()
            .any(|op| op.faults.iter().any(|f| f.role == Role::Source))
    );
    assert!(
        ops.iter()
            .any(|op| op.faults.iter().any(|f| f.role == Role::Target))
    );
    let groups: BTreeSet<usize> = ops.iter().map(|op| op.group).collect();
    assert_eq!(groups, BTreeSet::from([0, 1]));
}

#[test]
fn drawn_values_stay_within_the_limits() {
    let limits = Limits::default();
    for op in many() {
        assert!(op.group < limits.groups);
        assert!(
            !(op.force && op.mode == Mode::Uptime),
            "forced is CONSISTENCY: {op:?}"
        );
        if let Some(t) = op.abort_after {
            assert!((Duration::from_millis(500)..=Duration::from_secs(4)).contains(&t));
        }
        let whole_op = op
            .faults
            .iter()
            .filter(|f| f.kind == FaultKind::SqsWholeOperation)
            .count();
        assert!(whole_op <= 1);
        assert!(op.faults.len() <= limits.max_faults + whole_op, "{op:?}");
        assert!(op.faults.windows(2).all(|w| w[0].at <= w[1].at), "by time");
        for f in &op.faults {
            assert!(f.at <= limits.window);
            match f.kind {
                FaultKind::Cut { hold, .. } => {
                    assert!((Duration::from_secs(1)..=limits.max_cut).contains(&hold));
                }
                FaultKind::Latency {
                    latency, jitter, ..
                } => {
                    assert!(latency >= Duration::from_millis(100) && jitter <= latency / 2);
                }
                FaultKind::Kill { down } => assert!(down <= Duration::from_secs(5)),
                FaultKind::SqsWholeOperation => assert_eq!(f.at, Duration::ZERO),
                FaultKind::CrashPoint | FaultKind::Throttle => {}
            }
        }
    }
}

#[test]
fn no_two_faults_share_a_proxy_or_restart_an_agent_at_the_same_time() {
    for op in many() {
        for (i, f) in op.faults.iter().enumerate() {
            let others: Vec<Fault> = op
                .faults
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, f)| *f)
                .collect();
            assert!(!collides(f, &others), "{f} collides in {op:?}");
        }
    }
}

#[test]
fn collisions_are_per_agent_per_proxy_and_per_restart() {
    let cut = |at: u64, role, service| Fault {
        at: Duration::from_secs(at),
        role,
        kind: FaultKind::Cut {
            service,
            hold: Duration::from_secs(2),
        },
    };
    let first = [cut(1, Role::Source, Service::Dynamo)];
    assert!(collides(&cut(2, Role::Source, Service::Dynamo), &first));
    assert!(!collides(&cut(4, Role::Source, Service::Dynamo), &first));
    assert!(!collides(&cut(2, Role::Target, Service::Dynamo), &first));
    assert!(!collides(&cut(2, Role::Source, Service::Sqs), &first));
    let whole = [Fault {
        at: Duration::ZERO,
        role: Role::Target,
        kind: FaultKind::SqsWholeOperation,
    }];
    assert!(collides(&cut(9, Role::Target, Service::Sqs), &whole));
    let restart = |at: u64, kind| Fault {
        at: Duration::from_secs(at),
        role: Role::Source,
        kind,
    };
    let kill = [restart(
        1,
        FaultKind::Kill {
            down: Duration::from_secs(2),
        },
    )];
    assert!(collides(&restart(5, FaultKind::CrashPoint), &kill));
    assert!(!collides(&restart(7, FaultKind::Throttle), &kill));
}

#[test]
fn the_timeline_heals_and_restarts_after_applying_and_includes_the_abort() {
    let op = OpPlan {
        index: 1,
        group: 0,
        mode: Mode::Consistency,
        force: false,
        abort_after: Some(Duration::from_secs(2)),
        faults: vec![
            Fault {
                at: Duration::ZERO,
                role: Role::Target,
                kind: FaultKind::SqsWholeOperation,
            },
            Fault {
                at: Duration::from_secs(1),
                role: Role::Source,
                kind: FaultKind::Kill {
                    down: Duration::from_secs(3),
                },
            },
            Fault {
                at: Duration::from_secs(1),
                role: Role::Target,
                kind: FaultKind::Cut {
                    service: Service::Dynamo,
                    hold: Duration::from_secs(1),
                },
            },
        ],
    };
    let s = Duration::from_secs;
    assert_eq!(
        op.timeline(),
        vec![
            (s(0), Event::Apply(0)),
            (s(1), Event::Apply(1)),
            (s(1), Event::Apply(2)),
            (s(2), Event::Heal(2)),
            (s(2), Event::Abort),
            (s(4), Event::Restart(1)),
        ]
    );
    assert_eq!(op.describe(), "group 1 CONSISTENCY, abort at t+2.0 s");
}

#[test]
fn faults_read_as_a_schedule() {
    let f = Fault {
        at: Duration::from_millis(3200),
        role: Role::Target,
        kind: FaultKind::Latency {
            service: Service::ApiServer,
            latency: Duration::from_millis(400),
            jitter: Duration::from_millis(150),
            hold: Duration::from_secs(6),
        },
    };
    assert_eq!(
        f.to_string(),
        "t+3.2 s target: apiserver answers 400 ms ± 150 ms late for 6.0 s"
    );
    let crash = Fault {
        at: Duration::ZERO,
        role: Role::Source,
        kind: FaultKind::CrashPoint,
    };
    assert_eq!(
        crash.to_string(),
        "t+0.0 s source: restarted with FAILPOINTS=engine::done::before=1*off->1*return(crash)"
    );
    assert_eq!(crash.kind.failpoints(), Some(CRASH_FAILPOINTS));
    assert_eq!(FaultKind::Throttle.failpoints(), Some(THROTTLE_FAILPOINTS));
}
