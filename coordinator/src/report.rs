//! `failoverctl report <operation-id> [--format html|svg|text] [--out FILE]`: one
//! operation drawn on one time axis from DynamoDB alone: the operation record, both
//! clusters' journals (every step's first start, end, status, attempts and message) and the
//! per-volume handoff records.
//!
//! [`Report`] is the pure model built from those records: a source and a target lane, each
//! with its stages (first step started to last step ended) and steps, the volumes' handoff
//! moments, the downtime window (the same rule as the operation's `downtimeMs`: the source's
//! first traffic switch-off to the target's last switch-on, else its first scale-down to
//! the target's last workload ready) and the UPTIME dual-active window. Rendering is pure
//! too: [`Report::text`] here, [`svg::render`] (the time axis) and [`html::render`] (one
//! self-contained page with the SVG inline and no network reference).

pub mod html;
pub mod svg;

use std::fmt::Write as _;

use failover_messages::protocol::stages::{Role, StageId};
use failover_messages::records::{Handoff, JournalStep, Mode, Operation, StepStatus};
use jiff::Timestamp;

use crate::aws::Context;
use crate::error::CommandError;

/// `--format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// One HTML page with the drawing inline (no network access needed to view it).
    #[default]
    Html,
    /// The drawing alone, as SVG.
    Svg,
    /// Plain text: stages, steps, volumes and windows with their times.
    Text,
}

impl ReportFormat {
    /// The file extension of the format.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Html => "html",
            Self::Svg => "svg",
            Self::Text => "txt",
        }
    }
}

/// A stretch of time on the axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Start.
    pub from: Timestamp,
    /// End.
    pub to: Timestamp,
}

/// One journal step on the axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepSpan {
    /// Its stage key (`SourceShutdown`).
    pub stage: String,
    /// Its task (`ScaleDown:Deployment/api`).
    pub task: String,
    /// DONE, FAILED, or STARTED (no outcome recorded).
    pub status: StepStatus,
    /// First start to end (the report's end for a step without an outcome).
    pub window: Window,
    /// Intents written (more than one after a restart).
    pub attempts: u32,
    /// The outcome's message (errors).
    pub message: Option<String>,
}

/// One stage of a lane: its first step started to its last step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageSpan {
    /// Journal key (`SourceShutdown`).
    pub key: String,
    /// Title (`Source Cluster Shutdown`).
    pub title: String,
    /// Its extent.
    pub window: Window,
    /// A step of it failed.
    pub failed: bool,
    /// A step of it has no outcome.
    pub open: bool,
}

/// One cluster's side of the operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lane {
    /// `source` or `target`.
    pub role: &'static str,
    /// The cluster.
    pub cluster: String,
    /// Its stages, in the order they started.
    pub stages: Vec<StageSpan>,
    /// Its steps, in the order they first started.
    pub steps: Vec<StepSpan>,
    /// The stages of the mode this side runs that journaled no step, as (key, title), in
    /// the mode's order (the completion is recorded on the operation, not journaled).
    pub unjournaled: Vec<(String, String)>,
}

/// An operation as the report draws it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// The operation record.
    pub operation: Operation,
    /// Source lane, then target lane.
    pub lanes: Vec<Lane>,
    /// The handoff records, by volume name.
    pub volumes: Vec<Handoff>,
    /// The application served nowhere.
    pub downtime: Option<Window>,
    /// Both clusters active (UPTIME).
    pub dual_active: Option<Window>,
    /// The axis: the request to the last thing recorded (or `now` for an open operation).
    pub axis: Window,
}

/// Reads operation `op_id`'s records (consistent reads) and builds its report at `now`.
pub async fn report(ctx: &Context, op_id: &str) -> Result<Report, CommandError> {
    let store = ctx.store();
    let err = |e| CommandError::from_store(&ctx.table, e);
    let op = store
        .get_operation(op_id)
        .await
        .map_err(err)?
        .ok_or_else(|| CommandError::OperationNotFound {
            op_id: op_id.to_owned(),
            table: ctx.table.clone(),
        })?;
    let clusters = [op.source.as_str(), op.target.as_str()];
    let (journals, volumes) = tokio::join!(
        store.journals(op_id, &clusters),
        store.list_handoffs_of(&op.group, op_id),
    );
    let (journals, volumes) = (journals.map_err(err)?, volumes.map_err(err)?);
    let [source, target] = <[Vec<_>; 2]>::try_from(journals).unwrap_or_default();
    Ok(Report::new(op, &source, &target, volumes, Timestamp::now()))
}

