//! Liveness and printing for the model in `model.rs`.
//!
//! P4 replays, from every reachable state, two deterministic fault-free schedules (one
//! giving agent A priority, one agent B): down agents restart, cut-off agents heal,
//! decided tasks execute, kubelet reconciles, agents re-read, and an operator aborts an
//! operation that failed before its claim (the product hands such an operation to a
//! person). A run must end *settled*: converged (nothing in flight, the active side fully
//! serving, the other fully down), or parked by a lease-loss fence (the idle active
//! cluster fenced itself while cut off; only an operation brings a side back).

use std::cell::RefCell;
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};

use stateright::Model;

use crate::model::*;

impl FailoverModel {
    /// One step of a fault-free run: down agents restart, cut-off agents heal, decided
    /// tasks execute, kubelet reconciles, agents re-read (every hint delivered = every
    /// timer fires), an operator aborts an operation that failed before its claim. No
    /// crash, partition, lapse, failure or coordinator action. `None` = quiescent.
    fn fair_step(&self, s: &State, first: u8) -> Option<State> {
        let order = [first, 1 - first];
        for x in order {
            if !s.agents[x as usize].up {
                return self.step(s, Action::Restart(x));
            }
        }
        for x in order {
            if !s.agents[x as usize].connected {
                return self.step(s, Action::Heal(x));
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
        Self::operator_abort(s)
    }

    /// The operator aborts an operation that failed before its claim (accepted: the group
    /// names it, no claim). `None` when there is none.
    fn operator_abort(s: &State) -> Option<State> {
        let (o, op) = s.current()?;
        if op.phase != Phase::Failed || op.abort_requested || s.group.claimed_by.is_some() {
            return None;
        }
        let mut n = s.clone();
        n.op_mut(o).abort_requested = true;
        for a in n.agents.iter_mut() {
            a.inbox = a.inbox.max(1);
        }
        Some(n)
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

    /// Nothing in flight, the other side fully down, and the active cluster's side (partly)
    /// fenced by its own lease loss: it stays so until an operation brings a side back.
    pub fn parked_by_lease(s: &State) -> bool {
        let act = s.group.active as usize;
        s.group.op.is_none()
            && s.hist.lease_fenced[act]
            && !s.sides[1 - act].any_active()
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    /// An operation that failed before its claim holds the group: an operator aborts it
    /// (or a takeover after its lease, or a forced start).
    pub fn parked_by_failure(s: &State) -> bool {
        s.current()
            .is_some_and(|(_, op)| op.phase == Phase::Failed && !op.promotion_started)
            && s.group.claimed_by.is_none()
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    /// Where a run may end: converged, or parked for an operator.
    pub fn settled(s: &State) -> bool {
        Self::converged(s) || Self::parked_by_lease(s) || Self::parked_by_failure(s)
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
                    None => break Self::converged(&cur) || Self::parked_by_lease(&cur),
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
        "epoch={} active={} op={:<4} opLease={:<7} claimedBy={} | A[{}] B[{}] |",
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
            " | agent{}:{}{}{}",
            cluster_name(x),
            if a.up { "up" } else { "DOWN" },
            match (a.connected, a.leased) {
                (true, true) => "",
                (true, false) => " unleased",
                (false, true) => " CUT",
                (false, false) => " CUT unleased",
            },
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
