use failover_messages::crd::{FluxKind, NetworkKind, WorkloadKind};
use failover_messages::envelope::EnvelopeKind;

use super::wait::humanize;
use super::*;

#[test]
fn keys_name_the_object_and_fit_the_journal() {
    let step = Step::Kube(KubeStep::ScaleDown {
        kind: WorkloadKind::Deployment,
        name: "orders-api".into(),
    });
    assert_eq!(step.key(), "ScaleDown:Deployment/orders-api");
    assert_eq!(step.object().as_deref(), Some("Deployment/orders-api"));
    let flux = Step::Kube(KubeStep::SuspendFlux {
        kind: FluxKind::HelmRelease,
        namespace: "flux-system".into(),
        name: "orders".into(),
    });
    assert_eq!(flux.key(), "SuspendFlux:HelmRelease/flux-system/orders");
    assert_eq!(
        Step::Notify(NotifyStep::Notify {
            to: Role::Target,
            kind: EnvelopeKind::ReadyForPromotion
        })
        .key(),
        "Notify:target:ReadyForPromotion"
    );
    assert_eq!(
        Step::Record(RecordStep::RecordDualActive {
            end: DualActiveEnd::Ended
        })
        .key(),
        "RecordDualActive:Ended"
    );
    assert_eq!(
        Step::Record(RecordStep::CompleteOperation).key(),
        "CompleteOperation"
    );
}

#[test]
fn long_keys_are_cut_stably_and_stay_distinct() {
    let long = |suffix: &str| {
        Step::Kube(KubeStep::WaitSecondary {
            volume: format!("{}{suffix}", "v".repeat(240)),
        })
    };
    let (a, b) = (long("a"), long("b"));
    assert!(a.key().len() <= MAX_STEP_NAME_LEN, "{}", a.key().len());
    assert_eq!(a.key(), long("a").key());
    assert_ne!(a.key(), b.key());
    failover_messages::keys::validate_step_name("task", &a.key()).unwrap();
}

#[test]
fn durations_read_like_the_spec() {
    assert_eq!(humanize(Duration::from_secs(600)), "10m");
    assert_eq!(humanize(Duration::from_secs(7200)), "2h");
    assert_eq!(humanize(Duration::from_secs(90)), "90s");
    assert_eq!(humanize(Duration::from_millis(1500)), "1500ms");
}

#[test]
fn each_kubernetes_step_belongs_to_its_concern_and_record_steps_to_none() {
    let name = || "x".to_owned();
    assert_eq!(
        Step::Kube(KubeStep::TrafficOn {
            kind: NetworkKind::Ingress,
            name: name()
        })
        .concern(),
        Some(Concern::Traffic)
    );
    assert_eq!(
        Step::Kube(KubeStep::SuspendFlux {
            kind: FluxKind::HelmRelease,
            namespace: name(),
            name: name()
        })
        .concern(),
        Some(Concern::GitOps)
    );
    assert_eq!(
        Step::Kube(KubeStep::WaitPodsGone {
            kind: WorkloadKind::CronJob,
            name: name()
        })
        .concern(),
        Some(Concern::Workloads)
    );
    assert_eq!(
        Step::Kube(KubeStep::Reactivate { volume: name() }).concern(),
        Some(Concern::Volumes)
    );
    assert_eq!(
        Step::Record(RecordStep::ClaimPromotion {
            ready_volumes: vec![]
        })
        .concern(),
        None
    );
    assert_eq!(
        Step::Record(RecordStep::RecordReplicas { workloads: vec![] }).concern(),
        None
    );
}
