//! Model check of the handoff protocol in `docs/protocol.md` with `stateright`.
//!
//! `protocol_model/model.rs` holds the state, the variants and the properties (see its
//! header for what a step is and how the serving lease's timing assumption is a guard),
//! `protocol_model/agent.rs` the transitions, `protocol_model/report.rs` the fault-free
//! runs behind P4 and the printing. This file holds the configurations and the checks:
//!
//! * `fixed_*`: the protocol with the fixes this model motivated must satisfy every
//!   safety property, the liveness check, and reach every witness state (so the checks are
//!   not vacuous);
//! * `as_written_*`: regression tests. The protocol text as it stood before the fixes
//!   has bugs; each test asserts that the checker still finds its counterexample;
//! * `broken_*`: deliberately wrong protocols (READY marked volume by volume in separate
//!   writes of the group state, abort ignoring the claim, demote with pods, scale-up before
//!   promote, no fencing, a forced target that does not wait for the source's release or
//!   lease, an observer that acts before the holder's fence completed, a `Failed` mark
//!   recorded while the group holds a claim, a `Failed` mark on the operation item alone
//!   decided on a read of the group state) that must be caught: the model has teeth. The
//!   last is the product before the failure mark moved to the group state: the single-item
//!   model found that the source's mark could land after the target's claim.
//!
//! Properties (defined in `model.rs`): P1 no volume Primary on both sides, ever (no escape
//! for forced operations: the model is the `Fence` policy); P2a no demote while pods run,
//! P2b pods only on Primary volumes; P3 a forced old source fences before anything else; P4
//! from every reachable state the fault-free runs settle (converge, or park for an operator
//! after a lease-loss fence), P4b (stateright `eventually`) every maximal path settles; P5
//! no agent write of the group state with a stale epoch takes effect; plus `sometimes`
//! witnesses.
//!
//! Run: `cargo test -p failover-messages --test protocol_model -- --nocapture`

#[path = "protocol_model/agent.rs"]
mod agent;
#[path = "protocol_model/model.rs"]
mod model;
#[path = "protocol_model/report.rs"]
mod report;

use std::collections::BTreeSet;
use std::time::Instant;

use model::*;
use stateright::{Checker, HasDiscoveries, Model};

const TO_B: StartChoice = StartChoice {
    target: B,
    force: false,
};
const TO_A: StartChoice = StartChoice {
    target: A,
    force: false,
};
const FORCE_TO_B: StartChoice = StartChoice {
    target: B,
    force: true,
};
const FORCE_TO_A: StartChoice = StartChoice {
    target: A,
    force: true,
};

/// Two coordinators race; no force. The second may also try the fail-back (different
/// target) which only succeeds after the first completed.
fn consistency(name: &'static str, protocol: Protocol) -> FailoverModel {
    FailoverModel {
        name,
        protocol,
        bounds: Bounds {
            crashes: [1, 1],
            partitions: [0, 0],
            lease_expiries: 1,
            failures: 0,
            duplicates: 1,
            inbox_cap: 2,
            starts: [&[TO_B], &[TO_B, TO_A]],
            aborts: [true, true],
        },
        witnesses: &[
            W_COMPLETED,
            W_FAILBACK,
            W_ABORT,
            W_ABORT_AFTER_READY,
            W_ABORT_LOSES,
            W_RACE_LOST,
            W_TAKEOVER,
            W_CRASH_RESUME,
            W_CLOSE_LOST,
        ],
    }
}

/// The source may be unreachable: coordinator 0 forces A→B while A is down (or does a
/// normal failover); coordinator 1 fails back B→A, races/takes over with A→B, or forces
/// B→A while B is down (a second force). Both may abort. A may crash twice so it can be
/// down for the force *and* crash again later.
fn force(name: &'static str, protocol: Protocol) -> FailoverModel {
    FailoverModel {
        name,
        protocol,
        bounds: Bounds {
            crashes: [2, 1],
            partitions: [0, 0],
            lease_expiries: 1,
            failures: 0,
            duplicates: 0,
            inbox_cap: 1,
            starts: [&[FORCE_TO_B, TO_B], &[TO_A, TO_B, FORCE_TO_A]],
            aborts: [true, true],
        },
        witnesses: &[
            W_COMPLETED,
            W_FAILBACK,
            W_ABORT,
            W_ABORT_LOSES,
            W_FORCED,
            W_FORCED_ON_LEASE,
            W_FORCED_ON_RELEASE,
            W_TAKEOVER,
        ],
    }
}

