//! Unit tests of the custom resources: wire names, sample objects round-tripping,
//! durations and timeouts, and the generated schema.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

#[test]
fn record_phases_and_modes_keep_their_names_in_the_failover_resource() {
    use crate::records::{Mode, Phase};
    for p in [
        Phase::Pending,
        Phase::Running,
        Phase::Stalled,
        Phase::Aborting,
        Phase::Succeeded,
        Phase::Failed,
        Phase::Aborted,
        Phase::RolledBack,
    ] {
        assert_eq!(
            serde_json::to_value(FailoverPhase::from(p)).unwrap(),
            p.as_str()
        );
    }
    for m in [Mode::Consistency, Mode::Uptime] {
        assert_eq!(
            serde_json::to_value(FailoverMode::from(m)).unwrap(),
            m.as_str()
        );
    }
}

const SAMPLE_GROUP: &str = r#"
apiVersion: failover.io/v1alpha1
kind: FailoverGroup
metadata:
  name: orders
  namespace: shop
spec:
  workloads:
    - kind: Deployment
      name: orders-api
    - kind: StatefulSet
      name: orders-db
    - kind: CronJob
      name: orders-report
  volumeReplications:
    - name: orders-db-data
      workload: orders-db
    - name: orders-scratch
  network:
    - kind: VirtualService
      name: orders
    - kind: Ingress
      name: orders-admin
  flux:
    - kind: HelmRelease
      name: orders
      namespace: flux-system
    - kind: Kustomization
      name: orders-config
      namespace: flux-system
  defaultMode: UPTIME
  suspended: true
  timeouts:
    sourceShutdown: 5m
    volumePromotion: 1h30m
  autoFailover:
    enabled: true
    heartbeatTimeout: 90s
"#;

const SAMPLE_FAILOVER: &str = r#"
apiVersion: failover.io/v1alpha1
kind: Failover
metadata:
  name: orders-to-west
  namespace: shop
spec:
  targetCluster: west
  groups:
    - name: orders
    - name: payments
      namespace: billing
  reason: planned maintenance of east
"#;

#[test]
fn sample_group_naming_every_kind_round_trips() {
    let group: FailoverGroup = serde_yaml::from_str(SAMPLE_GROUP).unwrap();
    let spec = &group.spec;
    let workload_kinds: Vec<_> = spec.workloads.iter().map(|w| w.kind).collect();
    assert_eq!(
        workload_kinds,
        [
            WorkloadKind::Deployment,
            WorkloadKind::StatefulSet,
            WorkloadKind::CronJob
        ]
    );
    let network_kinds: Vec<_> = spec.network.iter().map(|n| n.kind).collect();
    assert_eq!(
        network_kinds,
        [NetworkKind::VirtualService, NetworkKind::Ingress]
    );
    let flux_kinds: Vec<_> = spec.flux.iter().map(|f| f.kind).collect();
    assert_eq!(flux_kinds, [FluxKind::HelmRelease, FluxKind::Kustomization]);
    assert_eq!(
        spec.volume_replications[0].workload.as_deref(),
        Some("orders-db")
    );
    assert_eq!(spec.volume_replications[1].workload, None);
    assert_eq!(spec.default_mode, FailoverMode::Uptime);
    assert!(spec.suspended);
    assert!(spec.auto_failover.enabled);

    let yaml = serde_yaml::to_string(&group).unwrap();
    let again: FailoverGroup = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(again, group);
    let json = serde_json::to_string(&group).unwrap();
    let again: FailoverGroup = serde_json::from_str(&json).unwrap();
    assert_eq!(again, group);
}

