//! `failoverctl plan <ns>/<group> --to <cluster>`: a side-effect-free preview of a
//! failover. It reads the group state and both clusters' heartbeats (consistent reads) and
//! prints the generic stage list of the mode (what each side's agent will run; the exact
//! tasks depend on the group spec, which lives in the clusters and which the coordinator
//! cannot read) and everything that would block the start.
//!
//! [`plan_for`] is a pure function of what was read, so every blocker is unit-tested.

use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, Mode};
use failover_messages::store::HeartbeatStatus;
use jiff::Timestamp;
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::output::{Render, table};

/// One stage of the plan.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlanStage {
    /// 1-based position.
    pub order: usize,
    /// The stage key as journaled (`SourceShutdown`).
    pub stage: &'static str,
    /// `source`, `target` or `both`.
    pub runs_on: &'static str,
    /// What it does.
    pub steps: &'static str,
}

/// The result of `failoverctl plan`.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// The group.
    pub group: GroupRef,
    /// The active cluster (`null`: not registered).
    pub source: Option<String>,
    /// The target.
    pub target: String,
    /// The mode.
    pub mode: Mode,
    /// Forced.
    pub force: bool,
    /// The stages in order.
    pub stages: Vec<PlanStage>,
    /// What would refuse the start (empty: it would start).
    pub blockers: Vec<String>,
    /// Worth knowing, not blocking.
    pub notes: Vec<String>,
}

const INIT: (&str, &str, &str) = (
    "Initialization",
    "both",
    "read the operation and group spec, validate, renew the lease",
);
const INIT_UPTIME: (&str, &str, &str) = (
    "Initialization",
    "both",
    "read the operation and group spec, validate, renew the lease; the source records its replica counts",
);
const SHUTDOWN: (&str, &str, &str) = (
    "SourceShutdown",
    "source",
    "network off, Flux suspended, workloads scaled to 0 (replicas recorded), wait until pods are gone",
);
const DEMOTE: (&str, &str, &str) = (
    "VolumeTransitionSource",
    "source",
    "volumes set secondary, wait Secondary + Completed, mark every volume READY_FOR_PROMOTION, notify the target",
);
const PROMOTE: (&str, &str, &str) = (
    "VolumeTransitionTarget",
    "target",
    "wait for every handoff record, claim the promotion, volumes set primary, wait Primary, verify",
);
const DEMOTE_UPTIME: (&str, &str, &str) = (
    "VolumeTransitionSource",
    "source",
    "volumes set secondary, wait Secondary + Completed, record the end of the dual-active window",
);
const PROMOTE_NO_HANDOFF: (&str, &str, &str) = (
    "VolumeTransitionTarget",
    "target",
    "claim the promotion without handoff records, volumes set primary, wait Primary, verify",
);
const ACTIVATE: (&str, &str, &str) = (
    "TargetActivation",
    "target",
    "scale up to the recorded replicas, resume Flux, wait ready, network on",
);
const ACTIVATE_UPTIME: (&str, &str, &str) = (
    "TargetActivation",
    "target",
    "wait for the source's replica counts, scale up to them, resume Flux, wait ready, network on, notify the source",
);
const SHUTDOWN_UPTIME: (&str, &str, &str) = (
    "SourceShutdown",
    "source",
    "wait until the target serves, then network off, Flux suspended, workloads scaled to 0, wait until pods are gone",
);
const RESYNC: (&str, &str, &str) = (
    "VolumeResync",
    "source",
    "old source volumes set resync, follow the resync to completion",
);
const COMPLETE: (&str, &str, &str) = (
    "Completion",
    "both",
    "active cluster := target, operation closed, history written, lease released",
);

