//! Liveness and printing for the model in `model.rs`.
//!
//! P4 replays, from every reachable state, two deterministic fault-free schedules (one
//! giving agent A priority, one agent B): down agents restart, cut-off agents heal,
//! decided tasks execute, kubelet reconciles, agents re-read, and an operator aborts an
//! operation that failed before its claim (the product hands such an operation to a
//! person). A run must end *settled*: converged (nothing in flight, the close of the last
//! operation written on its item too, the active side fully serving, the other fully
//! down), or parked by a lease-loss fence (the idle active cluster fenced itself while cut
//! off; only an operation brings a side back). No coordinator acts in these runs: a
//! coordinator that stopped between a start's two writes (the put of its operation item
//! and its group-state write) never comes back.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hash, Hasher};

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
        if !s.reads_failed() || s.group.abort_requested || s.group.claimed() {
            return None;
        }
        let mut n = s.clone();
        n.group.abort_requested = true;
        for a in n.agents.iter_mut() {
            a.inbox = a.inbox.max(1);
        }
        Some(n)
    }

    /// Neither coordinator can start anything (any more): no start to try, none half-way
    /// (the `Start` and `TakeGroup` actions `actions` offers).
    pub fn coordinators_quiet(&self, s: &State) -> bool {
        (0..2).all(|c| match s.coords[c].start {
            CoordStart::NotYet => !self.bounds.starts[c]
                .iter()
                .any(|ch| self.start_offered(s, ch)),
            CoordStart::Put => false,
            CoordStart::Started | CoordStart::Rejected(_) => true,
        })
    }

    /// No operation in flight, its close written on its item, the active cluster fully
    /// serving, the other fully down.
    pub fn converged(s: &State) -> bool {
        let act = s.group.active as usize;
        s.group.op.is_none()
            && s.close_recorded()
            && s.sides[act].fully_active()
            && !s.sides[1 - act].any_active()
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    /// Nothing in flight, the other side fully down, and the active cluster's side (partly)
    /// fenced by its own lease loss: it stays so until an operation brings a side back.
    pub fn parked_by_lease(s: &State) -> bool {
        let act = s.group.active as usize;
        s.group.op.is_none()
            && s.close_recorded()
            && s.hist.lease_fenced[act]
            && !s.sides[1 - act].any_active()
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    /// An operation that failed before its claim holds the group: an operator aborts it
    /// (or a takeover after its lease, or a forced start).
    pub fn parked_by_failure(s: &State) -> bool {
        s.reads_failed()
            && !s.group.claimed()
            && !s.group.abort_requested
            && s.agents.iter().all(|a| a.pending.is_none())
    }

    /// Where a run may end: converged, or parked for an operator.
    pub fn settled(s: &State) -> bool {
        Self::converged(s) || Self::parked_by_lease(s) || Self::parked_by_failure(s)
    }

    /// The hash of `s` in this model (the memo is per thread, shared by the models a thread
    /// checks one after the other).
    fn base_key(&self, s: &State) -> u64 {
        let mut h = KeyHasher::default();
        self.name.hash(&mut h);
        s.hash(&mut h);
        h.finish()
    }

    /// The memo's key of the run from a state whose [`Self::base_key`] is `base`.
    fn key(base: u64, first: u8) -> u64 {
        let mut h = KeyHasher::default();
        h.write_u64(base);
        h.write_u8(first);
        h.finish()
    }

    /// From `s`, do the fault-free runs (one giving agent A priority, one agent B) reach
    /// a converged state?
    pub fn fair_runs_converge(&self, s: &State) -> bool {
        let base = self.base_key(s);
        self.fair_run_converges(s, base, A) && self.fair_run_converges(s, base, B)
    }

    /// From `s` (whose [`Self::base_key`] is `base`), does the fault-free run reach a
    /// converged state? Memoised per thread: every state on the run gets the same answer,
    /// so the total work stays linear.
    fn fair_run_converges(&self, s: &State, base: u64, first: u8) -> bool {
        thread_local! {
            static CACHE: RefCell<HashMap<u64, bool, Keyed>> = RefCell::new(HashMap::default());
        }
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            let mut seen = Vec::new();
            let mut on_run = HashSet::<u64, Keyed>::default();
            let mut cur = s.clone();
            let mut base = base;
            let verdict = loop {
                let k = Self::key(base, first);
                if let Some(v) = cache.get(&k) {
                    break *v;
                }
                if !on_run.insert(k) {
                    break false; // cycle: livelock
                }
                seen.push(k);
                match self.fair_step(&cur, first) {
                    Some(n) => {
                        cur = n;
                        base = self.base_key(&cur);
                    }
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
        let first = if self.fair_run_converges(s, self.base_key(s), A) {
            B
        } else {
            A
        };
        let mut out = vec![s.clone()];
        let mut seen = HashSet::new();
        while let Some(n) = self.fair_step(out.last().unwrap(), first) {
            let k = Self::key(self.base_key(&n), first);
            out.push(n);
            if !seen.insert(k) || out.len() > 200 {
                break;
            }
        }
        out
    }
}

/// The hasher of the fault-free runs' memo: a state's key is its 64-bit hash (as
/// stateright's own fingerprints are). Two multiply-rotate lanes per word and a final mix:
/// several times cheaper than SipHash in a debug build, where hashing dominated the run time.
#[derive(Default)]
struct KeyHasher {
    a: u64,
    b: u64,
}

type Keyed = BuildHasherDefault<KeyHasher>;

impl KeyHasher {
    #[inline]
    fn word(&mut self, x: u64) {
        self.a = (self.a ^ x)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(31);
        self.b = (self.b.rotate_left(23) ^ x).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    }
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.word(u64::from_le_bytes(w) ^ ((chunk.len() as u64) << 56));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.word(u64::from(i) | 0x100);
    }
    fn write_u16(&mut self, i: u16) {
        self.word(u64::from(i) | 0x1_0000);
    }
    fn write_u32(&mut self, i: u32) {
        self.word(u64::from(i) | 0x1_0000_0000);
    }
    fn write_u64(&mut self, i: u64) {
        self.word(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.word(i as u64);
    }
    fn write_isize(&mut self, i: isize) {
        self.word(i as u64);
    }
    fn finish(&self) -> u64 {
        // murmur3's fmix64 of both lanes.
        let mut h = self.a ^ self.b.rotate_left(32);
        h ^= h >> 33;
        h = h.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
        h ^= h >> 33;
        h = h.wrapping_mul(0xC4CE_B9FE_1A85_EC53);
        h ^ (h >> 33)
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
    let g = &s.group;
    let marks = |m: &[bool; NV], c: char| -> String {
        m.iter().map(|b| if *b { c } else { '-' }).collect()
    };
    let mut out = format!(
        "epoch={} active={} op={:<3} last={:<3} opLease={:<7} claimedBy={} ready={}{} \
         promoted={}{}{}{} | A[{}] B[{}] |",
        g.epoch,
        cluster_name(g.active),
        g.op.map_or("-".to_string(), |o| format!("op{o}")),
        g.last_op.map_or("-".to_string(), |o| format!("op{o}")),
        if g.lease_expired { "EXPIRED" } else { "live" },
        g.claimed_by.map_or("-", cluster_name),
        marks(&g.ready, 'R'),
        if g.group_ready { " groupReady" } else { "" },
        marks(&g.promoted, 'P'),
        if g.promotion_started {
            " promotionStarted"
        } else {
            ""
        },
        if g.abort_requested { " abortReq" } else { "" },
        if g.failed { " failed" } else { "" },
        side(&s.sides[0]),
        side(&s.sides[1]),
    );
    for (i, o) in s.ops.iter().enumerate() {
        if let Some(o) = o {
            let _ = write!(
                out,
                " op{i}(e{} {}->{}{} {:?})",
                o.epoch,
                cluster_name(o.source),
                cluster_name(o.target),
                if o.force { " FORCE" } else { "" },
                o.phase,
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