#[test]
fn minimal_group_gets_defaults() {
    let group: FailoverGroup = serde_yaml::from_str(
        "apiVersion: failover.io/v1alpha1\nkind: FailoverGroup\nmetadata: {name: g}\nspec: {}\n",
    )
    .unwrap();
    assert_eq!(group.spec, FailoverGroupSpec::default());
    assert_eq!(group.spec.default_mode, FailoverMode::Consistency);
    assert!(!group.spec.suspended);
    assert!(!group.spec.auto_failover.enabled);
    assert_eq!(
        group.spec.timeouts.resolve().unwrap(),
        ResolvedTimeouts::default()
    );
    // Unset optional parts are left out when written back.
    assert_eq!(
        serde_json::to_value(&group.spec).unwrap(),
        serde_json::json!({"defaultMode": "CONSISTENCY", "suspended": false})
    );
}

#[test]
fn sample_failover_round_trips_with_defaults() {
    let fo: Failover = serde_yaml::from_str(SAMPLE_FAILOVER).unwrap();
    assert_eq!(fo.spec.target_cluster, "west");
    assert_eq!(fo.spec.mode, FailoverMode::Consistency);
    assert!(!fo.spec.force);
    assert_eq!(fo.spec.groups[0].namespace_or("shop"), "shop");
    assert_eq!(fo.spec.groups[1].namespace_or("shop"), "billing");
    let yaml = serde_yaml::to_string(&fo).unwrap();
    let again: Failover = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(again, fo);
}

#[test]
fn status_round_trips() {
    let status = FailoverStatus {
        phase: Some(FailoverPhase::Running),
        operation_id: Some("op-1".into()),
        groups: vec![GroupProgress {
            name: "orders".into(),
            namespace: Some("shop".into()),
            stage: Some("SourceShutdown".into()),
            task: Some("ScaleDownWorkloads".into()),
            phase: Some(FailoverPhase::Running),
            message: None,
            epoch: Some(7),
        }],
        timings: Some(FailoverTimings {
            started_at: Some(Time("2026-11-26T10:00:00Z".parse().unwrap())),
            total_seconds: Some(1.5),
            ..Default::default()
        }),
        conditions: vec![],
        observed_generation: Some(1),
        journal: vec![
            "SourceShutdown ScaleDown:Deployment/web DONE epoch=7 attempts=1 \
             started=2026-11-26T10:00:00.25Z finished=2026-11-26T10:00:01.5Z"
                .into(),
        ],
    };
    let json = serde_json::to_string(&status).unwrap();
    assert_eq!(
        serde_json::from_str::<FailoverStatus>(&json).unwrap(),
        status
    );
    let group_status = FailoverGroupStatus {
        role: Some(GroupRole::Fenced),
        active_cluster: Some("west".into()),
        epoch: Some(3),
        last_operation: Some(LastOperation {
            id: "op-1".into(),
            ..Default::default()
        }),
        resources: vec![ResourceState {
            kind: "VolumeReplication".into(),
            name: "orders-db-data".into(),
            state: "Secondary".into(),
            message: None,
        }],
        conditions: vec![],
        observed_generation: Some(2),
    };
    let yaml = serde_yaml::to_string(&group_status).unwrap();
    assert_eq!(
        serde_yaml::from_str::<FailoverGroupStatus>(&yaml).unwrap(),
        group_status
    );
}

