//! The state machine behind `tests/protocol_model.rs`: the handoff protocol of
//! `docs/protocol.md` (CONSISTENCY mode, abort, force, leases) as a `stateright` model.
//!
//! One model state is the whole world: the DynamoDB table (group state, operation items,
//! handoff records), both clusters' storage and workloads, both agents' in-memory state,
//! both SQS inboxes, the two coordinators, and history variables that the properties read.
//!
//! Every step is one of:
//! * a coordinator's `TransactWriteItems` / conditional write (atomic in DynamoDB);
//! * an agent *deciding*: a strongly consistent re-read of DynamoDB plus its own cluster,
//!   then the next task. For a Kubernetes task the journal intent (`STARTED`, conditioned
//!   on the group's epoch) is written in the same step; for a DynamoDB write the decision
//!   is only remembered. Nothing is executed yet;
//! * an agent *executing* what it decided. DynamoDB conditions are evaluated now, against
//!   whatever the table holds now, so every read-then-write gap of the real agent exists
//!   in the model (this is what exposes stale claims and stale Kubernetes changes);
//! * environment steps: kubelet starts/stops pods, an agent crashes/restarts, a lease
//!   expires, SQS loses/duplicates/delivers a hint.
//!
//! Abstracted away (see ARCHITECTURE.md): UPTIME mode; Flux (folded into "network off,
//! then scale to 0"); `spec.replicationState` → `status.state` lag (a demote/promote is
//! one step, the agent waits for status before its next task); original replica counts
//! (a bool); the journal's content (the agent re-derives its next task from DynamoDB and
//! its own cluster, every task is idempotent, so a restart resumes correctly; each
//! journal intent is still modelled as an epoch-conditioned write); lease renewal (an
//! expired lease stays expired until the operation ends, a superset of behaviours);
//! wall-clock time and deadlines; `suspended`; history and heartbeat records (force is
//! offered exactly when the source agent is down); a partitioned agent (same as a crashed
//! one: it stops, its workloads keep running). Two clusters, one group, two volumes.

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use stateright::{Model, Property};

/// Cluster index: `A` (east) starts active, `B` (west) starts standby.
pub const A: u8 = 0;
/// Cluster index of the initial standby.
pub const B: u8 = 1;
/// Volumes in the group (>= 2 so that atomic promotion matters).
pub const NV: usize = 2;
/// At most one operation per coordinator.
pub const MAX_OPS: usize = 2;

pub fn cluster_name(c: u8) -> &'static str {
    if c == A { "A" } else { "B" }
}

// ---------------------------------------------------------------------------------------
// Protocol variants
// ---------------------------------------------------------------------------------------

/// How an agent decides that it must fence itself (protocol.md, "Force").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceRule {
    /// Broken: no fencing at all. A forced old source keeps serving forever.
    Never,
    /// Literally as written: fence whenever my cluster is not `activeCluster` and my side is
    /// active. The target of an operation is not `activeCluster` until completion, so it
    /// fences itself right after promoting (livelock).
    Literal,
    /// The obvious reading that avoids the above: ... unless I am the target of the
    /// operation in flight. A forced old source that restarts as the *target* of the next
    /// operation never fences (split brain survives the fail-back).
    ExemptTarget,
    /// First attempt at a fix: ... unless I am the target of the operation in flight
    /// **and** its promotion has been claimed. Still wrong: after a forced promotion that
    /// was never completed, the old source is still `activeCluster`, so it skips fencing
    /// when a second forced operation makes it the target again.
    ExemptClaimedTarget,
    /// Fix: an agent whose side is active is *entitled* to it only if the group state's
    /// `promotionClaimedBy` names its cluster, or `promotionClaimedBy` is absent and
    /// `activeCluster` is its cluster. Otherwise it fences first.
    Entitled,
}

/// Which protocol the model runs. `Protocol::fixed()` is docs/protocol.md with the fixes
/// this model motivated; `Protocol::as_written()` is the text before them. The `broken_*`
/// switches are deliberately wrong variants that must be caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protocol {
    /// Fix 1: the promotion claim is a transaction with a `ConditionCheck` on the group
    /// state (`epoch = e AND opId = id`). As written, the claim's `epoch = e` condition is on
    /// the *operation* item, whose epoch never changes, so it is vacuous.
    pub claim_checks_group: bool,
    /// Fix 2a: the claim also sets `promotionClaimedBy = <target>` on the group state (in
    /// the same transaction; removed by completion, kept by a forced start). A non-forced
    /// start requires it absent: an expired operation whose promotion was claimed cannot
    /// be taken over (after promotion only forward is offered). Given 2b and the
    /// `Entitled` fence rule this is defence in depth: the model finds no violation
    /// without it.
    pub start_blocks_claimed: bool,
    /// Fix 2b: abort is a transaction with a `ConditionCheck` on the group state
    /// (`opId = id AND attribute_not_exists(promotionClaimedBy)`): an operation that took
    /// over a claimed one by force cannot be aborted either.
    pub abort_blocks_claimed: bool,
    /// Fix 3: on abort the `activeCluster`'s agent re-activates its side and closes the
    /// operation. As written "the source re-activates", but a forced operation's source
    /// need not be the active cluster: it promotes, fences (it is not entitled), promotes
    /// again, ... and the operation never closes.
    pub abort_reactivates_active_only: bool,
    pub fence_rule: FenceRule,
    /// Broken: the source writes one `READY_FOR_PROMOTION` per volume as it demotes it and
    /// the target claims as soon as it sees one (no atomic promotion).
    pub broken_non_atomic_ready: bool,
    /// Broken: abort without the `attribute_not_exists(promotionStartedAt)` condition.
    pub broken_abort_ignores_claim: bool,
    /// Broken: the source demotes without waiting for the pods to be gone.
    pub broken_demote_before_pods_gone: bool,
    /// Broken: the target scales up before its volumes are Primary.
    pub broken_scale_up_before_promote: bool,
}

