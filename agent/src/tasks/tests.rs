use failover_messages::crd::WorkloadKind;
use failover_messages::envelope::EnvelopeKind;
use failover_messages::keys::GroupRef;
use failover_messages::records::Mode;
use failover_messages::store::{Outcome, Stale};
use jiff::Timestamp;

use super::support::{outcome, workload_key};
use super::*;
use crate::workflow::{KubeStep, NotifyStep, RecordStep, Role, WorkflowContext, WorkflowTimings};

/// A context with no Kubernetes client, no store and no inbox.
fn bare_context(cluster: &str) -> TaskContext {
    let at = Timestamp::from_second(1_780_000_000).unwrap();
    let wf = WorkflowContext {
        operation_id: "op-1".into(),
        group: GroupRef::new("shop", "orders").unwrap(),
        source: "east".into(),
        target: "west".into(),
        mode: Mode::Consistency,
        force: false,
        claimed: false,
        epoch: 3,
        lease: None,
        timings: WorkflowTimings {
            requested_at: at,
            started_at: at,
        },
    };
    TaskContext::new(wf, cluster).unwrap()
}

async fn run_step(step: Step, ctx: &TaskContext) -> Result<(), TaskError> {
    ClusterTasks::default().task_for(&step).execute(ctx).await
}

#[tokio::test]
async fn mark_all_ready_writes_with_or_without_volumes() {
    // No store in the context: a write fails with MissingDependency. Without volumes the
    // step still writes (the group-level mark the target's claim needs).
    let ctx = bare_context("east");
    let err = run_step(
        Step::Record(RecordStep::MarkAllReady { volumes: vec![] }),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, TaskError::MissingDependency { .. }),
        "{err:?}"
    );
    let err = run_step(
        Step::Record(RecordStep::MarkAllReady {
            volumes: vec!["data".into()],
        }),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, TaskError::MissingDependency { .. }), "{err}");
}

#[tokio::test]
async fn a_notification_that_cannot_be_sent_is_not_fatal() {
    let ctx = bare_context("west");
    run_step(
        Step::Notify(NotifyStep::Notify {
            to: Role::Source,
            kind: EnvelopeKind::OperationCompleted,
        }),
        &ctx,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn kubernetes_steps_name_the_missing_client() {
    let ctx = bare_context("east");
    let err = run_step(
        Step::Kube(KubeStep::ScaleDown {
            kind: WorkloadKind::Deployment,
            name: "api".into(),
        }),
        &ctx,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("Kubernetes client"), "{err}");
}

#[test]
fn tasks_carry_the_step_name_and_description() {
    let step = Step::Kube(KubeStep::Demote {
        volume: "data".into(),
    });
    let task = ClusterTasks::default().task_for(&step);
    assert_eq!(task.name(), "Demote");
    assert_eq!(task.description(), step.description());
}

#[test]
fn lost_conditional_writes_stop_the_engine() {
    let stale = Stale {
        expected_epoch: 3,
        current_epoch: Some(4),
        current_op: None,
    };
    assert!(matches!(
        outcome::<()>("x", Outcome::StaleEpoch(stale)),
        Err(TaskError::StaleEpoch(_))
    ));
    let at = Timestamp::from_second(1).unwrap();
    assert!(matches!(
        outcome::<()>("x", Outcome::AbortRequested { at }),
        Err(TaskError::AbortRequested { .. })
    ));
    let err = outcome::<()>(
        "claiming",
        Outcome::NotReady {
            missing: vec!["v".into()],
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("claiming"), "{err}");
    assert_eq!(
        workload_key(WorkloadKind::StatefulSet, "db"),
        "StatefulSet/db"
    );
}

mod kube_errors {
    use std::time::Duration;

    use super::super::support::kube_err;
    use crate::kube_ops::KubeOpsError;
    use crate::kube_ops::error::{Cause, ObjectId};

    fn scale(source: Cause) -> KubeOpsError {
        KubeOpsError::ScaleWorkload {
            object: ObjectId {
                kind: "Deployment",
                namespace: "shop".into(),
                name: "api".into(),
                cluster: "west".into(),
            },
            to: "3 replicas".into(),
            source,
        }
    }

    fn api(code: u16) -> Cause {
        Cause::Api(::kube::Error::Api(
            ::kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn a_permanent_refusal_fails_the_step_at_once_naming_the_object() {
        for cause in [Cause::NotFound, api(403), api(422), api(400)] {
            let e = kube_err(scale(cause));
            assert!(e.is_final(), "{e:?}");
            assert_eq!(e.object(), Some("Deployment shop/api"));
            let chain = crate::errors::error_chain(&e);
            assert!(
                chain.contains("Deployment shop/api in cluster west"),
                "{chain}"
            );
        }
    }

    #[test]
    fn a_transient_failure_is_retried() {
        for code in [409, 429, 500, 503] {
            let e = kube_err(scale(api(code)));
            assert!(!e.is_final(), "{code}: {e:?}");
            assert_eq!(e.object(), Some("Deployment shop/api"));
        }
        assert!(!kube_err(scale(Cause::WatchEnded("the watch ended".into()))).is_final());
    }

    #[test]
    fn a_wait_that_ran_out_gives_up() {
        let e = kube_err(scale(Cause::Timeout {
            after: Duration::from_secs(5),
            expected: "ready".into(),
            last: "0/3 ready".into(),
        }));
        assert!(e.is_final());
    }
}
