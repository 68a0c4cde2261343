use failover_messages::crd::{FailoverPhase, VolumeReplicationRef, WorkloadKind, WorkloadRef};
use failover_messages::records::{Mode, Phase};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::*;
use crate::failover_group::group_resources::Observed;
use crate::failover_group::group_spec::MAX_VOLUMES;
use crate::kube_ops::traffic::TrafficState;
use crate::workflow::{Factory, Role};

fn spec() -> FailoverGroupSpec {
    FailoverGroupSpec {
        workloads: vec![WorkloadRef {
            kind: WorkloadKind::StatefulSet,
            name: "db".into(),
        }],
        volume_replications: vec![
            VolumeReplicationRef {
                name: "data".into(),
                workload: Some("db".into()),
            },
            VolumeReplicationRef {
                name: "logs".into(),
                workload: Some("dbx".into()),
            },
        ],
        ..FailoverGroupSpec::default()
    }
}

fn state(active: &str) -> GroupState {
    GroupState {
        epoch: 2,
        ..GroupState::registered(
            GroupRef::new("shop", "orders").unwrap(),
            active,
            Timestamp::UNIX_EPOCH,
        )
    }
}

fn op(id: &str, source: &str, target: &str) -> Operation {
    Operation {
        id: id.into(),
        group: GroupRef::new("shop", "orders").unwrap(),
        epoch: 2,
        mode: Mode::Consistency,
        source: source.into(),
        target: target.into(),
        force: false,
        source_is_down: false,
        reason: String::new(),
        requested_by: "t".into(),
        phase: Phase::Running,
        requested_at: "2026-11-26T12:00:00.123Z".parse().unwrap(),
        promotion_started_at: None,
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: None,
        timings: Default::default(),
        original_replicas: Default::default(),
        message: None,
    }
}

fn now() -> Timestamp {
    "2026-11-26T12:00:05.5Z".parse().unwrap()
}

#[test]
fn an_unknown_volume_workload_names_the_field_as_the_factory_refuses_it() {
    let s = spec();
    let problems = validate_spec(&s);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].field, "spec.volumeReplications[1].workload");
    assert!(
        problems[0]
            .to_string()
            .starts_with("spec.volumeReplications[1].workload: names no workload of the group"),
        "{}",
        problems[0]
    );
    assert!(Factory::build(Mode::Consistency, Role::Source, &s, false).is_err());
}

#[test]
fn validation_agrees_with_the_factory() {
    let mut ok = spec();
    ok.volume_replications.pop();
    assert!(validate_spec(&ok).is_empty());
    assert!(Factory::build(Mode::Consistency, Role::Target, &ok, false).is_ok());

    let mut dup = ok.clone();
    dup.workloads.push(dup.workloads[0].clone());
    let p = validate_spec(&dup);
    assert_eq!(p[0].field, "spec.workloads[1]");
    assert!(Factory::build(Mode::Consistency, Role::Target, &dup, false).is_err());

    let mut bad_time = ok.clone();
    bad_time.timeouts.volume_demotion = Some("0s".into());
    let p = validate_spec(&bad_time);
    assert_eq!(p[0].field, "spec.timeouts.volumeDemotion");
    assert!(Factory::build(Mode::Consistency, Role::Source, &bad_time, false).is_err());

    let mut many = ok.clone();
    many.volume_replications = (0..=MAX_VOLUMES)
        .map(|i| VolumeReplicationRef {
            name: format!("v{i}"),
            workload: None,
        })
        .collect();
    assert_eq!(validate_spec(&many)[0].field, "spec.volumeReplications");
    assert!(Factory::build(Mode::Consistency, Role::Source, &many, false).is_err());
}

#[test]
fn the_role_follows_entitlement_and_operations() {
    assert_eq!(role(&state("east"), None, "east"), GroupRole::Primary);
    assert_eq!(role(&state("east"), None, "west"), GroupRole::Standby);
    let mut claimed = state("east");
    claimed.promotion_claimed_by = Some("west".into());
    assert_eq!(role(&claimed, None, "west"), GroupRole::Primary);
    assert_eq!(role(&claimed, None, "east"), GroupRole::Standby);
    let mut busy = state("east");
    busy.op_id = Some("op-1".into());
    let o = op("op-1", "east", "west");
    assert_eq!(role(&busy, Some(&o), "east"), GroupRole::Transitioning);
    assert_eq!(role(&busy, Some(&o), "west"), GroupRole::Transitioning);
    assert_eq!(role(&busy, Some(&o), "south"), GroupRole::Standby);
    assert_eq!(role(&busy, None, "south"), GroupRole::Transitioning);
}

fn primary_resources() -> Vec<ObservedResource> {
    vec![
        ObservedResource {
            kind: "StatefulSet".into(),
            name: "db".into(),
            observed: Observed::Workload {
                replicas: 2,
                ready: 2,
                settled: true,
            },
        },
        ObservedResource {
            kind: "Ingress".into(),
            name: "api".into(),
            observed: Observed::Traffic(Some(TrafficState::On)),
        },
        ObservedResource {
            kind: "VolumeReplication".into(),
            name: "data".into(),
            observed: Observed::Volume {
                desired: Some("primary".into()),
                state: Some("Primary".into()),
                completed: true,
                degraded: false,
                detail: "d".into(),
            },
        },
    ]
}

