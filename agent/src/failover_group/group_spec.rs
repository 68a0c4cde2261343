//! Validation of a `FailoverGroup` spec as this cluster's agent reports it: the problems of
//! [`failover_messages::protocol::spec::problems`] — the same validator the workflow factory
//! refuses to plan with — each naming its field path (e.g.
//! `spec.volumeReplications[1].workload`), so the status (`SpecValid`) and a Warning Event can
//! say what to fix before a failover is attempted. Pure.

pub use failover_messages::protocol::spec::{
    MAX_VOLUMES, SpecProblem, problems as validate_spec, problems_message,
};

/// Reason of `SpecValid=False` (and of `Ready=False` for an invalid spec).
pub const REASON_INVALID_SPEC: &str = "InvalidSpec";
