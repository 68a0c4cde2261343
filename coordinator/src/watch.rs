//! `failoverctl watch <operation-id>` and `failoverctl failover --wait`: the coordinator's
//! live view of operations.
//!
//! This is a progress display, not a protocol path: it polls the operation record, each
//! side's journal as published in DynamoDB (one record per stage and side, written when the
//! stage reaches its publication step, plus the note of a long wait; every step is in each
//! cluster's `Failover` object) and the handoff records with consistent reads every
//! [`POLL_INTERVAL`], prints a progress block on stderr whenever something changed, and
//! ends when every operation's phase is final or the timeout ran out. The operation goes
//! on without the watcher; a timeout only ends the watching.
//!
//! [`Progress::render`] and [`WatchResult`]'s renderers are pure.

use std::io::Write;
use std::time::{Duration, Instant};

use failover_messages::keys::GroupRef;
use failover_messages::records::{HandoffState, Mode, Phase, StepStatus, Timings};
use serde::Serialize;

use crate::aws::Context;
use crate::error::CommandError;
use crate::exit::ExitStatus;
use crate::output::{Render, table};

/// How often the records are read while watching.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The latest published journal step of one side.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SideProgress {
    /// `source` or `target`.
    pub role: &'static str,
    /// The cluster.
    pub cluster: String,
    /// `<stage>/<task>` of the latest step, `None` before the agent journaled anything.
    pub step: Option<String>,
    /// Its status.
    pub status: Option<StepStatus>,
    /// Its message (errors).
    pub message: Option<String>,
    /// Steps done so far.
    pub done: usize,
}

/// One volume's handoff record.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// The volume.
    pub volume: String,
    /// Its handoff state.
    pub state: HandoffState,
}

/// A snapshot of one operation.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// The operation id.
    pub operation_id: String,
    /// The group.
    pub group: GroupRef,
    /// The mode.
    pub mode: Mode,
    /// The phase.
    pub phase: Phase,
    /// Source then target.
    pub sides: Vec<SideProgress>,
    /// The handoff records so far.
    pub volumes: Vec<VolumeProgress>,
    /// The operation's message (why it failed).
    pub message: Option<String>,
    /// The operation's timings (set when it completed).
    pub timings: Timings,
}

impl Progress {
    /// The progress block for stderr, with the time watched so far.
    pub fn render(&self, elapsed: Duration) -> String {
        let mut out = format!(
            "[{:>5.1}s] {} {} ({}): {}\n",
            elapsed.as_secs_f64(),
            self.group,
            self.operation_id,
            self.mode,
            self.phase
        );
        for side in &self.sides {
            let step = match (&side.step, side.status) {
                (Some(step), Some(status)) => format!("{step} {status}"),
                _ => "no step journaled yet".to_owned(),
            };
            out.push_str(&format!(
                "  {} {}: {step} ({} done)",
                side.role, side.cluster, side.done
            ));
            if let Some(m) = &side.message {
                out.push_str(&format!(": {m}"));
            }
            out.push('\n');
        }
        if !self.volumes.is_empty() {
            let vols: Vec<String> = self
                .volumes
                .iter()
                .map(|v| format!("{} {}", v.volume, v.state))
                .collect();
            out.push_str(&format!("  volumes: {}\n", vols.join(", ")));
        }
        if let Some(m) = &self.message {
            out.push_str(&format!("  message: {m}\n"));
        }
        out
    }
}

