//! Records (`failover_messages::records`): golden files for the camelCase JSON and the
//! DynamoDB item of each record, and property tests: decoding arbitrary attribute maps never
//! panics, and encode → decode round-trips (items and JSON).
//!
//! Regenerate the golden files after an intended format change with
//! `UPDATE_GOLDEN=1 cargo test -p failover-messages --test records`, and review the diff.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_smithy_types::Blob;
use failover_messages::keys::GroupRef;
use failover_messages::records::{
    GroupState, Handoff, HandoffState, HandoffView, Heartbeat, HistoryEntry, Item, JournalStep,
    Lease, Mode, Operation, Phase, Record, StepStatus, Timings,
};
use jiff::Timestamp;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// Samples
// ---------------------------------------------------------------------------------------------

fn ts(rfc3339: &str) -> Timestamp {
    rfc3339.parse().unwrap()
}

fn group() -> GroupRef {
    "shop/orders".parse().unwrap()
}

const OP_ID: &str = "0d6c4b1e-8f2a-4c55-9a57-3b1f2f4e6a10";

fn sample_group_state() -> GroupState {
    GroupState {
        group: group(),
        active_cluster: "east".into(),
        epoch: 42,
        op_id: Some(OP_ID.into()),
        promotion_claimed_by: Some("west".into()),
        lease: Some(Lease {
            holder: "west".into(),
            expires_at: ts("2026-11-26T10:16:00.5Z"),
        }),
        suspended: false,
        version: 97,
        last_op_id: Some("9b2e51c0-1111-4d2a-8e0f-5c6d7e8f9a0b".into()),
        updated_at: ts("2026-11-26T10:15:30.25Z"),
    }
}

fn sample_operation() -> Operation {
    Operation {
        id: OP_ID.into(),
        group: group(),
        epoch: 42,
        mode: Mode::Uptime,
        source: "east".into(),
        target: "west".into(),
        force: false,
        source_is_down: false,
        reason: "kernel upgrade on east".into(),
        requested_by: "alice@laptop".into(),
        phase: Phase::Running,
        requested_at: ts("2026-11-26T10:15:00Z"),
        promotion_started_at: Some(ts("2026-11-26T10:15:20.125Z")),
        abort_requested_at: None,
        dual_active_started_at: Some(ts("2026-11-26T10:15:21Z")),
        dual_active_ended_at: Some(ts("2026-11-26T10:15:29.5Z")),
        finished_at: None,
        timings: Timings {
            total_ms: None,
            downtime_ms: Some(0),
            stages_ms: BTreeMap::from([
                ("west/promote".into(), 1250),
                ("east/shutdown".into(), 8200),
            ]),
        },
        original_replicas: BTreeMap::from([
            ("Deployment/orders-api".into(), 3),
            ("StatefulSet/orders-db".into(), 1),
        ]),
        message: None,
    }
}

fn sample_handoff() -> Handoff {
    Handoff {
        op_id: OP_ID.into(),
        volume: "orders-db-data".into(),
        state: HandoffState::Promoted,
        epoch: 42,
        writer: "east".into(),
        ready_at: Some(ts("2026-11-26T10:15:19.75Z")),
        promoted_at: Some(ts("2026-11-26T10:15:21Z")),
    }
}

fn sample_journal_step() -> JournalStep {
    JournalStep {
        op_id: OP_ID.into(),
        cluster: "east".into(),
        stage: "2-source-shutdown".into(),
        task: "ScaleDownWorkloads".into(),
        epoch: 42,
        status: StepStatus::Failed,
        attempts: 2,
        started_at: ts("2026-11-26T10:15:05Z"),
        first_started_at: Some(ts("2026-11-26T10:14:50Z")),
        finished_at: Some(ts("2026-11-26T10:15:09.001Z")),
        message: Some("StatefulSet orders-db: pods still running after 4s".into()),
    }
}

