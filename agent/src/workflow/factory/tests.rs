//! The factory's plans, checked without any I/O: golden plans for the sample group, named
//! order-sensitive facts, and an exhaustive sweep over modes, roles, force and which kinds
//! of objects a group has.

use std::time::Duration;

use failover_messages::crd::{
    FailoverGroupSpec, FluxKind, FluxRef, NetworkKind, NetworkRef, StageTimeouts, TimeoutStage,
    VolumeReplicationRef, WorkloadKind, WorkloadRef,
};
use failover_messages::envelope::EnvelopeKind;
use failover_messages::keys::validate_step_name;

use super::*;
use crate::workflow::definition::PeerStep;
use failover_messages::protocol::spec::{MAX_VOLUMES, SpecProblem};

// ---------------------------------------------------------------------------------------------
// Fixtures and helpers
// ---------------------------------------------------------------------------------------------

fn workload(kind: WorkloadKind, name: &str) -> WorkloadRef {
    WorkloadRef {
        kind,
        name: name.into(),
        replicas: None,
    }
}

fn volume(name: &str, workload: Option<&str>) -> VolumeReplicationRef {
    VolumeReplicationRef {
        name: name.into(),
        workload: workload.map(Into::into),
    }
}

/// The sample group: two Deployments, a StatefulSet and a CronJob, three volumes, two
/// traffic objects, two Flux objects.
fn sample() -> FailoverGroupSpec {
    FailoverGroupSpec {
        workloads: vec![
            workload(WorkloadKind::Deployment, "orders-api"),
            workload(WorkloadKind::StatefulSet, "orders-db"),
            workload(WorkloadKind::CronJob, "report"),
            workload(WorkloadKind::Deployment, "orders-worker"),
        ],
        volume_replications: vec![
            volume("orders-db-data", Some("orders-db")),
            volume("orders-db-wal", Some("orders-db")),
            volume("shared-files", None),
        ],
        network: vec![
            NetworkRef {
                kind: NetworkKind::VirtualService,
                name: "orders".into(),
            },
            NetworkRef {
                kind: NetworkKind::Ingress,
                name: "orders-admin".into(),
            },
        ],
        flux: vec![
            FluxRef {
                kind: FluxKind::HelmRelease,
                name: "orders".into(),
                namespace: "flux-system".into(),
            },
            FluxRef {
                kind: FluxKind::Kustomization,
                name: "orders-config".into(),
                namespace: "flux-system".into(),
            },
        ],
        ..FailoverGroupSpec::default()
    }
}

/// The sample with some kinds of objects left out (bit 0 workloads, 1 volumes, 2 network,
/// 3 Flux), 16 variants.
fn variants() -> Vec<(String, FailoverGroupSpec)> {
    (0u8..16)
        .map(|bits| {
            let mut spec = sample();
            let mut name = Vec::new();
            if bits & 1 != 0 {
                spec.workloads.clear();
                // Volumes may only name workloads of the group.
                for v in &mut spec.volume_replications {
                    v.workload = None;
                }
                name.push("no workloads");
            }
            if bits & 2 != 0 {
                spec.volume_replications.clear();
                name.push("no volumes");
            }
            if bits & 4 != 0 {
                spec.network.clear();
                name.push("no network");
            }
            if bits & 8 != 0 {
                spec.flux.clear();
                name.push("no flux");
            }
            let name = if name.is_empty() {
                "everything".to_owned()
            } else {
                name.join(", ")
            };
            (name, spec)
        })
        .collect()
}

const MODES: [Mode; 2] = [Mode::Consistency, Mode::Uptime];

fn build(mode: Mode, role: Role, force: bool) -> Workflow {
    Factory::build(mode, role, &sample(), force).unwrap()
}

/// The Initialization stage every plan starts with: validate, renew the lease, the
/// preflight of every object of `spec`, a wake-up to the peer, and (but for a forced
/// operation's target) the wait for the peer's preflight.
fn initialization_of(spec: &FailoverGroupSpec, mode: Mode, role: Role, force: bool) -> Vec<Step> {
    let checks = Preflight {
        workloads: spec
            .workloads
            .iter()
            .map(|w| (w.kind, w.name.clone()))
            .collect(),
        network: spec
            .network
            .iter()
            .map(|n| (n.kind, n.name.clone()))
            .collect(),
        flux: spec
            .flux
            .iter()
            .map(|f| (f.kind, f.namespace.clone(), f.name.clone()))
            .collect(),
        volumes: volumes_of(spec),
        scale_up: match role {
            Role::Source => vec![],
            Role::Target => spec
                .workloads
                .iter()
                .filter(|w| w.kind != WorkloadKind::CronJob)
                .map(|w| (w.kind, w.name.clone(), w.replicas))
                .collect(),
        },
    };
    let scaled = spec
        .workloads
        .iter()
        .any(|w| w.kind != WorkloadKind::CronJob);
    let mut steps = vec![
        Step::Record(RecordStep::ValidateOperation {
            mark_running: match role {
                Role::Target => force,
                Role::Source => !force && !scaled,
            },
        }),
        Step::Record(RecordStep::RenewLease),
        Step::Check(CheckStep::Preflight {
            role,
            checks: Box::new(checks),
        }),
        Step::Notify(NotifyStep::Notify {
            to: role.peer(),
            kind: EnvelopeKind::Wake,
        }),
    ];
    // Only an UPTIME target, which acts first, waits for the source's preflight.
    if role == Role::Source || (mode == Mode::Uptime && !force) {
        steps.push(Step::Wait(WaitStep::WaitPeer {
            peer: PeerStep {
                role: role.peer(),
                stage: StageId::Initialization,
                task: "Preflight".into(),
            },
            within: spec.timeouts.get(TimeoutStage::Initialization).unwrap(),
        }));
    }
    steps
}

/// `Stage/key` of every step, in order.
fn keys(wf: &Workflow) -> Vec<String> {
    wf.steps()
        .map(|(stage, step)| format!("{}/{}", stage.key(), step.key()))
        .collect()
}

/// Positions (in the flattened plan) of the steps matching `pred`.
fn positions(wf: &Workflow, pred: impl Fn(&Step) -> bool) -> Vec<usize> {
    wf.steps()
        .enumerate()
        .filter(|(_, (_, step))| pred(step))
        .map(|(i, _)| i)
        .collect()
}

fn position_of(wf: &Workflow, want: &Step) -> usize {
    let found = positions(wf, |s| s == want);
    assert_eq!(
        found.len(),
        1,
        "{want:?} should appear exactly once in {:#?}",
        keys(wf)
    );
    found[0]
}

/// Every step matching `a` comes before every step matching `b` (vacuous when either is
/// absent).
fn all_before(wf: &Workflow, what: &str, a: impl Fn(&Step) -> bool, b: impl Fn(&Step) -> bool) {
    let (a, b) = (positions(wf, a), positions(wf, b));
    if let (Some(last_a), Some(first_b)) = (a.iter().max(), b.iter().min()) {
        assert!(
            last_a < first_b,
            "{what}: violated in {:?} {:?}{}\n{:#?}",
            wf.mode,
            wf.role,
            if wf.force { " (forced)" } else { "" },
            keys(wf)
        );
    }
}

fn has(wf: &Workflow, pred: impl Fn(&Step) -> bool) -> bool {
    !positions(wf, pred).is_empty()
}

fn volumes_of(spec: &FailoverGroupSpec) -> Vec<String> {
    spec.volume_replications
        .iter()
        .map(|v| v.name.clone())
        .collect()
}