/// A forced failover A→B (A down), then a normal fail-back B→A. Small; used to show the
/// fencing bug on its most natural path.
fn force_then_failback(name: &'static str, protocol: Protocol) -> FailoverModel {
    FailoverModel {
        name,
        protocol,
        bounds: Bounds {
            crashes: [1, 0],
            partitions: [0, 0],
            lease_expiries: 0,
            failures: 0,
            duplicates: 0,
            inbox_cap: 1,
            starts: [&[FORCE_TO_B], &[TO_A]],
            aborts: [false, false],
        },
        witnesses: &[],
    }
}

/// The serving lease: either agent may be cut off from AWS once (its pending write may land
/// later; its cluster keeps running; its lease may lapse and it fences). Coordinator 0
/// forces A→B with A alive, cut off or down (or fails over normally); coordinator 1 fails
/// back, takes over, or forces B→A. Coordinator 0 may abort.
fn lease(name: &'static str, protocol: Protocol) -> FailoverModel {
    FailoverModel {
        name,
        protocol,
        bounds: Bounds {
            crashes: [1, 0],
            partitions: [1, 1],
            lease_expiries: 0,
            failures: 0,
            duplicates: 0,
            inbox_cap: 1,
            starts: [&[FORCE_TO_B], &[TO_A, FORCE_TO_A]],
            aborts: [true, false],
        },
        witnesses: &[
            W_COMPLETED,
            W_FAILBACK,
            W_ABORT,
            W_FORCED,
            W_FORCED_ON_LEASE,
            W_FORCED_ON_RELEASE,
            W_LEASE_FENCE_PARKED,
            W_LATE_WRITE,
        ],
    }
}

/// A step of the source or the target runs out of time once (the source's last step waits
/// for the operation to close, so its deadline can run out while the target claims): the
/// agent sends the failure mark of the group state, which lands only before a claim (the
/// runs stop; the coordinator or an operator aborts, or the operation lease expires and a
/// forced start takes over); refused by a claim, nothing is recorded (only forward: the
/// target keeps going). The target may crash once and be cut off once (a failure mark or a
/// close sent before the cut may land during it, or be lost; a crash between the failure
/// mark and the operation item's `Failed` loses the latter).
fn failure(name: &'static str, protocol: Protocol) -> FailoverModel {
    FailoverModel {
        name,
        protocol,
        bounds: Bounds {
            crashes: [0, 1],
            partitions: [0, 1],
            lease_expiries: 1,
            failures: 1,
            duplicates: 0,
            inbox_cap: 1,
            starts: [&[TO_B], &[FORCE_TO_B]],
            aborts: [true, false],
        },
        // The history flags of the failure mark's witnesses split states (+40 % here);
        // `failure_takeover`, an eighth of the size, reaches them.
        witnesses: &[W_COMPLETED, W_ABORT, W_TAKEOVER, W_LATE_WRITE],
    }
}

/// `failure` with coordinator 1 taking the group over without force once the operation
/// lease expired (the new start clears the failure mark), and no partition; the witnesses
/// of the failure mark's races.
fn failure_takeover(name: &'static str, protocol: Protocol) -> FailoverModel {
    let mut m = failure(name, protocol);
    m.bounds.partitions = [0, 0];
    m.bounds.starts = [&[TO_B], &[TO_B]];
    m.witnesses = &[
        W_COMPLETED,
        W_ABORT,
        W_TAKEOVER,
        W_FAILED_AFTER_CLAIM,
        W_FAILED_ABORTED,
        W_FAILED_AFTER_ABORT,
        W_FAILURE_OVERTAKEN,
        W_CLAIM_REFUSED_BY_FAILURE,
    ];
    m
}

