//! The transitions of the model in `model.rs`: what an agent decides from what it can read
//! (DynamoDB and its own cluster, or only its cluster while cut off), what executing a
//! decision does (each DynamoDB write touches one item under its own condition), and the
//! coordinators' and the environment's steps.

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
                !matches!(cur, Some((_, op)) if op.target == x && s.group.promotion_started)
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
    /// cluster holding a claim) released its side (only the source can: every volume
    /// `READY_FOR_PROMOTION` on the group state at this epoch) or its serving lease is over.
    fn forced_may_claim(&self, s: &State, op: &Op) -> bool {
        let released = s.group.all_ready();
        [Some(op.source), s.group.claimed_by]
            .into_iter()
            .flatten()
            .filter(|c| *c != op.target)
            .all(|c| (c == op.source && released) || self.lease_over(s, c))
    }

    /// Whether `Fail(x)` is offered: `x` runs the operation in flight forward (its source or
    /// its target), which is open (does not read `Failed`) and not aborted: the step it runs
    /// (a Kubernetes step, its wait for the handoff or for the close, or a step after the
    /// claim) ran out of time.
    pub fn may_fail(&self, s: &State, x: u8) -> bool {
        s.current().is_some_and(|(_, op)| {
            (op.target == x || op.source == x) && !s.reads_failed() && !s.group.abort_requested
        })
    }

    /// Who finishes the close of the operation the group released last, and as what: the
    /// closer (the target for `Succeeded`, the cluster that rolled back for `Aborted`),
    /// from the group state's handoff view (`promotionStartedAt`: `Succeeded`).
    fn close_to_record(&self, s: &State, x: u8) -> Option<(u8, Phase)> {
        if self.protocol.broken_close_not_resumed {
            return None;
        }
        let g = &s.group;
        let o = g.last_op.filter(|_| g.op.is_none())?;
        let op = s.op(o);
        let (closer, phase) = if g.promotion_started {
            (op.target, Phase::Succeeded)
        } else if self.protocol.abort_reactivates_active_only {
            (g.active, Phase::Aborted)
        } else {
            (op.source, Phase::Aborted)
        };
        // A resumed close checks the operation item first: closed already, or (for
        // `Succeeded`) marked `Failed` meanwhile, it writes nothing.
        let refused = op.phase.closed() || (phase == Phase::Succeeded && op.phase == Phase::Failed);
        (closer == x && !refused).then_some((o, phase))
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
        let Some((o, op)) = s.current() else {
            // Nothing in flight: a close released the group but its phase write was lost
            // (a crash, a dropped write): the closer writes it now.
            return self.close_to_record(s, x).map(|(o, phase)| Pending {
                step: Step::RecordClose(phase),
                op: Some(o),
                epoch: s.op(o).epoch,
                lease_loss: false,
            });
        };
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
        // source; a forced operation's source may not be the active cluster). A `Failed`
        // operation is rolled back too.
        let handles_abort = if self.protocol.abort_reactivates_active_only {
            g.active == x
        } else {
            op.source == x
        };
        if g.abort_requested && handles_abort {
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
        // A `Failed` operation (its item, or the group state's failure mark) is closed for the
        // runner (`Phase::is_terminal`): no forward run, whatever the claim. The failure mark
        // is refused once the group holds a claim (`Fail`); only an abort (no claim), a
        // takeover after the operation lease or a forced start moves on.
        if s.reads_failed() {
            return None;
        }
        if op.source == x {
            if g.abort_requested {
                return None; // not the active cluster: nothing to re-activate
            }
            if self.protocol.broken_non_atomic_ready {
                match self.shutdown_step(side) {
                    Ok(Step::Demote(v)) => {
                        // READY for every volume already demoted, then demote the next.
                        for w in 0..NV {
                            if !side.primary[w] && !g.ready[w] {
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
                    if !g.ready[w] {
                        return mk(Step::WriteReadyVol(w as u8));
                    }
                }
                return None;
            }
            return match self.shutdown_step(side) {
                Ok(step) => mk(step),
                Err(false) => None,
                Err(true) if !g.group_ready && !g.promotion_started => mk(Step::WriteReady),
                Err(true) => None, // handed off; waiting for the target
            };
        }
        if op.target == x {
            if !g.promotion_started {
                if g.abort_requested {
                    return None;
                }
                return if op.force {
                    let ready =
                        !self.protocol.force_waits_for_release || self.forced_may_claim(s, op);
                    if ready {
                        mk(Step::Claim([false; NV]))
                    } else {
                        None
                    }
                } else if self.protocol.broken_non_atomic_ready {
                    // Claims as soon as one volume is ready, naming those it saw.
                    if g.ready.iter().any(|r| *r) {
                        mk(Step::Claim(g.ready))
                    } else {
                        None
                    }
                } else if g.all_ready() {
                    mk(Step::Claim([true; NV]))
                } else {
                    None
                };
            }
            if self.protocol.broken_scale_up_before_promote && !side.replicas {
                return mk(Step::ScaleUp);
            }
            for v in 0..NV {
                if !side.primary[v] {
                    return mk(Step::Promote(v as u8));
                }
            }
            if !g.promoted.iter().all(|p| *p) {
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

    /// Store model: an agent's write of the group state (or journal intent) for epoch `e`
    /// takes effect. Property 5 history.
    fn applied_agent_write(s: &mut State, e: u8) {
        if s.group.epoch != e {
            s.hist.stale_write = true;
        }
    }

    /// The group-state condition every agent write carries: `epoch = e AND opId = id`.
    fn group_is(s: &State, o: u8, e: u8) -> bool {
        s.group.epoch == e && s.group.op == Some(o)
    }

    fn agent_decides(&self, s: &mut State, x: u8) -> bool {
        let Some(p) = self.decide(s, x) else {
            return false;
        };
        if let (true, Some(o)) = (p.step.is_k8s(), p.op) {
            // The run's consistent check of the group state, then the journal intent
            // STARTED. The read above sees the same table, so it passes.
            debug_assert!(Self::group_is(s, o, p.epoch));
            Self::applied_agent_write(s, p.epoch);
        }
        s.agents[x as usize].pending = Some(p);
        true
    }

    fn agent_executes(&self, s: &mut State, x: u8) {
        let p = s.agents[x as usize].pending.take().expect("pending step");
        let xi = x as usize;
        if s.hist.must_fence[xi] && !p.step.is_fencing_kind() && !p.step.is_descriptive() {
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
                // Group state: `epoch = e AND opId = id`, no abort, not marked yet, no
                // claim (`promotionStartedAt`).
                let o = p.op.expect("op step");
                let g = s.group;
                let marked = match p.step {
                    Step::WriteReadyVol(v) => g.ready[v as usize],
                    _ => g.group_ready,
                };
                if Self::group_is(s, o, p.epoch)
                    && !g.abort_requested
                    && !marked
                    && !g.promotion_started
                {
                    Self::applied_agent_write(s, p.epoch);
                    match p.step {
                        Step::WriteReadyVol(v) => s.group.ready[v as usize] = true,
                        _ => {
                            s.group.ready = [true; NV];
                            s.group.group_ready = true;
                        }
                    }
                    let t = s.op(o).target;
                    self.hint(s, t);
                }
            }
            Step::Claim(names) => {
                // Group state: `epoch = e AND opId = id` (fix 1), `opTarget` = the claimer,
                // no abort, no failure mark, `ready.<v>` for every named volume; naming none:
                // `opForce` or `groupReadyAt`.
                let o = p.op.expect("op step");
                let op = *s.op(o);
                let g = s.group;
                let group_ok = !self.protocol.claim_checks_group || Self::group_is(s, o, p.epoch);
                let target_ok = s.handoff_op().is_some_and(|h| h.target == x);
                let ready_ok = if names.iter().any(|n| *n) {
                    (0..NV).all(|v| !names[v] || g.ready[v])
                } else {
                    s.handoff_op().is_some_and(|h| h.force) || g.group_ready
                };
                let failure_ok = self.protocol.broken_failed_mark_on_operation_only || !g.failed;
                if group_ok && target_ok && !g.abort_requested && ready_ok && !failure_ok {
                    if self.witnesses.contains(&W_CLAIM_REFUSED_BY_FAILURE) {
                        s.hist.claim_refused_by_failure = true;
                    }
                } else if group_ok && target_ok && !g.abort_requested && ready_ok {
                    Self::applied_agent_write(s, p.epoch);
                    let released = g.all_ready();
                    s.group.promotion_started = true;
                    s.group.claimed_by = Some(x);
                    if op.force && released {
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
                // Group state: `epoch = e AND opId = id`, `promotionStartedAt`.
                let o = p.op.expect("op step");
                if Self::group_is(s, o, p.epoch) && s.group.promotion_started {
                    Self::applied_agent_write(s, p.epoch);
                    s.group.promoted = [true; NV];
                }
            }
            Step::Complete | Step::CloseAborted => {
                // The close's first write, the group state: `epoch = e AND opId = id`;
                // complete: `promotionStartedAt`, no abort; the abort's close: the abort, no
                // `promotionStartedAt`. The operation's phase is the next write.
                let o = p.op.expect("op step");
                let g = s.group;
                let ok = if p.step == Step::Complete {
                    g.promotion_started && !g.abort_requested
                } else {
                    g.abort_requested && !g.promotion_started
                };
                if Self::group_is(s, o, p.epoch) && ok {
                    Self::applied_agent_write(s, p.epoch);
                    let op = *s.op(o);
                    let (other, phase) = if p.step == Step::Complete {
                        s.group.active = x;
                        s.group.claimed_by = None;
                        (op.source, Phase::Succeeded)
                    } else {
                        (op.target, Phase::Aborted)
                    };
                    s.group.op = None;
                    s.group.last_op = Some(o);
                    s.group.lease_expired = false;
                    self.hint(s, other);
                    // The same store call goes on with the operation item's phase.
                    s.agents[xi].pending = Some(Pending {
                        step: Step::RecordClose(phase),
                        ..p
                    });
                }
            }
            Step::RecordClose(phase) => {
                // The operation item: condition `attribute_exists` only.
                let o = p.op.expect("op step");
                s.op_mut(o).phase = phase;
            }
            Step::MarkFailedGroup => {
                // Group state: `epoch = e AND opId = id`, no `promotionClaimedBy`, no
                // `promotionStartedAt`, no abort. Then the same store call writes the
                // operation item. Refused by a claim: nothing recorded, only forward.
                let o = p.op.expect("op step");
                let g = s.group;
                if Self::group_is(s, o, p.epoch) && !g.claimed() && !g.abort_requested {
                    Self::applied_agent_write(s, p.epoch);
                    s.group.failed = true;
                    s.agents[xi].pending = Some(Pending {
                        step: Step::MarkFailed,
                        ..p
                    });
                } else if Self::group_is(s, o, p.epoch)
                    && g.claimed()
                    && self.witnesses.contains(&W_FAILURE_OVERTAKEN)
                {
                    // Sent before the claim (`Fail` found none), landed after it.
                    s.hist.failure_overtaken = true;
                }
            }
            Step::MarkFailed => {
                // The operation item alone: not closed (nor `Failed`).
                let o = p.op.expect("op step");
                if s.op(o).phase == Phase::Pending {
                    s.op_mut(o).phase = Phase::Failed;
                    let op = *s.op(o);
                    self.hint(s, if op.source == x { op.target } else { op.source });
                }
            }
        }
        // The outcome journal write (DONE) follows the same check as the intent; if it
        // fails the agent stops. Either way it has no further effect on the model.
    }

    /// The start's first write: `decide_start` on a consistent read (the front end's refusals
    /// are the group-state write's conditions, checked there), then the operation item is
    /// put, `Pending`, named by no group yet.
    fn start(&self, s: &mut State, coord: u8, target: u8, force: bool) {
        s.ops[coord as usize] = Some(Op {
            epoch: 0,
            source: 1 - target,
            target,
            force,
            phase: Phase::Pending,
        });
        s.coords[coord as usize].start = CoordStart::Put;
    }

    /// The start's second write, the group state: no live operation (none, or its lease
    /// expired), unless forced `activeCluster = source` and no `promotionClaimedBy`. It
    /// sets `epoch + 1`, `opId`, the lease, `opTarget`/`opForce`, clears the handoff of the
    /// operation before and keeps `promotionClaimedBy`. A write refused because the epoch
    /// moved since the read is retried on a re-read, so the conditions are evaluated on
    /// the group state as it is now. Refused: the `Pending` item is deleted.
    fn take_group(&self, s: &mut State, coord: u8) {
        let op = *s.op(coord);
        let g = s.group;
        let ok_lease = g.op.is_none() || g.lease_expired;
        let ok_claim = !(self.protocol.start_blocks_claimed && !op.force && g.claimed_by.is_some());
        let ok_active = op.force || g.active == op.source;
        let reject = if !ok_lease {
            Some(Reject::InFlight)
        } else if !ok_claim {
            Some(Reject::Claimed)
        } else if !ok_active {
            Some(Reject::NotSource)
        } else {
            None
        };
        if let Some(r) = reject {
            s.coords[coord as usize].start = CoordStart::Rejected(r);
            s.ops[coord as usize] = None;
            return;
        }
        if g.op.is_some() && self.witnesses.contains(&W_TAKEOVER) {
            s.hist.took_over = true;
        }
        let epoch = g.epoch + 1;
        s.op_mut(coord).epoch = epoch;
        s.group = Group {
            epoch,
            op: Some(coord),
            lease_expired: false,
            ready: [false; NV],
            group_ready: false,
            promotion_started: false,
            promoted: [false; NV],
            abort_requested: false,
            failed: false,
            ..g
        };
        s.coords[coord as usize].start = CoordStart::Started;
        self.hint(s, A);
        self.hint(s, B);
    }

    /// The abort's write of the group state: `epoch = e AND opId = id`, no
    /// `promotionClaimedBy` (fix 2b), no `promotionStartedAt`. (Its copy on the operation
    /// item is left out: see `model.rs`.)
    fn abort(&self, s: &mut State, coord: u8) {
        let op = *s.op(coord);
        let g = s.group;
        let claim_ok = self.protocol.broken_abort_ignores_claim
            || (!g.promotion_started
                && (!self.protocol.abort_blocks_claimed || g.claimed_by.is_none()));
        if Self::group_is(s, coord, op.epoch) && claim_ok {
            s.group.abort_requested = true;
            s.coords[coord as usize].abort = CoordAbort::Accepted;
            if op.phase == Phase::Failed && self.witnesses.contains(&W_FAILED_ABORTED) {
                s.hist.failed_aborted = true;
            }
            self.hint(s, op.source);
            self.hint(s, op.target);
        } else {
            s.coords[coord as usize].abort = CoordAbort::Rejected;
        }
    }

    /// `Fail(x)`: the step `x` runs ran out of time. It sends the failure mark of the group
    /// state, which lands when it executes unless a claim (the operation's own, or one a
    /// forced start kept) or an abort is there by then: after a claim only forward is
    /// possible and it records nothing (it retries on the next re-read). A mark sent while
    /// the group already holds a claim is refused whenever it lands (the claim stays until
    /// the epoch moves or the close, which refuse it too), so that step is folded into this
    /// one: nothing is sent.
    ///
    /// The broken variants mark the operation item instead: without any check
    /// (`broken_failed_stops_claimed`), or after a read of the group state that finds no
    /// claim (`broken_failed_mark_on_operation_only`, the claim not looking at the mark).
    fn fail(&self, s: &mut State, x: u8) {
        let (o, op) = s.current().expect("op in flight");
        let op = *op;
        debug_assert!(self.may_fail(s, x));
        s.failures_left -= 1;
        let claimed = s.group.claimed();
        if claimed && !self.protocol.broken_failed_stops_claimed {
            if self.witnesses.contains(&W_FAILED_AFTER_CLAIM) {
                s.hist.failed_after_claim = true;
            }
            return;
        }
        let step = if self.protocol.broken_failed_stops_claimed
            || self.protocol.broken_failed_mark_on_operation_only
        {
            Step::MarkFailed
        } else {
            Step::MarkFailedGroup
        };
        s.agents[x as usize].pending = Some(Pending {
            step,
            op: Some(o),
            epoch: op.epoch,
            lease_loss: false,
        });
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
            Action::TakeGroup { coord } => self.take_group(&mut n, coord),
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
                    && n.group.promotion_started
                    && n.current().is_some_and(|(_, op)| op.target == x)
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
