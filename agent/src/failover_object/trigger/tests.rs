use failover_messages::crd::{FailoverSpec, GroupRef as CrdGroupRef};
use failover_messages::records::{GroupState, Heartbeat, Phase};

use super::*;
use crate::failover_object::failover_names::status_on_user_object;
use crate::failover_object::failover_status::desired_failover;

fn fo(groups: &[&str]) -> Failover {
    let mut fo = Failover::new(
        "move-orders",
        FailoverSpec {
            target_cluster: "west".into(),
            mode: FailoverMode::Uptime,
            groups: groups
                .iter()
                .map(|g| CrdGroupRef {
                    name: (*g).into(),
                    namespace: None,
                })
                .collect(),
            force: false,
            source_is_down: false,
            reason: Some("drill".into()),
        },
    );
    fo.metadata.namespace = Some("shop".into());
    fo.metadata.uid = Some("0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a".into());
    fo.metadata.generation = Some(1);
    fo
}

fn state(active: &str) -> GroupState {
    GroupState {
        epoch: 4,
        ..GroupState::registered(
            GroupRef::new("shop", "orders").unwrap(),
            active,
            Timestamp::UNIX_EPOCH,
        )
    }
}

fn beat(cluster: &str) -> Heartbeat {
    Heartbeat {
        cluster: cluster.into(),
        agent_version: "test".into(),
        last_seen: Timestamp::UNIX_EPOCH,
        expires_at: "2026-01-01T00:00:00Z".parse().unwrap(),
        lease_duration_ms: None,
        keep_serving: Vec::new(),
        auto_armed: Vec::new(),
    }
}

/// What the trigger reads: the group state (`None`: unregistered) and both agents alive.
fn view(state: Option<GroupState>) -> StartView {
    StartView {
        state,
        source: Some(beat("east")),
        target: Some(beat("west")),
        read_at: "2025-06-01T00:00:00Z".parse().unwrap(),
    }
}

