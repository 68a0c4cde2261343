use std::collections::BTreeMap;

use failover_messages::records::{HandoffState, Mode, Phase, Timings};
use jiff::SignedDuration;

use super::*;

fn at(ms: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + SignedDuration::from_millis(1_800_000_000_000 + ms)
}

fn operation(phase: Phase) -> Operation {
    Operation {
        id: "op-1".into(),
        group: "shop/orders".parse().unwrap(),
        epoch: 2,
        mode: Mode::Consistency,
        source: "east".into(),
        target: "west".into(),
        force: false,
        source_is_down: false,
        reason: "drill <1>".into(),
        requested_by: "failoverctl:alice".into(),
        phase,
        requested_at: at(0),
        promotion_started_at: Some(at(3_000)),
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: phase.is_terminal().then(|| at(6_000)),
        timings: Timings {
            total_ms: Some(6_000),
            downtime_ms: Some(3_500),
            stages_ms: BTreeMap::new(),
        },
        original_replicas: BTreeMap::new(),
        message: None,
    }
}

fn step(cluster: &str, stage: &str, task: &str, from: i64, to: Option<i64>) -> JournalStep {
    JournalStep {
        op_id: "op-1".into(),
        cluster: cluster.into(),
        stage: stage.into(),
        task: task.into(),
        epoch: 2,
        status: if to.is_some() {
            StepStatus::Done
        } else {
            StepStatus::Started
        },
        attempts: 1,
        started_at: at(from),
        first_started_at: Some(at(from)),
        finished_at: to.map(at),
        message: None,
    }
}

fn journals() -> (Vec<JournalStep>, Vec<JournalStep>) {
    let source = vec![
        step("east", "Initialization", "Preflight", 100, Some(300)),
        step(
            "east",
            "SourceShutdown",
            "TrafficOff:Ingress/shop",
            500,
            Some(700),
        ),
        step(
            "east",
            "SourceShutdown",
            "ScaleDown:Deployment/api",
            700,
            Some(1_500),
        ),
        step(
            "east",
            "VolumeTransitionSource",
            "Demote:VolumeReplication/db",
            1_600,
            Some(2_500),
        ),
    ];
    let target = vec![
        step("west", "Initialization", "Preflight", 120, Some(250)),
        step(
            "west",
            "VolumeTransitionTarget",
            "Promote:VolumeReplication/db",
            3_000,
            Some(3_600),
        ),
        step(
            "west",
            "TargetActivation",
            "WaitReady:Deployment/api",
            3_700,
            Some(3_900),
        ),
        step(
            "west",
            "TargetActivation",
            "TrafficOn:Ingress/shop",
            3_900,
            Some(4_000),
        ),
        step(
            "west",
            "Completion",
            "CompleteOperation",
            4_100,
            Some(6_000),
        ),
    ];
    (source, target)
}

fn handoff() -> Handoff {
    Handoff {
        op_id: "op-1".into(),
        volume: "db".into(),
        state: HandoffState::Promoted,
        epoch: 2,
        writer: "east".into(),
        ready_at: Some(at(2_500)),
        promoted_at: Some(at(3_600)),
    }
}

fn report(phase: Phase) -> Report {
    let (source, target) = journals();
    Report::new(
        operation(phase),
        &source,
        &target,
        vec![handoff()],
        at(9_000),
    )
}

#[test]
fn lanes_group_steps_into_stages_on_one_axis() {
    let r = report(Phase::Succeeded);
    assert_eq!(
        r.axis,
        Window {
            from: at(0),
            to: at(6_000)
        }
    );
    assert_eq!(r.lanes[0].cluster, "east");
    assert_eq!(r.lanes[1].role, "target");
    let shutdown = &r.lanes[0].stages[1];
    assert_eq!(shutdown.key, "SourceShutdown");
    assert_eq!(shutdown.title, "Source Cluster Shutdown");
    assert_eq!(
        shutdown.window,
        Window {
            from: at(500),
            to: at(1_500)
        }
    );
    assert_eq!(r.offset(at(1_500)), 1.5);
    // The source journaled no Completion step; the target did.
    assert_eq!(
        r.lanes[0].unjournaled,
        [("Completion".to_owned(), "Completion".to_owned())]
    );
    assert!(r.lanes[1].unjournaled.is_empty());
    assert!(
        r.text()
            .contains("  Completion (Completion) no step journaled")
    );
}