fn latest(times: impl IntoIterator<Item = Option<Timestamp>>) -> Option<Timestamp> {
    times.into_iter().flatten().max()
}

impl Report {
    /// The report of `op` from its journals and handoff records; `now` ends the axis of an
    /// operation that is not closed.
    pub fn new(
        op: Operation,
        source: &[JournalStep],
        target: &[JournalStep],
        volumes: Vec<Handoff>,
        now: Timestamp,
    ) -> Report {
        let recorded = latest(
            source
                .iter()
                .chain(target)
                .flat_map(|s| [Some(s.started_at), s.finished_at])
                .chain(volumes.iter().flat_map(|v| [v.ready_at, v.promoted_at]))
                .chain([
                    op.finished_at,
                    op.dual_active_ended_at,
                    op.abort_requested_at,
                ]),
        );
        let end = match (op.phase.is_terminal(), recorded) {
            (true, Some(t)) => t.max(op.requested_at),
            (true, None) => op.requested_at,
            (false, _) => now.max(recorded.unwrap_or(now)),
        };
        let axis = Window {
            from: op.requested_at,
            to: end,
        };
        let lanes = vec![
            lane(Role::Source, op.mode, &op.source, source, end),
            lane(Role::Target, op.mode, &op.target, target, end),
        ];
        let dual_active = op.dual_active_started_at.map(|from| Window {
            from,
            to: op.dual_active_ended_at.unwrap_or(end),
        });
        Report {
            downtime: downtime(source, target),
            dual_active,
            volumes,
            lanes,
            axis,
            operation: op,
        }
    }

    /// Seconds from the request to `t`.
    pub fn offset(&self, t: Timestamp) -> f64 {
        t.duration_since(self.axis.from).as_secs_f64()
    }

    /// The axis's length in seconds (at least a tenth, so an empty report still draws).
    pub fn span(&self) -> f64 {
        self.offset(self.axis.to).max(0.1)
    }

    /// A window as `+a.bs .. +c.ds (e.fs)`.
    pub fn window_text(&self, w: Window) -> String {
        let (a, b) = (self.offset(w.from), self.offset(w.to));
        format!("+{a:.2}s .. +{b:.2}s ({:.2}s)", b - a)
    }

    /// The title line: group, operation, mode, direction, phase.
    pub fn title(&self) -> String {
        let op = &self.operation;
        format!(
            "{} operation {}: {} {} -> {}{}, {}",
            op.group,
            op.id,
            op.mode,
            op.source,
            op.target,
            if op.force { " (forced)" } else { "" },
            op.phase
        )
    }