impl Protocol {
    pub const fn fixed() -> Self {
        Protocol {
            claim_checks_group: true,
            start_blocks_claimed: true,
            abort_blocks_claimed: true,
            abort_reactivates_active_only: true,
            fence_rule: FenceRule::Entitled,
            broken_non_atomic_ready: false,
            broken_abort_ignores_claim: false,
            broken_demote_before_pods_gone: false,
            broken_scale_up_before_promote: false,
        }
    }

    /// docs/protocol.md before the fixes, with the fencing rule read the sensible way.
    pub const fn as_written() -> Self {
        Protocol {
            claim_checks_group: false,
            start_blocks_claimed: false,
            abort_blocks_claimed: false,
            abort_reactivates_active_only: false,
            fence_rule: FenceRule::ExemptTarget,
            ..Protocol::fixed()
        }
    }
}

/// What a coordinator may try: `failoverctl failover --to <target> [--force]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StartChoice {
    pub target: u8,
    pub force: bool,
}

/// Bounds that keep the state space finite and small.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Crashes per agent (restarts are unbounded: a down agent may always come back).
    pub crashes: [u8; 2],
    /// How many times a lease may expire in one run.
    pub lease_expiries: u8,
    /// How many SQS hints may be duplicated (redelivered) in one run.
    pub duplicates: u8,
    /// Hints queued per inbox at most (content is irrelevant: agents re-read).
    pub inbox_cap: u8,
    /// What each of the two coordinators may attempt (one attempt each).
    pub starts: [&'static [StartChoice]; 2],
    /// Whether each coordinator may run `failoverctl abort` on its operation (once).
    pub aborts: [bool; 2],
}

#[derive(Clone, Debug)]
pub struct FailoverModel {
    pub name: &'static str,
    pub protocol: Protocol,
    pub bounds: Bounds,
    /// Which `sometimes` witnesses this configuration must reach.
    pub witnesses: &'static [&'static str],
}

// ---------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------

/// Handoff record `OP#<id>` / `VOL#<v>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rec {
    Absent,
    Ready,
    Promoted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    Running,
    Succeeded,
    Aborted,
}

/// Operation item `OP#<id>` / `OP` plus its handoff records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub epoch: u8,
    pub source: u8,
    pub target: u8,
    pub force: bool,
    pub promotion_started: bool,
    pub abort_requested: bool,
    pub phase: Phase,
    pub recs: [Rec; NV],
}

/// Group state `GROUP#<ns>/<name>` / `STATE`. Time is abstract: the lease is either live or
/// expired; renewals are not modelled (they only remove behaviours: an expired lease stays
/// expired until the operation ends, so takeovers are possible at any later moment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    pub epoch: u8,
    pub active: u8,
    pub op: Option<u8>,
    pub lease_expired: bool,
    /// `promotionClaimedBy` (fix 2): set by a successful claim, removed by completion.
    /// Only the fixed protocol reads it.
    pub claimed_by: Option<u8>,
}

/// One cluster's side: traffic annotation, workload replicas, pods, volume states. A
/// volume's `spec.replicationState` → `status.state` convergence is folded into one step
/// (the agent waits for status before its next task).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Side {
    pub net: bool,
    pub replicas: bool,
    pub pods: bool,
    pub primary: [bool; NV],
}

impl Side {
    fn serving() -> Self {
        Side {
            net: true,
            replicas: true,
            pods: true,
            primary: [true; NV],
        }
    }
    fn standby() -> Self {
        Side {
            net: false,
            replicas: false,
            pods: false,
            primary: [false; NV],
        }
    }
    /// "its side is still active (volumes Primary, replicas > 0, network on)" (+ pods).
    pub fn any_active(&self) -> bool {
        self.net || self.replicas || self.pods || self.primary.iter().any(|p| *p)
    }
    pub fn fully_active(&self) -> bool {
        self.net && self.replicas && self.pods && self.primary.iter().all(|p| *p)
    }
}

/// A task an agent has decided on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    // Kubernetes, on the agent's own cluster.
    NetOff,
    NetOn,
    ScaleDown,
    ScaleUp,
    Demote(u8),
    Promote(u8),
    // DynamoDB.
    WriteReady,
    WriteReadyVol(u8),
    Claim,
    MarkPromoted,
    Complete,
    CloseAborted,
}