/// Exhaustive check; every property must hold, every witness must be reached.
fn check_all(model: FailoverModel) {
    let name = model.name;
    let t = Instant::now();
    let checker = model.checker().threads(1).spawn_bfs().join();
    println!(
        "[{name}] explored {} unique states ({} total, max depth {}) in {:.1?}",
        checker.unique_state_count(),
        checker.state_count(),
        checker.max_depth(),
        t.elapsed()
    );
    let m = checker.model();
    for p in m.properties() {
        if let Some(path) = checker.discovery(p.name) {
            let found = p.expectation == stateright::Expectation::Sometimes;
            if found {
                println!("[{name}]   reached {}", p.name);
            } else {
                println!(
                    "[{name}]   VIOLATED {}: {} steps",
                    p.name,
                    path.into_actions().len()
                );
            }
        } else {
            println!(
                "[{name}]   {} {}",
                if p.expectation == stateright::Expectation::Sometimes {
                    "NOT reached"
                } else {
                    "holds"
                },
                p.name
            );
        }
    }
    for p in m
        .properties()
        .into_iter()
        .filter(|p| p.expectation != stateright::Expectation::Sometimes)
    {
        if let Some(path) = checker.discovery(p.name) {
            let steps = path.into_vec();
            println!("counterexample for {}:\n{}", p.name, format_trace(&steps));
            if p.name == P4_LIVENESS {
                print_fair_run(m, &steps.last().unwrap().0);
            }
        }
    }
    checker.assert_properties();
}

fn print_fair_run(m: &FailoverModel, s: &State) {
    println!("  fault-free run from the last state (does not converge):");
    for (i, st) in m.fair_run(s).iter().enumerate() {
        println!("  ({i:>2}) {}", summary(st));
    }
}

/// The checker must find a counterexample for `property`; returns its length.
fn expect_counterexample(model: FailoverModel, property: &'static str) -> usize {
    let name = model.name;
    let t = Instant::now();
    let checker = model
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AnyOf(BTreeSet::from([property])))
        .spawn_bfs()
        .join();
    println!(
        "[{name}] explored {} unique states in {:.1?} looking for a violation of {property:?}",
        checker.unique_state_count(),
        t.elapsed()
    );
    let path = checker.discovery(property).unwrap_or_else(|| {
        panic!("[{name}] expected a counterexample for {property:?}, none found")
    });
    let steps = path.into_vec();
    println!(
        "[{name}] counterexample ({} steps):\n{}",
        steps.len() - 1,
        format_trace(&steps)
    );
    if property == P4_LIVENESS {
        print_fair_run(checker.model(), &steps.last().unwrap().0);
    }
    steps.len() - 1
}

// ---------------------------------------------------------------------------------------
// The protocol (with fixes) is safe and live
// ---------------------------------------------------------------------------------------

#[test]
fn fixed_protocol_consistency_two_coordinators_abort_crashes() {
    check_all(consistency("fixed/consistency", Protocol::fixed()));
}

#[test]
fn fixed_protocol_force_and_fencing() {
    check_all(force("fixed/force", Protocol::fixed()));
}

#[test]
fn fixed_protocol_failed_marks() {
    check_all(failure("fixed/failure", Protocol::fixed()));
    check_all(failure_takeover(
        "fixed/failure-takeover",
        Protocol::fixed(),
    ));
}

#[test]
fn fixed_protocol_serving_lease_partitions() {
    check_all(lease("fixed/lease", Protocol::fixed()));
}

// ---------------------------------------------------------------------------------------
// Regression: bugs in docs/protocol.md as first written. Each test removes one fix from
// the fixed protocol and asserts that the checker finds the counterexample again.
// ---------------------------------------------------------------------------------------

/// All fixes removed: the protocol text as first written is unsafe.
#[test]
fn as_written_protocol_is_unsafe() {
    let model = force("as-written/all", Protocol::as_written());
    let name = model.name;
    let checker = model
        .checker()
        .threads(1)
        .finish_when(HasDiscoveries::AllOf(BTreeSet::from([
            P1_DUAL_PRIMARY,
            P3_FENCE_FIRST,
            P4_LIVENESS,
            P5_STALE_WRITE,
        ])))
        .spawn_bfs()
        .join();
    let failures: Vec<_> = checker
        .model()
        .properties()
        .into_iter()
        .filter(|p| p.expectation != stateright::Expectation::Sometimes)
        .filter(|p| checker.discovery(p.name).is_some())
        .map(|p| p.name)
        .collect();
    println!(
        "[{name}] explored {} unique states; violated: {failures:?}",
        checker.unique_state_count()
    );
    assert_eq!(
        failures,
        [P1_DUAL_PRIMARY, P3_FENCE_FIRST, P4_LIVENESS, P5_STALE_WRITE]
    );
}