/// Reads one operation's records (consistent reads): the operation, then both journals
/// (one `Query`) and the handoff (one `BatchGetItem`) at once. `None`: no such operation.
pub async fn observe(ctx: &Context, op_id: &str) -> Result<Option<Progress>, CommandError> {
    let store = ctx.store();
    let err = |e| CommandError::from_store(&ctx.table, e);
    let Some(op) = store.get_operation(op_id).await.map_err(err)? else {
        return Ok(None);
    };
    let clusters = [op.source.as_str(), op.target.as_str()];
    let (journals, handoffs) = tokio::join!(
        store.journals(op_id, &clusters),
        store.list_handoffs_of(&op.group, op_id),
    );
    let journals = journals.map_err(err)?;
    let mut sides = Vec::new();
    for ((role, cluster), steps) in [("source", &op.source), ("target", &op.target)]
        .into_iter()
        .zip(journals)
    {
        let latest = steps
            .iter()
            .max_by_key(|s| (s.finished_at.unwrap_or(s.started_at), s.started_at));
        sides.push(SideProgress {
            role,
            cluster: cluster.clone(),
            step: latest.map(|s| format!("{}/{}", s.stage, s.task)),
            status: latest.map(|s| s.status),
            message: latest.and_then(|s| s.message.clone()),
            done: steps
                .iter()
                .filter(|s| s.status == StepStatus::Done)
                .count(),
        });
    }
    let volumes = handoffs
        .map_err(err)?
        .into_iter()
        .map(|h| VolumeProgress {
            volume: h.volume,
            state: h.state,
        })
        .collect();
    Ok(Some(Progress {
        operation_id: op.id,
        group: op.group,
        mode: op.mode,
        phase: op.phase,
        sides,
        volumes,
        message: op.message,
        timings: op.timings,
    }))
}

/// The sides whose latest step is not done, as [`WatchedOperation::pending_steps`] words them.
pub fn pending_steps(sides: &[SideProgress]) -> Vec<String> {
    sides
        .iter()
        .filter_map(|side| {
            let status = side.status.filter(|s| *s != StepStatus::Done)?;
            let step = side.step.as_deref()?;
            let message = side
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            Some(format!(
                "{} {}: {step} {status}{message}",
                side.role, side.cluster
            ))
        })
        .collect()
}

/// One watched operation at the end of the watch.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct WatchedOperation {
    /// The operation id.
    pub operation_id: String,
    /// The group.
    pub group: GroupRef,
    /// The last phase seen.
    pub phase: Phase,
    /// The phase is final.
    pub finished: bool,
    /// The operation's message (why it failed).
    pub message: Option<String>,
    /// Each side whose latest journaled step is not done: `<role> <cluster>: <stage>/<task>
    /// <STATUS>[: message]` (where an unfinished operation stands, e.g. a step that fails
    /// and is retried).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pending_steps: Vec<String>,
    /// Start to finish, in milliseconds (once it completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_ms: Option<u64>,
    /// How long the application served nowhere, in milliseconds (once it completed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downtime_ms: Option<u64>,
}

/// The result of a watch.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WatchResult {
    /// The operations, in the order asked.
    pub operations: Vec<WatchedOperation>,
    /// The timeout ran out before every phase was final.
    pub timed_out: bool,
    /// Seconds watched.
    pub elapsed_seconds: f64,
}

/// The exit status of a final phase (`None` while not final).
pub fn phase_status(phase: Phase) -> Option<ExitStatus> {
    match phase {
        Phase::Succeeded => Some(ExitStatus::Success),
        Phase::Aborted | Phase::RolledBack => Some(ExitStatus::Aborted),
        // Taken over by a later operation: this one did not do what was asked.
        Phase::Failed | Phase::Superseded => Some(ExitStatus::Failed),
        Phase::Pending | Phase::Running | Phase::Stalled | Phase::Aborting => None,
    }
}

impl WatchResult {
    /// 5 on a timeout, else 4 if any failed, else 6 if any was aborted, else 0.
    pub fn exit_status(&self) -> ExitStatus {
        if self.timed_out {
            return ExitStatus::TimedOut;
        }
        let statuses: Vec<ExitStatus> = self
            .operations
            .iter()
            .filter_map(|o| phase_status(o.phase))
            .collect();
        [ExitStatus::Failed, ExitStatus::Aborted]
            .into_iter()
            .find(|s| statuses.contains(s))
            .unwrap_or(ExitStatus::Success)
    }

    /// What to tell the user on stderr after a timeout.
    pub fn timeout_notice(&self) -> Option<String> {
        if !self.timed_out {
            return None;
        }
        let mut out = String::new();
        for o in self.operations.iter().filter(|o| !o.finished) {
            out.push_str(&format!(
                "timed out after {:.1}s waiting for operation {} of group {} (phase {}); the \
                 operation continues: watch it with `failoverctl watch {}`, or stop it before \
                 the promotion with `failoverctl abort {}`\n",
                self.elapsed_seconds,
                o.operation_id,
                o.group,
                o.phase,
                o.operation_id,
                o.operation_id
            ));
            for step in &o.pending_steps {
                out.push_str(&format!("  {step}\n"));
            }
        }
        Some(out)
    }
}

