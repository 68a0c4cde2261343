//! `failoverctl plan` and `failoverctl failover` decide a start with the same function: over
//! one table of situations, plan is blocked exactly when failover refuses, and failover's
//! error carries the words of plan's first blocker. Pure: no environment needed.

use std::time::Duration;

use failover_coordinator::failover::{FailoverRequest, check_start, refused};
use failover_coordinator::plan::plan_for;
use failover_messages::keys::GroupRef;
use failover_messages::protocol::start::{AgentSeen, Observed};
use failover_messages::records::{GroupState, Heartbeat, Lease, Mode};
use jiff::Timestamp;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-26T10:00:00Z";

fn idle() -> GroupState {
    GroupState {
        epoch: 2,
        version: 3,
        ..GroupState::registered(
            "shop/orders".parse().unwrap(),
            "east",
            ts("2026-11-26T09:00:00Z"),
        )
    }
}

fn beat(cluster: &str, fresh: bool) -> Heartbeat {
    Heartbeat {
        cluster: cluster.into(),
        agent_version: "0.1.0".into(),
        last_seen: ts("2026-11-26T09:59:50Z"),
        expires_at: ts(if fresh {
            "2026-11-26T10:00:20Z"
        } else {
            "2026-11-26T09:59:55Z"
        }),
        lease_duration_ms: None,
        keep_serving: Vec::new(),
        auto_armed: Vec::new(),
    }
}

/// One situation: the group state, the source and target heartbeats (`None`: missing,
/// `Some(fresh)`), the target, force, and whether a start should go ahead.
struct Case {
    name: &'static str,
    state: Option<GroupState>,
    source: Option<bool>,
    target: Option<bool>,
    to: &'static str,
    force: bool,
    starts: bool,
    /// The source's lease record says it keeps serving the group without DynamoDB.
    keeps_serving: bool,
}

fn cases() -> Vec<Case> {
    let live = Some(true);
    let in_flight = GroupState {
        op_id: Some("op-9".into()),
        lease: Some(Lease {
            holder: "failoverctl:bob".into(),
            expires_at: ts("2026-11-26T10:01:00Z"),
        }),
        ..idle()
    };
    let stalled = GroupState {
        lease: Some(Lease {
            holder: "east".into(),
            expires_at: ts("2026-11-26T09:00:00Z"),
        }),
        ..in_flight.clone()
    };
    let claimed = GroupState {
        promotion_claimed_by: Some("west".into()),
        ..idle()
    };
    let suspended = GroupState {
        suspended: true,
        ..idle()
    };
    let case = |name, state: Option<GroupState>, source, target, to, force, starts| Case {
        name,
        state,
        source,
        target,
        to,
        force,
        starts,
        keeps_serving: false,
    };
    let keeping = |name, source, starts| Case {
        keeps_serving: true,
        ..case(name, Some(idle()), source, live, "west", true, starts)
    };
    vec![
        keeping("forced, source alive and keeps serving", live, false),
        keeping(
            "forced, source stale and keeps serving (not vouched down)",
            Some(false),
            false,
        ),
        case(
            "idle, both agents fresh",
            Some(idle()),
            live,
            live,
            "west",
            false,
            true,
        ),
        case(
            "source heartbeat stale",
            Some(idle()),
            Some(false),
            live,
            "west",
            false,
            false,
        ),
        case(
            "source heartbeat missing",
            Some(idle()),
            None,
            live,
            "west",
            false,
            false,
        ),
        case(
            "target heartbeat stale",
            Some(idle()),
            live,
            Some(false),
            "west",
            false,
            false,
        ),
        case(
            "target heartbeat missing",
            Some(idle()),
            live,
            None,
            "west",
            false,
            false,
        ),
        case(
            "forced, source stale",
            Some(idle()),
            Some(false),
            live,
            "west",
            true,
            true,
        ),
        case(
            "forced, source missing",
            Some(idle()),
            None,
            live,
            "west",
            true,
            true,
        ),
        case(
            "forced, source alive (it fences and releases first)",
            Some(idle()),
            live,
            live,
            "west",
            true,
            true,
        ),
        case(
            "forced, target missing",
            Some(idle()),
            None,
            None,
            "west",
            true,
            false,
        ),
        case(
            "operation in flight",
            Some(in_flight),
            live,
            live,
            "west",
            false,
            false,
        ),
        case(
            "stalled operation",
            Some(stalled),
            live,
            live,
            "west",
            false,
            true,
        ),
        case(
            "claim held",
            Some(claimed.clone()),
            live,
            live,
            "west",
            false,
            false,
        ),
        case(
            "claim held, forced",
            Some(claimed),
            Some(false),
            live,
            "west",
            true,
            true,
        ),
        case(
            "suspended",
            Some(suspended),
            live,
            live,
            "west",
            false,
            false,
        ),
        case("unregistered", None, None, live, "west", false, false),
        case(
            "target already active",
            Some(idle()),
            live,
            live,
            "east",
            false,
            false,
        ),
        case(
            "target already active, forced",
            Some(idle()),
            Some(false),
            live,
            "east",
            true,
            false,
        ),
    ]
}

#[test]
fn plan_and_failover_give_the_same_verdict_in_every_situation() {
    let group: GroupRef = "shop/orders".parse().unwrap();
    let now = ts(NOW);
    for c in cases() {
        let source = c.source.map(|fresh| Heartbeat {
            keep_serving: if c.keeps_serving {
                vec![group.to_string()]
            } else {
                Vec::new()
            },
            ..beat("east", fresh)
        });
        let target = c.target.map(|fresh| beat(c.to, fresh));
        let observed = Observed {
            state: c.state.as_ref(),
            target_known: Some(true),
            source_agent: match &c.state {
                Some(_) => AgentSeen::read(source.as_ref()),
                None => AgentSeen::NotRead,
            },
            target_agent: AgentSeen::read(target.as_ref()),
        };
        let plan = plan_for(&group, &observed, c.to, Mode::Consistency, c.force, now);
        let req = FailoverRequest {
            groups: vec![group.clone()],
            target: c.to.into(),
            mode: Mode::Consistency,
            force: c.force,
            source_is_down: false,
            reason: "drill".into(),
            requested_by: "failoverctl:test".into(),
            lease_ttl: Duration::from_secs(120),
        };
        let failover =
            check_start(&group, &observed, &req, now).map_err(|r| refused(*r, "failover"));
        assert_eq!(
            plan.blockers.is_empty(),
            c.starts,
            "{}: plan {:?}",
            c.name,
            plan.blockers
        );
        assert_eq!(
            failover.is_ok(),
            c.starts,
            "{}: failover {failover:?}",
            c.name
        );
        if let Err(e) = failover {
            let text = e.to_string();
            if c.state.is_some() {
                assert!(
                    text.contains(&plan.blockers[0]),
                    "{}: failover says {text:?}, plan says {:?}",
                    c.name,
                    plan.blockers[0]
                );
            } else {
                assert!(text.contains("not registered"), "{}: {text}", c.name);
            }
        }
    }
}