fn sample_history() -> HistoryEntry {
    let mut op = sample_operation();
    op.mode = Mode::Consistency;
    op.phase = Phase::Succeeded;
    op.dual_active_started_at = None;
    op.dual_active_ended_at = None;
    op.timings.total_ms = Some(31_000);
    op.timings.downtime_ms = Some(12_400);
    HistoryEntry::new(op, ts("2026-11-26T10:15:31Z"))
}

fn sample_heartbeat() -> Heartbeat {
    Heartbeat {
        cluster: "west".into(),
        agent_version: "0.1.0".into(),
        last_seen: ts("2026-11-26T10:15:30.25Z"),
        expires_at: ts("2026-11-26T10:16:01Z"),
        lease_duration_ms: Some(30_000),
        keep_serving: vec!["shop/cart".into()],
        auto_armed: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Golden files
// ---------------------------------------------------------------------------------------------

/// DynamoDB JSON (`{"S": "…"}`, `{"N": "…"}`, …), as `aws dynamodb get-item` prints it.
fn ddb_json(v: &AttributeValue) -> Value {
    match v {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(b) => json!({ "NULL": b }),
        AttributeValue::M(m) => json!({ "M": item_json(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(ddb_json).collect::<Vec<_>>() }),
        AttributeValue::Ss(s) => json!({ "SS": s }),
        AttributeValue::Ns(n) => json!({ "NS": n }),
        other => panic!("no DynamoDB JSON for {other:?} in records"),
    }
}

fn item_json(item: &HashMap<String, AttributeValue>) -> Value {
    let sorted: BTreeMap<_, _> = item.iter().map(|(k, v)| (k.clone(), ddb_json(v))).collect();
    Value::Object(Map::from_iter(sorted))
}

fn check_golden(name: &str, actual: &str) {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{path}: {e}; run with UPDATE_GOLDEN=1 to create it"));
    assert_eq!(actual, expected, "{name} differs from its golden file");
}

fn golden_record<T>(kind: &str, sample: T)
where
    T: Record + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let json = serde_json::to_string_pretty(&sample).unwrap() + "\n";
    check_golden(&format!("record_{kind}.json"), &json);
    let back: T = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sample, "{kind}: JSON does not round-trip");

    let item = sample.to_item();
    let item_text = serde_json::to_string_pretty(&item_json(&item)).unwrap() + "\n";
    check_golden(&format!("record_{kind}.item.json"), &item_text);
    assert_eq!(
        T::from_item(&item).unwrap(),
        sample,
        "{kind}: item does not round-trip"
    );
}

#[test]
fn group_state_matches_its_golden_files() {
    golden_record("group_state", sample_group_state());
}

#[test]
fn operation_matches_its_golden_files() {
    golden_record("operation", sample_operation());
}

#[test]
fn handoff_json_matches_its_golden_file() {
    let json = serde_json::to_string_pretty(&sample_handoff()).unwrap() + "\n";
    check_golden("record_handoff.json", &json);
    let back: Handoff = serde_json::from_str(&json).unwrap();
    assert_eq!(back, sample_handoff());
}

#[test]
fn journal_step_matches_its_golden_files() {
    golden_record("journal_step", sample_journal_step());
}

#[test]
fn history_entry_matches_its_golden_files() {
    golden_record("history", sample_history());
}

#[test]
fn heartbeat_matches_its_golden_files() {
    golden_record("heartbeat", sample_heartbeat());
}

#[test]
fn json_uses_camel_case_and_rfc3339() {
    let v = serde_json::to_value(sample_operation()).unwrap();
    assert_eq!(v["requestedBy"], "alice@laptop");
    assert_eq!(v["requestedAt"], "2026-11-26T10:15:00Z");
    assert_eq!(v["mode"], "UPTIME");
    assert!(v.get("abortRequestedAt").is_none());
    let h = serde_json::to_value(sample_handoff()).unwrap();
    assert_eq!(h["state"], "PROMOTED");
}

#[test]
fn json_with_a_bad_group_is_rejected() {
    let mut v = serde_json::to_value(sample_operation()).unwrap();
    v["group"] = json!("no-slash");
    let e = serde_json::from_value::<Operation>(v).unwrap_err();
    assert!(e.to_string().contains("invalid group"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------------

fn arb_ms() -> impl Strategy<Value = Timestamp> {
    (0i64..=253_402_207_200_000).prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
}

fn arb_seconds() -> impl Strategy<Value = Timestamp> {
    (0i64..=253_402_207_200).prop_map(|s| Timestamp::from_second(s).unwrap())
}

fn arb_cluster() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,8}[a-z0-9])?"
}

fn arb_group() -> impl Strategy<Value = GroupRef> {
    (
        "[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?",
        "[a-z0-9]([a-z0-9.-]{0,12}[a-z0-9])?",
    )
        .prop_map(|(ns, name)| GroupRef::new(ns, name).unwrap())
}

fn arb_op_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,40}"
}

