//! Unit tests of the records: wire names, attribute-map round trips with their keys and
//! index attributes, decode errors, and the lease and entitlement rules of the group state.

use std::collections::BTreeMap;

use super::*;
use crate::keys::GroupRef;

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap()
}

fn group() -> GroupRef {
    GroupRef::new("shop", "orders").unwrap()
}

#[test]
fn known_replicas_round_trip_on_the_group_state_item() {
    let k = KnownReplicas {
        group: group(),
        cluster: "east".into(),
        epoch: 4,
        replicas: BTreeMap::from([("Deployment/api".into(), 3), ("StatefulSet/db".into(), 1)]),
        updated_at: ts(1_700_000_000_123),
    };
    let mut item = GroupState::registered(group(), "east", ts(1_700_000_000_000)).to_item();
    assert_eq!(KnownReplicas::from_state_item(&item).unwrap(), None);
    item.insert("knownReplicas".into(), k.to_av());
    assert_eq!(KnownReplicas::from_state_item(&item).unwrap(), Some(k));
    assert!(GroupState::from_item(&item).is_ok());
}

pub(crate) fn sample_operation() -> Operation {
    Operation {
        id: "op-1".into(),
        group: group(),
        epoch: 7,
        mode: Mode::Consistency,
        source: "east".into(),
        target: "west".into(),
        force: false,
        source_is_down: false,
        reason: "maintenance".into(),
        requested_by: "alice".into(),
        phase: Phase::Running,
        requested_at: ts(1_764_150_000_000),
        promotion_started_at: None,
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: None,
        timings: Timings::default(),
        original_replicas: BTreeMap::from([("Deployment/api".into(), 3)]),
        message: None,
    }
}

#[test]
fn operation_item_carries_keys_and_gsi() {
    let item = sample_operation().to_item();
    assert_eq!(item["PK"], av_s("OP#op-1"));
    assert_eq!(item["SK"], av_s("OP"));
    assert_eq!(item["GSI1PK"], av_s("OPS"));
    assert_eq!(item["GSI1SK"], av_s("1764150000000#op-1"));
    assert_eq!(item["requestedAt"], av_n(1_764_150_000_000_i64));
    assert_eq!(Operation::from_item(&item).unwrap(), sample_operation());
}

#[test]
fn history_is_a_copy_without_index_attributes() {
    let entry = HistoryEntry::new(sample_operation(), ts(1_764_150_060_000));
    let item = entry.to_item();
    assert_eq!(item["PK"], av_s("GROUP#shop/orders"));
    assert_eq!(item["SK"], av_s("HIST#1764150060000#op-1"));
    assert!(!item.contains_key("GSI1PK"));
    assert_eq!(HistoryEntry::from_item(&item).unwrap(), entry);
}

#[test]
fn decode_errors_name_record_key_and_attribute() {
    let mut item = sample_operation().to_item();
    item.remove("mode");
    let e = Operation::from_item(&item).unwrap_err();
    assert_eq!(e.attribute, "mode");
    assert_eq!(e.problem, Problem::Missing);
    assert_eq!(
        e.to_string(),
        "operation record OP#op-1/OP: attribute `mode` is missing"
    );

    item.insert("mode".into(), av_n(3));
    let e = Operation::from_item(&item).unwrap_err();
    assert_eq!(
        e.to_string(),
        "operation record OP#op-1/OP: attribute `mode` has type N, expected S"
    );

    item.insert("mode".into(), av_s("FAST"));
    let e = Operation::from_item(&item).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown mode \"FAST\", expected one of CONSISTENCY, UPTIME"),
        "{e}"
    );

    let mut item = sample_operation().to_item();
    item.insert("epoch".into(), av_n(-1));
    let e = Operation::from_item(&item).unwrap_err();
    assert!(
        e.to_string()
            .contains("`epoch` has a bad value: \"-1\" is not an unsigned"),
        "{e}"
    );

    let mut item = sample_operation().to_item();
    item.insert(
        "timings".into(),
        AttributeValue::M(Item::from([("totalMs".into(), av_s("x"))])),
    );
    let e = Operation::from_item(&item).unwrap_err();
    assert_eq!(e.attribute, "timings.totalMs");

    let mut item = sample_operation().to_item();
    item.insert("requestedAt".into(), av_n(i64::MAX));
    let e = Operation::from_item(&item).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

