//! Key schema of the single DynamoDB table (see `docs/protocol.md` and `messages/SCHEMA.md`).
//!
//! Every record lives in one table with a string partition key `PK` and a string sort key
//! `SK`; the global secondary index `GSI1` (`GSI1PK`, `GSI1SK`) lists groups and operations
//! without a scan.
//!
//! | record | `PK` | `SK` | `GSI1PK` / `GSI1SK` |
//! |---|---|---|---|
//! | group state | `GROUP#<ns>/<name>` | `STATE` | `GROUPS` / `<ns>/<name>` |
//! | operation | `OP#<id>` | `OP` | `OPS` / `<requestedAt>#<id>` |
//! | handoff, one per volume | `OP#<id>` | `VOL#<volume>` | – |
//! | published journal stage | `OP#<id>` | `JOURNAL#<cluster>#<stage>` | – |
//! | journal note (a long wait) | `OP#<id>` | `JOURNAL#<cluster>#<stage>#<task>` | – |
//! | history | `GROUP#<ns>/<name>` | `HIST#<finishedAt>#<id>` | – |
//! | cluster heartbeat | `CLUSTERS` | `CLUSTER#<name>` | – |
//!
//! Timestamps inside keys (`<requestedAt>`, `<finishedAt>`) are milliseconds since the Unix
//! epoch written as 13 zero-padded decimal digits ([`sortable_millis`]), so that the
//! lexical order of the sort key is the time order (valid from 1970 to 2286).
//!
//! The functions here only format strings. The validators ([`validate_operation_id`],
//! [`validate_cluster`], [`validate_volume`], [`validate_step_name`]) keep `#` and other
//! separators out of key components, so every key parses back unambiguously; the store
//! calls them before it builds a key from caller input.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Name of the partition key attribute.
pub const PK: &str = "PK";
/// Name of the sort key attribute.
pub const SK: &str = "SK";
/// Name of the global secondary index that lists groups and operations.
pub const GSI1: &str = "GSI1";
/// Partition key attribute of [`GSI1`].
pub const GSI1PK: &str = "GSI1PK";
/// Sort key attribute of [`GSI1`].
pub const GSI1SK: &str = "GSI1SK";
/// The table's TTL attribute (seconds since the Unix epoch; only heartbeats carry it).
pub const TTL_ATTRIBUTE: &str = "expiresAt";

/// Prefix of a group's partition key.
pub const GROUP_PREFIX: &str = "GROUP#";
/// Sort key of a group state record.
pub const GROUP_STATE_SK: &str = "STATE";
/// Prefix of an operation's partition key.
pub const OPERATION_PREFIX: &str = "OP#";
/// Sort key of an operation record.
pub const OPERATION_SK: &str = "OP";
/// Sort key prefix of handoff records.
pub const HANDOFF_PREFIX: &str = "VOL#";
/// Sort key prefix of journal steps.
pub const JOURNAL_PREFIX: &str = "JOURNAL#";
/// Sort key prefix of history records.
pub const HISTORY_PREFIX: &str = "HIST#";
/// Partition key of all cluster heartbeats.
pub const CLUSTERS_PK: &str = "CLUSTERS";
/// Sort key prefix of cluster heartbeats.
pub const CLUSTER_PREFIX: &str = "CLUSTER#";
/// Sort key prefix of inbox routes.
pub const INBOX_PREFIX: &str = "INBOX#";
/// `GSI1PK` of every group state record.
pub const GSI1_GROUPS: &str = "GROUPS";
/// `GSI1PK` of every operation record.
pub const GSI1_OPERATIONS: &str = "OPS";

/// Longest operation id accepted (the same limit the SQS envelope applies).
pub const MAX_OPERATION_ID_LEN: usize = 128;
/// Longest stage or task name accepted in a journal key.
pub const MAX_STEP_NAME_LEN: usize = 128;

// ---------------------------------------------------------------------------------------------
// GroupRef
// ---------------------------------------------------------------------------------------------

/// A FailoverGroup named by namespace and name, written `<namespace>/<name>`.
///
/// The namespace must be a DNS-1123 label and the name a DNS-1123 subdomain (what Kubernetes
/// accepts), so neither contains `/` or `#` and the key `GROUP#<ns>/<name>` parses back.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupRef {
    /// Namespace of the FailoverGroup.
    pub namespace: String,
    /// Name of the FailoverGroup.
    pub name: String,
}

/// Why a group reference or a key component was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {problem}")]
pub struct KeyError {
    /// What was being parsed (`group`, `cluster name`, `operation id`, …).
    pub what: &'static str,
    /// The rejected input.
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
}

