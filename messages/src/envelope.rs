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
//!   `[A-Za-z0-9._:-]` (`-`, [`NO_OPERATION`], in an envelope about the group itself).
//! * `group` – `<namespace>/<name>` of the FailoverGroup ([`GroupRef`], the same type the
//!   DynamoDB keys use).
//! * `epoch` – the group's epoch the sender acted at (unsigned 64-bit).
//! * `sender` – cluster name of the sender (a DNS label, as [`keys::validate_cluster`]
//!   checks), or `coordinator`.
//! * `sentAt` – RFC 3339 timestamp.
//!
//! Unknown extra fields are ignored (so version 1 can grow optional fields). Decoding
//! ([`Envelope::decode`]) takes untrusted text, never panics and reports what is wrong with a
//! typed [`DecodeError`].

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{self, GroupRef, KeyError};

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u64 = 1;

/// Largest body [`Envelope::decode`] accepts, in bytes. A valid envelope is well under 1 KiB;
/// anything larger is rejected before parsing.
pub const MAX_ENVELOPE_BYTES: usize = 8 * 1024;

/// The `operationId` of an envelope about a group rather than an operation
/// ([`EnvelopeKind::GroupRegistered`]): a valid id no operation has (operation ids are UUIDs).
pub const NO_OPERATION: &str = "-";

/// Longest operation id accepted (the limit of the DynamoDB keys).
pub const MAX_OPERATION_ID_LEN: usize = keys::MAX_OPERATION_ID_LEN;

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
    /// The coordinator registered the group (sent to its active cluster): re-check the
    /// group now rather than on the next re-read (the idle active side records its known
    /// replica counts, which a forced failover needs). It names no operation: its
    /// `operationId` is [`NO_OPERATION`].
    GroupRegistered,
}

impl EnvelopeKind {
    /// Every kind this build knows.
    pub const ALL: [EnvelopeKind; 7] = [
        Self::OperationStarted,
        Self::ReadyForPromotion,
        Self::Promoted,
        Self::OperationCompleted,
        Self::AbortRequested,
        Self::Wake,
        Self::GroupRegistered,
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
            Self::GroupRegistered => "GroupRegistered",
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

/// One message between clusters (see the module docs for the wire format).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// What happened.
    pub kind: EnvelopeKind,
    /// The operation record the receiver should re-read.
    pub operation_id: String,
    /// The group the operation concerns.
    pub group: GroupRef,
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
    group: &'a GroupRef,
    epoch: u64,
    sender: &'a str,
    sent_at: Timestamp,
}

impl Envelope {
    /// A wake-up of `kind` about operation `operation_id` of `group` at `epoch`, from
    /// `sender` at `sent_at`: the one way every component addresses an envelope.
    pub fn for_operation(
        kind: EnvelopeKind,
        operation_id: &str,
        group: &GroupRef,
        epoch: u64,
        sender: &str,
        sent_at: Timestamp,
    ) -> Self {
        Self {
            kind,
            operation_id: operation_id.to_owned(),
            group: group.clone(),
            epoch,
            sender: sender.to_owned(),
            sent_at,
        }
    }

    /// A wake-up of `kind` about `group` itself (no operation, [`NO_OPERATION`]) at `epoch`,
    /// from `sender` at `sent_at`.
    pub fn for_group(
        kind: EnvelopeKind,
        group: &GroupRef,
        epoch: u64,
        sender: &str,
        sent_at: Timestamp,
    ) -> Self {
        Self::for_operation(kind, NO_OPERATION, group, epoch, sender, sent_at)
    }

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
        // `GroupRef`'s fields are public, so a sender can build one that does not parse back.
        GroupRef::new(self.group.namespace.as_str(), self.group.name.as_str())
            .map_err(|e| DecodeError::invalid("group", key_problem(&self.group.to_string(), &e)))?;
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

        let group = required_str(&obj, "group")?;
        let group = group
            .parse::<GroupRef>()
            .map_err(|e| DecodeError::invalid("group", key_problem(group, &e)))?;

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
    keys::validate_operation_id(id)
        .map_err(|e| DecodeError::invalid("operationId", key_problem(id, &e)))
}

fn check_sender(sender: &str) -> Result<(), DecodeError> {
    keys::validate_cluster(sender)
        .map_err(|e| DecodeError::invalid("sender", key_problem(sender, &e)))
}

/// The reason for an [`DecodeError::InvalidField`] from a rejected key component: the
/// untrusted value, quoted briefly, and what is wrong with it.
fn key_problem(value: &str, error: &KeyError) -> String {
    format!("{}: {}", quoted(value), error.problem)
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
mod tests;
