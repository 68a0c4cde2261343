//! The transitions of the model in `model.rs`: what an agent decides from what it can read
//! (DynamoDB and its own cluster, or only its cluster while cut off), what executing a
//! decision does, and the coordinators' and the environment's steps.

use crate::model::*;

// ---------------------------------------------------------------------------------------
// Agent logic (a pure function of what the agent can read)
// ---------------------------------------------------------------------------------------

impl FailoverModel {
    /// protocol.md "Force": must agent `x` fence before anything else?
    pub fn must_fence(&self, s: &State, x: u8) -> bool {
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

    /// The timing assumption as a guard: an observer may conclude that `c`'s serving lease
    /// is over only once it lapsed **and** the holder's fence completed (its side fully
    /// down, no activating Kubernetes change of its own still to land). A dead holder
    /// cannot fence: the observer waits until it is restarted and fences or releases.
    pub fn lease_over(&self, s: &State, c: u8) -> bool {
        let a = &s.agents[c as usize];
        if a.leased {
            return false;
        }
        if self.protocol.broken_observer_ignores_fence {
            return true;
        }
        let activating = a
            .pending
            .is_some_and(|p| p.step.is_k8s() && !p.step.is_fencing_kind());
        !s.sides[c as usize].any_active() && !activating
    }

    /// `WaitSourceReleased`: every other cluster that may serve the group (the source; a
    /// cluster holding a claim) released its side (only the source can: every handoff
    /// record at this epoch) or its serving lease is over.
    fn forced_may_claim(&self, s: &State, op: &Op) -> bool {
        let released = op.recs.iter().all(|r| *r != Rec::Absent);
        [Some(op.source), s.group.claimed_by]
            .into_iter()
            .flatten()
            .filter(|c| *c != op.target)
            .all(|c| (c == op.source && released) || self.lease_over(s, c))
    }

    /// Whether `Fail(x)` is offered: `x` is the target of the operation in flight, which is
    /// running and not aborted (its wait for the handoff, or a step after its claim, ran
    /// out of time). A source's failure is not modelled separately: it stops the source's
    /// run like a crash without restart, and its way out is the same abort.
    pub fn may_fail(&self, s: &State, x: u8) -> bool {
        s.current().is_some_and(|(_, op)| {
            op.target == x && op.phase == Phase::Running && !op.abort_requested
        })
    }

    /// The next task of agent `x`, from a consistent read of DynamoDB and its own cluster.
    pub fn decide(&self, s: &State, x: u8) -> Option<Pending> {
        let side = &s.sides[x as usize];
        let g = &s.group;
        let agent = &s.agents[x as usize];
        if !agent.connected {
            // Cut off: no DynamoDB read. Only the lease-loss fence (policy `Fence`), which
            // never re-activates anything.
            if agent.leased {
                return None;
            }
            return self.shutdown_step(side).ok().map(|step| Pending {
                step,
                op: None,
                epoch: g.epoch,
                lease_loss: true,
            });
        }
        if side.any_active() && self.must_fence(s, x) {
            return self.shutdown_step(side).ok().map(|step| Pending {
                step,
                op: None,
                epoch: g.epoch,
                lease_loss: false,
            });
        }
        let (o, op) = s.current()?;
        // A `Failed` mark while the group holds no claim stops the forward runs (an abort,
        // a takeover after the operation lease or a forced start moves on). Once a claim is
        // on the group (this operation's, or an earlier one a forced start kept) abort is
        // impossible and only forward is: the runs keep going (unless the broken variant).
        let stopped = op.phase == Phase::Failed
            && (g.claimed_by.is_none() || self.protocol.broken_failed_stops_claimed);
        let mk = |step| {
            Some(Pending {
                step,
                op: Some(o),
                epoch: op.epoch,
                lease_loss: false,
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
        if stopped {
            return None;
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
                let released = op.recs.iter().all(|r| *r != Rec::Absent);
                let ready = if op.force {
                    !self.protocol.force_waits_for_release || self.forced_may_claim(s, op)
                } else if self.protocol.broken_non_atomic_ready {
                    op.recs.iter().any(|r| *r != Rec::Absent)
                } else {
                    released
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
        if !p.step.is_k8s() && !s.agents[xi].connected {
            s.hist.late_write = true;
        }
        if p.lease_loss {
            s.hist.lease_fenced[xi] = true;
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
                    if op.force && op.recs.iter().all(|r| *r != Rec::Absent) {
                        s.hist.forced_on_release = true;
                    } else if op.force && self.protocol.force_waits_for_release {
                        s.hist.forced_on_lease = true;
                    }
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
                    if p.step == Step::CloseAborted && s.op(o).phase == Phase::Failed {
                        s.hist.failed_aborted = true;
                    }
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

    /// `Fail(x)`: the step `x` runs ran out of time. It marks the operation `Failed`
    /// (condition: not closed, no abort requested; group-state check `epoch = e AND opId =
    /// id`) and leaves the group state alone. The write is decided and sent at once.
    fn fail(&self, s: &mut State, x: u8) {
        let (o, op) = s.current().expect("op in flight");
        let op = *op;
        debug_assert!(self.may_fail(s, x));
        Self::applied_agent_write(s, op.epoch);
        s.op_mut(o).phase = Phase::Failed;
        s.failures_left -= 1;
        if op.promotion_started {
            s.hist.failed_after_claim = true;
        }
        self.hint(s, if op.source == x { op.target } else { op.source });
    }

    /// History bookkeeping after every step.
    fn settle(s: &mut State) {
        for x in 0..2 {
            if s.sides[x].fully_active() {
                s.hist.lease_fenced[x] = false;
            }
            if !s.sides[x].any_active() {
                s.hist.tainted[x] = false;
                if s.hist.must_fence[x] {
                    s.hist.must_fence[x] = false;
                    s.hist.fenced_after_restart = true;
                }
            }
        }
    }

    pub fn step(&self, s: &State, action: Action) -> Option<State> {
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
                // A dead agent renews nothing. Its lease lapsing later only delays what an
                // observer may conclude, and the observer may always decide later.
                a.leased = false;
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
                let a = &mut n.agents[x as usize];
                a.up = true;
                // The first renewal at start: it succeeds only when connected. An agent
                // that cannot take its lease fences before anything else.
                a.leased = a.connected;
                if n.hist.tainted[x as usize] {
                    n.hist.must_fence[x as usize] = true;
                }
            }
            Action::Partition(x) => {
                let a = &mut n.agents[x as usize];
                a.connected = false;
                a.partitions_left -= 1;
            }
            Action::Heal(x) => {
                let a = &mut n.agents[x as usize];
                a.connected = true;
                if a.up {
                    a.leased = true; // the next renewal succeeds
                }
            }
            Action::LeaseLapses(x) => n.agents[x as usize].leased = false,
            Action::DropWrite(x) => n.agents[x as usize].pending = None,
            Action::Fail(x) => self.fail(&mut n, x),
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
}