/// Bug 1: the claim's `epoch = e` condition is on the operation item, whose epoch never
/// changes, so it is vacuous (modelled as the claim's write of the group state without its
/// `epoch`/`opId` condition). A target that read READY at epoch e claims after a lease
/// takeover moved the group to e+1 and the new operation's source marked READY again.
#[test]
fn as_written_claim_without_group_check_applies_stale_write() {
    let p = Protocol {
        claim_checks_group: false,
        ..Protocol::fixed()
    };
    expect_counterexample(consistency("as-written/claim", p), P5_STALE_WRITE);
}

/// Bug 2: a lease takeover of an operation whose promotion was claimed (the target is
/// promoting), then an abort of the new operation (its own `promotionStartedAt` is
/// absent: the start removed it from the group state): the source re-activates while the
/// old target is Primary.
#[test]
fn as_written_takeover_then_abort_gives_dual_primary() {
    let p = Protocol {
        start_blocks_claimed: false,
        abort_blocks_claimed: false,
        ..Protocol::fixed()
    };
    expect_counterexample(consistency("as-written/takeover-abort", p), P1_DUAL_PRIMARY);
}

/// Bug 2, again through `--force`: a forced takeover of a claimed operation is
/// aborted (its own `promotionStartedAt` is absent) and the source re-activates while the
/// first target is Primary and serving.
#[test]
fn as_written_abort_of_forced_takeover_gives_dual_primary() {
    let p = Protocol {
        abort_blocks_claimed: false,
        ..Protocol::fixed()
    };
    expect_counterexample(
        force("as-written/abort-after-forced-takeover", p),
        P1_DUAL_PRIMARY,
    );
}

/// Bug 3: "the source re-activates" on abort, but a forced operation's source need not be
/// the active cluster: it promotes, then fences (it is not active), then promotes again.
#[test]
fn as_written_abort_reactivating_inactive_source_livelocks() {
    let p = Protocol {
        abort_reactivates_active_only: false,
        ..Protocol::fixed()
    };
    expect_counterexample(force("as-written/abort-reactivates-source", p), P4_LIVENESS);
}

/// Bug 4a: the fencing rule read literally makes the target fence itself after
/// promoting (it is not `activeCluster` until completion): no progress.
#[test]
fn as_written_literal_fence_rule_livelocks_the_target() {
    let p = Protocol {
        fence_rule: FenceRule::Literal,
        ..Protocol::fixed()
    };
    expect_counterexample(consistency("as-written/fence-literal", p), P4_LIVENESS);
}

/// Bug 4b: exempting "the target of the operation in flight" lets a forced old source
/// that restarts as the target of the fail-back skip fencing.
#[test]
fn as_written_fence_rule_exempting_target_skips_fencing() {
    let p = Protocol {
        fence_rule: FenceRule::ExemptTarget,
        ..Protocol::before_lease()
    };
    expect_counterexample(
        force_then_failback("as-written/fence-exempt-target", p),
        P3_FENCE_FIRST,
    );
}

/// Bug 4c: exempting only a target whose promotion was claimed is not enough either: a
/// forced promotion that never completed leaves the old source `activeCluster`, so when a
/// second forced operation targets it, it promotes without finishing its fence.
#[test]
fn fence_rule_exempting_claimed_target_still_skips_fencing() {
    let p = Protocol {
        fence_rule: FenceRule::ExemptClaimedTarget,
        ..Protocol::before_lease()
    };
    expect_counterexample(
        force("as-written/fence-exempt-claimed-target", p),
        P3_FENCE_FIRST,
    );
}

// ---------------------------------------------------------------------------------------
// Teeth: deliberately broken protocols must be caught
// ---------------------------------------------------------------------------------------

#[test]
fn broken_non_atomic_ready_gives_dual_primary() {
    let p = Protocol {
        broken_non_atomic_ready: true,
        ..Protocol::fixed()
    };
    expect_counterexample(consistency("broken/non-atomic-ready", p), P1_DUAL_PRIMARY);
}

#[test]
fn broken_abort_ignoring_claim_gives_dual_primary() {
    let p = Protocol {
        broken_abort_ignores_claim: true,
        ..Protocol::fixed()
    };
    expect_counterexample(
        consistency("broken/abort-ignores-claim", p),
        P1_DUAL_PRIMARY,
    );
}