impl KeyError {
    fn new(what: &'static str, value: &str, problem: impl Into<String>) -> Self {
        // Keep error messages bounded even for huge inputs.
        let value = if value.chars().count() > 300 {
            let cut: String = value.chars().take(300).collect();
            format!("{cut}…")
        } else {
            value.to_owned()
        };
        Self {
            what,
            value,
            problem: problem.into(),
        }
    }
}

impl GroupRef {
    /// A validated group reference.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Result<Self, KeyError> {
        let group = Self {
            namespace: namespace.into(),
            name: name.into(),
        };
        let shown = group.to_string();
        if let Err(problem) = check_dns_label(&group.namespace) {
            return Err(KeyError::new(
                "group",
                &shown,
                format!("namespace {problem}"),
            ));
        }
        if let Err(problem) = check_dns_subdomain(&group.name) {
            return Err(KeyError::new("group", &shown, format!("name {problem}")));
        }
        Ok(group)
    }

    /// `GROUP#<ns>/<name>`: partition key of the group state and its history.
    pub fn pk(&self) -> String {
        group_pk(self)
    }
}

impl fmt::Display for GroupRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl FromStr for GroupRef {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((namespace, name)) = s.split_once('/') else {
            return Err(KeyError::new(
                "group",
                s,
                "expected <namespace>/<name>, e.g. shop/orders",
            ));
        };
        if name.contains('/') {
            return Err(KeyError::new(
                "group",
                s,
                "expected exactly one '/' between namespace and name",
            ));
        }
        Self::new(namespace, name)
    }
}

impl Serialize for GroupRef {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GroupRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn check_dns_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 63 {
        return Err(format!("is {} characters long (at most 63)", s.len()));
    }
    check_dns_chars(s, false)
}

fn check_dns_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("is empty".into());
    }
    if s.len() > 253 {
        return Err(format!("is {} characters long (at most 253)", s.len()));
    }
    check_dns_chars(s, true)
}

fn check_dns_chars(s: &str, allow_dot: bool) -> Result<(), String> {
    let allowed = if allow_dot {
        "lowercase letters, digits, '-' and '.'"
    } else {
        "lowercase letters, digits and '-'"
    };
    if let Some(c) = s.chars().find(|&c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || (allow_dot && c == '.'))
    }) {
        return Err(format!("contains {c:?}; only {allowed} are allowed"));
    }
    let first = s.chars().next().unwrap_or('-');
    let last = s.chars().last().unwrap_or('-');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Validators for key components
// ---------------------------------------------------------------------------------------------

/// An operation id: 1–128 characters of `[A-Za-z0-9._:-]` (a UUID fits).
pub fn validate_operation_id(id: &str) -> Result<(), KeyError> {
    if id.is_empty() {
        return Err(KeyError::new("operation id", id, "is empty"));
    }
    if id.len() > MAX_OPERATION_ID_LEN {
        return Err(KeyError::new(
            "operation id",
            id,
            format!(
                "is {} characters long (at most {MAX_OPERATION_ID_LEN})",
                id.len()
            ),
        ));
    }
    if let Some(c) = id
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Err(KeyError::new(
            "operation id",
            id,
            format!("contains {c:?}; only letters, digits, '.', '_', ':' and '-' are allowed"),
        ));
    }
    Ok(())
}

/// A cluster name: a DNS-1123 label (the same rule as the CRDs' cluster names).
pub fn validate_cluster(name: &str) -> Result<(), KeyError> {
    check_dns_label(name).map_err(|p| KeyError::new("cluster name", name, p))
}

/// A volume (VolumeReplication) name: a DNS-1123 subdomain.
pub fn validate_volume(name: &str) -> Result<(), KeyError> {
    check_dns_subdomain(name).map_err(|p| KeyError::new("volume name", name, p))
}