/// Watches `op_ids` until every phase is final or `timeout` runs out, printing progress on
/// `progress`. An unknown id is [`CommandError::OperationNotFound`].
pub async fn watch(
    ctx: &Context,
    op_ids: &[String],
    timeout: Duration,
    progress: &mut dyn Write,
) -> Result<WatchResult, CommandError> {
    let started = Instant::now();
    let mut last: Vec<Option<Progress>> = vec![None; op_ids.len()];
    loop {
        let mut all_final = true;
        for (i, id) in op_ids.iter().enumerate() {
            if last[i].as_ref().is_some_and(|p| p.phase.is_terminal()) {
                continue;
            }
            let now = observe(ctx, id)
                .await?
                .ok_or_else(|| CommandError::OperationNotFound {
                    op_id: id.clone(),
                    table: ctx.table.clone(),
                })?;
            if last[i].as_ref() != Some(&now) {
                // Progress is best effort: a closed stderr does not end the watch.
                let _ = progress.write_all(now.render(started.elapsed()).as_bytes());
                let _ = progress.flush();
            }
            all_final &= now.phase.is_terminal();
            last[i] = Some(now);
        }
        let elapsed = started.elapsed();
        let timed_out = !all_final && elapsed + POLL_INTERVAL > timeout;
        if all_final || timed_out {
            return Ok(WatchResult {
                operations: last
                    .into_iter()
                    .flatten()
                    .map(|p| WatchedOperation {
                        finished: p.phase.is_terminal(),
                        pending_steps: pending_steps(&p.sides),
                        operation_id: p.operation_id,
                        group: p.group,
                        phase: p.phase,
                        message: p.message,
                        total_ms: p.timings.total_ms,
                        downtime_ms: p.timings.downtime_ms,
                    })
                    .collect(),
                timed_out,
                elapsed_seconds: (elapsed.as_secs_f64() * 10.0).round() / 10.0,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

impl Render for WatchResult {
    fn plain(&self) -> String {
        self.operations
            .iter()
            .map(|o| {
                let state = if o.finished { "finished" } else { "still" };
                let mut line = format!(
                    "{}: operation {} {state} {}",
                    o.group, o.operation_id, o.phase
                );
                if let Some(m) = &o.message {
                    line.push_str(&format!(": {m}"));
                }
                match (o.total_ms, o.downtime_ms) {
                    (Some(t), Some(d)) => line.push_str(&format!(
                        " in {:.1}s (downtime {:.1}s)",
                        t as f64 / 1000.0,
                        d as f64 / 1000.0
                    )),
                    (Some(t), None) => line.push_str(&format!(" in {:.1}s", t as f64 / 1000.0)),
                    _ => {}
                }
                line.push('\n');
                line
            })
            .collect()
    }

    fn table(&self) -> String {
        let rows: Vec<[String; 4]> = self
            .operations
            .iter()
            .map(|o| {
                [
                    o.group.to_string(),
                    o.operation_id.clone(),
                    o.phase.to_string(),
                    if o.finished { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect();
        table(["GROUP", "OPERATION", "PHASE", "FINAL"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{OutputFormat, render};

    fn progress() -> Progress {
        Progress {
            operation_id: "op-1".into(),
            group: "shop/orders".parse().unwrap(),
            mode: Mode::Consistency,
            phase: Phase::Running,
            sides: vec![
                SideProgress {
                    role: "source",
                    cluster: "east".into(),
                    step: Some("VolumeTransitionSource/mark-ready".into()),
                    status: Some(StepStatus::Done),
                    message: None,
                    done: 7,
                },
                SideProgress {
                    role: "target",
                    cluster: "west".into(),
                    step: None,
                    status: None,
                    message: None,
                    done: 0,
                },
            ],
            volumes: vec![VolumeProgress {
                volume: "data".into(),
                state: HandoffState::ReadyForPromotion,
            }],
            message: None,
            timings: Timings::default(),
        }
    }

    #[test]
    fn progress_shows_each_side_s_latest_step_and_each_volume() {
        assert_eq!(
            progress().render(Duration::from_millis(1500)),
            "[  1.5s] shop/orders op-1 (CONSISTENCY): Running\n  \
             source east: VolumeTransitionSource/mark-ready DONE (7 done)\n  \
             target west: no step journaled yet (0 done)\n  \
             volumes: data READY_FOR_PROMOTION\n"
        );
    }

    #[test]
    fn a_timeout_says_where_each_unfinished_side_stands() {
        let mut p = progress();
        p.sides[1].step = Some("VolumeTransitionTarget/VerifyData:db-data".into());
        p.sides[1].status = Some(StepStatus::Failed);
        p.sides[1].message = Some("volume db-data: no PVC data-db-0".into());
        let pending = pending_steps(&p.sides);
        assert_eq!(
            pending,
            [
                "target west: VolumeTransitionTarget/VerifyData:db-data FAILED: volume db-data: no PVC data-db-0"
            ]
        );
        let mut r = result(&[Phase::Running], true);
        r.operations[0].pending_steps = pending;
        let notice = r.timeout_notice().unwrap();
        assert!(
            notice.ends_with("\n  target west: VolumeTransitionTarget/VerifyData:db-data FAILED: volume db-data: no PVC data-db-0\n"),
            "{notice}"
        );
    }

    fn result(phases: &[Phase], timed_out: bool) -> WatchResult {
        WatchResult {
            operations: phases
                .iter()
                .enumerate()
                .map(|(i, p)| WatchedOperation {
                    operation_id: format!("op-{i}"),
                    group: "shop/orders".parse().unwrap(),
                    phase: *p,
                    finished: p.is_terminal(),
                    message: None,
                    pending_steps: Vec::new(),
                    total_ms: None,
                    downtime_ms: None,
                })
                .collect(),
            timed_out,
            elapsed_seconds: 1.0,
        }
    }

    #[test]
    fn a_finished_operation_shows_its_total_and_downtime() {
        let mut r = result(&[Phase::Succeeded], false);
        r.operations[0].total_ms = Some(9_800);
        r.operations[0].downtime_ms = Some(1_250);
        assert_eq!(
            r.plain(),
            "shop/orders: operation op-0 finished Succeeded in 9.8s (downtime 1.2s)\n"
        );
    }

    #[test]
    fn exit_status_follows_the_final_phases() {
        assert_eq!(
            result(&[Phase::Succeeded], false).exit_status(),
            ExitStatus::Success
        );
        assert_eq!(
            result(&[Phase::Aborted], false).exit_status(),
            ExitStatus::Aborted
        );
        assert_eq!(
            result(&[Phase::RolledBack], false).exit_status(),
            ExitStatus::Aborted
        );
        assert_eq!(
            result(&[Phase::Aborted, Phase::Failed], false).exit_status(),
            ExitStatus::Failed
        );
        assert_eq!(
            result(&[Phase::Pending], true).exit_status(),
            ExitStatus::TimedOut
        );
        assert!(
            result(&[Phase::Succeeded], false)
                .timeout_notice()
                .is_none()
        );
    }

    #[test]
    fn a_timeout_says_the_operation_continues_and_how_to_watch_it() {
        let notice = result(&[Phase::Pending], true).timeout_notice().unwrap();
        assert!(notice.contains("the operation continues"), "{notice}");
        assert!(notice.contains("failoverctl watch op-0"), "{notice}");
    }

    #[test]
    fn renderers_carry_phase_and_finality() {
        let r = result(&[Phase::Succeeded, Phase::Running], true);
        assert_eq!(
            render(&r, OutputFormat::Plain),
            "shop/orders: operation op-0 finished Succeeded\nshop/orders: operation op-1 still Running\n"
        );
        let json: serde_json::Value =
            serde_json::from_str(&render(&r, OutputFormat::Json)).unwrap();
        assert_eq!(json["timedOut"], true);
        assert_eq!(json["operations"][1]["phase"], "Running");
        let yaml: serde_json::Value =
            serde_yaml::from_str(&render(&r, OutputFormat::Yaml)).unwrap();
        assert_eq!(yaml, json);
    }
}
