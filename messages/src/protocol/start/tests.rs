use super::*;
use crate::records::Lease;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-26T10:00:00Z";

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

fn hb(cluster: &str, fresh: bool) -> Heartbeat {
    Heartbeat {
        cluster: cluster.into(),
        agent_version: "0.1.0".into(),
        last_seen: ts("2026-11-26T09:59:50Z"),
        expires_at: if fresh {
            ts("2026-11-26T10:00:20Z")
        } else {
            ts("2026-11-26T09:59:55Z")
        },
        lease_duration_ms: None,
        keep_serving: Vec::new(),
        auto_armed: Vec::new(),
    }
}

fn ask<'a>(
    state: Option<&'a GroupState>,
    source: AgentSeen<'a>,
    target: AgentSeen<'a>,
    force: bool,
) -> Result<StartPlan, Vec<Refusal>> {
    let g = group();
    decide_start(
        &Observed {
            state,
            target_known: Some(true),
            source_agent: source,
            target_agent: target,
        },
        &Request {
            group: &g,
            target: "west",
            source: None,
            force,
            source_is_down: false,
            op_id: None,
        },
        ts(NOW),
    )
}

fn reasons(r: &Result<StartPlan, Vec<Refusal>>) -> Vec<&'static str> {
    match r {
        Ok(_) => Vec::new(),
        Err(rs) => rs.iter().map(Refusal::reason).collect(),
    }
}

#[test]
fn an_idle_group_with_live_agents_starts_from_its_active_cluster() {
    let (e, w) = (hb("east", true), hb("west", true));
    let plan = ask(
        Some(&state()),
        AgentSeen::Seen(&e),
        AgentSeen::Seen(&w),
        false,
    )
    .unwrap();
    assert_eq!(plan.source, "east");
    assert_eq!(plan.from_epoch, 2);
    assert!(plan.notes.is_empty() && plan.takes_over.is_none());
}

fn keeping(cluster: &str, fresh: bool) -> Heartbeat {
    Heartbeat {
        keep_serving: vec!["shop/orders".into()],
        auto_armed: Vec::new(),
        ..hb(cluster, fresh)
    }
}

fn ask_vouched<'a>(
    source: AgentSeen<'a>,
    target: AgentSeen<'a>,
    source_is_down: bool,
) -> Result<StartPlan, Vec<Refusal>> {
    let g = group();
    let s = state();
    decide_start(
        &Observed {
            state: Some(&s),
            target_known: Some(true),
            source_agent: source,
            target_agent: target,
        },
        &Request {
            group: &g,
            target: "west",
            source: None,
            force: true,
            source_is_down,
            op_id: None,
        },
        ts(NOW),
    )
}

#[test]
fn a_forced_start_with_the_source_alive_goes_ahead_under_fence_and_says_the_target_waits() {
    let (e, w) = (hb("east", true), hb("west", true));
    let plan = ask(
        Some(&state()),
        AgentSeen::Seen(&e),
        AgentSeen::Seen(&w),
        true,
    )
    .unwrap();
    assert!(
        plan.notes[0].contains("the agent of east is alive")
            && plan.notes[0].contains("promotes only after"),
        "{plan:?}"
    );
    // With the source's heartbeat stale or missing, force goes ahead and says why.
    let stale = hb("east", false);
    for seen in [AgentSeen::Seen(&stale), AgentSeen::Missing] {
        let plan = ask(Some(&state()), seen, AgentSeen::Seen(&w), true).unwrap();
        assert!(
            plan.notes[0].contains("forced, so the target promotes"),
            "{plan:?}"
        );
    }
}

#[test]
fn a_source_that_keeps_serving_refuses_force_while_alive_and_needs_the_humans_word_after() {
    let w = hb("west", true);
    // Alive: refused, whatever the human says.
    let alive = keeping("east", true);
    for vouched in [false, true] {
        let r = ask_vouched(AgentSeen::Seen(&alive), AgentSeen::Seen(&w), vouched).unwrap_err();
        assert_eq!(r[0].reason(), "SourceAgentAlive");
        assert_eq!(r[0].cluster, "east");
        let text = r[0].to_string();
        assert!(
            text.starts_with("shop/orders: the agent of east is alive")
                && text.contains("KeepServing"),
            "{text}"
        );
    }
    // Stale: refused until the human vouches that east is down.
    let stale = keeping("east", false);
    let r = ask_vouched(AgentSeen::Seen(&stale), AgentSeen::Seen(&w), false).unwrap_err();
    assert_eq!(r[0].reason(), "SourceMayBeServing");
    assert!(r[0].message().contains("--source-is-down"), "{}", r[0]);
    let plan = ask_vouched(AgentSeen::Seen(&stale), AgentSeen::Seen(&w), true).unwrap();
    assert!(plan.notes[0].contains("vouched down"), "{plan:?}");
    // Another group's policy does not matter.
    let other = Heartbeat {
        keep_serving: vec!["shop/cart".into()],
        auto_armed: Vec::new(),
        ..hb("east", true)
    };
    assert!(ask_vouched(AgentSeen::Seen(&other), AgentSeen::Seen(&w), false).is_ok());
}