/// A journal stage or task name: 1–128 printable characters without `#`.
pub fn validate_step_name(what: &'static str, name: &str) -> Result<(), KeyError> {
    if name.is_empty() {
        return Err(KeyError::new(what, name, "is empty"));
    }
    if name.len() > MAX_STEP_NAME_LEN {
        return Err(KeyError::new(
            what,
            name,
            format!(
                "is {} characters long (at most {MAX_STEP_NAME_LEN})",
                name.len()
            ),
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '#' || c.is_control() || c.is_whitespace())
    {
        return Err(KeyError::new(
            what,
            name,
            format!("contains {c:?}; '#', spaces and control characters are not allowed"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Key builders
// ---------------------------------------------------------------------------------------------

/// A timestamp as 13 zero-padded digits of milliseconds since the Unix epoch, so that sort
/// keys order by time.
pub fn sortable_millis(at: Timestamp) -> String {
    format!("{:013}", at.as_millisecond())
}

/// `GROUP#<ns>/<name>`.
pub fn group_pk(group: &GroupRef) -> String {
    format!("{GROUP_PREFIX}{group}")
}

/// Parses `GROUP#<ns>/<name>` back into a [`GroupRef`].
pub fn parse_group_pk(pk: &str) -> Result<GroupRef, KeyError> {
    match pk.strip_prefix(GROUP_PREFIX) {
        Some(rest) => rest.parse(),
        None => Err(KeyError::new(
            "group key",
            pk,
            format!("does not start with {GROUP_PREFIX:?}"),
        )),
    }
}

/// `(PK, SK)` of a group state record.
pub fn group_state_key(group: &GroupRef) -> (String, String) {
    (group_pk(group), GROUP_STATE_SK.to_owned())
}

/// `GSI1SK` of a group state record: `<ns>/<name>`.
pub fn group_gsi1sk(group: &GroupRef) -> String {
    group.to_string()
}

/// `OP#<id>`: partition key of an operation, its handoff records and journal.
pub fn operation_pk(op_id: &str) -> String {
    format!("{OPERATION_PREFIX}{op_id}")
}

/// `(PK, SK)` of an operation record.
pub fn operation_key(op_id: &str) -> (String, String) {
    (operation_pk(op_id), OPERATION_SK.to_owned())
}

/// `GSI1SK` of an operation record: `<requestedAt>#<id>`, newest last.
pub fn operation_gsi1sk(requested_at: Timestamp, op_id: &str) -> String {
    format!("{}#{op_id}", sortable_millis(requested_at))
}

/// `VOL#<volume>`.
pub fn handoff_sk(volume: &str) -> String {
    format!("{HANDOFF_PREFIX}{volume}")
}

/// `(PK, SK)` of the handoff record of one volume.
pub fn handoff_key(op_id: &str, volume: &str) -> (String, String) {
    (operation_pk(op_id), handoff_sk(volume))
}

/// `JOURNAL#<cluster>#`: sort key prefix of one cluster's journal of an operation.
pub fn journal_prefix(cluster: &str) -> String {
    format!("{JOURNAL_PREFIX}{cluster}#")
}

/// `JOURNAL#<cluster>#<stage>#<task>`.
pub fn journal_sk(cluster: &str, stage: &str, task: &str) -> String {
    format!("{JOURNAL_PREFIX}{cluster}#{stage}#{task}")
}

/// `JOURNAL#<cluster>#<stage>`: the operation item's attribute holding one published stage
/// of a cluster's journal.
pub fn journal_stage_attribute(cluster: &str, stage: &str) -> String {
    format!("{JOURNAL_PREFIX}{cluster}#{stage}")
}

/// `(PK, SK)` of a journal step.
pub fn journal_key(op_id: &str, cluster: &str, stage: &str, task: &str) -> (String, String) {
    (operation_pk(op_id), journal_sk(cluster, stage, task))
}

/// `HIST#<finishedAt>#<id>`.
pub fn history_sk(finished_at: Timestamp, op_id: &str) -> String {
    format!("{HISTORY_PREFIX}{}#{op_id}", sortable_millis(finished_at))
}

/// `(PK, SK)` of a history record.
pub fn history_key(group: &GroupRef, finished_at: Timestamp, op_id: &str) -> (String, String) {
    (group_pk(group), history_sk(finished_at, op_id))
}

/// `CLUSTER#<name>`.
pub fn cluster_sk(cluster: &str) -> String {
    format!("{CLUSTER_PREFIX}{cluster}")
}

/// `(PK, SK)` of a cluster heartbeat.
pub fn heartbeat_key(cluster: &str) -> (String, String) {
    (CLUSTERS_PK.to_owned(), cluster_sk(cluster))
}

/// `(PK, SK)` of a cluster's inbox route.
pub fn inbox_route_key(cluster: &str) -> (String, String) {
    (CLUSTERS_PK.to_owned(), format!("{INBOX_PREFIX}{cluster}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(ms).unwrap()
    }

    #[test]
    fn group_ref_parses_and_prints_namespace_slash_name() {
        let g: GroupRef = "shop/orders".parse().unwrap();
        assert_eq!(g.namespace, "shop");
        assert_eq!(g.name, "orders");
        assert_eq!(g.to_string(), "shop/orders");
        let dotted: GroupRef = "shop/orders.v2".parse().unwrap();
        assert_eq!(dotted.name, "orders.v2");
    }

    #[test]
    fn group_ref_rejects_bad_input_with_a_message_naming_it() {
        for (input, needle) in [
            ("orders", "expected <namespace>/<name>"),
            ("", "expected <namespace>/<name>"),
            ("/orders", "namespace is empty"),
            ("shop/", "name is empty"),
            ("shop/orders/x", "exactly one '/'"),
            ("Shop/orders", "namespace contains 'S'"),
            ("shop/ord#ers", "name contains '#'"),
            ("shop/-orders", "start and end"),
            ("shop.x/orders", "namespace contains '.'"),
        ] {
            let err = input.parse::<GroupRef>().unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(needle), "{input:?}: {msg}");
            assert!(msg.contains(&format!("{input:?}")), "{input:?}: {msg}");
            assert!(msg.starts_with("invalid group"), "{msg}");
        }
        let long = format!("shop/{}", "a".repeat(254));
        assert!(
            long.parse::<GroupRef>()
                .unwrap_err()
                .to_string()
                .contains("at most 253")
        );
        let long_ns = format!("{}/x", "a".repeat(64));
        assert!(
            long_ns
                .parse::<GroupRef>()
                .unwrap_err()
                .to_string()
                .contains("at most 63")
        );
    }

    #[test]
    fn group_ref_serializes_as_a_string() {
        let g = GroupRef::new("shop", "orders").unwrap();
        assert_eq!(serde_json::to_string(&g).unwrap(), "\"shop/orders\"");
        let back: GroupRef = serde_json::from_str("\"shop/orders\"").unwrap();
        assert_eq!(back, g);
        assert!(serde_json::from_str::<GroupRef>("\"nope\"").is_err());
    }

    #[test]
    fn keys_follow_the_protocol_schema() {
        let g = GroupRef::new("shop", "orders").unwrap();
        assert_eq!(
            group_state_key(&g),
            ("GROUP#shop/orders".into(), "STATE".into())
        );
        assert_eq!(group_gsi1sk(&g), "shop/orders");
        assert_eq!(operation_key("op-1"), ("OP#op-1".into(), "OP".into()));
        assert_eq!(
            operation_gsi1sk(ts(1_764_150_000_000), "op-1"),
            "1764150000000#op-1"
        );
        assert_eq!(
            handoff_key("op-1", "db-data"),
            ("OP#op-1".into(), "VOL#db-data".into())
        );
        assert_eq!(
            journal_key("op-1", "east", "source-shutdown", "ScaleDown"),
            (
                "OP#op-1".into(),
                "JOURNAL#east#source-shutdown#ScaleDown".into()
            )
        );
        assert!(journal_sk("east", "s", "t").starts_with(&journal_prefix("east")));
        assert!(!journal_sk("east-2", "s", "t").starts_with(&journal_prefix("east")));
        assert_eq!(
            history_key(&g, ts(1_764_150_000_000), "op-1"),
            ("GROUP#shop/orders".into(), "HIST#1764150000000#op-1".into())
        );
        assert_eq!(
            heartbeat_key("east"),
            ("CLUSTERS".into(), "CLUSTER#east".into())
        );
        assert_eq!(parse_group_pk("GROUP#shop/orders").unwrap(), g);
        assert!(parse_group_pk("OP#x").is_err());
    }

    #[test]
    fn sortable_millis_orders_like_time() {
        assert_eq!(sortable_millis(ts(5)), "0000000000005");
        let early = history_sk(ts(999_999_999_999), "b");
        let late = history_sk(ts(1_000_000_000_000), "a");
        assert!(early < late);
    }

    #[test]
    fn validators_keep_separators_out_of_keys() {
        assert!(validate_operation_id("0d6c8a1e-4b0e-4f7a-9c1d-2a3b4c5d6e7f").is_ok());
        assert!(validate_operation_id("op:1.x_y").is_ok());
        assert!(validate_operation_id("").is_err());
        assert!(
            validate_operation_id("a#b")
                .unwrap_err()
                .to_string()
                .contains("'#'")
        );
        assert!(validate_operation_id(&"a".repeat(129)).is_err());
        assert!(validate_cluster("east").is_ok());
        assert!(
            validate_cluster("East")
                .unwrap_err()
                .to_string()
                .contains("cluster name")
        );
        assert!(validate_volume("orders-db.data").is_ok());
        assert!(validate_volume("a#b").is_err());
        assert!(validate_step_name("stage", "source-shutdown").is_ok());
        assert!(validate_step_name("task", "Scale#Down").is_err());
        assert!(validate_step_name("task", "Scale Down").is_err());
        assert!(validate_step_name("task", "").is_err());
    }

    #[test]
    fn huge_inputs_give_bounded_messages() {
        let huge = "x".repeat(100_000);
        let msg = huge.parse::<GroupRef>().unwrap_err().to_string();
        assert!(msg.len() < 1_000, "{}", msg.len());
    }
}
