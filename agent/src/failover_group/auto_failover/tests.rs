use std::time::Duration;

use failover_messages::crd::{AutoFailover, FailoverGroupSpec};
use failover_messages::protocol::lease::LeaseTerms;
use failover_messages::records::GroupState;
use jiff::Timestamp;

use super::*;

const L: Duration = Duration::from_secs(6);

fn settings() -> Settings {
    Settings {
        after: Duration::from_secs(60),
        cooldown: Duration::from_secs(600),
        targets: Vec::new(),
    }
}

fn state(active: &str) -> GroupState {
    GroupState::registered(
        "shop/orders".parse().unwrap(),
        active,
        Timestamp::UNIX_EPOCH,
    )
}

fn observed<'a>(state: Option<&'a GroupState>, unchanged: Option<u64>) -> Observed<'a> {
    Observed {
        cluster: "west",
        state,
        own_lease_live: true,
        active_unchanged: unchanged.map(Duration::from_secs),
        active_keeps_serving: false,
        lease: LeaseTerms::new(L),
    }
}

fn reason_of(v: Verdict) -> &'static str {
    match v {
        Verdict::Off(n) => n.reason,
        Verdict::Watching { .. } => "Watching",
        Verdict::Counting { .. } => "Counting",
        Verdict::Fire { .. } => "Fire",
    }
}

#[test]
fn settings_need_enabled_a_valid_after_and_at_least_twice_the_lease() {
    let lease = LeaseTerms::new(L);
    assert_eq!(Settings::of(&AutoFailover::default(), lease), Ok(None));
    let mut af = AutoFailover {
        enabled: true,
        ..Default::default()
    };
    let s = Settings::of(&af, lease).unwrap().unwrap();
    assert_eq!(s.after, AutoFailover::DEFAULT_AFTER);
    assert_eq!(s.cooldown, AutoFailover::DEFAULT_COOLDOWN);
    af.after = Some("11s".into());
    let e = Settings::of(&af, lease).unwrap_err();
    assert_eq!(e.reason, "AfterTooShort");
    assert!(
        e.message.contains("11s") && e.message.contains("12s"),
        "{e:?}"
    );
    af.after = Some("12s".into());
    assert_eq!(
        Settings::of(&af, lease).unwrap().unwrap().after,
        Duration::from_secs(12)
    );
    af.after = Some("soon".into());
    assert_eq!(Settings::of(&af, lease).unwrap_err().reason, "SpecInvalid");
    // The spec validator accepts what the settings accept.
    let spec = FailoverGroupSpec {
        auto_failover: AutoFailover {
            enabled: true,
            after: Some("12s".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    assert!(failover_messages::protocol::spec::problems(&spec).is_empty());
}

#[test]
fn a_standby_counts_after_two_missed_renewals_and_fires_after_the_limit() {
    let s = settings();
    let east = state("east");
    // Renewals every L/3 = 2 s: up to 4 s unchanged is a live lease.
    assert_eq!(
        reason_of(decide(&s, &observed(Some(&east), Some(4)))),
        "Watching"
    );
    assert_eq!(
        reason_of(decide(&s, &observed(Some(&east), None))),
        "Watching"
    );
    assert_eq!(
        decide(&s, &observed(Some(&east), Some(5))),
        Verdict::Counting {
            active: "east".into(),
            unchanged: Duration::from_secs(5),
            left: Duration::from_secs(55)
        }
    );
    assert_eq!(
        decide(&s, &observed(Some(&east), Some(60))),
        Verdict::Fire {
            active: "east".into(),
            unchanged: Duration::from_secs(60)
        }
    );
}

#[test]
fn nothing_fires_unless_every_condition_holds() {
    let s = settings();
    let west = state("west");
    assert_eq!(
        reason_of(decide(&s, &observed(None, Some(600)))),
        "NotRegistered"
    );
    assert_eq!(
        reason_of(decide(&s, &observed(Some(&west), Some(600)))),
        "ActiveHere"
    );
    let mut suspended = state("east");
    suspended.suspended = true;
    assert_eq!(
        reason_of(decide(&s, &observed(Some(&suspended), Some(600)))),
        "Suspended"
    );
    let mut busy = state("east");
    busy.op_id = Some("op-1".into());
    assert_eq!(
        reason_of(decide(&s, &observed(Some(&busy), Some(600)))),
        "OperationInFlight"
    );
    let east = state("east");
    // A standby cut off from DynamoDB sees every lease stand still: never on that.
    let mut cut = observed(Some(&east), Some(600));
    cut.own_lease_live = false;
    let v = decide(&s, &cut);
    assert!(!v.armed());
    assert_eq!(reason_of(v), "OwnLeaseNotLive");
    let mut keeps = observed(Some(&east), Some(600));
    keeps.active_keeps_serving = true;
    assert_eq!(reason_of(decide(&s, &keeps)), "ActiveKeepsServing");
}

#[test]
fn the_cooldown_holds_a_second_automatic_failover() {
    let s = settings();
    let now: Timestamp = "2026-12-04T06:00:00Z".parse().unwrap();
    let recent = FireInputs {
        last_auto: Some("2026-12-04T05:55:00Z".parse().unwrap()),
        ..Default::default()
    };
    let e = fire_check(&s, "west", "east", &recent, now).unwrap_err();
    assert_eq!(e.reason, "CoolingDown");
    assert!(e.message.contains("in 5m"), "{}", e.message);
    // Asked again when the cooldown ends.
    assert_eq!(e.retry_after, Some(Duration::from_secs(300)));
    let old = FireInputs {
        last_auto: Some("2026-12-04T05:49:59Z".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(fire_check(&s, "west", "east", &old, now), Ok(()));
    assert_eq!(
        fire_check(&s, "west", "east", &FireInputs::default(), now),
        Ok(())
    );
}

#[test]
fn targets_are_taken_in_order_skipping_the_lost_cluster_and_dead_agents() {
    let s = Settings {
        targets: vec!["east".into(), "north".into(), "west".into()],
        ..settings()
    };
    let now = Timestamp::UNIX_EPOCH;
    let live = |c: &[&str]| FireInputs {
        live_targets: c.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    };
    // East is the lost one; north alive comes first.
    let e = fire_check(&s, "west", "east", &live(&["north", "west"]), now).unwrap_err();
    assert_eq!(e.reason, "PreferredTargetAlive");
    assert_eq!(
        fire_check(&s, "north", "east", &live(&["north", "west"]), now),
        Ok(())
    );
    // North's agent is gone: west may.
    assert_eq!(
        fire_check(&s, "west", "east", &live(&["west"]), now),
        Ok(())
    );
    assert_eq!(
        fire_check(&s, "south", "east", &live(&[]), now)
            .unwrap_err()
            .reason,
        "NotATarget"
    );
}

#[test]
fn the_reason_names_the_lost_cluster_and_since_when() {
    let now: Timestamp = "2026-12-04T06:00:00Z".parse().unwrap();
    let r = reason("east", Duration::from_millis(61_400), now);
    assert_eq!(
        r,
        "automatic failover: east's serving lease unrenewed since about 2026-12-04T05:58:59Z (1m 1s ago)"
    );
    assert_eq!(requested_by("west"), "auto:west");
    assert!(is_automatic("auto:west") && !is_automatic("cli:ops"));
    assert_eq!(human(Duration::from_millis(450)), "450ms");
}
