//! What the agent calls a `Failover` and how it tells them apart: the object name of an
//! operation's `Failover` ([`failover_name`]), the labels and annotations an agent-created
//! one carries, `requestedBy` for operations submitted from a user's `Failover`
//! ([`requested_by`]), which objects are the agents' own ([`is_agent_created`]) and the
//! operation ids a user's object stands for ([`operation_ids`]). Pure; both the reporter and
//! the trigger use it.

use failover_messages::crd::Failover;

/// The labels (a label-safe form of the operation id and the group name; the full id is in
/// the `failover.io/operation` annotation and `status.operationId`) and annotations of the
/// `Failover` objects agents create, defined once in the protocol module.
pub use failover_messages::protocol::names::{
    ANNOTATION_EPOCH, ANNOTATION_OPERATION, LABEL_GROUP, LABEL_OPERATION,
};

/// Longest Kubernetes object name (DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;
/// Longest label value.
const MAX_LABEL_LEN: usize = 63;

/// Prefix of `requestedBy` for operations submitted from a `Failover` object.
pub const REQUESTED_BY_PREFIX: &str = "kubernetes:";

/// `kubernetes:<cluster>/<namespace>/<name>`: who asked, for the operation record.
pub fn requested_by(cluster: &str, namespace: &str, name: &str) -> String {
    format!("{REQUESTED_BY_PREFIX}{cluster}/{namespace}/{name}")
}

/// The (cluster, namespace, name) of a [`requested_by`] string.
pub fn parse_requested_by(s: &str) -> Option<(&str, &str, &str)> {
    let rest = s.strip_prefix(REQUESTED_BY_PREFIX)?;
    let mut parts = rest.splitn(3, '/');
    let (c, ns, n) = (parts.next()?, parts.next()?, parts.next()?);
    (!c.is_empty() && !ns.is_empty() && !n.is_empty()).then_some((c, ns, n))
}

/// True for the `Failover` objects agents create for their operations.
pub fn is_agent_created(fo: &Failover) -> bool {
    fo.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ANNOTATION_OPERATION))
        || fo
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(LABEL_OPERATION))
}

/// True when the agent keeps the progress of `fo`'s operation on `fo` itself: a user object
/// naming a single group.
pub fn status_on_user_object(fo: &Failover) -> bool {
    !is_agent_created(fo) && fo.spec.groups.len() == 1
}

/// The operation id of each group of `fo`, in `spec.groups` order: the object's UID for a
/// single group, `<uid>-<index>` for several. Empty without a UID.
pub fn operation_ids(fo: &Failover) -> Vec<String> {
    let Some(uid) = fo.metadata.uid.as_deref().filter(|u| !u.is_empty()) else {
        return Vec::new();
    };
    let n = fo.spec.groups.len();
    if n == 1 {
        vec![uid.to_owned()]
    } else {
        (0..n).map(|i| format!("{uid}-{i}")).collect()
    }
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

fn is_label_value(s: &str) -> bool {
    s.len() <= MAX_LABEL_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && s.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && s.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric())
}

/// FNV-1a, 32 bits: a stable short fingerprint, so two ids that sanitize alike still get
/// different names.
fn fingerprint(s: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// `s` lowercased with every run of characters outside `[a-z0-9]` turned into one `-`,
/// without leading or trailing `-`, cut to `max` characters.
fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    out.trim_end_matches('-').to_owned()
}

/// The name of the `Failover` object of operation `op_id`: the id itself when it is a valid
/// object name (DNS-1123 subdomain, e.g. a lowercase UUID), otherwise
/// `fo-<sanitized id>-<fingerprint>` (stable, and distinct for ids that sanitize alike).
pub fn failover_name(op_id: &str) -> String {
    if is_dns_subdomain(op_id) {
        return op_id.to_owned();
    }
    let hash = fingerprint(op_id);
    // "fo-" + body + "-" + 8 hex digits stays within 63 characters (also a valid label).
    let body = sanitize(op_id, MAX_LABEL_LEN - 3 - 1 - hash.len());
    if body.is_empty() {
        format!("fo-{hash}")
    } else {
        format!("fo-{body}-{hash}")
    }
}

/// A label value standing for `s`: `s` itself when it is a valid label value, otherwise a
/// sanitized form with a fingerprint.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_owned();
    }
    let hash = fingerprint(s);
    let body = sanitize(s, MAX_LABEL_LEN - 1 - hash.len());
    if body.is_empty() {
        hash
    } else {
        format!("{body}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_safe_ids_are_the_name() {
        assert_eq!(
            failover_name("0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"),
            "0b7c6f1e-4a1d-4f39-9d0e-5e2b1c3d4f5a"
        );
        assert_eq!(failover_name("op-1"), "op-1");
    }

    #[test]
    fn other_ids_are_sanitized_stably_and_distinctly() {
        let a = failover_name("Op:2026_11.A");
        let b = failover_name("op-2026-11-a");
        let c = failover_name("OP:2026_11.A");
        assert!(a.starts_with("fo-op-2026-11-a-"), "{a}");
        assert!(is_dns_subdomain(&a) && is_label_value(&a), "{a}");
        assert_eq!(a, failover_name("Op:2026_11.A"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        let long = "X".repeat(128);
        let n = failover_name(&long);
        assert!(n.len() <= 63 && is_dns_subdomain(&n), "{n}");
        assert!(is_dns_subdomain(&failover_name("::")));
    }

    #[test]
    fn label_values_are_valid() {
        assert_eq!(label_value("op-1"), "op-1");
        assert_eq!(label_value("Op_1.x"), "Op_1.x");
        let l = label_value(&format!("a:{}", "b".repeat(100)));
        assert!(is_label_value(&l) && !l.is_empty(), "{l}");
    }

    #[test]
    fn requested_by_round_trips() {
        let s = requested_by("east", "shop", "move-orders");
        assert_eq!(s, "kubernetes:east/shop/move-orders");
        assert_eq!(
            parse_requested_by(&s),
            Some(("east", "shop", "move-orders"))
        );
        assert_eq!(parse_requested_by("failoverctl:alice"), None);
        assert_eq!(parse_requested_by("kubernetes:east//x"), None);
    }
}