/// Objects as a kube-apiserver 1.36 returned them after `kubectl apply` of the generated
/// CRDs and a status patch (defaults filled in by the server, managedFields dropped).
#[test]
fn objects_as_the_apiserver_returns_them_decode() {
    let group: FailoverGroup = serde_json::from_str(
            r#"{"apiVersion": "failover.io/v1alpha1", "kind": "FailoverGroup", "metadata": {"creationTimestamp": "2026-11-26T11:35:13Z", "generation": 1, "name": "orders", "namespace": "shop", "resourceVersion": "95", "uid": "23dde934-3c68-4399-98a0-0ac2f69d3b2b"}, "spec": {"autoFailover": {"enabled": true, "heartbeatTimeout": "90s"}, "defaultMode": "CONSISTENCY", "flux": [{"kind": "HelmRelease", "name": "orders", "namespace": "flux-system"}, {"kind": "Kustomization", "name": "cfg", "namespace": "flux-system"}], "network": [{"kind": "VirtualService", "name": "orders"}, {"kind": "Ingress", "name": "orders-admin"}], "suspended": false, "timeouts": {"sourceShutdown": "5m", "volumePromotion": "1h30m"}, "volumeReplications": [{"name": "orders-db-data", "workload": "orders-db"}], "workloads": [{"kind": "Deployment", "name": "orders-api"}, {"kind": "StatefulSet", "name": "orders-db"}, {"kind": "CronJob", "name": "report"}]}, "status": {"activeCluster": "east", "conditions": [{"lastTransitionTime": "2026-11-26T10:00:00Z", "message": "", "reason": "AllResourcesReady", "status": "True", "type": "Ready"}], "epoch": 4, "lastOperation": {"id": "op-1", "phase": "Succeeded"}, "observedGeneration": 1, "resources": [{"kind": "Deployment", "name": "orders-api", "state": "Running 3/3"}], "role": "Primary"}}"#,
        )
        .unwrap();
    let status = group.status.unwrap();
    assert_eq!(status.role, Some(GroupRole::Primary));
    assert_eq!(status.epoch, Some(4));
    assert_eq!(status.conditions[0].type_, "Ready");
    assert_eq!(
        group.spec.timeouts.resolve().unwrap().volume_promotion,
        Duration::from_secs(5400)
    );

    let fo: Failover = serde_json::from_str(
            r#"{"apiVersion": "failover.io/v1alpha1", "kind": "Failover", "metadata": {"creationTimestamp": "2026-11-26T11:35:13Z", "generation": 1, "labels": {"a": "b"}, "name": "orders-to-west", "namespace": "shop", "resourceVersion": "85", "uid": "083cad27-b2b7-46ea-9bd0-905984b96087"}, "spec": {"force": false, "groups": [{"name": "orders"}], "mode": "CONSISTENCY", "reason": "maintenance", "targetCluster": "west"}, "status": {"groups": [{"epoch": 4, "name": "orders", "stage": "SourceShutdown"}], "phase": "Running"}}"#,
        )
        .unwrap();
    assert_eq!(
        fo.status.unwrap().groups[0].stage.as_deref(),
        Some("SourceShutdown")
    );
}

#[test]
fn unknown_enum_values_are_rejected() {
    let bad = SAMPLE_GROUP.replace("kind: CronJob", "kind: DaemonSet");
    let err = serde_yaml::from_str::<FailoverGroup>(&bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("DaemonSet"), "{err}");
    let bad = SAMPLE_FAILOVER.replace("targetCluster: west", "targetCluster: west\n  mode: FAST");
    assert!(serde_yaml::from_str::<Failover>(&bad).is_err());
}

#[test]
fn durations_parse() {
    let ok = |s: &str| parse_duration("f", s).unwrap();
    assert_eq!(ok("90s"), Duration::from_secs(90));
    assert_eq!(ok("5m"), Duration::from_secs(300));
    assert_eq!(ok("1h"), Duration::from_secs(3600));
    assert_eq!(ok("1h30m"), Duration::from_secs(5400));
    assert_eq!(ok("250ms"), Duration::from_millis(250));
    assert_eq!(ok("1m30s500ms"), Duration::from_millis(90_500));
    assert_eq!(ok("0s"), Duration::ZERO);
}

#[test]
fn bad_durations_are_rejected_with_a_reason() {
    for bad in [
        "",
        "5",
        "m",
        "5x",
        "5 m",
        "-5m",
        "1.5h",
        "5M",
        "5m ",
        "99999999999999999999s",
        "18446744073709551615h",
    ] {
        assert!(
            parse_duration("f", bad).is_err(),
            "{bad:?} should not parse"
        );
    }
}