fn steps_in(wf: &Workflow, stage: StageId) -> Vec<String> {
    wf.stage(stage)
        .map(|s| s.tasks.iter().map(Step::key).collect())
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Golden plans of the sample group
// ---------------------------------------------------------------------------------------------

#[test]
fn consistency_source_plan_follows_the_seed_with_flux_suspended_before_scale_down() {
    let wf = build(Mode::Consistency, Role::Source, false);
    let stages: Vec<(u8, &str)> = wf.stages.iter().map(|s| (s.number, s.name)).collect();
    assert_eq!(
        stages,
        [
            (1, "Initialization"),
            (2, "Source Cluster Shutdown"),
            (3, "Volume Transition (Source)"),
            (6, "Completion"),
        ]
    );
    assert_eq!(
        keys(&wf),
        [
            "Initialization/ValidateOperation",
            "Initialization/RenewLease",
            "Initialization/Preflight",
            "Initialization/Notify:target:Wake",
            "Initialization/WaitPeer:target:Initialization:Preflight",
            "Initialization/RecordReplicas",
            "SourceShutdown/TrafficOff:VirtualService/orders",
            "SourceShutdown/TrafficOff:Ingress/orders-admin",
            "SourceShutdown/SuspendFlux:HelmRelease/flux-system/orders",
            "SourceShutdown/SuspendFlux:Kustomization/flux-system/orders-config",
            "SourceShutdown/ScaleDown:Deployment/orders-api",
            "SourceShutdown/ScaleDown:StatefulSet/orders-db",
            "SourceShutdown/ScaleDown:Deployment/orders-worker",
            "SourceShutdown/SuspendCronJob:CronJob/report",
            "SourceShutdown/WaitPodsGone:Deployment/orders-api",
            "SourceShutdown/WaitPodsGone:StatefulSet/orders-db",
            "SourceShutdown/WaitPodsGone:CronJob/report",
            "SourceShutdown/WaitPodsGone:Deployment/orders-worker",
            "VolumeTransitionSource/Demote:VolumeReplication/orders-db-data",
            "VolumeTransitionSource/Demote:VolumeReplication/orders-db-wal",
            "VolumeTransitionSource/Demote:VolumeReplication/shared-files",
            "VolumeTransitionSource/WaitSecondary:VolumeReplication/orders-db-data",
            "VolumeTransitionSource/WaitSecondary:VolumeReplication/orders-db-wal",
            "VolumeTransitionSource/WaitSecondary:VolumeReplication/shared-files",
            "VolumeTransitionSource/MarkAllReady",
            "VolumeTransitionSource/Notify:target:ReadyForPromotion",
            "Completion/WaitOperationClosed",
            "Completion/UpdateGroupStatus",
        ]
    );
    assert!(has(&wf, |s| *s
        == Step::Record(RecordStep::RecordReplicas {
            workloads: vec![
                (WorkloadKind::Deployment, "orders-api".into()),
                (WorkloadKind::StatefulSet, "orders-db".into()),
                (WorkloadKind::Deployment, "orders-worker".into()),
            ]
        })));
}

#[test]
fn consistency_target_plan_waits_for_the_handoff_then_claims_promotes_and_activates() {
    let wf = build(Mode::Consistency, Role::Target, false);
    let numbers: Vec<u8> = wf.stages.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 4, 5, 6]);
    assert_eq!(
        keys(&wf),
        [
            "Initialization/ValidateOperation",
            "Initialization/RenewLease",
            "Initialization/Preflight",
            "Initialization/Notify:source:Wake",
            "VolumeTransitionTarget/WaitAllReady",
            "VolumeTransitionTarget/ClaimPromotion",
            "VolumeTransitionTarget/Promote:VolumeReplication/orders-db-data",
            "VolumeTransitionTarget/Promote:VolumeReplication/orders-db-wal",
            "VolumeTransitionTarget/Promote:VolumeReplication/shared-files",
            "VolumeTransitionTarget/WaitPrimary:VolumeReplication/orders-db-data",
            "VolumeTransitionTarget/WaitPrimary:VolumeReplication/orders-db-wal",
            "VolumeTransitionTarget/WaitPrimary:VolumeReplication/shared-files",
            "VolumeTransitionTarget/VerifyData:VolumeReplication/orders-db-data",
            "VolumeTransitionTarget/VerifyData:VolumeReplication/orders-db-wal",
            "VolumeTransitionTarget/VerifyData:VolumeReplication/shared-files",
            "VolumeTransitionTarget/MarkPromoted",
            "TargetActivation/ScaleUp:Deployment/orders-api",
            "TargetActivation/ScaleUp:StatefulSet/orders-db",
            "TargetActivation/ScaleUp:Deployment/orders-worker",
            "TargetActivation/ResumeCronJob:CronJob/report",
            "TargetActivation/ResumeFlux:HelmRelease/flux-system/orders",
            "TargetActivation/ResumeFlux:Kustomization/flux-system/orders-config",
            "TargetActivation/WaitReady:Deployment/orders-api",
            "TargetActivation/WaitReady:StatefulSet/orders-db",
            "TargetActivation/WaitReady:Deployment/orders-worker",
            "TargetActivation/TrafficOn:VirtualService/orders",
            "TargetActivation/TrafficOn:Ingress/orders-admin",
            "Completion/CompleteOperation",
            "Completion/Notify:source:OperationCompleted",
            "Completion/UpdateGroupStatus",
        ]
    );
    let all = volumes_of(&sample());
    assert!(has(&wf, |s| *s
        == Step::Record(RecordStep::ClaimPromotion {
            ready_volumes: all.clone()
        })));
    assert!(has(
        &wf,
        |s| matches!(s, Step::Wait(WaitStep::WaitAllReady { volumes, .. }) if *volumes == all)
    ));
}

#[test]
fn uptime_target_promotes_without_handoff_and_completes_only_after_the_source_is_done() {
    let wf = build(Mode::Uptime, Role::Target, false);
    let numbers: Vec<u8> = wf.stages.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2, 3, 7]);
    assert_eq!(
        steps_in(&wf, StageId::VolumeTransitionTarget),
        [
            "ClaimPromotion",
            "RecordDualActive:Started",
            "Promote:VolumeReplication/orders-db-data",
            "Promote:VolumeReplication/orders-db-wal",
            "Promote:VolumeReplication/shared-files",
            "WaitPrimary:VolumeReplication/orders-db-data",
            "WaitPrimary:VolumeReplication/orders-db-wal",
            "WaitPrimary:VolumeReplication/shared-files",
            "VerifyData:VolumeReplication/orders-db-data",
            "VerifyData:VolumeReplication/orders-db-wal",
            "VerifyData:VolumeReplication/shared-files",
            "MarkPromoted",
        ]
    );
    assert!(has(&wf, |s| *s
        == Step::Record(RecordStep::ClaimPromotion {
            ready_volumes: vec![]
        })));
    assert_eq!(
        steps_in(&wf, StageId::TargetActivation).last().unwrap(),
        "Notify:source:Promoted"
    );
    assert_eq!(
        steps_in(&wf, StageId::Completion),
        [
            "WaitPeer:source:VolumeResync:WaitResynced:VolumeReplication/shared-files",
            "CompleteOperation",
            "Notify:source:OperationCompleted",
            "UpdateGroupStatus",
        ]
    );
}

