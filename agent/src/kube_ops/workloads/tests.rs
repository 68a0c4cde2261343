//! Unit tests of the pure workload decisions: scale plans, readiness, pod tracking,
//! selectors and the Jobs of CronJobs.

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher::Event;

use super::*;

fn deployment(v: Value) -> WorkloadView {
    WorkloadView::from_deployment(&serde_json::from_value(v).unwrap())
}

fn sts(v: Value) -> WorkloadView {
    WorkloadView::from_stateful_set(&serde_json::from_value(v).unwrap())
}

fn dep(replicas: i32, annotations: Value) -> WorkloadView {
    deployment(json!({
        "metadata": {"name": "api", "namespace": "shop", "generation": 2,
                     "resourceVersion": "41", "annotations": annotations},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}}}},
    }))
}

#[test]
fn scale_down_records_the_live_count_and_zeroes_replicas() {
    let s = Stamp::new(5, "op");
    let plan = plan_scale_down(&dep(3, json!({})), &s);
    assert_eq!(plan.replicas, 3);
    assert_eq!(
        plan.patch,
        Some(json!({
            "metadata": {"resourceVersion": "41", "annotations": {
                "failover.io/original-replicas": "3",
                "failover.io/epoch": "5", "failover.io/operation": "op"}},
            "spec": {"replicas": 0}
        }))
    );
}

#[test]
fn second_scale_down_keeps_the_recorded_count() {
    let s = Stamp::new(5, "op");
    let done = dep(0, json!({"failover.io/original-replicas": "3"}));
    let plan = plan_scale_down(&done, &s);
    assert_eq!(plan.replicas, 3);
    assert_eq!(plan.patch, None);
}

#[test]
fn scale_down_of_a_workload_already_at_zero_records_zero_once() {
    let s = Stamp::new(5, "op");
    let plan = plan_scale_down(&dep(0, json!({})), &s);
    assert_eq!(plan.replicas, 0);
    assert_eq!(
        plan.patch.unwrap()["metadata"]["annotations"]["failover.io/original-replicas"],
        "0"
    );
    let plan = plan_scale_down(&dep(0, json!({"failover.io/original-replicas": "0"})), &s);
    assert_eq!((plan.replicas, plan.patch), (0, None));
}

#[test]
fn a_workload_scaled_up_since_records_its_current_count() {
    let s = Stamp::new(6, "op2");
    let plan = plan_scale_down(&dep(5, json!({"failover.io/original-replicas": "3"})), &s);
    assert_eq!(plan.replicas, 5);
    assert_eq!(
        plan.patch.unwrap()["metadata"]["annotations"]["failover.io/original-replicas"],
        "5"
    );
}

#[test]
fn garbage_in_the_annotation_is_not_a_count() {
    let v = dep(0, json!({"failover.io/original-replicas": "three"}));
    assert_eq!(v.recorded_replicas(), None);
    assert_eq!(plan_scale_down(&v, &Stamp::new(1, "o")).replicas, 0);
}

#[test]
fn record_writes_only_a_missing_or_different_count() {
    let s = Stamp::new(1, "o");
    let p = plan_record(&dep(2, json!({})), &s);
    assert_eq!(p.replicas, 2);
    let patch = p.patch.unwrap();
    assert!(patch.get("spec").is_none());
    assert_eq!(
        patch["metadata"]["annotations"]["failover.io/original-replicas"],
        "2"
    );
    assert_eq!(
        plan_record(&dep(2, json!({"failover.io/original-replicas": "2"})), &s).patch,
        None
    );
}

#[test]
fn restore_uses_the_given_count_else_the_annotation_else_the_declared_one() {
    let s = Stamp::new(7, "op");
    let down = dep(0, json!({"failover.io/original-replicas": "3"}));
    let p = plan_restore(&down, None, Some(5), &s).unwrap();
    assert_eq!(p.replicas, 3, "the annotation wins over the declared count");
    assert_eq!(p.patch.unwrap()["spec"]["replicas"], 3);
    let p = plan_restore(&down, Some(4), Some(5), &s).unwrap();
    assert_eq!(p.replicas, 4);
    assert_eq!(
        plan_restore(
            &dep(3, json!({"failover.io/original-replicas": "3"})),
            None,
            None,
            &s
        )
        .unwrap()
        .patch,
        None
    );
    let p = plan_restore(&dep(0, json!({})), None, Some(2), &s).unwrap();
    assert_eq!(p.replicas, 2, "the declared count is the last fallback");
    let e = plan_restore(&dep(0, json!({})), None, None, &s).unwrap_err();
    assert!(
        e.to_string().contains("failover.io/original-replicas"),
        "{e}"
    );
    assert!(e.is_permanent(), "no count will appear by retrying");
}