#[test]
fn null_attributes_count_as_absent() {
    let mut item = sample_operation().to_item();
    item.insert("message".into(), AttributeValue::Null(true));
    assert_eq!(Operation::from_item(&item).unwrap().message, None);
}

#[test]
fn a_half_lease_is_rejected() {
    let state = GroupState {
        group: group(),
        active_cluster: "east".into(),
        epoch: 1,
        op_id: Some("op-1".into()),
        promotion_claimed_by: None,
        lease: Some(Lease {
            holder: "east".into(),
            expires_at: ts(5),
        }),
        suspended: false,
        version: 2,
        last_op_id: None,
        updated_at: ts(1),
    };
    let mut item = state.to_item();
    assert_eq!(GroupState::from_item(&item).unwrap(), state);
    item.remove("leaseExpiresAt");
    let e = GroupState::from_item(&item).unwrap_err();
    assert_eq!(e.attribute, "leaseExpiresAt");
}

#[test]
fn the_claimer_of_a_promotion_is_entitled_over_the_active_cluster() {
    let mut state = GroupState {
        group: group(),
        active_cluster: "east".into(),
        epoch: 3,
        op_id: Some("op-1".into()),
        promotion_claimed_by: None,
        lease: None,
        suspended: false,
        version: 1,
        last_op_id: None,
        updated_at: ts(1),
    };
    assert!(state.is_entitled("east"));
    assert!(!state.is_entitled("west"));
    state.promotion_claimed_by = Some("west".into());
    assert_eq!(state.entitled_cluster(), "west");
    assert!(!state.is_entitled("east"));
    let mut item = state.to_item();
    assert_eq!(GroupState::from_item(&item).unwrap(), state);
    item.insert("promotionClaimedBy".into(), av_s("West#1"));
    let e = GroupState::from_item(&item).unwrap_err();
    assert_eq!(e.attribute, "promotionClaimedBy");
}

#[test]
fn heartbeat_expiry_is_stored_in_seconds() {
    let hb = Heartbeat {
        cluster: "east".into(),
        agent_version: "0.1.0".into(),
        last_seen: ts(1_764_150_000_123),
        expires_at: Timestamp::from_second(1_764_150_030).unwrap(),
        lease_duration_ms: None,
        keep_serving: Vec::new(),
        auto_armed: Vec::new(),
    };
    let item = hb.to_item();
    assert_eq!(item["expiresAt"], av_n(1_764_150_030_i64));
    assert_eq!(item["lastSeen"], av_n(1_764_150_000_123_i64));
    assert_eq!(Heartbeat::from_item(&item).unwrap(), hb);
    assert!(!hb.is_stale(ts(1_764_150_029_999)));
    assert!(hb.is_stale(ts(1_764_150_030_000)));
    assert!(!item.contains_key("keepServing"), "no empty string set");
}

#[test]
fn a_lease_record_carries_its_duration_and_the_groups_it_keeps_serving() {
    let hb = Heartbeat {
        cluster: "east".into(),
        agent_version: "0.1.0".into(),
        last_seen: ts(1_764_150_000_123),
        expires_at: Timestamp::from_second(1_764_150_030).unwrap(),
        lease_duration_ms: Some(30_000),
        keep_serving: vec!["shop/cart".into(), "shop/orders".into()],
        auto_armed: vec![
            AutoArmed {
                group: "shop/cart".into(),
                acts_at: Some(ts(1_764_150_060_000)),
            },
            AutoArmed {
                group: "shop/orders".into(),
                acts_at: None,
            },
        ],
    };
    let item = hb.to_item();
    assert_eq!(item["leaseDurationMs"], av_n(30_000));
    assert_eq!(
        item["autoArmed"],
        AttributeValue::Ss(vec![
            "shop/cart counting 2025-11-26T09:41:00Z".into(),
            "shop/orders watching".into()
        ])
    );
    let back = Heartbeat::from_item(&item).unwrap();
    assert_eq!(back, hb);
    assert_eq!(
        back.lease_duration(),
        Some(std::time::Duration::from_secs(30))
    );
}