#[test]
fn uptime_source_shuts_down_only_after_the_target_serves_then_demotes_and_resyncs() {
    let wf = build(Mode::Uptime, Role::Source, false);
    let numbers: Vec<u8> = wf.stages.iter().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 4, 5, 6, 7]);
    let shutdown = steps_in(&wf, StageId::SourceShutdown);
    assert_eq!(
        shutdown[0],
        "WaitPeer:target:TargetActivation:TrafficOn:Ingress/orders-admin"
    );
    assert_eq!(shutdown[1], "TrafficOff:VirtualService/orders");
    assert_eq!(
        steps_in(&wf, StageId::VolumeTransitionSource),
        [
            "Demote:VolumeReplication/orders-db-data",
            "Demote:VolumeReplication/orders-db-wal",
            "Demote:VolumeReplication/shared-files",
            "WaitSecondary:VolumeReplication/orders-db-data",
            "WaitSecondary:VolumeReplication/orders-db-wal",
            "WaitSecondary:VolumeReplication/shared-files",
            "RecordDualActive:Ended",
        ]
    );
    assert_eq!(
        steps_in(&wf, StageId::VolumeResync),
        [
            "Resync:VolumeReplication/orders-db-data",
            "Resync:VolumeReplication/orders-db-wal",
            "Resync:VolumeReplication/shared-files",
            "WaitResynced:VolumeReplication/orders-db-data",
            "WaitResynced:VolumeReplication/orders-db-wal",
            "WaitResynced:VolumeReplication/shared-files",
            "Notify:target:Wake",
        ]
    );
    assert_eq!(
        steps_in(&wf, StageId::Completion),
        ["WaitOperationClosed", "UpdateGroupStatus"]
    );
    assert!(!has(&wf, |s| matches!(
        s,
        Step::Record(RecordStep::MarkAllReady { .. })
    )));
}

// ---------------------------------------------------------------------------------------------
// Named order-sensitive facts
// ---------------------------------------------------------------------------------------------

#[test]
fn flux_is_suspended_before_any_workload_is_scaled_down() {
    for mode in MODES {
        let wf = build(mode, Role::Source, false);
        let suspend = |s: &Step| matches!(s, Step::Kube(KubeStep::SuspendFlux { .. }));
        assert_eq!(positions(&wf, suspend).len(), 2);
        all_before(&wf, "Flux suspended before scale-down", suspend, |s| {
            matches!(
                s,
                Step::Kube(KubeStep::ScaleDown { .. })
                    | Step::Kube(KubeStep::SuspendCronJob { .. })
            )
        });
        all_before(
            &wf,
            "traffic off before Flux suspended",
            |s| matches!(s, Step::Kube(KubeStep::TrafficOff { .. })),
            suspend,
        );
        all_before(
            &wf,
            "replicas recorded before scale-down",
            |s| matches!(s, Step::Record(RecordStep::RecordReplicas { .. })),
            |s| matches!(s, Step::Kube(KubeStep::ScaleDown { .. })),
        );
    }
}

#[test]
fn volumes_are_demoted_only_after_every_pod_is_gone() {
    for mode in MODES {
        let wf = build(mode, Role::Source, false);
        all_before(
            &wf,
            "workloads down before pods awaited",
            |s| {
                matches!(
                    s,
                    Step::Kube(KubeStep::ScaleDown { .. })
                        | Step::Kube(KubeStep::SuspendCronJob { .. })
                )
            },
            |s| matches!(s, Step::Kube(KubeStep::WaitPodsGone { .. })),
        );
        all_before(
            &wf,
            "pods gone before demotion",
            |s| matches!(s, Step::Kube(KubeStep::WaitPodsGone { .. })),
            |s| matches!(s, Step::Kube(KubeStep::Demote { .. })),
        );
        assert_eq!(
            positions(&wf, |s| matches!(
                s,
                Step::Kube(KubeStep::WaitPodsGone { .. })
            ))
            .len(),
            4
        );
    }
}

#[test]
fn mark_all_ready_follows_every_wait_secondary_and_names_every_volume() {
    let wf = build(Mode::Consistency, Role::Source, false);
    let mark = Step::Record(RecordStep::MarkAllReady {
        volumes: volumes_of(&sample()),
    });
    let at = position_of(&wf, &mark);
    let waits = positions(&wf, |s| {
        matches!(s, Step::Kube(KubeStep::WaitSecondary { .. }))
    });
    assert_eq!(waits.len(), 3);
    assert!(waits.iter().all(|w| *w < at));
    let notify = position_of(
        &wf,
        &Step::Notify(NotifyStep::Notify {
            to: Role::Target,
            kind: EnvelopeKind::ReadyForPromotion,
        }),
    );
    assert_eq!(
        notify,
        at + 1,
        "the target is notified right after the handoff"
    );
}

#[test]
fn no_promote_happens_before_the_promotion_is_claimed() {
    for mode in MODES {
        for force in [false, true] {
            let wf = build(mode, Role::Target, force);
            let claim = positions(&wf, |s| {
                matches!(s, Step::Record(RecordStep::ClaimPromotion { .. }))
            });
            assert_eq!(claim.len(), 1);
            let promotes = positions(&wf, |s| matches!(s, Step::Kube(KubeStep::Promote { .. })));
            assert_eq!(promotes.len(), 3);
            assert!(promotes.iter().all(|p| *p > claim[0]));
            // Each volume: promote → Primary → verified.
            for v in volumes_of(&sample()) {
                let p = position_of(&wf, &Step::Kube(KubeStep::Promote { volume: v.clone() }));
                let w = position_of(
                    &wf,
                    &Step::Kube(KubeStep::WaitPrimary { volume: v.clone() }),
                );
                let c = position_of(&wf, &Step::Kube(KubeStep::VerifyData { volume: v.clone() }));
                assert!(p < w && w < c, "{v}");
            }
        }
    }
}

#[test]
fn workloads_start_only_after_every_volume_is_verified() {
    for mode in MODES {
        let wf = build(mode, Role::Target, false);
        all_before(
            &wf,
            "volumes verified before workloads start",
            |s| {
                matches!(
                    s,
                    Step::Kube(KubeStep::VerifyData { .. })
                        | Step::Record(RecordStep::MarkPromoted { .. })
                )
            },
            |s| {
                matches!(
                    s,
                    Step::Kube(KubeStep::ScaleUp { .. })
                        | Step::Kube(KubeStep::ResumeCronJob { .. })
                        | Step::Kube(KubeStep::ResumeFlux { .. })
                )
            },
        );
    }
}

#[test]
fn traffic_is_turned_on_last_on_the_target() {
    for mode in MODES {
        for force in [false, true] {
            let wf = build(mode, Role::Target, force);
            all_before(
                &wf,
                "everything activated before traffic on",
                |s| {
                    !matches!(
                        s,
                        Step::Kube(KubeStep::TrafficOn { .. })
                            | Step::Notify(NotifyStep::Notify { .. })
                            | Step::Wait(WaitStep::WaitPeer { .. })
                            | Step::Record(RecordStep::CompleteOperation)
                            | Step::Notify(NotifyStep::UpdateGroupStatus)
                    )
                },
                |s| matches!(s, Step::Kube(KubeStep::TrafficOn { .. })),
            );
            // Nothing after traffic on changes this cluster's workloads or volumes.
            let last_on = *positions(&wf, |s| matches!(s, Step::Kube(KubeStep::TrafficOn { .. })))
                .last()
                .unwrap();
            let after: Vec<&Step> = wf.steps().skip(last_on + 1).map(|(_, s)| s).collect();
            assert!(
                after.iter().all(|s| matches!(
                    s,
                    Step::Notify(NotifyStep::Notify { .. })
                        | Step::Wait(WaitStep::WaitPeer { .. })
                        | Step::Record(RecordStep::CompleteOperation)
                        | Step::Notify(NotifyStep::UpdateGroupStatus)
                )),
                "{after:?}"
            );
        }
    }
}

#[test]
fn a_source_never_promotes_and_a_target_never_demotes() {
    for mode in MODES {
        for force in [false, true] {
            let source = build(mode, Role::Source, force);
            assert!(
                !has(&source, is_target_only),
                "{mode} source: {:#?}",
                keys(&source)
            );
            let target = build(mode, Role::Target, force);
            assert!(
                !has(&target, is_source_only),
                "{mode} target: {:#?}",
                keys(&target)
            );
        }
    }
}

