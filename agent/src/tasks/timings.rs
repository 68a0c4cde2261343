//! The operation's timings, computed from both clusters' journals when the target completes
//! it (pure; the `CompleteOperation` task, `record.rs`, reads the journals).
//!
//! * `stagesMs`: per `<role>/<stage>`, from the first step started to the last finished.
//! * `downtimeMs`: how long the application served nowhere: from the source's first traffic
//!   switch-off to the target's last switch-on (0 when the target was switched on first, as
//!   in UPTIME). A group without traffic objects uses its workloads instead: from the
//!   source's first scale-down to the target's last workload ready. `None` when neither
//!   pair was journaled (a forced operation whose source never ran).
//! * `totalMs` is left to the store (`finishedAt - requestedAt`).

use std::collections::BTreeMap;

use failover_messages::records::{JournalStage, JournalStep, StepStatus, Timings};
use jiff::Timestamp;

fn ms(from: Timestamp, to: Timestamp) -> u64 {
    u64::try_from(to.duration_since(from).as_millis()).unwrap_or(0)
}

fn first_started(steps: &[JournalStep], task_prefix: &str) -> Option<Timestamp> {
    steps
        .iter()
        .filter(|s| s.task.starts_with(task_prefix))
        .map(JournalStep::first_started)
        .min()
}

fn last_finished(steps: &[JournalStep], task_prefix: &str) -> Option<Timestamp> {
    steps
        .iter()
        .filter(|s| s.task.starts_with(task_prefix) && s.status == StepStatus::Done)
        .filter_map(|s| s.finished_at)
        .max()
}

/// The downtime window's ends, if the journals show one.
fn downtime(source: &[JournalStep], target: &[JournalStep]) -> Option<u64> {
    let pairs = [("TrafficOff:", "TrafficOn:"), ("ScaleDown:", "WaitReady:")];
    pairs.iter().find_map(|(off, on)| {
        let down = first_started(source, off)?;
        let up = last_finished(target, on)?;
        Some(ms(down, up))
    })
}

/// `journal` with `stages` in place of the stages of the same name it read (stages a write
/// is about to publish), in start order.
pub fn with_stages(journal: &mut Vec<JournalStep>, stages: &[JournalStage]) {
    journal.retain(|s| !stages.iter().any(|st| st.stage == s.stage));
    journal.extend(stages.iter().flat_map(|st| st.steps.iter().cloned()));
    journal.sort_by_key(|s| s.started_at);
}

/// The timings of an operation whose source journaled `source` and target `target`.
pub fn from_journals(source: &[JournalStep], target: &[JournalStep]) -> Timings {
    let mut stages: BTreeMap<String, (Timestamp, Timestamp)> = BTreeMap::new();
    for (role, steps) in [("source", source), ("target", target)] {
        for s in steps {
            let end = s.finished_at.unwrap_or(s.started_at);
            let e = stages
                .entry(format!("{role}/{}", s.stage))
                .or_insert((s.first_started(), end));
            e.0 = e.0.min(s.first_started());
            e.1 = e.1.max(end);
        }
    }
    Timings {
        total_ms: None,
        downtime_ms: downtime(source, target),
        stages_ms: stages
            .into_iter()
            .map(|(k, (a, b))| (k, ms(a, b)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::*;

    fn at(ms: i64) -> Timestamp {
        Timestamp::UNIX_EPOCH + SignedDuration::from_millis(ms)
    }

    fn step(cluster: &str, stage: &str, task: &str, start: i64, end: i64) -> JournalStep {
        JournalStep {
            op_id: "op".into(),
            cluster: cluster.into(),
            stage: stage.into(),
            task: task.into(),
            epoch: 1,
            status: StepStatus::Done,
            attempts: 1,
            started_at: at(start),
            first_started_at: None,
            finished_at: Some(at(end)),
            message: None,
        }
    }

    #[test]
    fn consistency_downtime_runs_from_traffic_off_to_traffic_on() {
        let source = [
            step("east", "Initialization", "ValidateOperation", 0, 10),
            step("east", "SourceShutdown", "TrafficOff:Ingress/web", 100, 120),
            step(
                "east",
                "SourceShutdown",
                "ScaleDown:Deployment/web",
                130,
                150,
            ),
        ];
        let target = [
            step(
                "west",
                "TargetActivation",
                "WaitReady:Deployment/web",
                900,
                1_400,
            ),
            step(
                "west",
                "TargetActivation",
                "TrafficOn:Ingress/web",
                1_400,
                1_450,
            ),
        ];
        let t = from_journals(&source, &target);
        assert_eq!(t.downtime_ms, Some(1_350));
        assert_eq!(t.stages_ms["source/SourceShutdown"], 50);
        assert_eq!(t.stages_ms["target/TargetActivation"], 550);
        assert_eq!(t.total_ms, None);
    }

    #[test]
    fn uptime_has_no_downtime_and_workloads_stand_in_for_traffic() {
        // UPTIME: the target serves before the source switches off.
        let source = [step(
            "east",
            "SourceShutdown",
            "TrafficOff:Ingress/web",
            2_000,
            2_010,
        )];
        let target = [step(
            "west",
            "TargetActivation",
            "TrafficOn:Ingress/web",
            1_000,
            1_010,
        )];
        assert_eq!(from_journals(&source, &target).downtime_ms, Some(0));
        // No traffic objects: scale-down to ready.
        let source = [step(
            "east",
            "SourceShutdown",
            "ScaleDown:Deployment/web",
            100,
            110,
        )];
        let target = [step(
            "west",
            "TargetActivation",
            "WaitReady:Deployment/web",
            500,
            700,
        )];
        assert_eq!(from_journals(&source, &target).downtime_ms, Some(600));
        // A forced operation whose source journaled nothing.
        assert_eq!(from_journals(&[], &target).downtime_ms, None);
    }
}