#[test]
fn enums_parse_their_wire_names() {
    for m in Mode::ALL {
        assert_eq!(m.as_str().parse::<Mode>().unwrap(), *m);
    }
    for p in Phase::ALL {
        assert_eq!(p.as_str().parse::<Phase>().unwrap(), *p);
    }
    for s in HandoffState::ALL {
        assert_eq!(s.as_str().parse::<HandoffState>().unwrap(), *s);
    }
    for s in StepStatus::ALL {
        assert_eq!(s.as_str().parse::<StepStatus>().unwrap(), *s);
    }
    assert!("consistency".parse::<Mode>().is_err());
}

fn step(stage: &str, task: &str, status: StepStatus, at: i64) -> JournalStep {
    JournalStep {
        op_id: "op-1".into(),
        cluster: "east".into(),
        stage: stage.into(),
        task: task.into(),
        epoch: 3,
        status,
        attempts: 1,
        started_at: ts(at),
        first_started_at: Some(ts(at)),
        finished_at: (status != StepStatus::Started).then(|| ts(at + 5)),
        message: None,
    }
}

#[test]
fn a_published_stage_round_trips_and_supersedes_the_notes_of_its_steps() {
    let stage = JournalStage {
        op_id: "op-1".into(),
        cluster: "east".into(),
        stage: "VolumeTransitionTarget".into(),
        epoch: 3,
        published_at: ts(500),
        steps: vec![
            step(
                "VolumeTransitionTarget",
                "WaitSourceReleased",
                StepStatus::Done,
                100,
            ),
            step(
                "VolumeTransitionTarget",
                "ClaimPromotion",
                StepStatus::Done,
                200,
            ),
        ],
    };
    assert_eq!(stage.attribute(), "JOURNAL#east#VolumeTransitionTarget");
    // Published on the operation item, next to its own attributes.
    let mut item: Item = [
        (
            attr::PK.to_owned(),
            AttributeValue::S(format!("OP#{}", stage.op_id)),
        ),
        (attr::SK.to_owned(), AttributeValue::S("OP".into())),
        (attr::PHASE.to_owned(), AttributeValue::S("Running".into())),
    ]
    .into_iter()
    .collect();
    item.insert(stage.attribute(), stage.to_attribute());
    assert_eq!(
        JournalStage::from_attribute(&item, &stage.attribute()).unwrap(),
        stage
    );

    // A note on a step of the published stage is hidden; one of another stage is shown.
    let mut hidden = step(
        "VolumeTransitionTarget",
        "WaitSourceReleased",
        StepStatus::Started,
        90,
    );
    hidden.message = Some("waiting".into());
    let shown = step("Initialization", "Preflight", StepStatus::Started, 10);
    // Another cluster's note and stage are not this cluster's journal.
    let mut west = stage.clone();
    west.cluster = "west".into();
    for s in &mut west.steps {
        s.cluster = "west".into();
    }
    item.insert(west.attribute(), west.to_attribute());
    let mut other = shown.clone();
    other.cluster = "west".into();
    let items = [
        hidden.to_item(),
        item.clone(),
        shown.to_item(),
        other.to_item(),
    ];
    let tasks: Vec<String> = flatten_journal(&items, "east")
        .unwrap()
        .into_iter()
        .map(|s| format!("{}/{}", s.task, s.status))
        .collect();
    assert_eq!(
        tasks,
        [
            "Preflight/STARTED",
            "WaitSourceReleased/DONE",
            "ClaimPromotion/DONE"
        ]
    );

    // A damaged list names the attribute.
    // The steps are one JSON string.
    let AttributeValue::M(mut bad) = stage.to_attribute() else {
        unreachable!()
    };
    assert!(matches!(&bad[attr::STEPS], AttributeValue::S(json) if json.starts_with('[')));
    bad.insert(attr::STEPS.into(), AttributeValue::S("x".into()));
    item.insert(stage.attribute(), AttributeValue::M(bad));
    let err = JournalStage::from_attribute(&item, &stage.attribute())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("JOURNAL#east#VolumeTransitionTarget.steps"),
        "{err}"
    );
}
