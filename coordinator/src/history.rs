//! `failoverctl history [<ns>/<group>]` (closed operations, newest first, from the
//! `HIST#…` records) and `failoverctl clusters` (agent heartbeats, each marked stale when
//! its expiry has passed by the local clock, since expired items may linger).

use failover_messages::keys::GroupRef;
use failover_messages::records::{HistoryEntry, Mode, Phase};
use failover_messages::store::HeartbeatStatus;
use jiff::Timestamp;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, or_dash, table};

/// One closed operation.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    /// When it closed.
    pub finished_at: Timestamp,
    /// The group.
    pub group: GroupRef,
    /// The operation id.
    pub operation_id: String,
    /// Mode.
    pub mode: Mode,
    /// From.
    pub source: String,
    /// To.
    pub target: String,
    /// Final phase.
    pub phase: Phase,
    /// Forced.
    pub force: bool,
    /// Why.
    pub reason: String,
    /// Who asked.
    pub requested_by: String,
    /// Total duration.
    pub total_ms: Option<u64>,
    /// Downtime.
    pub downtime_ms: Option<u64>,
    /// With `--report`: the command that draws the operation's report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

impl From<HistoryEntry> for HistoryRow {
    fn from(h: HistoryEntry) -> Self {
        let op = h.operation;
        Self {
            finished_at: h.finished_at,
            group: op.group,
            operation_id: op.id,
            mode: op.mode,
            source: op.source,
            target: op.target,
            phase: op.phase,
            force: op.force,
            reason: op.reason,
            requested_by: op.requested_by,
            total_ms: op.timings.total_ms,
            downtime_ms: op.timings.downtime_ms,
            report: None,
        }
    }
}

/// The `failoverctl report` command that writes operation `op_id`'s HTML report of table
/// `table` to `failover-report-<op_id>.html`.
pub fn report_command(table: &str, op_id: &str) -> String {
    format!(
        "failoverctl --table {table} report {op_id} --format html --out failover-report-{op_id}.html"
    )
}

/// The result of `failoverctl history`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryResult {
    /// The group asked for (`null`: every group).
    pub group: Option<GroupRef>,
    /// Closed operations, newest first.
    pub operations: Vec<HistoryRow>,
}

/// Reads the history of one group or of every registered group, newest first, at most
/// `limit` entries; with `report`, each row names the command that draws its report.
pub async fn history(
    ctx: &Context,
    group: Option<&GroupRef>,
    limit: usize,
    report: bool,
) -> Result<HistoryResult, CommandError> {
    let store = ctx.store();
    let err = |e| CommandError::from_store(&ctx.table, e);
    let groups = match group {
        Some(g) => {
            if store.get_group_state(g).await.map_err(err)?.is_none() {
                return Err(CommandError::GroupNotFound {
                    group: g.clone(),
                    table: ctx.table.clone(),
                });
            }
            vec![g.clone()]
        }
        None => store
            .list_groups()
            .await
            .map_err(err)?
            .into_iter()
            .map(|s| s.group)
            .collect(),
    };
    let mut rows = Vec::new();
    for g in &groups {
        rows.extend(
            store
                .history(g, Some(limit))
                .await
                .map_err(err)?
                .into_iter()
                .map(HistoryRow::from),
        );
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.finished_at));
    rows.truncate(limit);
    if report {
        for r in &mut rows {
            r.report = Some(report_command(&ctx.table, &r.operation_id));
        }
    }
    Ok(HistoryResult {
        group: group.cloned(),
        operations: rows,
    })
}

fn seconds(ms: Option<u64>) -> String {
    or_dash(ms.map(|ms| format!("{:.1}s", ms as f64 / 1000.0)))
}