impl Step {
    fn is_k8s(self) -> bool {
        matches!(
            self,
            Step::NetOff
                | Step::NetOn
                | Step::ScaleDown
                | Step::ScaleUp
                | Step::Demote(_)
                | Step::Promote(_)
        )
    }
    /// Steps a fencing agent may take: network off, scale to 0, demote.
    fn is_fencing_kind(self) -> bool {
        matches!(self, Step::NetOff | Step::ScaleDown | Step::Demote(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    pub step: Step,
    /// The operation and epoch the agent is working for (`None` while fencing).
    pub op: Option<u8>,
    pub epoch: u8,
}

/// The agent process. Only `pending` is in-memory; everything else it re-reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Agent {
    pub up: bool,
    pub pending: Option<Pending>,
    pub crashes_left: u8,
    /// SQS inbox `failover-<cluster>`: number of queued wake-up hints.
    pub inbox: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Another operation is in flight with a live lease: lost the race.
    InFlight,
    /// The in-flight operation's promotion was claimed (fix 2).
    Claimed,
    /// `activeCluster != source`.
    NotSource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordStart {
    NotYet,
    Started(u8),
    Rejected(Reject),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordAbort {
    NotYet,
    Accepted,
    Rejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Coord {
    pub start: CoordStart,
    pub abort: CoordAbort,
}

/// History variables: never read by the protocol, only by the properties.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// Side X still holds an activation that a forced promotion superseded.
    pub tainted: [bool; 2],
    /// Agent X (up) must fence before doing anything else.
    pub must_fence: [bool; 2],
    pub demoted_with_pods: bool,
    /// An agent's write for operation epoch e took effect while the group epoch was != e.
    pub stale_write: bool,
    pub acted_before_fence: bool,
    /// A restarted forced old source finished fencing.
    pub fenced_after_restart: bool,
    /// The target agent crashed after the promotion of its operation was claimed.
    pub target_crashed_after_claim: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub group: Group,
    pub ops: [Option<Op>; MAX_OPS],
    pub sides: [Side; 2],
    pub agents: [Agent; 2],
    pub coords: [Coord; 2],
    pub lease_expiries_left: u8,
    pub dups_left: u8,
    pub hist: History,
}

impl State {
    fn op(&self, o: u8) -> &Op {
        self.ops[o as usize].as_ref().expect("op exists")
    }
    fn op_mut(&mut self, o: u8) -> &mut Op {
        self.ops[o as usize].as_mut().expect("op exists")
    }
    /// The operation in flight, if any.
    fn current(&self) -> Option<(u8, &Op)> {
        self.group.op.map(|o| (o, self.op(o)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Coordinator `coord` runs `failoverctl failover --to target [--force]`.
    Start {
        coord: u8,
        target: u8,
        force: bool,
    },
    /// Coordinator `coord` runs `failoverctl abort` on its operation.
    Abort {
        coord: u8,
    },
    LeaseExpires,
    Crash(u8),
    Restart(u8),
    /// The agent's slow re-read timer fires: re-read and decide the next task.
    Timer(u8),
    /// An SQS hint is received: delete it, re-read and decide.
    Deliver(u8),
    LoseHint(u8),
    DuplicateHint(u8),
    /// The agent executes the task it decided on.
    Execute(u8),
    PodsStart(u8),
    PodsStop(u8),
}

// ---------------------------------------------------------------------------------------
// Agent logic (a pure function of what the agent can read)
// ---------------------------------------------------------------------------------------

impl FailoverModel {
    /// protocol.md "Force": must agent `x` fence before anything else?
    fn must_fence(&self, s: &State, x: u8) -> bool {
        if self.protocol.fence_rule == FenceRule::Entitled {
            return match s.group.claimed_by {
                Some(c) => c != x,
                None => s.group.active != x,
            };
        }
        if s.group.active == x {
            return false;
        }
        let cur = s.current();
        match self.protocol.fence_rule {
            FenceRule::Entitled => unreachable!(),
            FenceRule::Never => false,
            FenceRule::Literal => true,
            FenceRule::ExemptTarget => !matches!(cur, Some((_, op)) if op.target == x),
            FenceRule::ExemptClaimedTarget => {
                !matches!(cur, Some((_, op)) if op.target == x && op.promotion_started)
            }
        }
    }

    /// Network off → scale to 0 → pods gone → demote each volume. `None` = nothing to do
    /// right now (waiting for pods, or already down).
    fn shutdown_step(&self, side: &Side) -> Result<Step, bool> {
        if side.net {
            return Ok(Step::NetOff);
        }
        if side.replicas {
            return Ok(Step::ScaleDown);
        }
        if side.pods && !self.protocol.broken_demote_before_pods_gone {
            return Err(false); // wait for pods to terminate
        }
        for v in 0..NV {
            if side.primary[v] {
                return Ok(Step::Demote(v as u8));
            }
        }
        Err(true) // fully down
    }

    /// The next task of agent `x`, from a consistent read of DynamoDB and its own cluster.
    pub fn decide(&self, s: &State, x: u8) -> Option<Pending> {
        let side = &s.sides[x as usize];
        let g = &s.group;
        if side.any_active() && self.must_fence(s, x) {
            return self.shutdown_step(side).ok().map(|step| Pending {
                step,
                op: None,
                epoch: g.epoch,
            });
        }
        let (o, op) = s.current()?;
        let mk = |step| {
            Some(Pending {
                step,
                op: Some(o),
                epoch: op.epoch,
            })
        };
        // Abort. As written the source re-activates its side and closes the operation;
        // with fix 3 the `activeCluster` does (for a non-forced operation that is the
        // source; a forced operation's source may not be the active cluster).
        let handles_abort = if self.protocol.abort_reactivates_active_only {
            g.active == x
        } else {
            op.source == x
        };
        if op.abort_requested && handles_abort {
            for v in 0..NV {
                if !side.primary[v] {
                    return mk(Step::Promote(v as u8));
                }
            }
            if !side.replicas {
                return mk(Step::ScaleUp);
            }
            if !side.pods {
                return None;
            }
            if !side.net {
                return mk(Step::NetOn);
            }
            return mk(Step::CloseAborted);
        }
        if op.source == x {
            if op.abort_requested {
                return None; // not the active cluster: nothing to re-activate
            }
            if self.protocol.broken_non_atomic_ready {
                match self.shutdown_step(side) {
                    Ok(Step::Demote(v)) => {
                        // READY for every volume already demoted, then demote the next.
                        for w in 0..NV {
                            if !side.primary[w] && op.recs[w] == Rec::Absent {
                                return mk(Step::WriteReadyVol(w as u8));
                            }
                        }
                        return mk(Step::Demote(v));
                    }
                    Ok(step) => return mk(step),
                    Err(false) => return None,
                    Err(true) => {}
                }
                for w in 0..NV {
                    if op.recs[w] == Rec::Absent {
                        return mk(Step::WriteReadyVol(w as u8));
                    }
                }
                return None;
            }
            return match self.shutdown_step(side) {
                Ok(step) => mk(step),
                Err(false) => None,
                Err(true) if op.recs.iter().all(|r| *r == Rec::Absent) => mk(Step::WriteReady),
                Err(true) => None, // handed off; waiting for the target
            };
        }
        if op.target == x {
            if !op.promotion_started {
                if op.abort_requested {
                    return None;
                }
                let ready = if op.force {
                    true
                } else if self.protocol.broken_non_atomic_ready {
                    op.recs.iter().any(|r| *r != Rec::Absent)
                } else {
                    op.recs.iter().all(|r| *r != Rec::Absent)
                };
                return if ready { mk(Step::Claim) } else { None };
            }
            if self.protocol.broken_scale_up_before_promote && !side.replicas {
                return mk(Step::ScaleUp);
            }
            for v in 0..NV {
                if !side.primary[v] {
                    return mk(Step::Promote(v as u8));
                }
            }
            if op.recs.contains(&Rec::Ready) {
                return mk(Step::MarkPromoted);
            }
            if !side.replicas {
                return mk(Step::ScaleUp);
            }
            if !side.pods {
                return None;
            }
            if !side.net {
                return mk(Step::NetOn);
            }
            return mk(Step::Complete);
        }
        None
    }

    // -----------------------------------------------------------------------------------
    // Transitions
    // -----------------------------------------------------------------------------------

    fn hint(&self, s: &mut State, x: u8) {
        let a = &mut s.agents[x as usize];
        a.inbox = (a.inbox + 1).min(self.bounds.inbox_cap);
    }

    /// Store model: an agent write for epoch `e` takes effect. Property 5 history.
    fn applied_agent_write(s: &mut State, e: u8) {
        if s.group.epoch != e {
            s.hist.stale_write = true;
        }
    }

    /// `ConditionCheck` on the group state: `epoch = e AND opId = id`.
    fn group_is(s: &State, o: u8, e: u8) -> bool {
        s.group.epoch == e && s.group.op == Some(o)
    }

    fn agent_decides(&self, s: &mut State, x: u8) -> bool {
        let Some(p) = self.decide(s, x) else {
            return false;
        };
        if let (true, Some(o)) = (p.step.is_k8s(), p.op) {
            // Journal intent STARTED, conditioned on the group state. The read above and
            // this write see the same table, so it succeeds.
            debug_assert!(Self::group_is(s, o, p.epoch));
            Self::applied_agent_write(s, p.epoch);
        }
        s.agents[x as usize].pending = Some(p);
        true
    }

    fn agent_executes(&self, s: &mut State, x: u8) {
        let p = s.agents[x as usize].pending.take().expect("pending step");
        let xi = x as usize;
        if s.hist.must_fence[xi] && !p.step.is_fencing_kind() {
            s.hist.acted_before_fence = true;
        }
        match p.step {
            Step::NetOff => s.sides[xi].net = false,
            Step::NetOn => s.sides[xi].net = true,
            Step::ScaleDown => s.sides[xi].replicas = false,
            Step::ScaleUp => s.sides[xi].replicas = true,
            Step::Demote(v) => {
                if s.sides[xi].pods {
                    s.hist.demoted_with_pods = true;
                }
                s.sides[xi].primary[v as usize] = false;
            }
            Step::Promote(v) => s.sides[xi].primary[v as usize] = true,
            Step::WriteReady | Step::WriteReadyVol(_) => {
                let o = p.op.expect("op step");
                if Self::group_is(s, o, p.epoch) && !s.op(o).abort_requested {
                    Self::applied_agent_write(s, p.epoch);
                    let op = s.op_mut(o);
                    match p.step {
                        Step::WriteReadyVol(v) => op.recs[v as usize] = Rec::Ready,
                        _ => op.recs = [Rec::Ready; NV],
                    }
                    let t = op.target;
                    self.hint(s, t);
                }
            }
            Step::Claim => {
                let o = p.op.expect("op step");
                let op = *s.op(o);
                // As written the condition is `epoch = e` on the operation item itself.
                let op_ok = op.epoch == p.epoch && !op.abort_requested;
                let group_ok = !self.protocol.claim_checks_group || Self::group_is(s, o, p.epoch);
                if op_ok && group_ok {
                    Self::applied_agent_write(s, p.epoch);
                    s.op_mut(o).promotion_started = true;
                    s.group.claimed_by = Some(x);
                    if op.force {
                        let src = op.source as usize;
                        if s.sides[src].any_active() {
                            s.hist.tainted[src] = true;
                            if s.agents[src].up {
                                s.hist.must_fence[src] = true;
                            }
                        }
                    }
                }
            }
            Step::MarkPromoted => {
                let o = p.op.expect("op step");
                if Self::group_is(s, o, p.epoch) {
                    Self::applied_agent_write(s, p.epoch);
                    for r in s.op_mut(o).recs.iter_mut() {
                        if *r == Rec::Ready {
                            *r = Rec::Promoted;
                        }
                    }
                }
            }
            Step::Complete | Step::CloseAborted => {
                let o = p.op.expect("op step");
                if Self::group_is(s, o, p.epoch) {
                    Self::applied_agent_write(s, p.epoch);
                    let op = s.op_mut(o);
                    let other;
                    if p.step == Step::Complete {
                        op.phase = Phase::Succeeded;
                        other = op.source;
                        s.group.active = x;
                        s.group.claimed_by = None;
                    } else {
                        op.phase = Phase::Aborted;
                        other = op.target;
                    }
                    s.group.op = None;
                    s.group.lease_expired = false;
                    self.hint(s, other);
                }
            }
        }
        // The outcome journal write (DONE) is conditioned like the intent; if it fails the
        // agent stops. Either way it has no further effect on the model.
    }

    fn start(&self, s: &mut State, coord: u8, target: u8, force: bool) {
        let source = 1 - target;
        let g = s.group;
        let ok_lease = g.op.is_none() || g.lease_expired;
        let ok_claim = !(self.protocol.start_blocks_claimed && !force && g.claimed_by.is_some());
        let ok_active = force || g.active == source;
        let c = &mut s.coords[coord as usize];
        if !ok_lease {
            c.start = CoordStart::Rejected(Reject::InFlight);
        } else if !ok_claim {
            c.start = CoordStart::Rejected(Reject::Claimed);
        } else if !ok_active {
            c.start = CoordStart::Rejected(Reject::NotSource);
        } else {
            let idx = s.ops.iter().position(Option::is_none).expect("op slot") as u8;
            let epoch = g.epoch + 1;
            s.ops[idx as usize] = Some(Op {
                epoch,
                source,
                target,
                force,
                promotion_started: false,
                abort_requested: false,
                phase: Phase::Running,
                recs: [Rec::Absent; NV],
            });
            s.group.epoch = epoch;
            s.group.op = Some(idx);
            s.group.lease_expired = false;
            s.coords[coord as usize].start = CoordStart::Started(idx);
            self.hint(s, A);
            self.hint(s, B);
        }
    }

    fn abort(&self, s: &mut State, coord: u8) {
        let CoordStart::Started(o) = s.coords[coord as usize].start else {
            unreachable!()
        };
        let op = *s.op(o);
        let group_ok = !self.protocol.abort_blocks_claimed
            || (s.group.op == Some(o) && s.group.claimed_by.is_none());
        if self.protocol.broken_abort_ignores_claim || (!op.promotion_started && group_ok) {
            s.op_mut(o).abort_requested = true;
            s.coords[coord as usize].abort = CoordAbort::Accepted;
            self.hint(s, op.source);
            self.hint(s, op.target);
        } else {
            s.coords[coord as usize].abort = CoordAbort::Rejected;
        }
    }

    /// History bookkeeping after every step.
    fn settle(s: &mut State) {
        for x in 0..2 {
            if !s.sides[x].any_active() {
                s.hist.tainted[x] = false;
                if s.hist.must_fence[x] {
                    s.hist.must_fence[x] = false;
                    s.hist.fenced_after_restart = true;
                }
            }
        }
    }

    fn step(&self, s: &State, action: Action) -> Option<State> {
        let mut n = s.clone();
        match action {
            Action::Start {
                coord,
                target,
                force,
            } => self.start(&mut n, coord, target, force),
            Action::Abort { coord } => self.abort(&mut n, coord),
            Action::LeaseExpires => {
                n.group.lease_expired = true;
                n.lease_expiries_left -= 1;
            }
            Action::Crash(x) => {
                let a = &mut n.agents[x as usize];
                a.up = false;
                a.pending = None;
                a.crashes_left -= 1;
                n.hist.must_fence[x as usize] = false;
                if self.witnesses.contains(&W_CRASH_RESUME)
                    && n.current()
                        .is_some_and(|(_, op)| op.target == x && op.promotion_started)
                {
                    n.hist.target_crashed_after_claim = true;
                }
            }
            Action::Restart(x) => {
                n.agents[x as usize].up = true;
                if n.hist.tainted[x as usize] {
                    n.hist.must_fence[x as usize] = true;
                }
            }
            Action::Timer(x) => {
                if !self.agent_decides(&mut n, x) {
                    return None;
                }
            }
            Action::Deliver(x) => {
                n.agents[x as usize].inbox -= 1;
                self.agent_decides(&mut n, x);
            }
            Action::LoseHint(x) => n.agents[x as usize].inbox -= 1,
            Action::DuplicateHint(x) => {
                n.agents[x as usize].inbox += 1;
                n.dups_left -= 1;
            }
            Action::Execute(x) => self.agent_executes(&mut n, x),
            Action::PodsStart(x) => n.sides[x as usize].pods = true,
            Action::PodsStop(x) => n.sides[x as usize].pods = false,
        }
        Self::settle(&mut n);
        Some(n)
    }

    // -----------------------------------------------------------------------------------
    // Liveness: a deterministic fair scheduler without faults
    // -----------------------------------------------------------------------------------

    /// One step of a fault-free run: down agents restart, decided tasks execute, kubelet
    /// reconciles, agents re-read (every hint delivered = every timer fires). No crash,
    /// no lease expiry, no coordinator action. `None` = quiescent.
    fn fair_step(&self, s: &State, first: u8) -> Option<State> {
        let order = [first, 1 - first];
        for x in order {
            if !s.agents[x as usize].up {
                return self.step(s, Action::Restart(x));
            }
        }
        for x in order {
            if s.agents[x as usize].pending.is_some() {
                return self.step(s, Action::Execute(x));
            }
        }
        for x in order {
            let side = &s.sides[x as usize];
            if side.replicas && !side.pods {
                return self.step(s, Action::PodsStart(x));
            }
            if !side.replicas && side.pods {
                return self.step(s, Action::PodsStop(x));
            }
        }
        for x in order {
            if let Some(n) = self.step(s, Action::Timer(x)) {
                return Some(n);
            }
        }
        None
    }

    /// Neither coordinator can start anything (any more).
    pub fn coordinators_quiet(&self, s: &State) -> bool {
        let mut actions = Vec::new();
        self.actions(s, &mut actions);
        !actions.iter().any(|a| matches!(a, Action::Start { .. }))
    }

    /// No operation in flight, the active cluster fully serving, the other fully down.
    pub fn converged(s: &State) -> bool {
        let act = s.group.active as usize;
        s.group.op.is_none()
            && s.sides[act].fully_active()
            && !s.sides[1 - act].any_active()
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    fn key(&self, s: &State, first: u8) -> u64 {
        let mut h = DefaultHasher::new();
        self.name.hash(&mut h);
        first.hash(&mut h);
        s.hash(&mut h);
        h.finish()
    }

    /// From `s`, do the fault-free runs (one giving agent A priority, one agent B) reach
    /// a converged state?
    pub fn fair_runs_converge(&self, s: &State) -> bool {
        self.fair_run_converges(s, A) && self.fair_run_converges(s, B)
    }

    /// From `s`, does the fault-free run reach a converged state? Memoised per thread:
    /// every state on the run gets the same answer, so the total work stays linear.
    fn fair_run_converges(&self, s: &State, first: u8) -> bool {
        thread_local! {
            static CACHE: RefCell<HashMap<u64, bool>> = RefCell::new(HashMap::new());
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let mut seen = Vec::new();
            let mut on_run = HashSet::new();
            let mut cur = s.clone();
            let verdict = loop {
                let k = self.key(&cur, first);
                if let Some(v) = cache.get(&k) {
                    break *v;
                }
                if !on_run.insert(k) {
                    break false; // cycle: livelock
                }
                seen.push(k);
                match self.fair_step(&cur, first) {
                    Some(n) => cur = n,
                    None => break Self::converged(&cur),
                }
            };
            for k in seen {
                cache.insert(k, verdict);
            }
            verdict
        })
    }

    /// The fault-free run from `s`, for printing a liveness counterexample.
    pub fn fair_run(&self, s: &State) -> Vec<State> {
        let first = if self.fair_run_converges(s, A) { B } else { A };
        let mut out = vec![s.clone()];
        let mut seen = HashSet::new();
        while let Some(n) = self.fair_step(out.last().unwrap(), first) {
            let k = self.key(&n, first);
            out.push(n);
            if !seen.insert(k) || out.len() > 200 {
                break;
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------
// Model + properties
// ---------------------------------------------------------------------------------------

pub const P1_DUAL_PRIMARY: &str = "P1 no volume Primary on both sides unless forced";
pub const P2_DEMOTE_WITH_PODS: &str = "P2a no volume demoted while its side has pods";
pub const P2_PODS_ON_SECONDARY: &str = "P2b pods only run on Primary volumes";
pub const P3_FENCE_FIRST: &str = "P3 forced old source fences before anything else";
pub const P4_LIVENESS: &str = "P4 fault-free run from every state converges";
pub const P4_EVENTUALLY: &str = "P4b every maximal path converges once no coordinator can act";
pub const P5_STALE_WRITE: &str = "P5 no stale-epoch agent write takes effect";

pub const W_COMPLETED: &str = "W an operation succeeds";
pub const W_FAILBACK: &str = "W two operations succeed (failover + failback)";
pub const W_ABORT: &str = "W an abort succeeds (operation closed Aborted)";
pub const W_ABORT_AFTER_READY: &str = "W an abort wins after READY_FOR_PROMOTION was written";
pub const W_ABORT_LOSES: &str = "W an abort loses to the promotion claim";
pub const W_RACE_LOST: &str = "W a coordinator loses the start race";
pub const W_TAKEOVER: &str = "W an expired lease is taken over by a new operation";
pub const W_FORCED: &str = "W a forced promotion happens";
pub const W_FENCED: &str = "W a restarted forced old source fences itself";
pub const W_CRASH_RESUME: &str = "W the target crashes after claiming and still completes";

fn dual_primary_ok(_: &FailoverModel, s: &State) -> bool {
    let [a, b] = &s.sides;
    (0..NV).all(|v| !(a.primary[v] && b.primary[v])) || s.hist.tainted.iter().any(|t| *t)
}
fn pods_on_primary(_: &FailoverModel, s: &State) -> bool {
    s.sides
        .iter()
        .all(|x| !x.pods || x.primary.iter().all(|p| *p))
}
fn ops(s: &State) -> impl Iterator<Item = &Op> {
    s.ops.iter().flatten()
}

impl Model for FailoverModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let agent = |x: usize| Agent {
            up: true,
            pending: None,
            crashes_left: self.bounds.crashes[x],
            inbox: 0,
        };
        let coord = Coord {
            start: CoordStart::NotYet,
            abort: CoordAbort::NotYet,
        };
        vec![State {
            group: Group {
                epoch: 0,
                active: A,
                op: None,
                lease_expired: false,
                claimed_by: None,
            },
            ops: [None; MAX_OPS],
            sides: [Side::serving(), Side::standby()],
            agents: [agent(0), agent(1)],
            coords: [coord; 2],
            lease_expiries_left: self.bounds.lease_expiries,
            dups_left: self.bounds.duplicates,
            hist: History::default(),
        }]
    }

    fn actions(&self, s: &State, out: &mut Vec<Action>) {
        for c in 0..2u8 {
            let co = &s.coords[c as usize];
            match co.start {
                CoordStart::NotYet => {
                    for ch in self.bounds.starts[c as usize] {
                        // --force is only offered when the source's heartbeat is stale.
                        if ch.force && s.agents[(1 - ch.target) as usize].up {
                            continue;
                        }
                        out.push(Action::Start {
                            coord: c,
                            target: ch.target,
                            force: ch.force,
                        });
                    }
                }
                CoordStart::Started(_) => {
                    if self.bounds.aborts[c as usize] && co.abort == CoordAbort::NotYet {
                        out.push(Action::Abort { coord: c });
                    }
                }
                CoordStart::Rejected(_) => {}
            }
        }
        if s.group.op.is_some() && !s.group.lease_expired && s.lease_expiries_left > 0 {
            out.push(Action::LeaseExpires);
        }
        for x in [A, B] {
            let a = &s.agents[x as usize];
            if a.up {
                if a.crashes_left > 0 {
                    out.push(Action::Crash(x));
                }
                if a.pending.is_some() {
                    out.push(Action::Execute(x));
                } else {
                    out.push(Action::Timer(x));
                    if a.inbox > 0 {
                        out.push(Action::Deliver(x));
                    }
                }
            } else {
                out.push(Action::Restart(x));
            }
            if a.inbox > 0 {
                out.push(Action::LoseHint(x));
                if a.inbox < self.bounds.inbox_cap && s.dups_left > 0 {
                    out.push(Action::DuplicateHint(x));
                }
            }
            let side = &s.sides[x as usize];
            if side.replicas && !side.pods {
                out.push(Action::PodsStart(x));
            }
            if !side.replicas && side.pods {
                out.push(Action::PodsStop(x));
            }
        }
    }

    fn next_state(&self, s: &State, action: Action) -> Option<State> {
        self.step(s, action)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        let mut props = vec![
            Property::always(P1_DUAL_PRIMARY, dual_primary_ok),
            Property::always(P2_DEMOTE_WITH_PODS, |_: &FailoverModel, s: &State| {
                !s.hist.demoted_with_pods
            }),
            Property::always(P2_PODS_ON_SECONDARY, pods_on_primary),
            Property::always(P3_FENCE_FIRST, |_: &FailoverModel, s: &State| {
                !s.hist.acted_before_fence
            }),
            Property::always(P4_LIVENESS, |m: &FailoverModel, s: &State| {
                m.fair_runs_converge(s)
            }),
            Property::eventually(P4_EVENTUALLY, |m: &FailoverModel, s: &State| {
                m.coordinators_quiet(s) && FailoverModel::converged(s)
            }),
            Property::always(P5_STALE_WRITE, |_: &FailoverModel, s: &State| {
                !s.hist.stale_write
            }),
        ];
        let all: Vec<Property<Self>> = vec![
            Property::sometimes(W_COMPLETED, |_: &FailoverModel, s: &State| {
                ops(s).any(|o| o.phase == Phase::Succeeded)
            }),
            Property::sometimes(W_FAILBACK, |_: &FailoverModel, s: &State| {
                ops(s).filter(|o| o.phase == Phase::Succeeded).count() == 2
            }),
            Property::sometimes(W_ABORT, |_: &FailoverModel, s: &State| {
                ops(s).any(|o| o.phase == Phase::Aborted)
            }),
            Property::sometimes(W_ABORT_AFTER_READY, |_: &FailoverModel, s: &State| {
                ops(s).any(|o| o.phase == Phase::Aborted && o.recs.iter().all(|r| *r == Rec::Ready))
            }),
            Property::sometimes(W_ABORT_LOSES, |_: &FailoverModel, s: &State| {
                s.coords.iter().any(|c| c.abort == CoordAbort::Rejected)
            }),
            Property::sometimes(W_RACE_LOST, |_: &FailoverModel, s: &State| {
                s.coords
                    .iter()
                    .any(|c| c.start == CoordStart::Rejected(Reject::InFlight))
            }),
            Property::sometimes(W_TAKEOVER, |_: &FailoverModel, s: &State| {
                ops(s).filter(|o| o.phase == Phase::Running).count()
                    > usize::from(s.group.op.is_some())
            }),
            Property::sometimes(W_FORCED, |_: &FailoverModel, s: &State| {
                ops(s).any(|o| o.force && o.promotion_started)
            }),
            Property::sometimes(W_FENCED, |_: &FailoverModel, s: &State| {
                s.hist.fenced_after_restart
            }),
            Property::sometimes(W_CRASH_RESUME, |_: &FailoverModel, s: &State| {
                s.hist.target_crashed_after_claim && ops(s).any(|o| o.phase == Phase::Succeeded)
            }),
        ];
        props.extend(all.into_iter().filter(|p| self.witnesses.contains(&p.name)));
        props
    }
}

// ---------------------------------------------------------------------------------------
// Pretty printing for counterexamples
// ---------------------------------------------------------------------------------------

pub fn summary(s: &State) -> String {
    let side = |x: &Side| {
        let vols: String = x
            .primary
            .iter()
            .map(|p| if *p { 'P' } else { 's' })
            .collect();
        format!(
            "{}{}{}{}",
            if x.net { "net " } else { "    " },
            if x.replicas { "rep " } else { "    " },
            if x.pods { "pods " } else { "     " },
            vols
        )
    };
    let mut out = format!(
        "epoch={} active={} op={:<4} lease={:<7} claimedBy={} | A[{}] B[{}] |",
        s.group.epoch,
        cluster_name(s.group.active),
        s.group.op.map_or("-".to_string(), |o| format!("op{o}")),
        if s.group.lease_expired {
            "EXPIRED"
        } else {
            "live"
        },
        s.group.claimed_by.map_or("-", cluster_name),
        side(&s.sides[0]),
        side(&s.sides[1]),
    );
    for (i, o) in s.ops.iter().enumerate() {
        if let Some(o) = o {
            let recs: String = o
                .recs
                .iter()
                .map(|r| match r {
                    Rec::Absent => '-',
                    Rec::Ready => 'R',
                    Rec::Promoted => 'P',
                })
                .collect();
            let _ = write!(
                out,
                " op{i}(e{} {}->{}{} {:?}{}{} recs={})",
                o.epoch,
                cluster_name(o.source),
                cluster_name(o.target),
                if o.force { " FORCE" } else { "" },
                o.phase,
                if o.promotion_started { " claimed" } else { "" },
                if o.abort_requested { " abortReq" } else { "" },
                recs
            );
        }
    }
    for x in [A, B] {
        let a = &s.agents[x as usize];
        let _ = write!(
            out,
            " | agent{}:{}{}",
            cluster_name(x),
            if a.up { "up" } else { "DOWN" },
            a.pending.map_or(String::new(), |p| format!(
                " pending={:?}@e{}",
                p.step, p.epoch
            ))
        );
    }
    out
}

pub fn format_trace(path: &[(State, Option<Action>)]) -> String {
    let mut out = String::new();
    for (i, (s, a)) in path.iter().enumerate() {
        let _ = writeln!(out, "  [{i:>2}] {}", summary(s));
        if let Some(a) = a {
            let _ = writeln!(out, "       --{a:?}-->");
        }
    }
    out
}