fn is_target_only(s: &Step) -> bool {
    matches!(
        s,
        Step::Wait(WaitStep::WaitAllReady { .. })
            | Step::Record(RecordStep::ClaimPromotion { .. })
            | Step::Kube(KubeStep::Promote { .. })
            | Step::Kube(KubeStep::WaitPrimary { .. })
            | Step::Kube(KubeStep::VerifyData { .. })
            | Step::Record(RecordStep::MarkPromoted { .. })
            | Step::Kube(KubeStep::ScaleUp { .. })
            | Step::Kube(KubeStep::ResumeCronJob { .. })
            | Step::Kube(KubeStep::ResumeFlux { .. })
            | Step::Kube(KubeStep::WaitReady { .. })
            | Step::Kube(KubeStep::TrafficOn { .. })
            | Step::Record(RecordStep::CompleteOperation)
            | Step::Record(RecordStep::RecordDualActive {
                end: DualActiveEnd::Started
            })
    )
}

fn is_source_only(s: &Step) -> bool {
    matches!(
        s,
        Step::Kube(KubeStep::TrafficOff { .. })
            | Step::Kube(KubeStep::SuspendFlux { .. })
            | Step::Record(RecordStep::RecordReplicas { .. })
            | Step::Kube(KubeStep::ScaleDown { .. })
            | Step::Kube(KubeStep::SuspendCronJob { .. })
            | Step::Kube(KubeStep::WaitPodsGone { .. })
            | Step::Kube(KubeStep::Demote { .. })
            | Step::Kube(KubeStep::WaitSecondary { .. })
            | Step::Record(RecordStep::MarkAllReady { .. })
            | Step::Kube(KubeStep::Resync { .. })
            | Step::Kube(KubeStep::WaitResynced { .. })
            | Step::Wait(WaitStep::WaitOperationClosed { .. })
            | Step::Record(RecordStep::RecordDualActive {
                end: DualActiveEnd::Ended
            })
    )
}

#[test]
fn a_forced_target_waits_for_the_release_or_the_lease_then_claims_without_records() {
    let wf = build(Mode::Consistency, Role::Target, true);
    assert!(wf.force);
    assert!(!has(&wf, |s| matches!(
        s,
        Step::Wait(WaitStep::WaitAllReady { .. }) | Step::Wait(WaitStep::WaitPeer { .. })
    )));
    let Step::Wait(WaitStep::WaitSourceReleased {
        release: Release::Volumes(volumes),
        within,
    }) = &wf.stages[1].tasks[0]
    else {
        panic!("{:?}", wf.stages[1].tasks[0]);
    };
    assert!(!volumes.is_empty());
    assert!(*within > Duration::ZERO);
    assert_eq!(
        wf.stages[1].tasks[1],
        Step::Record(RecordStep::ClaimPromotion {
            ready_volumes: vec![]
        })
    );
}

#[test]
fn force_changes_only_the_consistency_target_plan() {
    for mode in MODES {
        let (mut source, mut forced_source) = (
            build(mode, Role::Source, false),
            build(mode, Role::Source, true),
        );
        source.force = true;
        forced_source.force = true;
        // What it publishes differs: a forced target does not wait for the source's
        // preflight (or, in UPTIME, its replica counts).
        for stage in source
            .stages
            .iter_mut()
            .chain(forced_source.stages.iter_mut())
        {
            stage.published.clear();
        }
        assert_eq!(source, forced_source, "{mode} source");
    }
    // A forced UPTIME target waits neither for the source's preflight nor for its replica
    // counts (the source may be gone); otherwise its plan is the same.
    let mut uptime_target = build(Mode::Uptime, Role::Target, false);
    uptime_target.force = true;
    // And it marks the operation Running itself.
    uptime_target.stages[0].tasks[0] =
        Step::Record(RecordStep::ValidateOperation { mark_running: true });
    for stage in &mut uptime_target.stages {
        stage
            .tasks
            .retain(|s| !matches!(s, Step::Wait(WaitStep::WaitPeer { peer, .. }) if peer.task == "RecordReplicas" || peer.task == "Preflight"));
    }
    assert_eq!(uptime_target, build(Mode::Uptime, Role::Target, true));
    assert_ne!(
        keys(&build(Mode::Consistency, Role::Target, false)),
        keys(&build(Mode::Consistency, Role::Target, true))
    );
}

#[test]
fn uptime_records_the_dual_active_window_and_consistency_never_does() {
    let dual = |end| move |s: &Step| *s == Step::Record(RecordStep::RecordDualActive { end });
    let target = build(Mode::Uptime, Role::Target, false);
    all_before(
        &target,
        "the window opens before any promotion",
        dual(DualActiveEnd::Started),
        |s| matches!(s, Step::Kube(KubeStep::Promote { .. })),
    );
    assert!(has(&target, dual(DualActiveEnd::Started)));
    let source = build(Mode::Uptime, Role::Source, false);
    assert!(has(&source, dual(DualActiveEnd::Ended)));
    all_before(
        &source,
        "all Secondary before the window closes",
        |s| matches!(s, Step::Kube(KubeStep::WaitSecondary { .. })),
        dual(DualActiveEnd::Ended),
    );
    all_before(
        &source,
        "window closed before resync",
        dual(DualActiveEnd::Ended),
        |s| matches!(s, Step::Kube(KubeStep::Resync { .. })),
    );
    for v in volumes_of(&sample()) {
        assert!(
            position_of(&source, &Step::Kube(KubeStep::Resync { volume: v.clone() }))
                < position_of(
                    &source,
                    &Step::Kube(KubeStep::WaitResynced { volume: v.clone() })
                )
        );
    }
    for role in Role::ALL {
        let wf = build(Mode::Consistency, role, false);
        assert!(!has(&wf, |s| matches!(
            s,
            Step::Record(RecordStep::RecordDualActive { .. })
                | Step::Kube(KubeStep::Resync { .. })
                | Step::Kube(KubeStep::WaitResynced { .. })
        )));
    }
}

