use super::*;

fn hb(cluster: &str, last_seen_ms: i64, lease_s: u64) -> Heartbeat {
    Heartbeat {
        cluster: cluster.into(),
        agent_version: "test".into(),
        last_seen: Timestamp::from_millisecond(last_seen_ms).unwrap(),
        expires_at: Timestamp::from_second(last_seen_ms / 1000 + 30).unwrap(),
        lease_duration_ms: Some(lease_s * 1000),
        keep_serving: Vec::new(),
        auto_armed: Vec::new(),
    }
}

#[test]
fn the_default_terms_renew_every_ten_seconds_and_fence_after_twenty_two_and_a_half() {
    let t = LeaseTerms::default();
    assert_eq!(t.renew_every(), Duration::from_secs(10));
    assert_eq!(t.holder_fences_after(), Duration::from_millis(22_500));
    // 30 s · 1.05 + 7.5 s
    assert_eq!(t.observer_waits(), Duration::from_millis(39_000));
}

#[test]
fn the_fence_budget_stays_positive_with_both_clocks_off_by_drift_in_the_worst_directions() {
    for secs in [3, 6, 30, 120] {
        let t = LeaseTerms::new(Duration::from_secs(secs));
        let budget = t.fence_budget();
        // L + L/(4(1+ε)) − (3L/4)(1+ε) ≈ 0.45 L
        let expected = t.duration.as_secs_f64() * (1.0 + 0.25 / 1.05 - 0.75 * 1.05);
        assert!(
            (budget.as_secs_f64() - expected).abs() < 0.001,
            "{secs}: {budget:?}"
        );
        assert!(budget > t.duration * 2 / 5, "{secs}: {budget:?}");
    }
}

#[test]
fn a_renewal_keeps_the_lease_from_its_send_not_its_answer() {
    let t0 = Instant::now();
    let mut lease = HeldLease::new(LeaseTerms::new(Duration::from_secs(30)));
    assert_eq!(lease.holding(t0), Holding::NeverHeld);
    assert!(lease.holding(t0).is_lost());
    // Sent at t0, answered 5 s later: the lease still counts from t0.
    lease.renewed(t0);
    let answered = t0 + Duration::from_secs(5);
    assert_eq!(
        lease.holding(answered),
        Holding::Live(Duration::from_millis(17_500))
    );
    assert_eq!(
        lease.holding(t0 + Duration::from_millis(22_500)),
        Holding::Lost(Duration::ZERO)
    );
    assert!(lease.holding(t0 + Duration::from_secs(25)).is_lost());
}

#[test]
fn a_late_answer_to_an_older_send_never_moves_the_lease_back() {
    let t0 = Instant::now();
    let mut lease = HeldLease::new(LeaseTerms::new(Duration::from_secs(30)));
    lease.renewed(t0 + Duration::from_secs(10));
    lease.renewed(t0);
    assert_eq!(
        lease.holding(t0 + Duration::from_secs(30)),
        Holding::Live(Duration::from_millis(2_500))
    );
}

#[test]
fn an_observer_times_each_version_from_its_own_first_read() {
    let t0 = Instant::now();
    let mut w = LeaseWatch::new(LeaseTerms::new(Duration::from_secs(6)));
    assert_eq!(w.peer("east", t0), PeerLease::Unknown);
    // East states L = 30 s; the observer's own 6 s does not matter.
    w.observe("east", Some(&hb("east", 1_000, 30)), t0);
    assert_eq!(
        w.peer("east", t0 + Duration::from_secs(9)),
        PeerLease::Live(Duration::from_secs(30))
    );
    // Reading the same version again changes nothing.
    w.observe(
        "east",
        Some(&hb("east", 1_000, 30)),
        t0 + Duration::from_secs(20),
    );
    assert_eq!(
        w.peer("east", t0 + Duration::from_secs(39)),
        PeerLease::Over
    );
    // A renewal (new version) starts the count again from the read that saw it.
    let t1 = t0 + Duration::from_secs(40);
    w.observe("east", Some(&hb("east", 41_000, 30)), t1);
    assert_eq!(
        w.peer("east", t1 + Duration::from_secs(38)),
        PeerLease::Live(Duration::from_secs(1))
    );
    assert_eq!(
        w.peer("east", t1 + Duration::from_secs(39)),
        PeerLease::Over
    );
}

