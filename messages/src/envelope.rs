//! The versioned SQS envelope: the only thing agents and the coordinator send each other.
//!
//! An envelope is a wake-up hint that names DynamoDB records; it is never trusted as a
//! fact. A receiver re-reads the group state and operation (strongly consistent reads) and
//! acts on what it finds there, so a lost, duplicated, reordered or forged envelope can delay
//! an operation but never make it unsafe.
//!
//! Wire format (version 1), one compact JSON object, fields in this order:
//!
//! ```json
//! {"v":1,"kind":"ReadyForPromotion","operationId":"0d6c…","group":"shop/orders",
//!  "epoch":7,"sender":"east","sentAt":"2026-11-26T10:00:00.5Z"}
//! ```
//!
//! * `v` – format version; a receiver rejects versions it does not know.
//! * `kind` – one of [`EnvelopeKind`].
//! * `operationId` – id of the operation record `OP#<id>`: 1–128 characters of
//!   `[A-Za-z0-9._:-]`.
//! * `group` – `<namespace>/<name>` of the FailoverGroup ([`GroupKey`]).
//! * `epoch` – the group's epoch the sender acted at (unsigned 64-bit).
//! * `sender` – cluster name of the sender (a DNS label), or `coordinator`.
//! * `sentAt` – RFC 3339 timestamp.
//!
//! Unknown extra fields are ignored (so version 1 can grow optional fields). Decoding
//! ([`Envelope::decode`]) takes untrusted text, never panics and reports what is wrong with a
//! typed [`DecodeError`].

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

/// Largest body [`Envelope::decode`] accepts, in bytes. A valid envelope is well under 1 KiB;
/// anything larger is rejected before parsing.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;

/// Longest operation id accepted.
pub const MAX_OPERATION_ID_LEN: usize = 128;

/// What happened, from the sender's point of view. The receiver re-reads the records the
/// envelope names before acting on it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EnvelopeKind {
    /// The coordinator started an operation (sent to source and target).
    OperationStarted,
    /// The source marked every volume `READY_FOR_PROMOTION` (sent to the target).
    ReadyForPromotion,
    /// The target promoted the volumes (sent to the source).
    Promoted,
    /// The operation was closed, whatever its outcome (sent to the other side).
    OperationCompleted,
    /// The coordinator requested an abort (sent to source and target).
    AbortRequested,
    /// Re-read the named group and operation; no specific event.
    Wake,
}

impl EnvelopeKind {
    /// Every kind this build knows.
    pub const ALL: [EnvelopeKind; 6] = [
        Self::OperationStarted,
        Self::ReadyForPromotion,
        Self::Promoted,
        Self::OperationCompleted,
        Self::AbortRequested,
        Self::Wake,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OperationStarted => "OperationStarted",
            Self::ReadyForPromotion => "ReadyForPromotion",
            Self::Promoted => "Promoted",
            Self::OperationCompleted => "OperationCompleted",
            Self::AbortRequested => "AbortRequested",
            Self::Wake => "Wake",
        }
    }
}

impl fmt::Display for EnvelopeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EnvelopeKind {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| DecodeError::UnknownKind { kind: truncate(s) })
    }
}

/// A FailoverGroup's `<namespace>/<name>`, as used in envelopes and DynamoDB keys.
///
/// The namespace is a DNS label (1–63 characters of `[a-z0-9-]`, alphanumeric at both
/// ends); the name is a DNS subdomain (1–253 characters of `[a-z0-9.-]`, alphanumeric at
/// both ends).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    namespace: String,
    name: String,
}

impl GroupKey {
    /// A key from its parts; the error says which part is invalid and why.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, String> {
        let (namespace, name) = (namespace.into(), name.into());
        check_dns_label(&namespace)
            .map_err(|why| format!("namespace {}: {why}", quoted(&namespace)))?;
        check_dns_subdomain(&name).map_err(|why| format!("name {}: {why}", quoted(&name)))?;
        Ok(Self { namespace, name })
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for GroupKey {
    type Err = String;

    /// Parses `<namespace>/<name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (namespace, name) = s
            .split_once('/')
            .ok_or_else(|| format!("{} is not of the form <namespace>/<name>", quoted(s)))?;
        Self::new(namespace, name)
    }
}

impl Serialize for GroupKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One message between clusters (see the module docs for the wire format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// What happened.
    pub kind: EnvelopeKind,
    /// The operation record the receiver should re-read.
    pub operation_id: String,
    /// The group the operation concerns.
    pub group: GroupKey,
    /// The group epoch the sender acted at.
    pub epoch: u64,
    /// Cluster name of the sender (or `coordinator`).
    pub sender: String,
    /// When the sender sent it.
    pub sent_at: Timestamp,
}

/// Why a body is not a usable envelope.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is larger than [`MAX_ENVELOPE_BYTES`].
    #[error("envelope body is {size} bytes, more than the limit of {limit} bytes")]
    Oversize {
        /// Size of the body in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The body is not JSON.
    #[error("envelope body is not valid JSON")]
    MalformedJson(#[source] serde_json::Error),
    /// The body is JSON but not an object.
    #[error("envelope body is JSON but not an object")]
    NotAnObject,
    /// `v` names a version this build does not understand.
    #[error(
        "unsupported envelope version {found} (this build understands version {ENVELOPE_VERSION})"
    )]
    UnsupportedVersion {
        /// The value of `v`, as JSON text (truncated).
        found: String,
    },
    /// `kind` names no known kind.
    #[error("unknown envelope kind {kind:?}")]
    UnknownKind {
        /// The value of `kind` (truncated).
        kind: String,
    },
    /// A required field is absent (or `null`).
    #[error("envelope field `{field}` is missing")]
    MissingField {
        /// The wire name of the field.
        field: &'static str,
    },
    /// A field is present but its value is not acceptable.
    #[error("envelope field `{field}` is invalid: {reason}")]
    InvalidField {
        /// The wire name of the field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl DecodeError {
    fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field,
            reason: reason.into(),
        }
    }
}