/// The generic stage list of `mode` (`force`: the target does not wait for handoff records).
pub fn stages(mode: Mode, force: bool) -> Vec<PlanStage> {
    let list: &[(&'static str, &'static str, &'static str)] = match (mode, force) {
        (Mode::Consistency, false) => &[INIT, SHUTDOWN, DEMOTE, PROMOTE, ACTIVATE, COMPLETE],
        (Mode::Consistency, true) => &[
            INIT,
            SHUTDOWN,
            DEMOTE,
            PROMOTE_NO_HANDOFF,
            ACTIVATE,
            COMPLETE,
        ],
        (Mode::Uptime, _) => &[
            INIT_UPTIME,
            PROMOTE_NO_HANDOFF,
            ACTIVATE_UPTIME,
            SHUTDOWN_UPTIME,
            DEMOTE_UPTIME,
            RESYNC,
            COMPLETE,
        ],
    };
    list.iter()
        .enumerate()
        .map(|(i, (stage, runs_on, steps))| PlanStage {
            order: i + 1,
            stage,
            runs_on,
            steps,
        })
        .collect()
}

fn heartbeat_blocker(role: &str, cluster: &str, hb: Option<&HeartbeatStatus>) -> Option<String> {
    match hb {
        None => Some(format!(
            "{role} {cluster} has no agent heartbeat (is its failover-agent running?)"
        )),
        Some(h) if h.stale => Some(format!(
            "{role} {cluster}'s agent heartbeat is stale (last seen {}, expired {})",
            h.heartbeat.last_seen, h.heartbeat.expires_at
        )),
        Some(_) => None,
    }
}

/// The plan, from what was read at `now`.
#[allow(clippy::too_many_arguments)]
pub fn plan_for(
    group: &GroupRef,
    state: Option<&GroupState>,
    target: &str,
    mode: Mode,
    force: bool,
    source_heartbeat: Option<&HeartbeatStatus>,
    target_heartbeat: Option<&HeartbeatStatus>,
    now: Timestamp,
) -> Plan {
    let mut blockers = Vec::new();
    let mut notes = Vec::new();
    match state {
        None => blockers.push(format!(
            "group {group} is not registered (register it with `failoverctl register {group} --active <cluster>`)"
        )),
        Some(s) => {
            if s.active_cluster == target {
                blockers.push(format!("{target} is already the active cluster of {group}"));
            }
            if s.suspended {
                blockers.push(format!("group {group} is suspended"));
            }
            if let Some(op) = &s.op_id {
                match &s.lease {
                    Some(l) if l.expires_at >= now => blockers.push(format!(
                        "operation {op} is in flight, its lease held by {} until {}",
                        l.holder, l.expires_at
                    )),
                    Some(l) => notes.push(format!(
                        "operation {op} is stalled (lease of {} expired at {}); a new operation may take over",
                        l.holder, l.expires_at
                    )),
                    None => notes.push(format!("operation {op} is in flight without a lease")),
                }
            }
            if let Some(by) = &s.promotion_claimed_by {
                if force {
                    notes.push(format!("promotion claimed by {by}; a forced start keeps the claim"));
                } else {
                    blockers.push(format!(
                        "promotion already claimed by {by}; only forward is possible (or --force)"
                    ));
                }
            }
            match heartbeat_blocker("source", &s.active_cluster, source_heartbeat) {
                Some(b) if force => notes.push(format!("{b}; forced, so the target promotes without it")),
                Some(b) => blockers.push(format!("{b}; if it is down, use --force --reason")),
                None => {}
            }
        }
    }
    if let Some(b) = heartbeat_blocker("target", target, target_heartbeat) {
        blockers.push(b);
    }
    Plan {
        group: group.clone(),
        source: state.map(|s| s.active_cluster.clone()),
        target: target.to_owned(),
        mode,
        force,
        stages: stages(mode, force),
        blockers,
        notes,
    }
}

/// Reads the group state and the heartbeats and builds the plan. Writes nothing.
pub async fn plan(
    ctx: &Context,
    group: &GroupRef,
    target: &str,
    mode: Mode,
    force: bool,
) -> Result<Plan, CommandError> {
    let store = ctx.store();
    let err = |e| CommandError::from_store(&ctx.table, e);
    let state = store.get_group_state(group).await.map_err(err)?;
    let source_hb = match &state {
        Some(s) => store.get_heartbeat(&s.active_cluster).await.map_err(err)?,
        None => None,
    };
    let target_hb = store.get_heartbeat(target).await.map_err(err)?;
    let queue = ctx.queues.inbox_queue_name(target);
    let mut plan = plan_for(
        group,
        state.as_ref(),
        target,
        mode,
        force,
        source_hb.as_ref(),
        target_hb.as_ref(),
        store.now(),
    );
    if !ctx.queue_exists(target, &queue).await? {
        plan.blockers.insert(
            0,
            format!(
                "unknown cluster {target}: its inbox queue {queue} does not exist (set it up with `failoverctl setup --cluster {target}`)"
            ),
        );
    }
    Ok(plan)
}

impl Render for Plan {
    fn plain(&self) -> String {
        let mut out = format!(
            "plan: fail over {} from {} to {} ({}{})\n",
            self.group,
            self.source.as_deref().unwrap_or("?"),
            self.target,
            self.mode,
            if self.force { ", forced" } else { "" }
        );
        for s in &self.stages {
            out.push_str(&format!(
                "  {}. {} [{}]: {}\n",
                s.order, s.stage, s.runs_on, s.steps
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        if self.blockers.is_empty() {
            out.push_str("nothing blocks this failover\n");
        } else {
            for b in &self.blockers {
                out.push_str(&format!("blocked: {b}\n"));
            }
        }
        out
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 3]> = self
            .stages
            .iter()
            .map(|s| {
                [
                    s.order.to_string(),
                    s.stage.to_owned(),
                    s.runs_on.to_owned(),
                ]
            })
            .collect();
        let mut out = table(["#", "STAGE", "RUNS ON"], &rows);
        for b in &self.blockers {
            out.push_str(&format!("blocked: {b}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};
    use failover_messages::records::{Heartbeat, Lease};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn group() -> GroupRef {
        "shop/orders".parse().unwrap()
    }

    fn state() -> GroupState {
        GroupState {
            group: group(),
            active_cluster: "east".into(),
            epoch: 2,
            op_id: None,
            promotion_claimed_by: None,
            lease: None,
            suspended: false,
            version: 3,
            last_op_id: None,
            updated_at: ts("2026-11-26T09:00:00Z"),
        }
    }

    fn hb(cluster: &str, stale: bool) -> HeartbeatStatus {
        HeartbeatStatus {
            heartbeat: Heartbeat {
                cluster: cluster.into(),
                agent_version: "0.1.0".into(),
                last_seen: ts("2026-11-26T09:59:50Z"),
                expires_at: ts("2026-11-26T10:00:20Z"),
            },
            stale,
        }
    }

    const NOW: &str = "2026-11-26T10:00:00Z";

    #[test]
    fn consistency_demotes_the_source_before_the_target_promotes() {
        let keys: Vec<&str> = stages(Mode::Consistency, false)
            .iter()
            .map(|s| s.stage)
            .collect();
        assert_eq!(
            keys,
            [
                "Initialization",
                "SourceShutdown",
                "VolumeTransitionSource",
                "VolumeTransitionTarget",
                "TargetActivation",
                "Completion"
            ]
        );
        let uptime: Vec<&str> = stages(Mode::Uptime, false)
            .iter()
            .map(|s| s.stage)
            .collect();
        assert_eq!(uptime[1], "VolumeTransitionTarget");
        assert!(uptime.contains(&"VolumeResync"));
    }

    #[test]
    fn nothing_blocks_an_idle_group_with_live_agents() {
        let (e, w) = (hb("east", false), hb("west", false));
        let p = plan_for(
            &group(),
            Some(&state()),
            "west",
            Mode::Consistency,
            false,
            Some(&e),
            Some(&w),
            ts(NOW),
        );
        assert!(p.blockers.is_empty(), "{:?}", p.blockers);
        assert!(render(&p, OutputFormat::Plain).ends_with("nothing blocks this failover\n"));
    }

    #[test]
    fn missing_and_stale_heartbeats_block() {
        let stale = hb("east", true);
        let p = plan_for(
            &group(),
            Some(&state()),
            "west",
            Mode::Consistency,
            false,
            Some(&stale),
            None,
            ts(NOW),
        );
        assert_eq!(p.blockers.len(), 2, "{:?}", p.blockers);
        assert!(p.blockers[0].contains("source east's agent heartbeat is stale"));
        assert!(p.blockers[1].contains("target west has no agent heartbeat"));
        let forced = plan_for(
            &group(),
            Some(&state()),
            "west",
            Mode::Consistency,
            true,
            Some(&stale),
            Some(&hb("west", false)),
            ts(NOW),
        );
        assert!(forced.blockers.is_empty(), "{:?}", forced.blockers);
        assert_eq!(forced.notes.len(), 1);
    }

    #[test]
    fn a_live_operation_suspension_claim_and_same_target_block() {
        let mut s = state();
        s.op_id = Some("op-9".into());
        s.lease = Some(Lease {
            holder: "failoverctl:bob".into(),
            expires_at: ts("2026-11-26T10:01:00Z"),
        });
        s.suspended = true;
        s.promotion_claimed_by = Some("west".into());
        let (e, w) = (hb("east", false), hb("east", false));
        let p = plan_for(
            &group(),
            Some(&s),
            "east",
            Mode::Uptime,
            false,
            Some(&e),
            Some(&w),
            ts(NOW),
        );
        let text = p.blockers.join("\n");
        assert!(
            text.contains("east is already the active cluster"),
            "{text}"
        );
        assert!(text.contains("suspended"), "{text}");
        assert!(
            text.contains("op-9") && text.contains("failoverctl:bob"),
            "{text}"
        );
        assert!(text.contains("promotion already claimed by west"), "{text}");
        s.lease = Some(Lease {
            holder: "x".into(),
            expires_at: ts("2026-11-26T09:00:00Z"),
        });
        s.suspended = false;
        s.promotion_claimed_by = None;
        let stalled = plan_for(
            &group(),
            Some(&s),
            "west",
            Mode::Uptime,
            false,
            Some(&e),
            Some(&hb("west", false)),
            ts(NOW),
        );
        assert!(stalled.blockers.is_empty(), "{:?}", stalled.blockers);
        assert!(stalled.notes[0].contains("stalled"));
    }

    #[test]
    fn an_unregistered_group_blocks_and_renders_in_every_format() {
        let p = plan_for(
            &group(),
            None,
            "west",
            Mode::Consistency,
            false,
            None,
            Some(&hb("west", false)),
            ts(NOW),
        );
        assert_eq!(p.blockers.len(), 1);
        assert!(p.blockers[0].contains("not registered"));
        let json: serde_json::Value =
            serde_json::from_str(&render(&p, OutputFormat::Json)).unwrap();
        assert_eq!(json["source"], serde_json::Value::Null);
        assert_eq!(json["stages"][0]["runsOn"], "both");
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(&p, OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
        assert!(
            render(&p, OutputFormat::Table)
                .contains("blocked: group shop/orders is not registered")
        );
    }
}