#[test]
fn timeouts_use_defaults_and_overrides() {
    let timeouts = StageTimeouts {
        source_shutdown: Some("5m".into()),
        volume_promotion: Some("1h30m".into()),
        ..Default::default()
    };
    let resolved = timeouts.resolve().unwrap();
    assert_eq!(resolved.source_shutdown, Duration::from_secs(300));
    assert_eq!(resolved.volume_promotion, Duration::from_secs(5400));
    assert_eq!(
        resolved.initialization,
        TimeoutStage::Initialization.default_timeout()
    );
    assert_eq!(resolved.completion, Duration::from_secs(60));
    for stage in TimeoutStage::ALL {
        assert_eq!(timeouts.get(stage).unwrap(), resolved.get(stage));
    }
}

#[test]
fn a_bad_timeout_error_names_the_field_and_value() {
    let timeouts = StageTimeouts {
        volume_demotion: Some("ten minutes".into()),
        ..Default::default()
    };
    let err = timeouts.resolve().unwrap_err();
    assert_eq!(err.field, "spec.timeouts.volumeDemotion");
    let msg = err.to_string();
    assert!(msg.contains("spec.timeouts.volumeDemotion"), "{msg}");
    assert!(msg.contains("\"ten minutes\""), "{msg}");

    let zero = StageTimeouts {
        completion: Some("0s".into()),
        ..Default::default()
    };
    let err = zero.get(TimeoutStage::Completion).unwrap_err();
    assert_eq!(err.field, "spec.timeouts.completion");
    assert!(err.reason.contains("greater than zero"));
}