fn arb_step_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,20}"
}

fn arb_text() -> impl Strategy<Value = String> {
    ".{0,30}"
}

fn arb_group_state() -> impl Strategy<Value = GroupState> {
    (
        arb_group(),
        arb_cluster(),
        any::<u64>(),
        (
            proptest::option::of(arb_op_id()),
            proptest::option::of(arb_cluster()),
        ),
        proptest::option::of((arb_text(), arb_ms())),
        any::<bool>(),
        any::<u64>(),
        proptest::option::of(arb_op_id()),
        arb_ms(),
    )
        .prop_map(
            |(
                group,
                active_cluster,
                epoch,
                (op_id, promotion_claimed_by),
                lease,
                suspended,
                version,
                last_op_id,
                updated_at,
            )| {
                GroupState {
                    group,
                    active_cluster,
                    epoch,
                    op_id,
                    promotion_claimed_by,
                    lease: lease.map(|(holder, expires_at)| Lease { holder, expires_at }),
                    suspended,
                    version,
                    last_op_id,
                    updated_at,
                }
            },
        )
}

fn arb_timings() -> impl Strategy<Value = Timings> {
    (
        proptest::option::of(any::<u64>()),
        proptest::option::of(any::<u64>()),
        proptest::collection::btree_map(".{0,12}", any::<u64>(), 0..4),
    )
        .prop_map(|(total_ms, downtime_ms, stages_ms)| Timings {
            total_ms,
            downtime_ms,
            stages_ms,
        })
}

fn arb_operation() -> impl Strategy<Value = Operation> {
    let ids = (
        arb_op_id(),
        arb_group(),
        any::<u64>(),
        prop::sample::select(Mode::ALL),
        arb_cluster(),
        arb_cluster(),
    );
    let text = (
        any::<bool>(),
        arb_text(),
        arb_text(),
        prop::sample::select(Phase::ALL),
        arb_ms(),
    );
    let times = (
        proptest::option::of(arb_ms()),
        proptest::option::of(arb_ms()),
        proptest::option::of(arb_ms()),
        proptest::option::of(arb_ms()),
        proptest::option::of(arb_ms()),
    );
    let rest = (
        arb_timings(),
        proptest::collection::btree_map(".{0,12}", any::<u32>(), 0..4),
        proptest::option::of(arb_text()),
    );
    (ids, text, times, rest).prop_map(
        |(
            (id, group, epoch, mode, source, target),
            (force, reason, requested_by, phase, requested_at),
            (
                promotion_started_at,
                abort_requested_at,
                dual_active_started_at,
                dual_active_ended_at,
                finished_at,
            ),
            (timings, original_replicas, message),
        )| Operation {
            id,
            group,
            epoch,
            mode,
            source,
            target,
            force,
            source_is_down: false,
            reason,
            requested_by,
            phase,
            requested_at,
            promotion_started_at,
            abort_requested_at,
            dual_active_started_at,
            dual_active_ended_at,
            finished_at,
            timings,
            original_replicas,
            message,
        },
    )
}