/// The order of fields on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    v: u64,
    kind: EnvelopeKind,
    operation_id: &'a str,
    group: &'a GroupKey,
    epoch: u64,
    sender: &'a str,
    sent_at: Timestamp,
}

impl Envelope {
    /// The compact JSON body (version [`ENVELOPE_VERSION`]).
    pub fn encode(&self) -> String {
        let wire = Wire {
            v: ENVELOPE_VERSION,
            kind: self.kind,
            operation_id: &self.operation_id,
            group: &self.group,
            epoch: self.epoch,
            sender: &self.sender,
            sent_at: self.sent_at,
        };
        serde_json::to_string(&wire).expect("an envelope always serializes")
    }

    /// Checks the fields a receiver would check, so that a sender never sends an envelope
    /// the receiver rejects.
    pub fn validate(&self) -> Result<(), DecodeError> {
        check_operation_id(&self.operation_id)?;
        check_sender(&self.sender)?;
        let size = self.encode().len();
        if size > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::Oversize {
                size,
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        Ok(())
    }

    /// Decodes an untrusted body. Never panics; every failure is a [`DecodeError`].
    ///
    /// Checks, in order: size, JSON, object, `v` (so a future version is reported as such,
    /// not as an unknown kind), `kind`, then the remaining fields.
    pub fn decode(body: &str) -> Result<Envelope, DecodeError> {
        if body.len() > MAX_ENVELOPE_BYTES {
            return Err(DecodeError::Oversize {
                size: body.len(),
                limit: MAX_ENVELOPE_BYTES,
            });
        }
        let value: Value = serde_json::from_str(body).map_err(DecodeError::MalformedJson)?;
        let Value::Object(obj) = value else {
            return Err(DecodeError::NotAnObject);
        };

        let v = required(&obj, "v")?;
        if v.as_u64() != Some(ENVELOPE_VERSION) {
            return Err(DecodeError::UnsupportedVersion {
                found: truncate(&v.to_string()),
            });
        }

        let kind = match required(&obj, "kind")? {
            Value::String(s) => s.parse::<EnvelopeKind>()?,
            _ => return Err(DecodeError::invalid("kind", "not a string")),
        };

        let operation_id = required_str(&obj, "operationId")?;
        check_operation_id(operation_id)?;

        let group = required_str(&obj, "group")?
            .parse::<GroupKey>()
            .map_err(|why| DecodeError::invalid("group", why))?;

        let epoch = required(&obj, "epoch")?
            .as_u64()
            .ok_or_else(|| DecodeError::invalid("epoch", "not an unsigned 64-bit integer"))?;

        let sender = required_str(&obj, "sender")?;
        check_sender(sender)?;

        let sent_at = required_str(&obj, "sentAt")?;
        let sent_at = sent_at.parse::<Timestamp>().map_err(|e| {
            DecodeError::invalid(
                "sentAt",
                format!("{} is not an RFC 3339 timestamp: {e}", quoted(sent_at)),
            )
        })?;

        Ok(Envelope {
            kind,
            operation_id: operation_id.to_owned(),
            group,
            epoch,
            sender: sender.to_owned(),
            sent_at,
        })
    }
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a Value, DecodeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(DecodeError::MissingField { field }),
        Some(v) => Ok(v),
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, DecodeError> {
    required(obj, field)?
        .as_str()
        .ok_or_else(|| DecodeError::invalid(field, "not a string"))
}

fn check_operation_id(id: &str) -> Result<(), DecodeError> {
    if id.is_empty() {
        return Err(DecodeError::invalid("operationId", "empty"));
    }
    if id.len() > MAX_OPERATION_ID_LEN {
        return Err(DecodeError::invalid(
            "operationId",
            format!("longer than {MAX_OPERATION_ID_LEN} characters"),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(DecodeError::invalid(
            "operationId",
            format!("contains {c:?}; allowed are letters, digits and . _ : -"),
        ));
    }
    Ok(())
}

fn check_sender(sender: &str) -> Result<(), DecodeError> {
    check_dns_label(sender)
        .map_err(|why| DecodeError::invalid("sender", format!("{}: {why}", quoted(sender))))
}

fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 63 {
        return Err("longer than 63 characters".into());
    }
    check_dns_chars(s, false)
}

fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty".into());
    }
    if s.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    check_dns_chars(s, true)
}

fn check_dns_chars(s: &str, allow_dot: bool) -> Result<(), String> {
    let ok = |c: char| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.')
    };
    if let Some(c) = s.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "contains {c:?}; allowed are lowercase letters, digits and -{}",
            if allow_dot { " ." } else { "" }
        ));
    }
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alnum(s.chars().next()) || !alnum(s.chars().last()) {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// Debug-quotes untrusted text, cut to a length fit for a log line.
fn quoted(s: &str) -> String {
    format!("{:?}", truncate(s))
}

/// Untrusted text cut to at most 64 characters (on a character boundary).
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        None => s.to_owned(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

#[cfg(test)]
mod tests {
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
    fn group_keys_parse_and_print() {
        let key: GroupKey = "shop/orders.v2".parse().unwrap();
        assert_eq!((key.namespace(), key.name()), ("shop", "orders.v2"));
        assert_eq!(key.to_string(), "shop/orders.v2");
        for bad in [
            "",
            "/",
            "shop",
            "shop/",
            "/orders",
            "shop/orders/x",
            "-shop/orders",
            "shop/Orders",
        ] {
            assert!(bad.parse::<GroupKey>().is_err(), "{bad:?}");
        }
    }
}