    /// `--format text`.
    pub fn text(&self) -> String {
        let op = &self.operation;
        let mut out = format!("{}\n", self.title());
        let _ = writeln!(
            out,
            "requested {} by {}{}; axis {:.2}s",
            op.requested_at,
            op.requested_by,
            if op.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", op.reason)
            },
            self.span()
        );
        if let Some(m) = &op.message {
            let _ = writeln!(out, "message: {m}");
        }
        for (what, w) in [
            ("downtime", self.downtime),
            ("dual-active", self.dual_active),
        ] {
            if let Some(w) = w {
                let _ = writeln!(out, "{what}: {}", self.window_text(w));
            }
        }
        for (what, t) in [
            ("promotion claimed", op.promotion_started_at),
            ("abort requested", op.abort_requested_at),
            ("finished", op.finished_at),
        ] {
            if let Some(t) = t {
                let _ = writeln!(out, "{what}: +{:.2}s", self.offset(t));
            }
        }
        for lane in &self.lanes {
            self.lane_text(lane, &mut out);
        }
        if !self.volumes.is_empty() {
            out.push_str("volumes:\n");
        }
        for v in &self.volumes {
            let at = |t: Option<Timestamp>| {
                t.map_or("-".to_owned(), |t| format!("+{:.2}s", self.offset(t)))
            };
            let _ = writeln!(
                out,
                "  {}: {} (ready {}, promoted {}, written by {})",
                v.volume,
                v.state,
                at(v.ready_at),
                at(v.promoted_at),
                v.writer
            );
        }
        out
    }

    fn lane_text(&self, lane: &Lane, out: &mut String) {
        let _ = writeln!(out, "{} {}:", lane.role, lane.cluster);
        if lane.steps.is_empty() {
            out.push_str("  no step journaled\n");
        }
        for stage in &lane.stages {
            let _ = writeln!(
                out,
                "  {} ({}) {}{}",
                stage.title,
                stage.key,
                self.window_text(stage.window),
                if stage.failed { " FAILED" } else { "" }
            );
            for step in lane.steps.iter().filter(|s| s.stage == stage.key) {
                let _ = write!(
                    out,
                    "    {} {} {}",
                    step.task,
                    step.status,
                    self.window_text(step.window)
                );
                if step.attempts > 1 {
                    let _ = write!(out, " ({} attempts)", step.attempts);
                }
                if let Some(m) = &step.message {
                    let _ = write!(out, ": {m}");
                }
                out.push('\n');
            }
        }
        for (key, title) in &lane.unjournaled {
            let _ = writeln!(out, "  {title} ({key}) no step journaled");
        }
    }
}

/// A lane of `role` in `mode` from one cluster's journal; steps without an outcome end at
/// `end`.
fn lane(role: Role, mode: Mode, cluster: &str, journal: &[JournalStep], end: Timestamp) -> Lane {
    let mut steps: Vec<StepSpan> = journal
        .iter()
        .map(|s| StepSpan {
            stage: s.stage.clone(),
            task: s.task.clone(),
            status: s.status,
            window: Window {
                from: s.first_started(),
                to: s.finished_at.unwrap_or(end).max(s.first_started()),
            },
            attempts: s.attempts,
            message: s.message.clone(),
        })
        .collect();
    steps.sort_by_key(|s| s.window.from);
    let mut stages: Vec<StageSpan> = Vec::new();
    for s in &steps {
        let failed = s.status == StepStatus::Failed;
        let open = s.status == StepStatus::Started;
        match stages.iter_mut().find(|st| st.key == s.stage) {
            Some(st) => {
                st.window.from = st.window.from.min(s.window.from);
                st.window.to = st.window.to.max(s.window.to);
                st.failed |= failed;
                st.open |= open;
            }
            None => stages.push(StageSpan {
                key: s.stage.clone(),
                title: StageId::from_key(&s.stage).map_or(s.stage.clone(), |id| id.title().into()),
                window: s.window,
                failed,
                open,
            }),
        }
    }
    let unjournaled = StageId::order(mode)
        .iter()
        .filter(|id| id.runs_on().is_none_or(|r| r == role))
        .filter(|id| !stages.iter().any(|s| s.key == id.key()))
        .map(|id| (id.key().to_owned(), id.title().to_owned()))
        .collect();
    Lane {
        role: role.as_str(),
        cluster: cluster.to_owned(),
        stages,
        steps,
        unjournaled,
    }
}

fn first_started(steps: &[JournalStep], prefix: &str) -> Option<Timestamp> {
    steps
        .iter()
        .filter(|s| s.task.starts_with(prefix))
        .map(JournalStep::first_started)
        .min()
}

fn last_finished(steps: &[JournalStep], prefix: &str) -> Option<Timestamp> {
    steps
        .iter()
        .filter(|s| s.task.starts_with(prefix) && s.status == StepStatus::Done)
        .filter_map(|s| s.finished_at)
        .max()
}

/// The downtime window the journals show, by the rule of the operation's `downtimeMs`;
/// `None` when the target was switched on first (UPTIME) or neither pair was journaled.
fn downtime(source: &[JournalStep], target: &[JournalStep]) -> Option<Window> {
    [("TrafficOff:", "TrafficOn:"), ("ScaleDown:", "WaitReady:")]
        .iter()
        .find_map(|(off, on)| {
            Some(Window {
                from: first_started(source, off)?,
                to: last_finished(target, on)?,
            })
        })
        .filter(|w| w.to > w.from)
}

#[cfg(test)]
mod tests;