fn arb_handoff() -> impl Strategy<Value = Handoff> {
    (
        arb_op_id(),
        "[a-z0-9]([a-z0-9.-]{0,12}[a-z0-9])?",
        prop::sample::select(HandoffState::ALL),
        any::<u64>(),
        arb_cluster(),
        proptest::option::of(arb_ms()),
        proptest::option::of(arb_ms()),
    )
        .prop_map(
            |(op_id, volume, state, epoch, writer, ready_at, promoted_at)| Handoff {
                op_id,
                volume,
                state,
                epoch,
                writer,
                ready_at,
                promoted_at,
            },
        )
}

fn arb_journal_step() -> impl Strategy<Value = JournalStep> {
    (
        (
            arb_op_id(),
            arb_cluster(),
            arb_step_name(),
            arb_step_name(),
            any::<u64>(),
        ),
        (
            prop::sample::select(StepStatus::ALL),
            any::<u32>(),
            arb_ms(),
            proptest::option::of(arb_ms()),
            proptest::option::of(arb_text()),
            proptest::option::of(arb_ms()),
        ),
    )
        .prop_map(
            |(
                (op_id, cluster, stage, task, epoch),
                (status, attempts, started_at, finished_at, message, first_started_at),
            )| {
                JournalStep {
                    op_id,
                    cluster,
                    stage,
                    task,
                    epoch,
                    status,
                    attempts,
                    started_at,
                    first_started_at,
                    finished_at,
                    message,
                }
            },
        )
}

fn arb_history() -> impl Strategy<Value = HistoryEntry> {
    (arb_operation(), arb_ms()).prop_map(|(op, at)| HistoryEntry::new(op, at))
}

fn arb_heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        arb_cluster(),
        arb_text(),
        arb_ms(),
        arb_seconds(),
        proptest::option::of(1u64..10_000_000),
        proptest::collection::btree_set("[a-z]{1,5}/[a-z]{1,5}", 0..3),
    )
        .prop_map(
            |(cluster, agent_version, last_seen, expires_at, lease, keep)| Heartbeat {
                cluster,
                agent_version,
                last_seen,
                expires_at,
                lease_duration_ms: lease,
                keep_serving: keep.into_iter().collect(),
                auto_armed: Vec::new(),
            },
        )
}

/// Attribute names the decoders look at, plus noise.
const NAMES: &[&str] = &[
    "PK",
    "SK",
    "GSI1PK",
    "GSI1SK",
    "group",
    "activeCluster",
    "epoch",
    "opId",
    "leaseHolder",
    "leaseExpiresAt",
    "promotionClaimedBy",
    "suspended",
    "version",
    "lastOpId",
    "updatedAt",
    "mode",
    "source",
    "target",
    "force",
    "reason",
    "requestedBy",
    "phase",
    "requestedAt",
    "promotionStartedAt",
    "abortRequestedAt",
    "dualActiveStartedAt",
    "dualActiveEndedAt",
    "finishedAt",
    "timings",
    "originalReplicas",
    "message",
    "volume",
    "state",
    "writer",
    "readyAt",
    "promotedAt",
    "cluster",
    "stage",
    "task",
    "status",
    "attempts",
    "startedAt",
    "agentVersion",
    "lastSeen",
    "expiresAt",
    "totalMs",
    "downtimeMs",
    "stagesMs",
    "x",
];

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(NAMES).prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

fn arb_number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        Just("99999999999999999999999999".to_owned()),
        Just("-0".to_owned()),
        Just("1.5".to_owned()),
        Just("1e3".to_owned()),
        Just(String::new()),
        ".{0,6}",
    ]
}

