//! `failoverctl status [<namespace>/<group>]`: the registered groups, or one group, as the
//! table records them: active cluster, epoch, operation in flight, promotion claim, lease
//! holder and expiry, suspension.
//!
//! One group is read with a strongly consistent `GetItem`; the list comes from the `GSI1`
//! index, which is eventually consistent (a group registered a moment ago may be missing
//! for a moment). Whether a lease has expired is decided here, against the local clock,
//! so rendering stays a pure function of the result.
//!
//! Automatic failover: the standby agents publish in their lease records which groups they
//! are armed for and, while the active cluster's lease goes unrenewed, when they act
//! (`autoArmed`); one query of the `CLUSTERS` partition adds that to each group (records of
//! agents whose lease ran out are left out).

use failover_messages::keys::GroupRef;
use failover_messages::records::GroupState;
use failover_messages::store::HeartbeatStatus;
use jiff::Timestamp;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, or_dash, table};

/// The lease of the operation in flight.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    /// Who renews it.
    pub holder: String,
    /// When it expires unless renewed.
    pub expires_at: Timestamp,
    /// It had expired when `status` looked (the operation is stalled and a new one may
    /// start).
    pub expired: bool,
}

/// One group as `status` shows it.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupStatus {
    /// The group.
    pub group: GroupRef,
    /// The cluster whose side is active.
    pub active_cluster: String,
    /// The group's epoch.
    pub epoch: u64,
    /// The operation in flight (`null` when idle).
    pub operation: Option<String>,
    /// The cluster whose promotion is claimed and not yet completed.
    pub promotion_claimed_by: Option<String>,
    /// The lease of the operation in flight.
    pub lease: Option<LeaseStatus>,
    /// A suspended group refuses new operations.
    pub suspended: bool,
    /// The last operation closed on the group.
    pub last_operation: Option<String>,
    /// When the record was last written.
    pub updated_at: Timestamp,
    /// The clusters armed for automatic failover of the group (none: not enabled, or no
    /// standby armed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_failover: Vec<AutoArmedIn>,
}

/// A cluster armed for automatic failover of a group, as its lease record says.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AutoArmedIn {
    /// The standby cluster.
    pub cluster: String,
    /// When it acts unless the active cluster's lease is renewed (`null`: watching, the
    /// lease is renewed).
    pub acts_at: Option<Timestamp>,
}

