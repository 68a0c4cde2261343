//! Envelope wire format: golden files (the exact bytes other versions of the agent rely on),
//! and properties: untrusted input never panics the decoder, and encode → decode is identity.

use failover_messages::envelope::{DecodeError, Envelope, EnvelopeKind, MAX_ENVELOPE_BYTES};
use failover_messages::keys::GroupRef;
use jiff::Timestamp;
use proptest::prelude::*;

fn golden(name: &str) -> String {
    let path = format!("{}/tests/golden/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn ready_for_promotion() -> Envelope {
    Envelope {
        kind: EnvelopeKind::ReadyForPromotion,
        operation_id: "0d6c4b1e-8f2a-4c55-9a57-3b1f2f4e6a10".into(),
        group: GroupRef::new("shop", "orders").unwrap(),
        epoch: 42,
        sender: "east".into(),
        sent_at: "2026-11-26T10:15:30.25Z".parse().unwrap(),
    }
}

fn operation_started() -> Envelope {
    Envelope {
        kind: EnvelopeKind::OperationStarted,
        operation_id: "op-20261126-0001".into(),
        group: GroupRef::new("payments", "ledger.v2").unwrap(),
        epoch: u64::MAX,
        sender: "coordinator".into(),
        sent_at: "2026-11-26T10:15:30Z".parse().unwrap(),
    }
}

#[test]
fn ready_for_promotion_matches_its_golden_file() {
    let expected = golden("envelope_ready_for_promotion.json");
    assert_eq!(format!("{}\n", ready_for_promotion().encode()), expected);
    assert_eq!(
        Envelope::decode(expected.trim_end()).unwrap(),
        ready_for_promotion()
    );
}

#[test]
fn operation_started_matches_its_golden_file() {
    let expected = golden("envelope_operation_started.json");
    assert_eq!(format!("{}\n", operation_started().encode()), expected);
    assert_eq!(
        Envelope::decode(expected.trim_end()).unwrap(),
        operation_started()
    );
}

#[test]
fn a_group_registered_envelope_names_no_operation_and_round_trips() {
    let group = GroupRef::new("shop", "orders").unwrap();
    let sent_at: Timestamp = "2026-12-04T05:00:00Z".parse().unwrap();
    let e = Envelope::for_group(
        EnvelopeKind::GroupRegistered,
        &group,
        0,
        "coordinator",
        sent_at,
    );
    e.validate().unwrap();
    assert_eq!(
        e.encode(),
        r#"{"v":1,"kind":"GroupRegistered","operationId":"-","group":"shop/orders","epoch":0,"sender":"coordinator","sentAt":"2026-12-04T05:00:00Z"}"#
    );
    assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
}

#[test]
fn every_kind_has_a_stable_wire_name() {
    let names: Vec<String> = EnvelopeKind::ALL
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        names,
        [
            "OperationStarted",
            "ReadyForPromotion",
            "Promoted",
            "OperationCompleted",
            "AbortRequested",
            "Wake",
            "GroupRegistered"
        ]
    );
    for kind in EnvelopeKind::ALL {
        assert_eq!(
            kind.to_string(),
            serde_json::to_value(kind).unwrap().as_str().unwrap()
        );
    }
}

#[test]
fn a_future_version_is_reported_as_such_even_with_unknown_kinds() {
    let body = r#"{"v":2,"kind":"Teleport","whatever":true}"#;
    assert!(matches!(
        Envelope::decode(body),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
}

#[test]
fn deeply_nested_json_is_rejected_without_overflowing_the_stack() {
    let body = format!("{}{}", "[".repeat(4000), "]".repeat(4000));
    assert!(matches!(
        Envelope::decode(&body),
        Err(DecodeError::MalformedJson(_))
    ));
    let body = format!("{{\"v\":{}1{}}}", "[".repeat(2000), "]".repeat(2000));
    assert!(Envelope::decode(&body).is_err());
}

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    (
        proptest::sample::select(EnvelopeKind::ALL.to_vec()),
        "[A-Za-z0-9._:-]{1,128}",
        dns_label(),
        "[a-z0-9]([-a-z0-9.]{0,100}[a-z0-9])?",
        any::<u64>(),
        dns_label(),
        // Years 1970..9999, any nanosecond.
        0i64..253_402_300_799,
        0i32..1_000_000_000,
    )
        .prop_map(
            |(kind, operation_id, ns, name, epoch, sender, secs, nanos)| Envelope {
                kind,
                operation_id,
                group: GroupRef::new(ns, name).unwrap(),
                epoch,
                sender,
                sent_at: Timestamp::new(secs, nanos).unwrap(),
            },
        )
}

fn arb_json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,10}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

const FIELDS: [&str; 7] = [
    "v",
    "kind",
    "operationId",
    "group",
    "epoch",
    "sender",
    "sentAt",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_strings_never_panic_the_decoder(body in any::<String>()) {
        let _ = Envelope::decode(&body);
    }

    #[test]
    fn json_looking_strings_never_panic_the_decoder(body in r#"[{}\[\]":,0-9a-zA-Z \-.]{0,200}"#) {
        let _ = Envelope::decode(&body);
    }

    #[test]
    fn arbitrary_json_values_never_panic_the_decoder(value in arb_json()) {
        let _ = Envelope::decode(&value.to_string());
    }

    #[test]
    fn replacing_any_field_with_any_value_never_panics(
        envelope in arb_envelope(),
        field in proptest::sample::select(FIELDS.to_vec()),
        value in arb_json(),
    ) {
        let mut json: serde_json::Value = serde_json::from_str(&envelope.encode()).unwrap();
        json[field] = value;
        let _ = Envelope::decode(&json.to_string());
    }

    #[test]
    fn corrupting_bytes_never_panics(
        envelope in arb_envelope(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 1..8),
    ) {
        let mut chars: Vec<char> = envelope.encode().chars().collect();
        for (index, c) in edits {
            let i = index.index(chars.len());
            chars[i] = c;
        }
        let body: String = chars.into_iter().collect();
        let _ = Envelope::decode(&body);
    }

    #[test]
    fn encode_then_decode_round_trips(envelope in arb_envelope()) {
        let body = envelope.encode();
        prop_assert!(body.len() <= MAX_ENVELOPE_BYTES);
        prop_assert!(envelope.validate().is_ok());
        prop_assert_eq!(Envelope::decode(&body).unwrap(), envelope);
    }

    #[test]
    fn durations_matching_the_schema_pattern_parse(s in "([0-9]{1,4}(ms|s|m|h)){1,4}") {
        prop_assert!(failover_messages::crd::parse_duration("f", &s).is_ok());
    }
}