#[test]
fn downtime_follows_the_recorded_rule_and_uptime_has_none() {
    let r = report(Phase::Succeeded);
    // First traffic off on the source to the last traffic on on the target.
    assert_eq!(
        r.downtime,
        Some(Window {
            from: at(500),
            to: at(4_000)
        })
    );
    let (source, mut target) = journals();
    // The target switched on before the source switched off: no downtime.
    target[3] = step(
        "west",
        "TargetActivation",
        "TrafficOn:Ingress/shop",
        200,
        Some(400),
    );
    let r = Report::new(
        operation(Phase::Succeeded),
        &source,
        &target,
        vec![],
        at(9_000),
    );
    assert_eq!(r.downtime, None);
}

#[test]
fn an_open_operation_runs_to_now_and_open_steps_end_there() {
    let (source, mut target) = journals();
    target.push(step("west", "Completion", "UpdateStatus", 6_500, None));
    let mut op = operation(Phase::Running);
    op.dual_active_started_at = Some(at(3_000));
    let r = Report::new(op, &source, &target, vec![], at(9_000));
    assert_eq!(r.axis.to, at(9_000));
    let open = r.lanes[1].steps.last().unwrap();
    assert_eq!(
        open.window,
        Window {
            from: at(6_500),
            to: at(9_000)
        }
    );
    assert!(r.lanes[1].stages.last().unwrap().open);
    assert_eq!(
        r.dual_active,
        Some(Window {
            from: at(3_000),
            to: at(9_000)
        })
    );
}

#[test]
fn text_names_every_stage_step_volume_and_window() {
    let text = report(Phase::Succeeded).text();
    for want in [
        "shop/orders operation op-1: CONSISTENCY east -> west, Succeeded",
        "source east:",
        "target west:",
        "Source Cluster Shutdown (SourceShutdown) +0.50s .. +1.50s (1.00s)",
        "    Promote:VolumeReplication/db DONE +3.00s .. +3.60s (0.60s)",
        "downtime: +0.50s .. +4.00s (3.50s)",
        "promotion claimed: +3.00s",
        "  db: PROMOTED (ready +2.50s, promoted +3.60s, written by east)",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
}

#[test]
fn failed_steps_are_marked_in_every_format() {
    let (mut source, target) = journals();
    source[3].status = StepStatus::Failed;
    source[3].message = Some("demote timed out".into());
    let mut op = operation(Phase::Failed);
    op.message = Some("VolumeTransitionSource failed".into());
    let r = Report::new(op, &source, &target, vec![], at(9_000));
    assert!(r.lanes[0].stages[2].failed);
    assert!(r.text().contains("Demote:VolumeReplication/db FAILED"));
    let svg = svg::render(&r);
    assert!(svg.contains("✕ failed"), "{svg}");
    let html = html::render(&r);
    assert!(html.contains("<tr class=\"FAILED\">"), "{html}");
    assert!(html.contains("demote timed out"));
}

#[test]
fn html_is_one_self_contained_escaped_page() {
    let r = report(Phase::Succeeded);
    let html = html::render(&r);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for forbidden in ["<script", "<link", "src=", "href=", "@import", "url(http"] {
        assert!(!html.contains(forbidden), "{forbidden} in the page");
    }
    // The reason is user text: escaped.
    assert!(html.contains("drill &lt;1&gt;"));
    assert!(!html.contains("drill <1>"));
    for stage in [
        "Initialization",
        "Source Cluster Shutdown",
        "Volume Transition (Source)",
        "Volume Transition (Target)",
        "Target Cluster Activation",
        "Completion",
    ] {
        assert!(html.contains(stage), "{stage} missing");
    }
    assert!(html.contains("class=\"downtime\""));
}

#[test]
fn svg_places_bars_on_the_axis() {
    let r = report(Phase::Succeeded);
    let svg = svg::render(&r);
    // 6 s over 1040 px from x = 330: the downtime band starts at 0.5 s.
    let x = 330.0 + 0.5 / 6.0 * 1040.0;
    assert!(
        svg.contains(&format!("<rect x=\"{x:.1}\" y=\"64.0\"")),
        "no downtime band at {x:.1}:\n{svg}"
    );
    assert!(svg.contains(">6s</text>"), "no tick at 6 s");
    assert!(svg.contains("promotion claimed"));
}