#[test]
fn deployment_readiness() {
    let base = |status: Value| {
        deployment(json!({
            "metadata": {"name": "api", "generation": 3},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}},
                     "template": {}},
            "status": status
        }))
    };
    assert!(is_ready(&base(
        json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
    )));
    assert!(!is_ready(&base(
        json!({"observedGeneration": 2, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2})
    )));
    assert!(!is_ready(&base(
        json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 1, "updatedReplicas": 2})
    )));
    assert!(!is_ready(&base(
        json!({"observedGeneration": 3, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 1})
    )));
    assert!(!is_ready(&base(json!({}))));
    let d = base(json!({"observedGeneration": 3, "readyReplicas": 1}));
    assert_eq!(
        d.describe(),
        "generation 3 (observed 3), spec.replicas 2, status.replicas 0, ready 1, updated 0"
    );
}

#[test]
fn zero_replicas_are_ready_once_observed() {
    let v = deployment(json!({
        "metadata": {"name": "api", "generation": 4},
        "spec": {"replicas": 0, "selector": {}, "template": {}},
        "status": {"observedGeneration": 4}
    }));
    assert!(is_ready(&v));
}

#[test]
fn statefulset_readiness_and_default_replicas() {
    let v = sts(json!({
        "metadata": {"name": "db", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "db"}}, "serviceName": "db", "template": {}},
        "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}
    }));
    assert_eq!(v.replicas, 1);
    assert!(is_ready(&v));
}

fn pod(name: &str, phase: Option<&str>) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": phase.map(|p| json!({"phase": p})).unwrap_or(json!({}))
    }))
    .unwrap()
}

#[test]
fn finished_pods_do_not_count() {
    assert!(pod_is_live(&pod("a", Some("Running"))));
    assert!(pod_is_live(&pod("a", Some("Pending"))));
    assert!(pod_is_live(&pod("a", None)));
    assert!(!pod_is_live(&pod("a", Some("Succeeded"))));
    assert!(!pod_is_live(&pod("a", Some("Failed"))));
}

#[test]
fn tracker_follows_list_and_watch_events() {
    let mut t = PodTracker::default();
    assert!(!t.all_gone());
    assert!(!t.apply(&Event::Init));
    assert!(!t.apply(&Event::InitApply(pod("a", Some("Running")))));
    assert!(!t.apply(&Event::InitApply(pod("b", Some("Succeeded")))));
    assert!(t.apply(&Event::InitDone));
    assert_eq!(t.remaining(), vec!["a"]);
    assert!(t.apply(&Event::Apply(pod("c", Some("Running")))));
    assert!(!t.apply(&Event::Apply(pod("c", Some("Running")))));
    assert!(t.apply(&Event::Delete(pod("a", Some("Running")))));
    assert!(t.apply(&Event::Apply(pod("c", Some("Failed")))));
    assert!(t.all_gone());
    // A relist replaces what was known.
    t.apply(&Event::Apply(pod("d", Some("Running"))));
    t.apply(&Event::Init);
    assert!(t.apply(&Event::InitDone));
    assert!(t.all_gone());
}

#[test]
fn an_empty_initial_list_is_all_gone() {
    let mut t = PodTracker::default();
    t.apply(&Event::Init);
    assert!(t.apply(&Event::InitDone));
    assert!(t.all_gone());
}

#[test]
fn selectors_render_and_empty_ones_are_refused() {
    let s: LabelSelector = serde_json::from_value(json!({
        "matchLabels": {"app": "db"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]
    }))
    .unwrap();
    let q = selector_query(&s).unwrap();
    assert!(q.contains("app=db"), "{q}");
    assert!(q.contains("tier in (a)"), "{q}");
    assert!(selector_query(&LabelSelector::default()).is_err());
}

#[test]
fn cronjob_jobs_and_suspension() {
    let cj: CronJob = serde_json::from_value(json!({
            "metadata": {"name": "report", "uid": "cj-1"},
            "spec": {"schedule": "0 0 1 1 *", "suspend": false, "jobTemplate": {}},
            "status": {"active": [{"name": "report-2", "kind": "Job"}, {"name": "report-1", "kind": "Job"}]}
        }))
        .unwrap();
    assert_eq!(active_jobs(&cj), vec!["report-1", "report-2"]);
    let s = Stamp::new(1, "o");
    assert_eq!(cronjob_suspend_patch(&cj, false, &s), None);
    assert_eq!(
        cronjob_suspend_patch(&cj, true, &s).unwrap()["spec"]["suspend"],
        true
    );

    let job = |uid: &str, owner: &str, controller: bool| -> Job {
        serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid, "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": owner, "controller": controller}
            ]}}))
            .unwrap()
    };
    let jobs = vec![
        job("j1", "cj-1", true),
        job("j2", "cj-2", true),
        job("j3", "cj-1", false),
    ];
    let uids = owned_job_uids("cj-1", &jobs);
    assert_eq!(uids, vec!["j1"]);
    assert_eq!(
        job_pods_query(&uids).unwrap(),
        "batch.kubernetes.io/controller-uid in (j1)"
    );
    assert_eq!(job_pods_query(&[]), None);
}

#[test]
fn cronjobs_are_not_scaled() {
    assert!(scalable(WorkloadKind::CronJob).is_err());
    assert!(scalable(WorkloadKind::Deployment).is_ok());
}