#[test]
fn broken_demote_before_pods_gone_is_caught() {
    let p = Protocol {
        broken_demote_before_pods_gone: true,
        ..Protocol::fixed()
    };
    expect_counterexample(
        consistency("broken/demote-with-pods", p),
        P2_DEMOTE_WITH_PODS,
    );
}

/// Without any fencing a forced old source serves forever: no fault-free run converges,
/// and (stateright's own liveness check) a maximal path ends with both sides serving. (With
/// the serving lease the forced target waits for the source to be down, so this needs the
/// protocol before it: force only with the source's agent down, claimed at once.)
#[test]
fn broken_no_fencing_never_converges() {
    let p = Protocol {
        fence_rule: FenceRule::Never,
        ..Protocol::before_lease()
    };
    expect_counterexample(force_then_failback("broken/no-fencing", p), P4_LIVENESS);
    expect_counterexample(force_then_failback("broken/no-fencing", p), P4_EVENTUALLY);
}

#[test]
fn broken_scale_up_before_promote_is_caught() {
    let p = Protocol {
        broken_scale_up_before_promote: true,
        ..Protocol::fixed()
    };
    expect_counterexample(
        consistency("broken/scale-up-early", p),
        P2_PODS_ON_SECONDARY,
    );
}

/// The broken variant: a forced target that does not wait for the source's release
/// or the end of its serving lease promotes while the alive source still serves.
#[test]
fn broken_force_without_waiting_gives_dual_primary() {
    let p = Protocol {
        force_waits_for_release: false,
        ..Protocol::fixed()
    };
    expect_counterexample(lease("broken/force-no-wait", p), P1_DUAL_PRIMARY);
}

/// The timing assumption is load-bearing: an observer that acts as soon as the holder's
/// lease lapsed, before the holder's fence completed, promotes while the source (dead, or
/// alive and cut off) still has Primary volumes.
#[test]
fn broken_observer_before_holder_fenced_gives_dual_primary() {
    let p = Protocol {
        broken_observer_ignores_fence: true,
        ..Protocol::fixed()
    };
    expect_counterexample(lease("broken/observer-before-fence", p), P1_DUAL_PRIMARY);
    // Also with no crash at all: the holder is alive, cut off, and still fencing.
    let mut alive = lease("broken/observer-before-fence/alive", p);
    alive.bounds.crashes = [0, 0];
    expect_counterexample(alive, P1_DUAL_PRIMARY);
}

/// The close's phase write is descriptive, but an operation must not stay open for ever:
/// when nothing redoes a phase write lost after the release (a crash between the two
/// writes), the fault-free runs end with the group idle and the operation item open.
#[test]
fn broken_close_not_resumed_never_converges() {
    let p = Protocol {
        broken_close_not_resumed: true,
        ..Protocol::fixed()
    };
    expect_counterexample(consistency("broken/close-not-resumed", p), P4_LIVENESS);
}

/// After the claim only forward is possible: an agent that records `Failed` without
/// checking for a claim stops the target's run (a `Failed` operation is not run forward)
/// and leaves the group half-promoted with nobody to finish it.
#[test]
fn broken_failed_mark_stopping_claimed_target_never_converges() {
    let p = Protocol {
        broken_failed_stops_claimed: true,
        ..Protocol::fixed()
    };
    expect_counterexample(failure("broken/failed-stops-claimed", p), P4_LIVENESS);
}

/// The product before the failure mark moved to the group state (found by the single-item
/// model): the `Failed` mark is a write of the operation item alone, decided on a read of
/// the group state that finds no claim, and the claim does not look at it. The source marked
/// READY; its step runs out of time; it reads "no claim" and sends the mark; the target,
/// which read READY, claims; the mark lands (either order of the two writes). The group then
/// holds a claim while its operation is `Failed`: no run goes forward (the runner runs no
/// closed phase, and the close as `Succeeded` refuses a `Failed` operation), abort is
/// refused (claimed), and only a forced start gets the group out (15 steps).
#[test]
fn broken_failed_mark_on_operation_only_never_converges() {
    let p = Protocol {
        broken_failed_mark_on_operation_only: true,
        ..Protocol::fixed()
    };
    expect_counterexample(
        failure("broken/failed-mark-on-operation-only", p),
        P4_LIVENESS,
    );
}
