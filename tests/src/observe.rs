//! What scenarios read off a running agent from outside: the counters on its `/metrics`
//! ([`crate::agents::Stack::metrics`]) and the version of its serving lease's record in
//! DynamoDB.

use failover_messages::store::Store;
use jiff::Timestamp;

/// The value of the counter `family` (its `_total` series) whose labels contain every one
/// of `labels` (`key="value"`), summed.
pub fn counter(metrics: &str, family: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            let rest = l
                .strip_prefix(family)
                .and_then(|r| r.strip_prefix("_total"));
            rest.is_some_and(|r| r.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// The version (`lastSeen`) of `cluster`'s serving lease record (its heartbeat), as
/// DynamoDB has it; an error as text, for [`crate::kube::wait_for`].
pub async fn lease_version(store: &Store, cluster: &str) -> Result<Timestamp, String> {
    store
        .get_heartbeat(cluster)
        .await
        .map_err(|e| e.to_string())?
        .map(|h| h.heartbeat.last_seen)
        .ok_or_else(|| format!("no lease record for {cluster}"))
}
