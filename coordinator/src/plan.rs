//! `failoverctl plan <ns>/<group> --to <cluster>`: a side-effect-free preview of a
//! failover. It reads what `failoverctl failover` reads (the group state and both clusters'
//! heartbeats, consistent reads; the target's inbox queue) and prints the stage list of the
//! mode from [`failover_messages::protocol::stages`] (what each side's agent will run; the
//! exact tasks depend on the group spec, which lives in the clusters and which the
//! coordinator cannot read) and every refusal of
//! [`decide_start`](failover_messages::protocol::start::decide_start) — the same function
//! `failoverctl failover` asks, so plan and failover cannot disagree.

use failover_messages::keys::GroupRef;
use failover_messages::protocol::stages::outline;
use failover_messages::protocol::start::{Observed, Refusal, Request, decide_start};
use failover_messages::records::Mode;
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
    /// The stage's title (`Source Cluster Shutdown`).
    pub title: &'static str,
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
    /// What would refuse the start (empty: it would start), as `failoverctl failover` would
    /// word the first of them.
    pub blockers: Vec<String>,
    /// Worth knowing, not blocking.
    pub notes: Vec<String>,
}

/// The stage list of `mode` (`force`: the target does not wait for handoff records), from
/// [`failover_messages::protocol::stages`].
pub fn stages(mode: Mode, force: bool) -> Vec<PlanStage> {
    outline(mode, force)
        .into_iter()
        .map(|s| PlanStage {
            order: s.number,
            stage: s.stage.key(),
            title: s.stage.title(),
            runs_on: s.stage.runs_on_str(),
            steps: s.description,
        })
        .collect()
}

/// The plan, from what was read ([`decide_start`] decides, as for `failoverctl failover`).
pub fn plan_for(
    group: &GroupRef,
    observed: &Observed<'_>,
    target: &str,
    mode: Mode,
    force: bool,
    now: Timestamp,
) -> Plan {
    let ask = Request {
        group,
        target,
        source: None,
        force,
        source_is_down: false,
        op_id: None,
    };
    let (blockers, notes) = match decide_start(observed, &ask, now) {
        Ok(start) => (Vec::new(), start.notes),
        Err(refusals) => (refusals.iter().map(Refusal::message).collect(), Vec::new()),
    };
    Plan {
        group: group.clone(),
        source: observed.state.map(|s| s.active_cluster.clone()),
        target: target.to_owned(),
        mode,
        force,
        stages: stages(mode, force),
        blockers,
        notes,
    }
}

/// Reads the group state, the heartbeats and the target's queue and builds the plan. Writes
/// nothing.
pub async fn plan(
    ctx: &Context,
    group: &GroupRef,
    target: &str,
    mode: Mode,
    force: bool,
) -> Result<Plan, CommandError> {
    let store = ctx.store();
    let view = store
        .read_start_view(group, target)
        .await
        .map_err(|e| CommandError::from_store(&ctx.table, e))?;
    let queue = ctx.queues.inbox_queue_name(target);
    let known = ctx.inbox_known(target, &queue).await?;
    Ok(plan_for(
        group,
        &view.observed(Some(known)),
        target,
        mode,
        force,
        view.read_at,
    ))
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
                "  {}. {} ({}) [{}]: {}\n",
                s.order, s.title, s.stage, s.runs_on, s.steps
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
    use failover_messages::protocol::start::AgentSeen;
    use failover_messages::records::{GroupState, Heartbeat};

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn group() -> GroupRef {
        "shop/orders".parse().unwrap()
    }

    fn state() -> GroupState {
        GroupState {
            epoch: 2,
            version: 3,
            ..GroupState::registered(group(), "east", ts("2026-11-26T09:00:00Z"))
        }
    }

    fn hb(cluster: &str) -> Heartbeat {
        Heartbeat {
            cluster: cluster.into(),
            agent_version: "0.1.0".into(),
            last_seen: ts("2026-11-26T09:59:50Z"),
            expires_at: ts("2026-11-26T10:00:20Z"),
            lease_duration_ms: None,
            keep_serving: Vec::new(),
            auto_armed: Vec::new(),
        }
    }

    const NOW: &str = "2026-11-26T10:00:00Z";

    fn observed<'a>(
        state: Option<&'a GroupState>,
        source: Option<&'a Heartbeat>,
        target: Option<&'a Heartbeat>,
    ) -> Observed<'a> {
        Observed {
            state,
            target_known: Some(true),
            source_agent: AgentSeen::read(source),
            target_agent: AgentSeen::read(target),
        }
    }

    #[test]
    fn the_stage_list_comes_from_the_protocol_module() {
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
        let uptime = stages(Mode::Uptime, false);
        assert_eq!(uptime[1].stage, "VolumeTransitionTarget");
        assert_eq!(uptime[1].title, "Volume Transition (Target)");
        assert!(uptime[3].steps.contains("CronJobs suspended"), "{uptime:?}");
    }

    #[test]
    fn nothing_blocks_an_idle_group_with_live_agents() {
        let (s, e, w) = (state(), hb("east"), hb("west"));
        let p = plan_for(
            &group(),
            &observed(Some(&s), Some(&e), Some(&w)),
            "west",
            Mode::Consistency,
            false,
            ts(NOW),
        );
        assert!(p.blockers.is_empty(), "{:?}", p.blockers);
        let text = render(&p, OutputFormat::Plain);
        assert!(text.ends_with("nothing blocks this failover\n"), "{text}");
        assert!(
            text.contains("2. Source Cluster Shutdown (SourceShutdown) [source]: network off"),
            "{text}"
        );
    }

    #[test]
    fn an_unregistered_group_blocks_and_renders_in_every_format() {
        let w = hb("west");
        let p = plan_for(
            &group(),
            &observed(None, None, Some(&w)),
            "west",
            Mode::Consistency,
            false,
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
        assert!(render(&p, OutputFormat::Table).contains("blocked: the group is not registered"));
    }
}