impl AutoArmedIn {
    fn describe(list: &[AutoArmedIn]) -> Option<String> {
        let parts: Vec<String> = list
            .iter()
            .map(|a| match a.acts_at {
                None => format!("armed in {} (watching)", a.cluster),
                Some(t) => format!(
                    "armed in {}, counting: the active cluster's lease is unrenewed, acts at about {t}",
                    a.cluster
                ),
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

/// The armed clusters of `group` in `heartbeats` (live records only).
fn armed_for(group: &GroupRef, heartbeats: &[HeartbeatStatus]) -> Vec<AutoArmedIn> {
    let name = group.to_string();
    heartbeats
        .iter()
        .filter(|h| !h.stale)
        .flat_map(|h| {
            h.heartbeat
                .auto_armed
                .iter()
                .filter(|a| a.group == name)
                .map(|a| AutoArmedIn {
                    cluster: h.heartbeat.cluster.clone(),
                    acts_at: a.acts_at,
                })
        })
        .collect()
}

impl GroupStatus {
    /// The view of a group state record at `now`.
    pub fn from_state(state: GroupState, now: Timestamp) -> Self {
        Self {
            group: state.group,
            active_cluster: state.active_cluster,
            epoch: state.epoch,
            operation: state.op_id,
            promotion_claimed_by: state.promotion_claimed_by,
            lease: state.lease.map(|l| LeaseStatus {
                expired: l.expires_at < now,
                holder: l.holder,
                expires_at: l.expires_at,
            }),
            suspended: state.suspended,
            last_operation: state.last_op_id,
            updated_at: state.updated_at,
            auto_failover: Vec::new(),
        }
    }

    /// `idle`, or the operation in flight and its lease, in words.
    fn activity(&self) -> String {
        let Some(op) = &self.operation else {
            return "idle".to_owned();
        };
        let mut text = format!("operation {op} in flight");
        if let Some(lease) = &self.lease {
            text.push_str(&format!(
                ", lease held by {} {} {}",
                lease.holder,
                if lease.expired { "expired at" } else { "until" },
                lease.expires_at
            ));
        }
        text
    }

    fn row(&self) -> [String; 7] {
        let lease = self.lease.as_ref();
        [
            self.group.to_string(),
            self.active_cluster.clone(),
            self.epoch.to_string(),
            or_dash(self.operation.as_ref()),
            or_dash(lease.map(|l| &l.holder)),
            or_dash(lease.map(|l| {
                if l.expired {
                    format!("{} (expired)", l.expires_at)
                } else {
                    l.expires_at.to_string()
                }
            })),
            if self.suspended { "yes" } else { "no" }.to_owned(),
        ]
    }
}

const HEADER: [&str; 7] = [
    "GROUP",
    "ACTIVE",
    "EPOCH",
    "OPERATION",
    "LEASE HOLDER",
    "LEASE EXPIRES",
    "SUSPENDED",
];

/// The registered groups of a table.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupList {
    /// The table.
    pub table: String,
    /// Its groups, in name order.
    pub groups: Vec<GroupStatus>,
}

/// The result of `failoverctl status`: one group (JSON: the group object) or all of them
/// (JSON: `{"table": …, "groups": […]}`).
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum StatusResult {
    /// `status <ns>/<group>`.
    One(GroupStatus),
    /// `status`.
    All(GroupList),
}

/// Reads one group (`Some`) or lists every group (`None`).
pub async fn status(ctx: &Context, group: Option<&GroupRef>) -> Result<StatusResult, CommandError> {
    let store = ctx.store();
    match group {
        Some(group) => {
            let state = store
                .get_group_state(group)
                .await
                .map_err(|e| CommandError::from_store(&ctx.table, e))?
                .ok_or_else(|| CommandError::GroupNotFound {
                    group: group.clone(),
                    table: ctx.table.clone(),
                })?;
            let heartbeats = store
                .list_heartbeats()
                .await
                .map_err(|e| CommandError::from_store(&ctx.table, e))?;
            let mut g = GroupStatus::from_state(state, store.now());
            g.auto_failover = armed_for(&g.group, &heartbeats);
            Ok(StatusResult::One(g))
        }
        None => {
            let states = store
                .list_groups()
                .await
                .map_err(|e| CommandError::from_store(&ctx.table, e))?;
            let heartbeats = store
                .list_heartbeats()
                .await
                .map_err(|e| CommandError::from_store(&ctx.table, e))?;
            let now = store.now();
            Ok(StatusResult::All(GroupList {
                table: ctx.table.clone(),
                groups: states
                    .into_iter()
                    .map(|s| {
                        let mut g = GroupStatus::from_state(s, now);
                        g.auto_failover = armed_for(&g.group, &heartbeats);
                        g
                    })
                    .collect(),
            }))
        }
    }
}

impl Render for StatusResult {
    fn plain(&self) -> String {
        match self {
            StatusResult::One(g) => {
                let mut lines = vec![
                    ("group", g.group.to_string()),
                    ("active cluster", g.active_cluster.clone()),
                    ("epoch", g.epoch.to_string()),
                    ("operation", g.activity()),
                ];
                if let Some(by) = &g.promotion_claimed_by {
                    lines.push(("promotion claimed by", by.clone()));
                }
                lines.push((
                    "suspended",
                    if g.suspended { "yes" } else { "no" }.to_owned(),
                ));
                if let Some(auto) = AutoArmedIn::describe(&g.auto_failover) {
                    lines.push(("automatic failover", auto));
                }
                lines.push((
                    "last operation",
                    g.last_operation
                        .clone()
                        .unwrap_or_else(|| "none".to_owned()),
                ));
                lines.push(("updated", g.updated_at.to_string()));
                let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
                lines
                    .iter()
                    .map(|(k, v)| format!("{:width$} {v}\n", format!("{k}:")))
                    .collect()
            }
            StatusResult::All(list) if list.groups.is_empty() => {
                format!("no groups are registered in table {}\n", list.table)
            }
            StatusResult::All(list) => list
                .groups
                .iter()
                .map(|g| {
                    let mut line = format!(
                        "{}: active {}, epoch {}, {}",
                        g.group,
                        g.active_cluster,
                        g.epoch,
                        g.activity()
                    );
                    if let Some(by) = &g.promotion_claimed_by {
                        line.push_str(&format!(", promotion claimed by {by}"));
                    }
                    if g.suspended {
                        line.push_str(", suspended");
                    }
                    if let Some(auto) = AutoArmedIn::describe(&g.auto_failover) {
                        line.push_str(&format!(", automatic failover {auto}"));
                    }
                    line.push('\n');
                    line
                })
                .collect(),
        }
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 7]> = match self {
            StatusResult::One(g) => vec![g.row()],
            StatusResult::All(list) => list.groups.iter().map(GroupStatus::row).collect(),
        };
        table(HEADER, &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};
    use failover_messages::records::Lease;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn idle() -> GroupStatus {
        GroupStatus {
            group: "shop/orders".parse().unwrap(),
            active_cluster: "east".into(),
            epoch: 3,
            operation: None,
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            last_operation: Some("op-2".into()),
            updated_at: ts("2026-11-26T10:00:00Z"),
            auto_failover: Vec::new(),
        }
    }

    fn busy() -> GroupStatus {
        GroupStatus {
            group: "shop/cart".parse().unwrap(),
            active_cluster: "west".into(),
            epoch: 8,
            operation: Some("op-9".into()),
            promotion_claimed_by: Some("east".into()),
            lease: Some(LeaseStatus {
                holder: "coordinator".into(),
                expires_at: ts("2026-11-26T10:05:00Z"),
                expired: true,
            }),
            suspended: true,
            last_operation: None,
            updated_at: ts("2026-11-26T10:01:00Z"),
            auto_failover: Vec::new(),
        }
    }

    fn list(groups: Vec<GroupStatus>) -> StatusResult {
        StatusResult::All(GroupList {
            table: "failover".into(),
            groups,
        })
    }

    #[test]
    fn the_lease_is_expired_only_after_its_expiry() {
        let state = GroupState {
            group: "shop/orders".parse().unwrap(),
            active_cluster: "east".into(),
            epoch: 1,
            op_id: Some("op-1".into()),
            promotion_claimed_by: None,
            lease: Some(Lease {
                holder: "me".into(),
                expires_at: ts("2026-11-26T10:00:00Z"),
            }),
            suspended: false,
            version: 2,
            last_op_id: None,
            updated_at: ts("2026-11-26T09:59:00Z"),
        };
        let at = |now| {
            GroupStatus::from_state(state.clone(), ts(now))
                .lease
                .unwrap()
                .expired
        };
        assert!(!at("2026-11-26T10:00:00Z"));
        assert!(at("2026-11-26T10:00:00.001Z"));
    }

    #[test]
    fn plain_shows_one_group_as_fields() {
        assert_eq!(
            render(&StatusResult::One(idle()), OutputFormat::Plain),
            "group:          shop/orders\n\
             active cluster: east\n\
             epoch:          3\n\
             operation:      idle\n\
             suspended:      no\n\
             last operation: op-2\n\
             updated:        2026-11-26T10:00:00Z\n"
        );
        let busy = render(&StatusResult::One(busy()), OutputFormat::Plain);
        assert!(busy.contains("promotion claimed by: east\n"), "{busy}");
        assert!(
            busy.contains(
                "operation op-9 in flight, lease held by coordinator expired at 2026-11-26T10:05:00Z"
            ),
            "{busy}"
        );
    }

    #[test]
    fn plain_lists_a_line_per_group() {
        assert_eq!(
            render(&list(vec![busy(), idle()]), OutputFormat::Plain),
            "shop/cart: active west, epoch 8, operation op-9 in flight, lease held by coordinator \
             expired at 2026-11-26T10:05:00Z, promotion claimed by east, suspended\n\
             shop/orders: active east, epoch 3, idle\n"
        );
        assert_eq!(
            render(&list(vec![]), OutputFormat::Plain),
            "no groups are registered in table failover\n"
        );
    }

    #[test]
    fn armed_clusters_come_from_live_lease_records_and_show_their_countdown() {
        use failover_messages::records::{AutoArmed, Heartbeat};
        let beat = |cluster: &str, stale: bool, acts_at: Option<&str>| HeartbeatStatus {
            heartbeat: Heartbeat {
                cluster: cluster.into(),
                agent_version: "t".into(),
                last_seen: ts("2026-11-26T10:00:00Z"),
                expires_at: ts("2026-11-26T10:00:30Z"),
                lease_duration_ms: Some(30_000),
                keep_serving: Vec::new(),
                auto_armed: vec![AutoArmed {
                    group: "shop/orders".into(),
                    acts_at: acts_at.map(ts),
                }],
            },
            stale,
        };
        let mut g = idle();
        g.auto_failover = armed_for(
            &g.group,
            &[
                beat("west", false, Some("2026-11-26T10:01:00Z")),
                beat("north", true, None),
            ],
        );
        assert_eq!(
            g.auto_failover,
            [AutoArmedIn {
                cluster: "west".into(),
                acts_at: Some(ts("2026-11-26T10:01:00Z"))
            }]
        );
        assert!(armed_for(&busy().group, &[beat("west", false, None)]).is_empty());
        let out = render(&StatusResult::One(g.clone()), OutputFormat::Plain);
        assert!(
            out.contains(
                "automatic failover: armed in west, counting: the active cluster's lease is \
                 unrenewed, acts at about 2026-11-26T10:01:00Z\n"
            ),
            "{out}"
        );
        g.auto_failover[0].acts_at = None;
        let out = render(&list(vec![g]), OutputFormat::Plain);
        assert!(
            out.ends_with("idle, automatic failover armed in west (watching)\n"),
            "{out}"
        );
    }

    #[test]
    fn table_has_a_row_per_group() {
        assert_eq!(
            render(&list(vec![idle(), busy()]), OutputFormat::Table),
            "GROUP        ACTIVE  EPOCH  OPERATION  LEASE HOLDER  LEASE EXPIRES                   SUSPENDED\n\
             shop/orders  east    3      -          -             -                               no\n\
             shop/cart    west    8      op-9       coordinator   2026-11-26T10:05:00Z (expired)  yes\n"
        );
    }

    #[test]
    fn json_of_one_group_is_the_group_and_absent_values_are_null() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&StatusResult::One(idle()), OutputFormat::Json)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "group": "shop/orders", "activeCluster": "east", "epoch": 3,
                "operation": null, "promotionClaimedBy": null, "lease": null,
                "suspended": false, "lastOperation": "op-2",
                "updatedAt": "2026-11-26T10:00:00Z"
            })
        );
    }

    #[test]
    fn json_of_the_list_names_the_table() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&list(vec![busy()]), OutputFormat::Json)).unwrap();
        assert_eq!(json["table"], "failover");
        assert_eq!(json["groups"][0]["group"], "shop/cart");
        assert_eq!(
            json["groups"][0]["lease"],
            serde_json::json!({
                "holder": "coordinator", "expiresAt": "2026-11-26T10:05:00Z", "expired": true
            })
        );
    }

    #[test]
    fn yaml_carries_the_same_data_as_json() {
        for result in [StatusResult::One(busy()), list(vec![idle(), busy()])] {
            let yaml = render(&result, OutputFormat::Yaml);
            let from_yaml: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
            let from_json: serde_json::Value =
                serde_json::from_str(&render(&result, OutputFormat::Json)).unwrap();
            assert_eq!(from_yaml, from_json, "{yaml}");
        }
        let yaml = render(&StatusResult::One(idle()), OutputFormat::Yaml);
        assert!(yaml.contains("activeCluster: east\n"), "{yaml}");
        assert!(yaml.contains("operation: null\n"), "{yaml}");
    }
}