#[test]
fn unchanged_for_counts_from_the_first_read_of_the_current_version() {
    let t0 = Instant::now();
    let mut w = LeaseWatch::new(LeaseTerms::new(Duration::from_secs(6)));
    assert_eq!(w.unchanged_for("east", t0), None);
    w.observe("east", Some(&hb("east", 1_000, 6)), t0);
    w.observe(
        "east",
        Some(&hb("east", 1_000, 6)),
        t0 + Duration::from_secs(5),
    );
    assert_eq!(
        w.unchanged_for("east", t0 + Duration::from_secs(7)),
        Some(Duration::from_secs(7))
    );
    // A renewal starts it again; so does the record disappearing.
    w.observe(
        "east",
        Some(&hb("east", 3_000, 6)),
        t0 + Duration::from_secs(8),
    );
    assert_eq!(
        w.unchanged_for("east", t0 + Duration::from_secs(9)),
        Some(Duration::from_secs(1))
    );
    w.observe("east", None, t0 + Duration::from_secs(10));
    assert_eq!(
        w.unchanged_for("east", t0 + Duration::from_secs(10)),
        Some(Duration::ZERO)
    );
    w.forget("east");
    assert_eq!(w.unchanged_for("east", t0 + Duration::from_secs(20)), None);
    assert_eq!(
        w.peer("east", t0 + Duration::from_secs(20)),
        PeerLease::Unknown
    );
}

#[test]
fn the_holder_has_fenced_before_any_observer_concludes_its_lease_is_over() {
    // Drive both clocks over a range of drifts within ε: the holder's clock runs slow (it
    // fences late in real time), the observer's runs fast (it concludes early).
    let terms = LeaseTerms::new(Duration::from_secs(30));
    for (holder_rate, observer_rate) in [(1.0, 1.0), (1.0 / 1.05, 1.05), (1.05, 1.0 / 1.05)] {
        // Real time, in seconds from the renewal's send.
        let holder_fences = terms.holder_fences_after().as_secs_f64() / holder_rate;
        // The observer's first read comes after the write landed, at the earliest at the send.
        let observer_concludes = terms.observer_waits().as_secs_f64() / observer_rate;
        assert!(
            observer_concludes - holder_fences >= terms.fence_budget().as_secs_f64() - 0.001,
            "rates {holder_rate}/{observer_rate}: fences at {holder_fences}, concluded at {observer_concludes}"
        );
    }
}

#[test]
fn a_missing_record_is_timed_with_the_observers_own_terms() {
    let t0 = Instant::now();
    let mut w = LeaseWatch::new(LeaseTerms::new(Duration::from_secs(6)));
    w.observe("east", None, t0);
    let wait = LeaseTerms::new(Duration::from_secs(6)).observer_waits();
    assert_eq!(w.peer("east", t0), PeerLease::Live(wait));
    assert_eq!(w.peer("east", t0 + wait), PeerLease::Over);
    // The record appearing is a new version.
    w.observe("east", Some(&hb("east", 5_000, 6)), t0 + wait);
    assert_eq!(w.peer("east", t0 + wait), PeerLease::Live(wait));
}

#[test]
fn a_keep_serving_group_is_known_from_the_holders_record() {
    let t0 = Instant::now();
    let mut w = LeaseWatch::new(LeaseTerms::default());
    let mut rec = hb("east", 1_000, 30);
    rec.keep_serving = vec!["shop/orders".into()];
    w.observe("east", Some(&rec), t0);
    assert!(w.keeps_serving("east", "shop/orders"));
    assert!(!w.keeps_serving("east", "shop/cart"));
    assert!(!w.keeps_serving("west", "shop/orders"));
}
