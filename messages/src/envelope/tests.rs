use super::*;

fn sample() -> Envelope {
    Envelope {
        kind: EnvelopeKind::ReadyForPromotion,
        operation_id: "op-1".into(),
        group: "shop/orders".parse().unwrap(),
        epoch: 7,
        sender: "east".into(),
        sent_at: "2026-11-26T10:00:00Z".parse().unwrap(),
    }
}

fn with(field: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(&sample().encode()).unwrap();
    v[field] = value;
    v.to_string()
}

fn without(field: &str) -> String {
    let mut v: Value = serde_json::from_str(&sample().encode()).unwrap();
    v.as_object_mut().unwrap().remove(field);
    v.to_string()
}

#[test]
fn encode_then_decode_is_identity() {
    let e = sample();
    assert_eq!(Envelope::decode(&e.encode()).unwrap(), e);
    e.validate().unwrap();
}

#[test]
fn each_problem_has_its_own_error() {
    assert!(matches!(
        Envelope::decode("{"),
        Err(DecodeError::MalformedJson(_))
    ));
    assert!(matches!(
        Envelope::decode(""),
        Err(DecodeError::MalformedJson(_))
    ));
    assert!(matches!(
        Envelope::decode("[1]"),
        Err(DecodeError::NotAnObject)
    ));
    assert!(matches!(
        Envelope::decode(&" ".repeat(MAX_ENVELOPE_BYTES + 1)),
        Err(DecodeError::Oversize { .. })
    ));
    assert!(matches!(
        Envelope::decode(&with("v", 2.into())),
        Err(DecodeError::UnsupportedVersion { found }) if found == "2"
    ));
    assert!(matches!(
        Envelope::decode(&with("v", "1".into())),
        Err(DecodeError::UnsupportedVersion { .. })
    ));
    assert!(matches!(
        Envelope::decode(&without("v")),
        Err(DecodeError::MissingField { field: "v" })
    ));
    assert!(matches!(
        Envelope::decode(&with("kind", "Explode".into())),
        Err(DecodeError::UnknownKind { kind }) if kind == "Explode"
    ));
    for field in ["kind", "operationId", "group", "epoch", "sender", "sentAt"] {
        match Envelope::decode(&without(field)) {
            Err(DecodeError::MissingField { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
        match Envelope::decode(&with(field, Value::Null)) {
            Err(DecodeError::MissingField { field: f }) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let invalid = [
        ("kind", Value::from(3)),
        ("operationId", "".into()),
        ("operationId", "a#b".into()),
        ("operationId", "x".repeat(129).into()),
        ("group", "orders".into()),
        ("group", "shop/".into()),
        ("group", "Shop/orders".into()),
        ("epoch", (-1).into()),
        ("epoch", 1.5.into()),
        ("epoch", "7".into()),
        ("sender", "East!".into()),
        ("sentAt", "yesterday".into()),
        ("sentAt", 1_700_000_000.into()),
    ];
    for (field, value) in invalid {
        match Envelope::decode(&with(field, value.clone())) {
            Err(DecodeError::InvalidField { field: f, .. }) => assert_eq!(f, field, "{value}"),
            other => panic!("{field}={value}: {other:?}"),
        }
    }
}

#[test]
fn unknown_extra_fields_are_ignored() {
    let body = with("traceId", "abc".into());
    assert_eq!(Envelope::decode(&body).unwrap(), sample());
}

#[test]
fn errors_quote_untrusted_text_briefly() {
    let long = "y".repeat(10_000);
    let msg = Envelope::decode(&with("kind", long.into()))
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 200, "{msg}");
}

#[test]
fn the_group_is_a_group_ref_and_bad_ones_are_named() {
    let e = Envelope::decode(&sample().encode()).unwrap();
    assert_eq!(e.group, GroupRef::new("shop", "orders").unwrap());
    for bad in [
        "orders",
        "shop/orders/x",
        "-shop/orders",
        "shop/Orders",
        "/orders",
    ] {
        match Envelope::decode(&with("group", bad.into())) {
            Err(DecodeError::InvalidField {
                field: "group",
                reason,
            }) => assert!(reason.contains(&format!("{bad:?}")), "{bad}: {reason}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let mut hand_built = sample();
    hand_built.group = GroupRef {
        namespace: "Shop".into(),
        name: "orders".into(),
    };
    assert!(matches!(
        hand_built.validate(),
        Err(DecodeError::InvalidField { field: "group", .. })
    ));
    let long = format!("shop/{}", "o".repeat(1_000));
    let msg = Envelope::decode(&with("group", long.into()))
        .unwrap_err()
        .to_string();
    assert!(msg.len() < 200, "{msg}");
}