fn op(id: &str) -> Operation {
    Operation {
        id: id.into(),
        group: GroupRef::new("shop", "orders").unwrap(),
        epoch: 5,
        mode: Mode::Uptime,
        source: "east".into(),
        target: "west".into(),
        force: false,
        source_is_down: false,
        reason: "drill".into(),
        requested_by: requested_by("east", "shop", "move-orders"),
        phase: Phase::Pending,
        requested_at: Timestamp::UNIX_EPOCH,
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

#[test]
fn agent_objects_and_submitted_objects_are_not_triggers() {
    let user = fo(&["orders"]);
    assert!(needs_submission(&user));
    assert!(status_on_user_object(&user));
    let agent = desired_failover(&op("abc"));
    assert!(is_agent_created(&agent) && !needs_submission(&agent));
    let mut done = user.clone();
    done.status = Some(FailoverStatus {
        operation_id: Some("x".into()),
        ..FailoverStatus::default()
    });
    assert!(!needs_submission(&done));
    let t = "2026-11-26T12:00:00Z".parse().unwrap();
    let mut refused = user.clone();
    refused.status = Some(trigger_status(
        &user,
        &Ok(vec![GroupResult::Refused {
            group: GroupRef::new("shop", "orders").unwrap(),
            refusal: Refusal::new("OperationInFlight", "busy"),
        }]),
        t,
    ));
    assert!(!needs_submission(&refused), "a refusal is final");
    let mut unregistered = user.clone();
    unregistered.status = Some(trigger_status(
        &user,
        &Ok(vec![GroupResult::Refused {
            group: GroupRef::new("shop", "orders").unwrap(),
            refusal: Refusal::new(REASON_NOT_REGISTERED, "not registered"),
        }]),
        t,
    ));
    assert!(needs_submission(&unregistered), "not registered is retried");
    assert_eq!(unregistered.status.unwrap().phase, None);
}

#[test]
fn operation_ids_come_from_the_uid() {
    assert_eq!(
        operation_ids(&fo(&["orders"])),
        ["0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"]
    );
    assert_eq!(
        operation_ids(&fo(&["a", "b"])),
        [
            "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a-0",
            "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a-1"
        ]
    );
    let mut no_uid = fo(&["orders"]);
    no_uid.metadata.uid = None;
    assert!(operation_ids(&no_uid).is_empty());
    assert!(plan(&no_uid, "east").is_err());
}

#[test]
fn plan_and_decide_build_the_coordinators_request() {
    let starts = plan(&fo(&["orders"]), "east").unwrap();
    assert_eq!(starts.len(), 1);
    let s = &starts[0];
    assert_eq!(s.group, GroupRef::new("shop", "orders").unwrap());
    assert_eq!(s.request.mode, Mode::Uptime);
    assert_eq!(s.request.requested_by, "kubernetes:east/shop/move-orders");
    assert_eq!(s.request.op_id.as_deref(), Some(s.op_id.as_str()));
    let req = decide(s, &view(Some(state("east"))), true).unwrap();
    assert_eq!((req.source.as_str(), req.target.as_str()), ("east", "west"));
    assert_eq!(
        decide(s, &view(None), true).unwrap_err().reason,
        REASON_NOT_REGISTERED
    );
    assert_eq!(
        decide(s, &view(Some(state("west"))), true)
            .unwrap_err()
            .reason,
        "AlreadyActive"
    );
    // Forced with the source's agent alive: accepted under Fence (the target waits for the
    // source's release), refused as failoverctl refuses it when east keeps serving.
    let mut forced_start = s.clone();
    forced_start.request.force = true;
    let req = decide(&forced_start, &view(Some(state("east"))), true).unwrap();
    assert!(req.force && req.source == "east");
    let mut keeping = view(Some(state("east")));
    if let Some(hb) = keeping.source.as_mut() {
        hb.keep_serving = vec!["shop/orders".into()];
    }
    let alive = decide(&forced_start, &keeping, true).unwrap_err();
    assert_eq!(alive.reason, "SourceAgentAlive");
    assert!(
        alive
            .message
            .starts_with("shop/orders: the agent of east is alive"),
        "{}",
        alive.message
    );
    let unknown = decide(s, &view(Some(state("east"))), false).unwrap_err();
    assert_eq!(unknown.reason, "UnknownCluster");
    assert!(unknown.message.contains("west"), "{}", unknown.message);
    let mut forced = fo(&["orders"]);
    forced.spec.force = true;
    forced.spec.reason = None;
    assert!(
        plan(&forced, "east")
            .unwrap_err()
            .message
            .contains("spec.reason")
    );
}

#[test]
fn status_records_ids_and_refusals() {
    let t = "2026-11-26T12:00:00Z".parse().unwrap();
    let user = fo(&["orders"]);
    let s = trigger_status(
        &user,
        &Ok(vec![GroupResult::Started(Box::new(op("id-1")))]),
        t,
    );
    assert_eq!(s.operation_id.as_deref(), Some("id-1"));
    assert_eq!(s.phase, Some(FailoverPhase::Pending));
    assert_eq!(s.conditions[0].status, "True");
    let refusal = refusal_of(
        &GroupRef::new("shop", "orders").unwrap(),
        &StartOutcome::LeaseHeld {
            holder: "failoverctl:bob".into(),
            op_id: "other".into(),
            expires: t,
        },
    )
    .unwrap();
    let s = trigger_status(
        &user,
        &Ok(vec![GroupResult::Refused {
            group: GroupRef::new("shop", "orders").unwrap(),
            refusal,
        }]),
        t,
    );
    assert_eq!(s.phase, Some(FailoverPhase::Failed));
    let c = &s.conditions[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str(), c.reason.as_str()),
        ("Accepted", "False", "OperationInFlight")
    );
    assert!(
        c.message.contains("shop/orders") && c.message.contains("other"),
        "{}",
        c.message
    );
    let ev = trigger_event(&s).unwrap();
    assert!(ev.warning && ev.reason == "Refused");
}
