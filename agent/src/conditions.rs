//! Kubernetes status conditions (`metav1.Condition`) as the agent keeps them on both of its
//! objects: [`set_condition`] replaces one condition, keeping its transition time while its
//! status holds, and every time is cut to whole seconds ([`whole_seconds`]) as the API server
//! stores it, so a status computed twice from the same input compares equal. A leaf.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// `at` cut to whole seconds, as the API server stores a `Time`: a status computed twice
/// from the same input compares equal to the one read back.
pub fn whole_seconds(at: Timestamp) -> Time {
    Time(Timestamp::from_second(at.as_second()).unwrap_or(at))
}

/// Sets condition `type_` in `conditions`, keeping its transition time when its status does
/// not change.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" }.to_owned();
    let last_transition_time = conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or_else(|| whole_seconds(now), |c| c.last_transition_time.clone());
    let cond = Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    };
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = cond,
        None => conditions.push(cond),
    }
}