fn arb_string_value() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,12}",
        prop::sample::select(
            &[
                "CONSISTENCY",
                "UPTIME",
                "Running",
                "Succeeded",
                "READY_FOR_PROMOTION",
                "PROMOTED",
                "STARTED",
                "DONE",
                "FAILED",
                "shop/orders",
                "east",
                "op-1",
                "a/b/c",
                "/",
            ][..]
        )
        .prop_map(str::to_owned),
    ]
}

fn arb_attribute_value() -> impl Strategy<Value = AttributeValue> {
    let leaf = prop_oneof![
        arb_string_value().prop_map(AttributeValue::S),
        arb_number_text().prop_map(AttributeValue::N),
        any::<bool>().prop_map(AttributeValue::Bool),
        any::<bool>().prop_map(AttributeValue::Null),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| AttributeValue::B(Blob::new(b))),
        proptest::collection::vec(".{0,4}", 0..3).prop_map(AttributeValue::Ss),
        proptest::collection::vec(arb_number_text(), 0..3).prop_map(AttributeValue::Ns),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(AttributeValue::L),
            proptest::collection::hash_map(arb_name(), inner, 0..4).prop_map(AttributeValue::M),
        ]
    })
}

fn arb_item() -> impl Strategy<Value = Item> {
    proptest::collection::hash_map(arb_name(), arb_attribute_value(), 0..24)
}

/// A valid item of some record, then damaged: attributes removed and replaced.
fn arb_damaged_item() -> impl Strategy<Value = Item> {
    let valid = prop_oneof![
        arb_group_state().prop_map(|r| r.to_item()),
        arb_operation().prop_map(|r| r.to_item()),
        arb_journal_step().prop_map(|r| r.to_item()),
        arb_history().prop_map(|r| r.to_item()),
        arb_heartbeat().prop_map(|r| r.to_item()),
    ];
    (
        valid,
        proptest::collection::vec(prop::sample::select(NAMES), 0..3),
        proptest::collection::vec((prop::sample::select(NAMES), arb_attribute_value()), 0..3),
    )
        .prop_map(|(mut item, remove, replace)| {
            for name in remove {
                item.remove(name);
            }
            for (name, value) in replace {
                item.insert(name.to_owned(), value);
            }
            item
        })
}

fn decode_all(item: &Item) {
    fn check<T: Record>(item: &Item) {
        if let Err(e) = T::from_item(item) {
            assert_eq!(e.record, T::KIND);
            assert!(!e.attribute.is_empty());
            assert!(!e.to_string().is_empty());
        }
    }
    check::<GroupState>(item);
    check::<Operation>(item);
    if let Err(e) = HandoffView::from_item("group state", item) {
        assert!(!e.attribute.is_empty());
    }
    check::<JournalStep>(item);
    check::<HistoryEntry>(item);
    check::<Heartbeat>(item);
}

fn round_trips<T>(record: &T) -> Result<(), TestCaseError>
where
    T: Record + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let item = record.to_item();
    prop_assert_eq!(
        &T::from_item(&item).map_err(|e| TestCaseError::fail(e.to_string()))?,
        record
    );
    let json = serde_json::to_string(record).unwrap();
    prop_assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), record);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decoding_arbitrary_attribute_maps_never_panics(item in arb_item()) {
        decode_all(&item);
    }

    #[test]
    fn decoding_damaged_records_never_panics(item in arb_damaged_item()) {
        decode_all(&item);
    }

    #[test]
    fn group_state_round_trips(r in arb_group_state()) { round_trips(&r)?; }

    #[test]
    fn operation_round_trips(r in arb_operation()) { round_trips(&r)?; }

    #[test]
    fn handoff_json_round_trips(r in arb_handoff()) {
        let back: Handoff = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        prop_assert_eq!(back, r);
    }

    #[test]
    fn journal_step_round_trips(r in arb_journal_step()) { round_trips(&r)?; }

    #[test]
    fn history_entry_round_trips(r in arb_history()) { round_trips(&r)?; }

    #[test]
    fn heartbeat_round_trips(r in arb_heartbeat()) { round_trips(&r)?; }
}