#[test]
fn without_force_both_agents_must_be_alive() {
    let (stale, w) = (hb("east", false), hb("west", true));
    let r = ask(
        Some(&state()),
        AgentSeen::Seen(&stale),
        AgentSeen::Missing,
        false,
    );
    assert_eq!(reasons(&r), ["SourceAgentDown", "TargetAgentDown"]);
    let r = r.unwrap_err();
    assert!(
        r[0].message()
            .contains("source east's agent heartbeat is stale")
    );
    assert!(
        r[1].message()
            .contains("target west has no agent heartbeat")
    );
    // Not read (the store's re-check): not judged.
    let plan = ask(
        Some(&state()),
        AgentSeen::NotRead,
        AgentSeen::NotRead,
        false,
    );
    assert!(plan.is_ok(), "{plan:?}");
    let _ = w;
}

#[test]
fn an_operation_in_flight_a_claim_a_suspension_and_the_same_target_refuse_in_order() {
    let (e, w) = (hb("east", true), hb("west", true));
    let mut s = state();
    s.active_cluster = "west".into();
    s.suspended = true;
    s.op_id = Some("op-9".into());
    s.lease = Some(Lease {
        holder: "failoverctl:bob".into(),
        expires_at: ts("2026-11-26T10:01:00Z"),
    });
    s.promotion_claimed_by = Some("west".into());
    let r = ask(Some(&s), AgentSeen::Seen(&w), AgentSeen::Seen(&e), false);
    assert_eq!(
        reasons(&r),
        [
            "AlreadyActive",
            "Suspended",
            "OperationInFlight",
            "PromotionClaimed"
        ]
    );
    let text = r.unwrap_err()[2].message();
    assert!(
        text.contains("op-9") && text.contains("failoverctl:bob"),
        "{text}"
    );
}

#[test]
fn an_expired_lease_is_taken_over_and_a_forced_start_keeps_a_claim() {
    let (e, w) = (hb("east", false), hb("west", true));
    let mut s = state();
    s.op_id = Some("op-9".into());
    s.lease = Some(Lease {
        holder: "east".into(),
        expires_at: ts("2026-11-26T09:00:00Z"),
    });
    s.promotion_claimed_by = Some("west".into());
    let r = ask(Some(&s), AgentSeen::Seen(&e), AgentSeen::Seen(&w), false);
    assert_eq!(reasons(&r), ["PromotionClaimed", "SourceAgentDown"]);
    let plan = ask(Some(&s), AgentSeen::Seen(&e), AgentSeen::Seen(&w), true).unwrap();
    assert_eq!(plan.takes_over.as_deref(), Some("op-9"));
    assert!(plan.notes.iter().any(|n| n.contains("stalled")), "{plan:?}");
    assert!(
        plan.notes.iter().any(|n| n.contains("keeps the claim")),
        "{plan:?}"
    );
}

#[test]
fn an_unregistered_group_or_unknown_target_is_refused_naming_them() {
    let g = group();
    let r = decide_start(
        &Observed {
            state: None,
            target_known: Some(false),
            source_agent: AgentSeen::NotRead,
            target_agent: AgentSeen::Missing,
        },
        &Request {
            group: &g,
            target: "north",
            source: None,
            force: false,
            source_is_down: false,
            op_id: None,
        },
        ts(NOW),
    )
    .unwrap_err();
    assert_eq!(r[0].reason(), "UnknownCluster");
    assert!(r[0].message().contains("unknown cluster north"));
    assert_eq!(r[1].reason(), "GroupNotRegistered");
    assert!(r[1].message().contains("failoverctl register shop/orders"));
}

#[test]
fn the_store_recheck_refuses_a_source_that_is_no_longer_active_and_repeats_its_own_start() {
    let g = group();
    let mut s = state();
    let ask = |s: &GroupState, op_id| {
        decide_start(
            &Observed {
                state: Some(s),
                target_known: None,
                source_agent: AgentSeen::NotRead,
                target_agent: AgentSeen::NotRead,
            },
            &Request {
                group: &g,
                target: "west",
                source: Some("north"),
                force: false,
                source_is_down: false,
                op_id,
            },
            ts(NOW),
        )
    };
    let r = ask(&s, None).unwrap_err();
    assert_eq!(
        r[0].blocker,
        Blocker::NotActive {
            active: "east".into()
        }
    );
    s.op_id = Some("op-1".into());
    s.lease = Some(Lease {
        holder: "x".into(),
        expires_at: ts("2026-11-26T10:01:00Z"),
    });
    assert!(ask(&s, Some("op-1")).is_ok());
}

#[test]
fn a_forced_start_back_to_the_active_cluster_past_another_claim_is_the_way_out() {
    let (e, w) = (hb("east", true), hb("west", false));
    let g = group();
    let mut s = state();
    s.promotion_claimed_by = Some("west".into());
    let ask = |force| {
        decide_start(
            &Observed {
                state: Some(&s),
                target_known: Some(true),
                source_agent: AgentSeen::Seen(&e),
                target_agent: AgentSeen::Seen(&e),
            },
            &Request {
                group: &g,
                target: "east",
                source: None,
                force,
                source_is_down: false,
                op_id: None,
            },
            ts(NOW),
        )
    };
    let _ = &w;
    // Not forced: the claim refuses. Forced: not "already active"; it goes ahead and keeps
    // the claim until east claims.
    assert_eq!(reasons(&ask(false)), ["PromotionClaimed"]);
    let plan = ask(true).unwrap();
    assert!(
        plan.notes.iter().any(|n| n.contains("keeps the claim")),
        "{plan:?}"
    );
}