#[test]
fn spec_validation_reports_every_bad_duration() {
    assert!(FailoverGroupSpec::default().validate().is_ok());
    let spec = FailoverGroupSpec {
        timeouts: StageTimeouts {
            initialization: Some("0ms".into()),
            completion: Some("soon".into()),
            ..Default::default()
        },
        auto_failover: AutoFailover {
            enabled: true,
            heartbeat_timeout: Some("1d".into()),
            cooldown: Some("0s".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let fields: Vec<String> = spec
        .validate()
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "spec.timeouts.initialization",
            "spec.timeouts.completion",
            "spec.autoFailover.heartbeatTimeout",
            "spec.autoFailover.cooldown"
        ]
    );
}

#[test]
fn auto_failover_after_defaults_parses_and_reads_its_older_name() {
    let af = AutoFailover::default();
    assert_eq!(af.after().unwrap(), AutoFailover::DEFAULT_AFTER);
    assert_eq!(af.cooldown().unwrap(), AutoFailover::DEFAULT_COOLDOWN);
    let older = AutoFailover {
        enabled: true,
        heartbeat_timeout: Some("45s".into()),
        ..Default::default()
    };
    assert_eq!(older.after().unwrap(), Duration::from_secs(45));
    // `after` wins over the older name.
    let both = AutoFailover {
        after: Some("90s".into()),
        ..older.clone()
    };
    assert_eq!(both.after().unwrap(), Duration::from_secs(90));
    let bad = AutoFailover {
        enabled: true,
        heartbeat_timeout: Some("2 minutes".into()),
        ..Default::default()
    };
    assert_eq!(
        bad.after().unwrap_err().field,
        "spec.autoFailover.heartbeatTimeout"
    );
    let bad = AutoFailover {
        after: Some("0s".into()),
        cooldown: Some("5m".into()),
        ..Default::default()
    };
    assert_eq!(bad.after().unwrap_err().field, "spec.autoFailover.after");
    assert_eq!(bad.cooldown().unwrap(), Duration::from_secs(300));
}

fn schema_of(crd: &CustomResourceDefinition) -> serde_json::Value {
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .unwrap()
        .open_api_v3_schema
        .as_ref()
        .unwrap();
    serde_json::to_value(schema).unwrap()
}

#[test]
fn failover_spec_is_immutable_and_validated_in_the_schema() {
    let schema = schema_of(&Failover::crd());
    let spec = &schema["properties"]["spec"];
    assert_eq!(
        spec["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        required.contains(&"targetCluster") && required.contains(&"groups"),
        "{required:?}"
    );
    assert_eq!(spec["properties"]["groups"]["minItems"], 1);
    assert_eq!(
        spec["properties"]["groups"]["items"]["properties"]["name"]["minLength"],
        1
    );
    assert_eq!(spec["properties"]["targetCluster"]["minLength"], 1);
    assert_eq!(spec["properties"]["mode"]["default"], "CONSISTENCY");
    assert_eq!(
        spec["properties"]["mode"]["enum"],
        serde_json::json!(["CONSISTENCY", "UPTIME"])
    );
    let status = &schema["properties"]["status"];
    assert!(
        status["properties"]["phase"]["enum"]
            .as_array()
            .unwrap()
            .contains(&"RolledBack".into())
    );
}

#[test]
fn group_schema_has_enums_and_unique_lists() {
    let schema = schema_of(&FailoverGroup::crd());
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(
        spec["workloads"]["items"]["properties"]["kind"]["enum"],
        serde_json::json!(["Deployment", "StatefulSet", "CronJob"])
    );
    assert_eq!(spec["workloads"]["x-kubernetes-list-type"], "map");
    assert_eq!(
        spec["flux"]["x-kubernetes-list-map-keys"],
        serde_json::json!(["kind", "namespace", "name"])
    );
    assert_eq!(
        spec["timeouts"]["properties"]["sourceShutdown"]["pattern"],
        DURATION_PATTERN
    );
    assert_eq!(spec["defaultMode"]["default"], "CONSISTENCY");
    let crd = FailoverGroup::crd();
    let columns: Vec<_> = crd.spec.versions[0]
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["Role", "Active", "Epoch", "Age"]);
    assert!(
        crd.spec.versions[0]
            .subresources
            .as_ref()
            .unwrap()
            .status
            .is_some()
    );
}

#[test]
fn crd_files_are_named_after_the_crds() {
    let names: Vec<_> = crd_files().into_iter().map(|(name, _)| name).collect();
    assert_eq!(
        names,
        [
            "failovergroups.failover.io.yaml",
            "failovers.failover.io.yaml"
        ]
    );
}

#[test]
fn a_journal_step_survives_the_failover_status() {
    use crate::records::{JournalStep, StepStatus};
    let step = JournalStep {
        op_id: "op-1".into(),
        cluster: "east".into(),
        stage: "SourceShutdown".into(),
        task: "ScaleDown:Deployment/web".into(),
        epoch: 4,
        status: StepStatus::Failed,
        attempts: 2,
        started_at: "2026-12-04T10:00:00.123Z".parse().unwrap(),
        first_started_at: Some("2026-12-04T09:59:58.5Z".parse().unwrap()),
        finished_at: Some("2026-12-04T10:00:01.001Z".parse().unwrap()),
        message: Some("pods still running".into()),
    };
    let line = journal_line(&step);
    assert!(line.contains(" FAILED "), "{line}");
    let status = FailoverStatus {
        journal: vec![
            line,
            "SourceShutdown ScaleDown:Deployment/web SOMETHING".into(),
        ],
        ..FailoverStatus::default()
    };
    // A line that does not parse is dropped; its step runs again.
    assert_eq!(status.journal_of("op-1", "east"), vec![step.clone()]);
    // Through JSON as the API server returns it, with a structured entry an older agent
    // wrote: that entry is dropped, the object still reads.
    let mut json = serde_json::to_value(&status).unwrap();
    json["journal"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"stage": "SourceShutdown", "task": "Old", "epoch": 4}));
    let back: FailoverStatus = serde_json::from_value(json).unwrap();
    assert_eq!(back.journal.len(), 2);
    assert_eq!(back.journal_of("op-1", "east"), vec![step]);
}
