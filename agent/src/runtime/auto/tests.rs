use std::time::Duration;

use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation, Phase};
use jiff::Timestamp;

use super::*;

fn now() -> Timestamp {
    "2026-12-04T06:00:00Z".parse().unwrap()
}

fn counting(unchanged: u64) -> Verdict {
    Verdict::Counting {
        active: "east".into(),
        unchanged: Duration::from_secs(unchanged),
        left: Duration::from_secs(60 - unchanged),
    }
}

fn started_op() -> Operation {
    Operation {
        id: "op-7".into(),
        group: GroupRef::new("shop", "orders").unwrap(),
        epoch: 3,
        mode: Mode::Consistency,
        source: "east".into(),
        target: "west".into(),
        force: true,
        source_is_down: false,
        reason: "automatic failover: east's serving lease unrenewed".into(),
        requested_by: "auto:west".into(),
        phase: Phase::Running,
        requested_at: now(),
        promotion_started_at: None,
        abort_requested_at: None,
        dual_active_started_at: None,
        dual_active_ended_at: None,
        finished_at: None,
        timings: Default::default(),
        original_replicas: Default::default(),
        message: None,
    }
}

#[test]
fn counting_raises_one_event_and_keeps_its_message_while_it_counts() {
    let mut shown = Shown::default();
    let after = Some(Duration::from_secs(60));
    let ((status, reason, msg), ev) =
        presentation("west", &counting(5), None, after, &mut shown, now());
    assert!(status);
    assert_eq!(reason, "Counting");
    assert_eq!(
        msg,
        "east's serving lease unrenewed since about 2026-12-04T05:59:55Z: failing over to west \
         at about 2026-12-04T06:00:55Z unless it is renewed"
    );
    assert_eq!(ev.unwrap().reason, "AutoFailoverCounting");
    // A tick later: the same message (no status churn), no second Event.
    let later = now().checked_add(SignedDuration::from_secs(3)).unwrap();
    let ((_, _, again), ev) = presentation("west", &counting(8), None, after, &mut shown, later);
    assert_eq!(again, msg);
    assert!(ev.is_none());
    // Renewed: watching again, and one Event saying so.
    let watching = Verdict::Watching {
        active: "east".into(),
    };
    let ((status, reason, msg), ev) =
        presentation("west", &watching, None, after, &mut shown, later);
    assert!(status && reason == "Watching", "{msg}");
    assert_eq!(
        msg,
        "armed: watching east's serving lease (acts after 1m unrenewed)"
    );
    assert_eq!(ev.unwrap().reason, "AutoFailoverCancelled");
    let (_, ev) = presentation("west", &watching, None, after, &mut shown, later);
    assert!(ev.is_none());
}

#[test]
fn a_start_is_a_warning_event_naming_the_operation_and_a_hold_is_said_once() {
    let mut shown = Shown::default();
    let op = started_op();
    let fire = Verdict::Fire {
        active: "east".into(),
        unchanged: Duration::from_secs(60),
    };
    let ((status, reason, msg), ev) =
        presentation("west", &fire, Some(&op), None, &mut shown, now());
    assert!(status);
    assert_eq!(reason, "Started");
    assert!(
        msg.starts_with("started forced failover op-7 from east to west"),
        "{msg}"
    );
    let ev = ev.unwrap();
    assert!(ev.warning && ev.reason == "AutoFailoverStarted");

    let held = Verdict::Off(NotArmed::new("CoolingDown", "cooling down"));
    let ((status, reason, _), ev) = presentation("west", &held, None, None, &mut shown, now());
    assert!(!status && reason == "CoolingDown");
    assert_eq!(ev.unwrap().reason, "AutoFailoverHeld");
    let (_, ev) = presentation("west", &held, None, None, &mut shown, now());
    assert!(ev.is_none());
    // Other reasons are conditions only.
    let suspended = Verdict::Off(NotArmed::new("Suspended", "the group is suspended"));
    let ((status, _, _), ev) = presentation("west", &suspended, None, None, &mut shown, now());
    assert!(!status && ev.is_none());
}