fn cond<'a>(s: &'a FailoverGroupStatus, t: &str) -> &'a Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn a_primary_in_place_is_ready_and_recomputing_changes_nothing() {
    let mut s = spec();
    s.volume_replications.pop();
    let st = state("east");
    let last = op("op-0", "west", "east");
    let observed = primary_resources();
    let inputs = GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(3),
        current: None,
        state: Some(&st),
        operation: Some(&last),
        observed: &observed,
        now: now(),
    };
    let status = compute_status(&inputs);
    assert_eq!(status.role, Some(GroupRole::Primary));
    assert_eq!(status.active_cluster.as_deref(), Some("east"));
    assert_eq!(status.epoch, Some(2));
    assert_eq!(status.observed_generation, Some(3));
    assert_eq!(status.last_operation.as_ref().unwrap().id, "op-0");
    assert_eq!(
        status.last_operation.as_ref().unwrap().started_at,
        Some(Time("2026-11-26T12:00:00Z".parse().unwrap())),
        "times are whole seconds, as the API server keeps them"
    );
    assert_eq!(cond(&status, COND_SPEC_VALID).status, "True");
    assert_eq!(cond(&status, COND_READY).status, "True");
    assert_eq!(status.resources[0].state, "Running 2/2");
    assert_eq!(status.resources[1].state, "Active");
    assert_eq!(status.resources[2].state, "Primary");
    let later = GroupInputs {
        current: Some(&status),
        now: "2026-11-26T13:00:00Z".parse().unwrap(),
        ..inputs
    };
    assert_eq!(compute_status(&later), status);
}

#[test]
fn a_standby_with_a_running_workload_is_not_ready_and_says_why() {
    let mut s = spec();
    s.volume_replications.pop();
    let st = state("west");
    let observed = primary_resources();
    let status = compute_status(&GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(1),
        current: None,
        state: Some(&st),
        operation: None,
        observed: &observed,
        now: now(),
    });
    assert_eq!(status.role, Some(GroupRole::Standby));
    let ready = cond(&status, COND_READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ResourcesNotInPlace")
    );
    assert!(
        ready
            .message
            .contains("StatefulSet/db is Running 2/2, not passive"),
        "{}",
        ready.message
    );
}

#[test]
fn an_invalid_spec_sets_spec_valid_false_naming_the_field() {
    let s = spec();
    let st = state("east");
    let status = compute_status(&GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(1),
        current: None,
        state: Some(&st),
        operation: None,
        observed: &[],
        now: now(),
    });
    let c = cond(&status, COND_SPEC_VALID);
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", REASON_INVALID_SPEC)
    );
    assert!(
        c.message.contains("spec.volumeReplications[1].workload"),
        "{}",
        c.message
    );
    assert_eq!(cond(&status, COND_READY).reason, REASON_INVALID_SPEC);
}

#[test]
fn an_operation_in_flight_makes_it_transitioning() {
    let mut s = spec();
    s.volume_replications.pop();
    let mut st = state("east");
    st.op_id = Some("op-1".into());
    let o = op("op-1", "east", "west");
    let status = compute_status(&GroupInputs {
        cluster: "west",
        spec: &s,
        generation: Some(1),
        current: None,
        state: Some(&st),
        operation: Some(&o),
        observed: &[],
        now: now(),
    });
    assert_eq!(status.role, Some(GroupRole::Transitioning));
    assert_eq!(cond(&status, COND_READY).reason, "OperationInFlight");
    assert_eq!(
        status.last_operation.unwrap().phase,
        Some(FailoverPhase::Running)
    );
}

#[test]
fn fenced_and_unregistered_groups_keep_what_others_own() {
    let mut s = spec();
    s.volume_replications.pop();
    let current = FailoverGroupStatus {
        role: Some(GroupRole::Fenced),
        active_cluster: Some("west".into()),
        epoch: Some(7),
        ..FailoverGroupStatus::default()
    };
    let st = state("east");
    let status = compute_status(&GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(1),
        current: Some(&current),
        state: Some(&st),
        operation: None,
        observed: &[],
        now: now(),
    });
    assert_eq!(status.role, Some(GroupRole::Fenced));
    let unregistered = compute_status(&GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(1),
        current: Some(&current),
        state: None,
        operation: None,
        observed: &[],
        now: now(),
    });
    assert_eq!(unregistered.epoch, Some(7));
    assert_eq!(cond(&unregistered, COND_READY).reason, "NotRegistered");
    let mut ready_elsewhere = status.clone();
    ready_elsewhere.role = Some(GroupRole::Primary);
    let again = compute_status(&GroupInputs {
        cluster: "east",
        spec: &s,
        generation: Some(1),
        current: Some(&ready_elsewhere),
        state: None,
        operation: None,
        observed: &[],
        now: now(),
    });
    assert_eq!(
        cond(&again, COND_READY),
        cond(&ready_elsewhere, COND_READY),
        "a Ready condition written by the owner of the group is kept"
    );
}