impl Render for HistoryResult {
    fn plain(&self) -> String {
        if self.operations.is_empty() {
            return match &self.group {
                Some(g) => format!("no closed operations for group {g}\n"),
                None => "no closed operations\n".to_owned(),
            };
        }
        self.operations
            .iter()
            .map(|r| {
                format!(
                    "{} {}: operation {} {} -> {} ({}{}{}) {} after {}, downtime {}, by {}{}\n",
                    r.finished_at,
                    r.group,
                    r.operation_id,
                    r.source,
                    r.target,
                    r.mode,
                    if r.force { ", forced" } else { "" },
                    if r.requested_by.starts_with("auto:") {
                        ", automatic"
                    } else {
                        ""
                    },
                    r.phase,
                    seconds(r.total_ms),
                    seconds(r.downtime_ms),
                    r.requested_by,
                    if r.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.reason)
                    }
                ) + &r
                    .report
                    .as_ref()
                    .map(|c| format!("  report: {c}\n"))
                    .unwrap_or_default()
            })
            .collect()
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 8]> = self
            .operations
            .iter()
            .map(|r| {
                [
                    r.finished_at.to_string(),
                    r.group.to_string(),
                    r.operation_id.clone(),
                    r.source.clone(),
                    r.target.clone(),
                    r.mode.to_string(),
                    r.phase.to_string(),
                    seconds(r.total_ms),
                ]
            })
            .collect();
        table(
            [
                "FINISHED",
                "GROUP",
                "OPERATION",
                "SOURCE",
                "TARGET",
                "MODE",
                "PHASE",
                "TOTAL",
            ],
            &rows,
        ) + &self
            .operations
            .iter()
            .filter_map(|r| r.report.as_ref())
            .map(|c| format!("{c}\n"))
            .collect::<String>()
    }
}

/// One cluster's heartbeat.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRow {
    /// The cluster.
    pub cluster: String,
    /// Its agent's version.
    pub agent_version: String,
    /// When the agent last wrote its heartbeat.
    pub last_seen: Timestamp,
    /// When the heartbeat expires.
    pub expires_at: Timestamp,
    /// Expired by the local clock.
    pub stale: bool,
}

impl From<HeartbeatStatus> for ClusterRow {
    fn from(h: HeartbeatStatus) -> Self {
        Self {
            cluster: h.heartbeat.cluster,
            agent_version: h.heartbeat.agent_version,
            last_seen: h.heartbeat.last_seen,
            expires_at: h.heartbeat.expires_at,
            stale: h.stale,
        }
    }
}

/// The result of `failoverctl clusters`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterList {
    /// The table.
    pub table: String,
    /// Clusters with a heartbeat, in name order.
    pub clusters: Vec<ClusterRow>,
}

/// Lists the heartbeats.
pub async fn clusters(ctx: &Context) -> Result<ClusterList, CommandError> {
    let beats = ctx
        .store()
        .list_heartbeats()
        .await
        .map_err(|e| CommandError::from_store(&ctx.table, e))?;
    Ok(ClusterList {
        table: ctx.table.clone(),
        clusters: beats.into_iter().map(ClusterRow::from).collect(),
    })
}