#[test]
fn every_wait_for_the_peer_names_a_journaled_step_of_the_peer_plan() {
    for (name, spec) in variants() {
        for mode in MODES {
            for force in [false, true] {
                let (source, target) = Factory::build_both(mode, &spec, force).unwrap();
                for (wf, peer) in [(&source, &target), (&target, &source)] {
                    for (_, step) in wf.steps() {
                        if let Step::Wait(WaitStep::WaitPeer { peer: p, .. }) = step {
                            assert_eq!(p.role, wf.role.peer());
                            let found = peer.find(p.stage, &p.task).unwrap_or_else(|| {
                                panic!("{name}, {mode}: {p:?} not in {:#?}", keys(peer))
                            });
                            assert!(found.journaled(), "{name}: {p:?} is not journaled");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn only_completion_notifications_and_status_steps_are_left_out_of_the_journal() {
    for mode in MODES {
        for role in Role::ALL {
            let wf = build(mode, role, false);
            for (stage, step) in wf.steps() {
                let unjournaled = matches!(
                    step,
                    Step::Record(RecordStep::CompleteOperation)
                        | Step::Notify(NotifyStep::Notify { .. })
                        | Step::Wait(WaitStep::WaitOperationClosed { .. })
                        | Step::Notify(NotifyStep::UpdateGroupStatus)
                );
                assert_eq!(step.journaled(), !unjournaled, "{step:?}");
                if !step.journaled() {
                    // They come after everything the handoff depends on.
                    assert!(
                        matches!(stage.id, StageId::Completion)
                            || matches!(step, Step::Notify(NotifyStep::Notify { .. })),
                        "{step:?} in {}",
                        stage.key()
                    );
                }
            }
        }
    }
}

#[test]
fn deadlines_come_from_the_group_timeouts() {
    let mut spec = sample();
    spec.timeouts = StageTimeouts {
        initialization: Some("1m".into()),
        source_shutdown: Some("2m".into()),
        volume_demotion: Some("3m".into()),
        volume_promotion: Some("4m".into()),
        target_activation: Some("5m".into()),
        completion: Some("6m".into()),
    };
    let m = |n: u64| Duration::from_secs(60 * n);
    for mode in MODES {
        for role in Role::ALL {
            let wf = Factory::build(mode, role, &spec, false).unwrap();
            for stage in &wf.stages {
                assert_eq!(
                    stage.timeout,
                    spec.timeouts.get(stage.id.timeout_stage()).unwrap(),
                    "{}",
                    stage.key()
                );
                for step in &stage.tasks {
                    if step.own_deadline().is_none() {
                        assert_eq!(stage.deadline_of(step), stage.timeout);
                    }
                }
            }
        }
    }
    let within = |wf: &Workflow| -> Vec<Duration> {
        wf.steps().filter_map(|(_, s)| s.own_deadline()).collect()
    };
    // The source first waits for the target's preflight, within the initialization limit.
    // CONSISTENCY target waits through the source's initialization, shutdown and demotion
    // (and not for the source's preflight: it changes nothing before READY).
    let t = Factory::build(Mode::Consistency, Role::Target, &spec, false).unwrap();
    assert_eq!(within(&t), [m(1 + 2 + 3)]);
    // A forced target does not wait for the source's preflight.
    let forced = Factory::build(Mode::Consistency, Role::Target, &spec, true).unwrap();
    assert!(!within(&forced).contains(&m(1)), "{:?}", within(&forced));
    // CONSISTENCY source waits through the target's promotion, activation and completion.
    let s = Factory::build(Mode::Consistency, Role::Source, &spec, false).unwrap();
    assert_eq!(within(&s), [m(1), m(4 + 5 + 6)]);
    // UPTIME source waits through the target's initialization, promotion and activation,
    // then for its completion; the target waits through shutdown, demotion and resync.
    let s = Factory::build(Mode::Uptime, Role::Source, &spec, false).unwrap();
    assert_eq!(within(&s), [m(1), m(1 + 4 + 5), m(6)]);
    // The UPTIME target first waits for the source to record its replica counts (within
    // the initialization limit).
    let t = Factory::build(Mode::Uptime, Role::Target, &spec, false).unwrap();
    assert_eq!(within(&t), [m(1), m(1), m(2 + 3 + 3)]);
    // The resync stage uses the demotion limit.
    assert_eq!(s.stage(StageId::VolumeResync).unwrap().timeout, m(3));
}

#[test]
fn default_timeouts_apply_when_none_are_set() {
    let wf = build(Mode::Consistency, Role::Source, false);
    assert_eq!(wf.stages[0].timeout, Duration::from_secs(60));
    assert_eq!(wf.stages[1].timeout, Duration::from_secs(600));
}

// ---------------------------------------------------------------------------------------------
// Small groups
// ---------------------------------------------------------------------------------------------

#[test]
fn a_group_without_volumes_still_yields_a_valid_plan() {
    let mut spec = sample();
    spec.volume_replications.clear();
    for mode in MODES {
        for force in [false, true] {
            let (source, target) = Factory::build_both(mode, &spec, force).unwrap();
            check_invariants(&spec, &source, &target);
            check_invariants(&spec, &target, &source);
            let volume_step = |s: &Step| {
                matches!(
                    s,
                    Step::Kube(KubeStep::Demote { .. })
                        | Step::Kube(KubeStep::WaitSecondary { .. })
                        | Step::Kube(KubeStep::Promote { .. })
                        | Step::Kube(KubeStep::WaitPrimary { .. })
                        | Step::Kube(KubeStep::VerifyData { .. })
                        | Step::Record(RecordStep::MarkPromoted { .. })
                        | Step::Wait(WaitStep::WaitAllReady { .. })
                        | Step::Kube(KubeStep::Resync { .. })
                        | Step::Kube(KubeStep::WaitResynced { .. })
                        | Step::Record(RecordStep::RecordDualActive { .. })
                )
            };
            assert!(!has(&source, volume_step) && !has(&target, volume_step));
            // The promotion is still claimed: it is what entitles the target to be active.
            assert!(has(&target, |s| *s
                == Step::Record(RecordStep::ClaimPromotion {
                    ready_volumes: vec![]
                })));
        }
    }
    // CONSISTENCY still hands off: the source's journaled handoff step is what the target
    // waits for, since there are no records to wait for.
    let (source, target) = Factory::build_both(Mode::Consistency, &spec, false).unwrap();
    assert!(has(&source, |s| *s
        == Step::Record(RecordStep::MarkAllReady { volumes: vec![] })));
    assert_eq!(
        target.stage(StageId::VolumeTransitionTarget).unwrap().tasks[0],
        Step::Wait(WaitStep::WaitPeer {
            peer: PeerStep {
                role: Role::Source,
                stage: StageId::VolumeTransitionSource,
                task: "MarkAllReady".into()
            },
            within: Duration::from_secs(60 + 600 + 600),
        })
    );
}

#[test]
fn an_empty_group_still_yields_a_valid_plan() {
    let spec = FailoverGroupSpec::default();
    for mode in MODES {
        for force in [false, true] {
            let (source, target) = Factory::build_both(mode, &spec, force).unwrap();
            check_invariants(&spec, &source, &target);
            check_invariants(&spec, &target, &source);
        }
    }
    let source = Factory::build(Mode::Consistency, Role::Source, &spec, false).unwrap();
    assert_eq!(
        keys(&source),
        [
            "Initialization/ValidateOperation",
            "Initialization/RenewLease",
            "Initialization/Preflight",
            "Initialization/Notify:target:Wake",
            "Initialization/WaitPeer:target:Initialization:Preflight",
            "VolumeTransitionSource/MarkAllReady",
            "VolumeTransitionSource/Notify:target:ReadyForPromotion",
            "Completion/WaitOperationClosed",
            "Completion/UpdateGroupStatus",
        ]
    );
    let target = Factory::build(Mode::Uptime, Role::Target, &spec, false).unwrap();
    assert_eq!(
        keys(&target),
        [
            "Initialization/ValidateOperation",
            "Initialization/RenewLease",
            "Initialization/Preflight",
            "Initialization/Notify:source:Wake",
            "Initialization/WaitPeer:source:Initialization:Preflight",
            "VolumeTransitionTarget/ClaimPromotion",
            "TargetActivation/Notify:source:Promoted",
            "Completion/WaitPeer:source:SourceShutdown:WaitPeer:target:VolumeTransitionTarget:ClaimPromotion",
            "Completion/CompleteOperation",
            "Completion/Notify:source:OperationCompleted",
            "Completion/UpdateGroupStatus",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// The exhaustive sweep
// ---------------------------------------------------------------------------------------------

/// Invariants every plan keeps, checked against the spec and the peer's plan.
fn check_invariants(spec: &FailoverGroupSpec, wf: &Workflow, peer: &Workflow) {
    let ctx = format!(
        "{} {}{}: {:#?}",
        wf.mode,
        wf.role,
        if wf.force { " forced" } else { "" },
        keys(wf)
    );
    let (mode, role) = (wf.mode, wf.role);

    // Stages: numbered by the mode, in order, on the right side, never empty.
    let numbers: Vec<u8> = wf.stages.iter().map(|s| s.number).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{ctx}");
    for stage in &wf.stages {
        assert_eq!(Some(stage.number), stage.id.number(mode), "{ctx}");
        assert!(stage.id.runs_on().is_none_or(|r| r == role), "{ctx}");
        assert!(!stage.tasks.is_empty(), "{ctx}");
        assert_eq!(stage.name, stage.id.title());
        validate_step_name("stage", stage.key()).unwrap();
        let mut seen = std::collections::HashSet::new();
        for step in &stage.tasks {
            validate_step_name("task", &step.key()).unwrap();
            assert!(
                seen.insert(step.key()),
                "duplicate key {} in {ctx}",
                step.key()
            );
        }
    }
    let init = &wf.stages.first().unwrap().tasks;
    let expected = initialization_of(spec, mode, role, wf.force);
    assert_eq!(init[..expected.len()], expected, "{ctx}");
    // Only a source records its replica counts, up front (before any change; UPTIME: the
    // target scales up before the source shuts down), and only after both preflights passed.
    assert!(
        init[expected.len()..].iter().all(|s| matches!(
            s,
            Step::Record(RecordStep::RecordReplicas { .. })
        ) && role == Role::Source),
        "{ctx}"
    );
    let last = wf.stages.last().unwrap();
    assert_eq!(last.id, StageId::Completion, "{ctx}");
    assert_eq!(
        last.tasks.last(),
        Some(&Step::Notify(NotifyStep::UpdateGroupStatus)),
        "{ctx}"
    );

    // Each side does only its own part.
    match role {
        Role::Source => assert!(!has(wf, is_target_only), "{ctx}"),
        Role::Target => assert!(!has(wf, is_source_only), "{ctx}"),
    }

    // Every object of the spec is handled.
    let volumes = volumes_of(spec);
    let count = |pred: &dyn Fn(&Step) -> bool| positions(wf, pred).len();
    let scaled = spec
        .workloads
        .iter()
        .filter(|w| w.kind != WorkloadKind::CronJob)
        .count();
    let cron = spec.workloads.len() - scaled;
    match role {
        Role::Source => {
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::TrafficOff { .. }))),
                spec.network.len(),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::SuspendFlux { .. }))),
                spec.flux.len(),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::ScaleDown { .. }))),
                scaled,
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Record(RecordStep::RecordReplicas { .. }))),
                usize::from(scaled > 0),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::SuspendCronJob { .. }))),
                cron,
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::WaitPodsGone { .. }))),
                spec.workloads.len(),
                "{ctx}"
            );
            for v in &volumes {
                let d = position_of(wf, &Step::Kube(KubeStep::Demote { volume: v.clone() }));
                let w = position_of(
                    wf,
                    &Step::Kube(KubeStep::WaitSecondary { volume: v.clone() }),
                );
                assert!(d < w, "{ctx}");
                if mode == Mode::Uptime {
                    let r = position_of(wf, &Step::Kube(KubeStep::Resync { volume: v.clone() }));
                    let rw = position_of(
                        wf,
                        &Step::Kube(KubeStep::WaitResynced { volume: v.clone() }),
                    );
                    assert!(w < r && r < rw, "{ctx}");
                }
            }
        }
        Role::Target => {
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::TrafficOn { .. }))),
                spec.network.len(),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::ResumeFlux { .. }))),
                spec.flux.len(),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::ScaleUp { .. }))),
                scaled,
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::WaitReady { .. }))),
                scaled,
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Kube(KubeStep::ResumeCronJob { .. }))),
                cron,
                "{ctx}"
            );
            assert_eq!(
                count(&|s| matches!(s, Step::Record(RecordStep::CompleteOperation))),
                1,
                "{ctx}"
            );
            for v in &volumes {
                let p = position_of(wf, &Step::Kube(KubeStep::Promote { volume: v.clone() }));
                let w = position_of(wf, &Step::Kube(KubeStep::WaitPrimary { volume: v.clone() }));
                let c = position_of(wf, &Step::Kube(KubeStep::VerifyData { volume: v.clone() }));
                assert!(p < w && w < c, "{ctx}");
            }
        }
    }

    // Source order: traffic off → Flux → down → pods gone → demote → Secondary →
    // handoff / window end → resync; the replicas are recorded before anything is scaled
    // down (checked below: UPTIME records them up front).
    all_before(
        wf,
        "replicas recorded before scaling down",
        |s| matches!(s, Step::Record(RecordStep::RecordReplicas { .. })),
        |s| matches!(s, Step::Kube(KubeStep::ScaleDown { .. })),
    );
    let source_order: [&dyn Fn(&Step) -> bool; 8] = [
        &|s| matches!(s, Step::Kube(KubeStep::TrafficOff { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::SuspendFlux { .. })),
        &|s| {
            matches!(
                s,
                Step::Kube(KubeStep::ScaleDown { .. })
                    | Step::Kube(KubeStep::SuspendCronJob { .. })
            )
        },
        &|s| matches!(s, Step::Kube(KubeStep::WaitPodsGone { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::Demote { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::WaitSecondary { .. })),
        &|s| {
            matches!(
                s,
                Step::Record(RecordStep::MarkAllReady { .. })
                    | Step::Record(RecordStep::RecordDualActive { .. })
            )
        },
        &|s| {
            matches!(
                s,
                Step::Kube(KubeStep::Resync { .. }) | Step::Kube(KubeStep::WaitResynced { .. })
            )
        },
    ];
    // Target order: handoff → claim → window start → promote → Primary → verify → promoted
    // → up → Flux → ready → traffic on.
    let target_order: [&dyn Fn(&Step) -> bool; 11] = [
        &|s| {
            matches!(s, Step::Wait(WaitStep::WaitAllReady { .. }))
                || matches!(s, Step::Wait(WaitStep::WaitPeer { peer, .. }) if peer.task == "MarkAllReady")
        },
        &|s| matches!(s, Step::Record(RecordStep::ClaimPromotion { .. })),
        &|s| matches!(s, Step::Record(RecordStep::RecordDualActive { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::Promote { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::WaitPrimary { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::VerifyData { .. })),
        &|s| matches!(s, Step::Record(RecordStep::MarkPromoted { .. })),
        &|s| {
            matches!(
                s,
                Step::Kube(KubeStep::ScaleUp { .. }) | Step::Kube(KubeStep::ResumeCronJob { .. })
            )
        },
        &|s| matches!(s, Step::Kube(KubeStep::ResumeFlux { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::WaitReady { .. })),
        &|s| matches!(s, Step::Kube(KubeStep::TrafficOn { .. })),
    ];
    let order: &[&dyn Fn(&Step) -> bool] = match role {
        Role::Source => &source_order,
        Role::Target => &target_order,
    };
    for (i, earlier) in order.iter().enumerate() {
        for later in &order[i + 1..] {
            all_before(wf, &format!("{role} order #{i}"), earlier, later);
        }
    }
    all_before(
        wf,
        "claim before any promotion step",
        |s| matches!(s, Step::Record(RecordStep::ClaimPromotion { .. })),
        |s| s.is_promotion() && !matches!(s, Step::Record(RecordStep::ClaimPromotion { .. })),
    );
    if let Some(done) = positions(wf, |s| {
        matches!(s, Step::Record(RecordStep::CompleteOperation))
    })
    .first()
    {
        // After completion only notifications and the status follow.
        assert!(
            wf.steps().skip(done + 1).all(|(_, s)| matches!(
                s,
                Step::Notify(NotifyStep::Notify { .. })
                    | Step::Notify(NotifyStep::UpdateGroupStatus)
            )),
            "{ctx}"
        );
    }

    // The handoff, by mode.
    let handoff = mode == Mode::Consistency && !wf.force;
    match (mode, role) {
        (Mode::Consistency, Role::Source) => {
            let mark = position_of(
                wf,
                &Step::Record(RecordStep::MarkAllReady {
                    volumes: volumes.clone(),
                }),
            );
            let notify = position_of(
                wf,
                &Step::Notify(NotifyStep::Notify {
                    to: Role::Target,
                    kind: EnvelopeKind::ReadyForPromotion,
                }),
            );
            assert_eq!(notify, mark + 1, "{ctx}");
        }
        (Mode::Consistency, Role::Target) => {
            let claim = Step::Record(RecordStep::ClaimPromotion {
                ready_volumes: if handoff { volumes.clone() } else { vec![] },
            });
            let at = position_of(wf, &claim);
            if handoff {
                // The step right before the claim waits for the source's handoff.
                let (_, before) = wf.steps().nth(at - 1).unwrap();
                match before {
                    Step::Wait(WaitStep::WaitAllReady { volumes: v, .. }) => {
                        assert_eq!(*v, volumes, "{ctx}")
                    }
                    Step::Wait(WaitStep::WaitPeer { peer: p, .. }) => {
                        assert!(volumes.is_empty(), "{ctx}");
                        assert!(
                            matches!(
                                peer.find(p.stage, &p.task),
                                Some(Step::Record(RecordStep::MarkAllReady { .. }))
                            ),
                            "{ctx}"
                        );
                    }
                    other => panic!("{other:?} before the claim in {ctx}"),
                }
            } else {
                // No handoff to wait for (an UPTIME target only waits for the source's
                // replica counts before scaling up).
                assert!(
                    !has(wf, |s| matches!(
                        s,
                        Step::Wait(WaitStep::WaitAllReady { .. })
                    ) || matches!(s, Step::Wait(WaitStep::WaitPeer { peer, .. }) if peer.task != "RecordReplicas")),
                    "{ctx}"
                );
            }
        }
        (Mode::Uptime, Role::Source) => {
            assert!(
                !has(wf, |s| matches!(
                    s,
                    Step::Record(RecordStep::MarkAllReady { .. })
                )),
                "{ctx}"
            );
            // The first thing after initialization is waiting until the target serves.
            let (stage, first) = wf
                .steps()
                .find(|(stage, _)| stage.id != StageId::Initialization)
                .unwrap();
            assert_eq!(stage.id, StageId::SourceShutdown, "{ctx}");
            let Step::Wait(WaitStep::WaitPeer { peer: p, .. }) = first else {
                panic!("{ctx}")
            };
            assert_eq!(
                Some(p.clone()),
                peer.last_journaled_before(Some(StageId::Completion)),
                "{ctx}"
            );
            assert_eq!(
                count(&|s| *s
                    == Step::Record(RecordStep::RecordDualActive {
                        end: DualActiveEnd::Ended
                    })),
                usize::from(!volumes.is_empty()),
                "{ctx}"
            );
        }
        (Mode::Uptime, Role::Target) => {
            assert!(
                !has(wf, |s| matches!(
                    s,
                    Step::Wait(WaitStep::WaitAllReady { .. })
                )),
                "{ctx}"
            );
            position_of(
                wf,
                &Step::Record(RecordStep::ClaimPromotion {
                    ready_volumes: vec![],
                }),
            );
            assert_eq!(
                count(&|s| *s
                    == Step::Record(RecordStep::RecordDualActive {
                        end: DualActiveEnd::Started
                    })),
                usize::from(!volumes.is_empty()),
                "{ctx}"
            );
            // Completion waits for the source's last journaled step (the only other waits are
            // for the source's preflight and for its replica counts, before scaling up).
            let wait = positions(
                wf,
                |s| matches!(s, Step::Wait(WaitStep::WaitPeer { peer, .. }) if peer.task != "RecordReplicas" && peer.task != "Preflight"),
            );
            assert_eq!(wait.len(), 1, "{ctx}");
            let (stage, Step::Wait(WaitStep::WaitPeer { peer: p, .. })) =
                wf.steps().nth(wait[0]).unwrap()
            else {
                unreachable!()
            };
            assert_eq!(stage.id, StageId::Completion, "{ctx}");
            assert_eq!(
                Some(p.clone()),
                peer.last_journaled_before(Some(StageId::Completion)),
                "{ctx}"
            );
            assert!(
                wait[0] < position_of(wf, &Step::Record(RecordStep::CompleteOperation)),
                "{ctx}"
            );
        }
    }
}

#[test]
fn every_combination_of_mode_role_force_and_objects_keeps_the_invariants() {
    let mut checked = 0;
    for (name, spec) in variants() {
        for mode in MODES {
            for force in [false, true] {
                let (source, target) = Factory::build_both(mode, &spec, force)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!((source.role, target.role), (Role::Source, Role::Target));
                check_invariants(&spec, &source, &target);
                check_invariants(&spec, &target, &source);
                // Pure: the same input gives the same plan.
                assert_eq!(
                    Factory::build(mode, Role::Source, &spec, force).unwrap(),
                    source
                );
                checked += 2;
            }
        }
    }
    assert_eq!(checked, 16 * 2 * 2 * 2);
}

// ---------------------------------------------------------------------------------------------
// Rejected specs
// ---------------------------------------------------------------------------------------------

#[test]
fn an_invalid_timeout_is_rejected_naming_the_field() {
    let mut spec = sample();
    spec.timeouts.volume_promotion = Some("soon".into());
    let err = Factory::build(Mode::Consistency, Role::Source, &spec, false).unwrap_err();
    assert!(
        err.to_string().contains("spec.timeouts.volumePromotion"),
        "{err}"
    );
    spec.timeouts.volume_promotion = Some("0s".into());
    let err = Factory::build(Mode::Uptime, Role::Target, &spec, false).unwrap_err();
    assert!(
        matches!(&err, FactoryError::InvalidSpec(p) if p[0].field == "spec.timeouts.volumePromotion")
    );
}

#[test]
fn more_volumes_than_one_handoff_transaction_holds_are_rejected() {
    let mut spec = FailoverGroupSpec {
        volume_replications: (0..MAX_VOLUMES)
            .map(|i| volume(&format!("v{i}"), None))
            .collect(),
        ..FailoverGroupSpec::default()
    };
    assert!(Factory::build(Mode::Consistency, Role::Source, &spec, false).is_ok());
    spec.volume_replications.push(volume("one-too-many", None));
    let err = Factory::build(Mode::Consistency, Role::Source, &spec, false).unwrap_err();
    assert_eq!(
        err,
        FactoryError::InvalidSpec(vec![SpecProblem {
            field: "spec.volumeReplications".into(),
            message: "has 99 entries; at most 98 can be handed off together".into(),
        }])
    );
}

#[test]
fn an_object_listed_twice_is_rejected() {
    let mut spec = sample();
    spec.workloads
        .push(workload(WorkloadKind::Deployment, "orders-api"));
    let err = Factory::build(Mode::Consistency, Role::Target, &spec, false).unwrap_err();
    let FactoryError::InvalidSpec(problems) = &err;
    assert_eq!(problems.len(), 1, "{err}");
    assert!(problems[0].field.starts_with("spec.workloads["), "{err}");
    assert!(
        problems[0]
            .message
            .contains("lists Deployment/orders-api again"),
        "{err}"
    );
    // The same name with another kind is another object.
    let mut spec = sample();
    spec.workloads
        .push(workload(WorkloadKind::StatefulSet, "orders-api"));
    assert!(Factory::build(Mode::Consistency, Role::Target, &spec, false).is_ok());
    let mut spec = sample();
    spec.volume_replications.push(volume("shared-files", None));
    assert!(matches!(
        Factory::build(Mode::Uptime, Role::Source, &spec, false),
        Err(FactoryError::InvalidSpec(p)) if p[0].field.starts_with("spec.volumeReplications[")
    ));
}

#[test]
fn a_volume_naming_a_workload_outside_the_group_is_rejected() {
    let mut spec = sample();
    spec.volume_replications
        .push(volume("stray", Some("not-in-group")));
    let err = Factory::build(Mode::Consistency, Role::Source, &spec, false).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("stray") && msg.contains("not-in-group"),
        "{msg}"
    );
}

#[test]
fn long_object_names_give_distinct_bounded_keys() {
    let long = "a".repeat(250);
    let spec = FailoverGroupSpec {
        volume_replications: vec![
            volume(&format!("{long}1"), None),
            volume(&format!("{long}2"), None),
        ],
        ..FailoverGroupSpec::default()
    };
    for mode in MODES {
        for role in Role::ALL {
            let (source, target) = Factory::build_both(mode, &spec, false).unwrap();
            let wf = if role == Role::Source {
                &source
            } else {
                &target
            };
            let peer = if role == Role::Source {
                &target
            } else {
                &source
            };
            check_invariants(&spec, wf, peer);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------------

#[test]
fn the_rollback_reactivates_volumes_before_workloads_and_traffic_last() {
    let wf = Factory::rollback(Mode::Consistency, &sample(), false).unwrap();
    assert_eq!(wf.role, Role::Source);
    assert_eq!(wf.stages.len(), 1);
    assert_eq!(wf.stages[0].id, StageId::Rollback);
    let names: Vec<&str> = wf.steps().map(|(_, s)| s.name()).collect();
    let first = |n: &str| names.iter().position(|x| *x == n).unwrap();
    let last = |n: &str| names.iter().rposition(|x| *x == n).unwrap();
    assert_eq!(names.iter().filter(|n| **n == "Reactivate").count(), 3);
    assert!(last("Reactivate") < first("WaitPrimary"));
    assert!(last("WaitPrimary") < first("ScaleUp"), "{names:?}");
    assert!(last("ScaleUp") < first("ResumeFlux"));
    assert!(last("WaitReady") < first("TrafficOn"));
    assert!(last("TrafficOn") < first("FinishAbort"));
    assert_eq!(names.last(), Some(&"UpdateGroupStatus"));
    // Nothing in it moves data away or promotes for a target.
    for (_, step) in wf.steps() {
        assert!(
            !matches!(
                step,
                Step::Kube(KubeStep::Demote { .. })
                    | Step::Kube(KubeStep::Promote { .. })
                    | Step::Record(RecordStep::ClaimPromotion { .. })
                    | Step::Kube(KubeStep::ScaleDown { .. })
                    | Step::Record(RecordStep::MarkAllReady { .. })
            ),
            "{step:?}"
        );
    }
    // Its journal keys are unique and valid.
    let mut keys = std::collections::HashSet::new();
    for (_, step) in wf.steps() {
        validate_step_name("task", &step.key()).unwrap();
        assert!(keys.insert(step.key()), "{} twice", step.key());
    }
}

#[test]
fn the_rollback_is_the_same_for_both_modes_and_rejects_what_the_plan_rejects() {
    let c = Factory::rollback(Mode::Consistency, &sample(), false).unwrap();
    let u = Factory::rollback(Mode::Uptime, &sample(), false).unwrap();
    let steps = |w: &Workflow| w.steps().map(|(_, s)| s.clone()).collect::<Vec<_>>();
    assert_eq!(steps(&c), steps(&u));
    let mut bad = sample();
    bad.volume_replications.push(volume("x", Some("nope")));
    assert!(matches!(
        Factory::rollback(Mode::Consistency, &bad, false),
        Err(FactoryError::InvalidSpec(p)) if p[0].field.ends_with("].workload")
    ));
}

#[test]
fn both_sides_pass_their_preflight_and_wait_for_the_other_before_any_change() {
    let mut spec = sample();
    spec.workloads[1].replicas = Some(3);
    for mode in MODES {
        for force in [false, true] {
            let (source, target) = Factory::build_both(mode, &spec, force).unwrap();
            for wf in [&source, &target] {
                let ctx = format!("{mode} {} forced={force}", wf.role);
                let init = wf.stage(StageId::Initialization).unwrap();
                let preflight = position_of(wf, &init.tasks[2]);
                assert_eq!(init.tasks[2].name(), "Preflight", "{ctx}");
                // Nothing in either cluster changes before the preflight (and, but for a
                // forced target, the wait for the peer's): every Kubernetes step and every
                // record written for the handoff comes later.
                let first_change = wf
                    .steps()
                    .position(|(_, s)| {
                        matches!(s, Step::Kube(_))
                            || matches!(
                                s,
                                Step::Record(
                                    RecordStep::RecordReplicas { .. }
                                        | RecordStep::MarkAllReady { .. }
                                        | RecordStep::ClaimPromotion { .. }
                                )
                            )
                    })
                    .unwrap();
                assert!(preflight < first_change, "{ctx}");
                let waits_for_peer = wf.steps().position(|(_, s)| {
                    matches!(s, Step::Wait(WaitStep::WaitPeer { peer, .. })
                        if peer.stage == StageId::Initialization && peer.task == "Preflight")
                });
                // The source waits for the target's preflight before any change; so does an
                // UPTIME target (it acts first). A CONSISTENCY target changes nothing before
                // READY, which comes after the source's preflight, and waits for neither.
                match (wf.role, mode, force) {
                    (Role::Source, _, _) | (Role::Target, Mode::Uptime, false) => {
                        assert!(waits_for_peer.unwrap() < first_change, "{ctx}")
                    }
                    _ => assert_eq!(waits_for_peer, None, "{ctx}"),
                }
            }
            // The target's preflight knows the declared counts of what it scales up.
            let Step::Check(CheckStep::Preflight { role, checks }) =
                &target.stage(StageId::Initialization).unwrap().tasks[2]
            else {
                panic!("no preflight")
            };
            assert_eq!(*role, Role::Target);
            assert_eq!(
                checks.scale_up,
                [
                    (WorkloadKind::Deployment, "orders-api".into(), None),
                    (WorkloadKind::StatefulSet, "orders-db".into(), Some(3)),
                    (WorkloadKind::Deployment, "orders-worker".into(), None),
                ]
            );
            assert_eq!(checks.len(), 4 + 2 + 2 + 3, "every object of the group");
        }
    }
}

#[test]
fn every_step_the_other_side_waits_for_publishes_its_stage() {
    for mode in [Mode::Consistency, Mode::Uptime] {
        for force in [false, true] {
            if force && mode == Mode::Uptime {
                continue;
            }
            for spec in [sample(), FailoverGroupSpec::default()] {
                let (source, target) = Factory::build_both(mode, &spec, force).unwrap();
                for (plan, peer) in [(&source, &target), (&target, &source)] {
                    for (_, step) in peer.steps() {
                        let waited = match step {
                            Step::Wait(WaitStep::WaitPeer { peer, .. })
                            | Step::Wait(WaitStep::WaitSourceReleased {
                                release: Release::Step(peer),
                                ..
                            }) => peer,
                            _ => continue,
                        };
                        let stage = plan
                            .stages
                            .iter()
                            .find(|s| s.id == waited.stage)
                            .unwrap_or_else(|| panic!("{mode} {force}: no stage for {waited:?}"));
                        assert!(
                            stage.published.contains(&waited.task),
                            "{mode} force={force}: {:?} waits for {}/{}, not published: {:?}",
                            peer.role,
                            stage.key(),
                            waited.task,
                            stage.published
                        );
                    }
                }
            }
        }
    }
    // CONSISTENCY: the target's Initialization is published at its preflight (the source
    // waits for it); nobody waits for the source's, which is published after its last step
    // (the replica counts, whose write carries it). UPTIME's source publishes its preflight
    // and the replica counts the target scales to.
    let (source, target) = Factory::build_both(Mode::Consistency, &sample(), false).unwrap();
    assert_eq!(target.stages[0].published, ["Preflight"]);
    assert!(source.stages[0].published.is_empty());
    let (source, _) = Factory::build_both(Mode::Uptime, &sample(), false).unwrap();
    assert_eq!(
        source.stages[0].published.len(),
        2,
        "{:?}",
        source.stages[0].published
    );
}