impl Render for ClusterList {
    fn plain(&self) -> String {
        if self.clusters.is_empty() {
            return format!("no agent has written a heartbeat to table {}\n", self.table);
        }
        self.clusters
            .iter()
            .map(|c| {
                format!(
                    "{}: agent {}, last seen {}{}\n",
                    c.cluster,
                    c.agent_version,
                    c.last_seen,
                    if c.stale { ", STALE" } else { "" }
                )
            })
            .collect()
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .clusters
            .iter()
            .map(|c| {
                [
                    c.cluster.clone(),
                    c.agent_version.clone(),
                    c.last_seen.to_string(),
                    if c.stale { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect();
        table(["CLUSTER", "AGENT VERSION", "LAST SEEN", "STALE"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn row() -> HistoryRow {
        HistoryRow {
            finished_at: "2026-11-26T10:00:00Z".parse().unwrap(),
            group: "shop/orders".parse().unwrap(),
            operation_id: "op-1".into(),
            mode: Mode::Uptime,
            source: "east".into(),
            target: "west".into(),
            phase: Phase::Succeeded,
            force: false,
            reason: "maintenance".into(),
            requested_by: "failoverctl:alice".into(),
            total_ms: Some(12_300),
            downtime_ms: None,
            report: None,
        }
    }

    #[test]
    fn report_commands_follow_each_row_when_asked() {
        let mut r = row();
        r.report = Some(report_command("t-1", "op-1"));
        let result = HistoryResult {
            group: None,
            operations: vec![r],
        };
        let cmd =
            "failoverctl --table t-1 report op-1 --format html --out failover-report-op-1.html";
        assert!(render(&result, OutputFormat::Plain).ends_with(&format!("  report: {cmd}\n")));
        assert!(render(&result, OutputFormat::Table).ends_with(&format!("{cmd}\n")));
        let json: serde_json::Value =
            serde_json::from_str(&render(&result, OutputFormat::Json)).unwrap();
        assert_eq!(json["operations"][0]["report"], cmd);
        let plain = HistoryResult {
            group: None,
            operations: vec![row()],
        };
        let json: serde_json::Value =
            serde_json::from_str(&render(&plain, OutputFormat::Json)).unwrap();
        assert!(json["operations"][0].get("report").is_none());
    }

    #[test]
    fn an_automatic_operation_says_so() {
        let mut r = row();
        r.force = true;
        r.mode = Mode::Consistency;
        r.requested_by = "auto:west".into();
        let out = render(
            &HistoryResult {
                group: None,
                operations: vec![r],
            },
            OutputFormat::Plain,
        );
        assert!(
            out.contains("east -> west (CONSISTENCY, forced, automatic) Succeeded"),
            "{out}"
        );
        assert!(out.contains("by auto:west"), "{out}");
    }

    #[test]
    fn history_plain_is_a_sentence_per_operation() {
        let r = HistoryResult {
            group: None,
            operations: vec![row()],
        };
        assert_eq!(
            render(&r, OutputFormat::Plain),
            "2026-11-26T10:00:00Z shop/orders: operation op-1 east -> west (UPTIME) Succeeded \
             after 12.3s, downtime -, by failoverctl:alice: maintenance\n"
        );
        let empty = HistoryResult {
            group: Some("shop/orders".parse().unwrap()),
            operations: vec![],
        };
        assert_eq!(
            render(&empty, OutputFormat::Plain),
            "no closed operations for group shop/orders\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(json["operations"][0]["totalMs"], 12300);
        assert_eq!(json["group"], serde_json::Value::Null);
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(&r, OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
    }

    #[test]
    fn clusters_mark_stale_heartbeats() {
        let list = ClusterList {
            table: "t".into(),
            clusters: vec![
                ClusterRow {
                    cluster: "east".into(),
                    agent_version: "0.1.0".into(),
                    last_seen: "2026-11-26T10:00:00Z".parse().unwrap(),
                    expires_at: "2026-11-26T10:00:30Z".parse().unwrap(),
                    stale: false,
                },
                ClusterRow {
                    cluster: "west".into(),
                    agent_version: "0.1.0".into(),
                    last_seen: "2026-11-26T09:00:00Z".parse().unwrap(),
                    expires_at: "2026-11-26T09:00:30Z".parse().unwrap(),
                    stale: true,
                },
            ],
        };
        assert_eq!(
            render(&list, OutputFormat::Table),
            "CLUSTER  AGENT VERSION  LAST SEEN             STALE\n\
             east     0.1.0          2026-11-26T10:00:00Z  no\n\
             west     0.1.0          2026-11-26T09:00:00Z  yes\n"
        );
        assert!(
            render(&list, OutputFormat::Plain)
                .contains("west: agent 0.1.0, last seen 2026-11-26T09:00:00Z, STALE\n")
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&list, OutputFormat::Json)).unwrap();
        assert_eq!(json["clusters"][1]["stale"], true);
        assert_eq!(json["clusters"][0]["agentVersion"], "0.1.0");
    }
}
