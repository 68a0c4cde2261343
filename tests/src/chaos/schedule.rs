//! The pure part of a chaos run: everything the seed decides, drawn up front with
//! `StdRng::seed_from_u64`, so one seed always replays the same operations and the same
//! faults, in the same order, at the same times relative to each operation's start.
//!
//! An operation's plan names the group it moves (to whichever cluster is not active when it
//! starts), its mode, whether it is forced, whether and when it is aborted, and its faults.
//! A fault hits the operation's source or target agent (resolved to a cluster when the
//! operation starts), at an offset from the start. The planner never lays two faults on one
//! proxy at the same time (toxiproxy refuses a second toxic of a kind, and a heal removes
//! every toxic of the proxy), nor two restarts of one agent too close together.

use std::fmt;
use std::time::Duration;

use failover_messages::records::Mode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::faults::Service;

/// A one-shot crash: the restarted agent passes one step boundary whose outcome is about to
/// be journaled and crashes at the next.
pub const CRASH_FAILPOINTS: &str = "engine::done::before=1*off->1*return(crash)";
/// DynamoDB throttling: a fifth of the agent's `UpdateItem` calls (its protocol writes and
/// lease renewals) answered `ThrottlingException`.
pub const THROTTLE_FAILPOINTS: &str = "dynamodb::UpdateItem=20%return(throttle)";

/// How long an agent restart occupies its agent in the plan (no second restart of the same
/// agent within it).
const RESTART_SPACING: Duration = Duration::from_secs(3);
/// Draws per fault before a fault that keeps colliding with the others is left out.
const DRAWS: usize = 8;

/// Which agent of an operation a fault hits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The agent of the cluster the group moves away from.
    Source,
    /// The agent of the cluster the group moves to.
    Target,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Target => "target",
        })
    }
}

/// What a fault does to its agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// The agent's link to `service` cut both ways, healed after `hold`.
    Cut { service: Service, hold: Duration },
    /// Every answer from `service` `latency` ± `jitter` late, for `hold`.
    Latency {
        service: Service,
        latency: Duration,
        jitter: Duration,
        hold: Duration,
    },
    /// SIGKILL, restarted after `down`.
    Kill { down: Duration },
    /// Killed and restarted with [`CRASH_FAILPOINTS`].
    CrashPoint,
    /// Killed and restarted with [`THROTTLE_FAILPOINTS`].
    Throttle,
    /// SQS cut from before the operation starts until it ended.
    SqsWholeOperation,
}

/// The kinds of fault, as the report counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultClass {
    /// [`FaultKind::Cut`] of DynamoDB.
    DynamoCut,
    /// [`FaultKind::Cut`] of SQS.
    SqsCut,
    /// [`FaultKind::Cut`] of the apiserver.
    ApiServerCut,
    /// [`FaultKind::Latency`].
    Latency,
    /// [`FaultKind::Kill`].
    Kill,
    /// [`FaultKind::CrashPoint`].
    CrashPoint,
    /// [`FaultKind::Throttle`].
    Throttle,
    /// [`FaultKind::SqsWholeOperation`].
    SqsWholeOperation,
}

impl FaultClass {
    /// Every class, in report order.
    pub const ALL: [FaultClass; 8] = [
        FaultClass::DynamoCut,
        FaultClass::SqsCut,
        FaultClass::ApiServerCut,
        FaultClass::Latency,
        FaultClass::Kill,
        FaultClass::CrashPoint,
        FaultClass::Throttle,
        FaultClass::SqsWholeOperation,
    ];
}

impl fmt::Display for FaultClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultClass::DynamoCut => "DynamoDB cut",
            FaultClass::SqsCut => "SQS cut",
            FaultClass::ApiServerCut => "apiserver cut",
            FaultClass::Latency => "latency with jitter",
            FaultClass::Kill => "SIGKILL, restart",
            FaultClass::CrashPoint => "restart with a one-shot crash failpoint",
            FaultClass::Throttle => "restart with DynamoDB throttling",
            FaultClass::SqsWholeOperation => "SQS cut for the whole operation",
        })
    }
}

impl FaultKind {
    /// Its class in the report.
    pub fn class(&self) -> FaultClass {
        match self {
            FaultKind::Cut {
                service: Service::Dynamo,
                ..
            } => FaultClass::DynamoCut,
            FaultKind::Cut {
                service: Service::Sqs,
                ..
            } => FaultClass::SqsCut,
            FaultKind::Cut {
                service: Service::ApiServer,
                ..
            } => FaultClass::ApiServerCut,
            FaultKind::Latency { .. } => FaultClass::Latency,
            FaultKind::Kill { .. } => FaultClass::Kill,
            FaultKind::CrashPoint => FaultClass::CrashPoint,
            FaultKind::Throttle => FaultClass::Throttle,
            FaultKind::SqsWholeOperation => FaultClass::SqsWholeOperation,
        }
    }

    /// The `FAILPOINTS` the agent is restarted with.
    pub fn failpoints(&self) -> Option<&'static str> {
        match self {
            FaultKind::CrashPoint => Some(CRASH_FAILPOINTS),
            FaultKind::Throttle => Some(THROTTLE_FAILPOINTS),
            _ => None,
        }
    }

    /// The proxy it puts toxics on and for how long (`None`: until the operation ended).
    fn proxy(&self) -> Option<(Service, Option<Duration>)> {
        match *self {
            FaultKind::Cut { service, hold } | FaultKind::Latency { service, hold, .. } => {
                Some((service, Some(hold)))
            }
            FaultKind::SqsWholeOperation => Some((Service::Sqs, None)),
            _ => None,
        }
    }

    /// How long it occupies its agent's process, when it kills the agent.
    fn restart(&self) -> Option<Duration> {
        match *self {
            FaultKind::Kill { down } => Some(down + RESTART_SPACING),
            FaultKind::CrashPoint | FaultKind::Throttle => Some(RESTART_SPACING),
            _ => None,
        }
    }
}

/// One fault of an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// When, from the operation's start.
    pub at: Duration,
    /// Whose agent.
    pub role: Role,
    /// What.
    pub kind: FaultKind,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{} {}: ", secs(self.at), self.role)?;
        match self.kind {
            FaultKind::Cut { service, hold } => {
                write!(f, "{} cut for {}", service_name(service), secs(hold))
            }
            FaultKind::Latency {
                service,
                latency,
                jitter,
                hold,
            } => write!(
                f,
                "{} answers {} ms ± {} ms late for {}",
                service_name(service),
                latency.as_millis(),
                jitter.as_millis(),
                secs(hold)
            ),
            FaultKind::Kill { down } => write!(f, "SIGKILL, restarted after {}", secs(down)),
            FaultKind::CrashPoint => write!(f, "restarted with FAILPOINTS={CRASH_FAILPOINTS}"),
            FaultKind::Throttle => write!(f, "restarted with FAILPOINTS={THROTTLE_FAILPOINTS}"),
            FaultKind::SqsWholeOperation => f.write_str("SQS cut for the whole operation"),
        }
    }
}

/// A service's name in the report.
pub fn service_name(service: Service) -> &'static str {
    match service {
        Service::Dynamo => "DynamoDB",
        Service::Sqs => "SQS",
        Service::ApiServer => "apiserver",
    }
}

/// `3.2 s`.
pub fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// One operation of the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpPlan {
    /// 1-based position in the run.
    pub index: usize,
    /// Which group (index into the run's groups).
    pub group: usize,
    /// Its mode (always CONSISTENCY when forced).
    pub mode: Mode,
    /// `--force --reason …`.
    pub force: bool,
    /// `failoverctl abort <op-id>` this long after the start.
    pub abort_after: Option<Duration>,
    /// Its faults, by time.
    pub faults: Vec<Fault>,
}

/// What a run may draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// How many groups the operations choose from.
    pub groups: usize,
    /// Faults start within this long after the operation's start.
    pub window: Duration,
    /// At most this many faults per operation, besides an SQS cut for the whole operation.
    pub max_faults: usize,
    /// The longest cut (kept well under `3L/4` of the agents' lease, so a cut never costs
    /// an agent its serving lease: a lost lease fences every active group of the cluster,
    /// and a fenced idle group waits for an operation).
    pub max_cut: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            groups: 2,
            window: Duration::from_secs(7),
            max_faults: 3,
            max_cut: Duration::from_secs(6),
        }
    }
}

/// The operations a seed decides.
pub fn plan(seed: u64, ops: usize, limits: &Limits) -> Vec<OpPlan> {
    let mut rng = StdRng::seed_from_u64(seed);
    (1..=ops).map(|i| plan_op(&mut rng, i, limits)).collect()
}

fn plan_op(rng: &mut StdRng, index: usize, limits: &Limits) -> OpPlan {
    let group = rng.random_range(0..limits.groups.max(1));
    let force = rng.random_bool(0.2);
    let uptime = rng.random_bool(0.4);
    let mode = if uptime && !force {
        Mode::Uptime
    } else {
        Mode::Consistency
    };
    let abort_after = rng.random_bool(0.2).then(|| tenths(rng, 5, 40));
    let mut faults: Vec<Fault> = Vec::new();
    if rng.random_bool(0.1) {
        faults.push(Fault {
            at: Duration::ZERO,
            role: role(rng),
            kind: FaultKind::SqsWholeOperation,
        });
    }
    let count = pick(rng, &[(2, 0), (4, 1), (3, 2), (2, 3)]).min(limits.max_faults);
    for _ in 0..count {
        let fits = (0..DRAWS)
            .map(|_| draw_fault(rng, limits))
            .find(|f| !collides(f, &faults));
        faults.extend(fits);
    }
    faults.sort_by_key(|f| f.at);
    OpPlan {
        index,
        group,
        mode,
        force,
        abort_after,
        faults,
    }
}

fn draw_fault(rng: &mut StdRng, limits: &Limits) -> Fault {
    let at = tenths(rng, 0, whole_tenths(limits.window));
    let role = role(rng);
    let max_cut = whole_tenths(limits.max_cut).max(10);
    let service = pick(
        rng,
        &[
            (1, Service::Dynamo),
            (1, Service::Sqs),
            (1, Service::ApiServer),
        ],
    );
    let kind = match pick(
        rng,
        &[(3, 0), (2, 1), (3, 2), (3, 3), (3, 4), (3, 5), (2, 6)],
    ) {
        0 => FaultKind::Cut {
            service: Service::Dynamo,
            hold: tenths(rng, 10, max_cut),
        },
        1 => FaultKind::Cut {
            service: Service::Sqs,
            hold: tenths(rng, 10, max_cut),
        },
        2 => FaultKind::Cut {
            service: Service::ApiServer,
            hold: tenths(rng, 10, max_cut),
        },
        3 => {
            let latency_ms: u64 = 50 * rng.random_range(2..=16);
            let latency = Duration::from_millis(latency_ms);
            let jitter = Duration::from_millis(10 * rng.random_range(0..=latency_ms / 20));
            FaultKind::Latency {
                service,
                latency,
                jitter,
                hold: tenths(rng, 30, 100),
            }
        }
        4 => FaultKind::Kill {
            down: tenths(rng, 5, 50),
        },
        5 => FaultKind::CrashPoint,
        _ => FaultKind::Throttle,
    };
    Fault { at, role, kind }
}

/// True when `f` would overlap a fault of `faults` on the same proxy, or restart the same
/// agent too close to another restart.
fn collides(f: &Fault, faults: &[Fault]) -> bool {
    let overlap = |a: Duration, a_len: Option<Duration>, b: Duration, b_len: Option<Duration>| {
        let a_end = a_len.map_or(Duration::MAX, |l| a + l);
        let b_end = b_len.map_or(Duration::MAX, |l| b + l);
        a <= b_end && b <= a_end
    };
    faults.iter().filter(|o| o.role == f.role).any(|o| {
        let proxies = match (f.kind.proxy(), o.kind.proxy()) {
            (Some((s1, l1)), Some((s2, l2))) => s1 == s2 && overlap(f.at, l1, o.at, l2),
            _ => false,
        };
        let restarts = match (f.kind.restart(), o.kind.restart()) {
            (Some(l1), Some(l2)) => overlap(f.at, Some(l1), o.at, Some(l2)),
            _ => false,
        };
        proxies || restarts
    })
}

fn role(rng: &mut StdRng) -> Role {
    if rng.random_bool(0.5) {
        Role::Source
    } else {
        Role::Target
    }
}

/// A duration of `lo..=hi` tenths of a second.
fn tenths(rng: &mut StdRng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(100 * rng.random_range(lo..=hi.max(lo)))
}

fn whole_tenths(d: Duration) -> u64 {
    u64::try_from(d.as_millis() / 100).unwrap_or(u64::MAX)
}

/// One of `choices`, each as likely as its weight.
fn pick<T: Copy>(rng: &mut StdRng, choices: &[(u32, T)]) -> T {
    let total: u32 = choices.iter().map(|(w, _)| w).sum();
    let mut n = rng.random_range(0..total);
    for (w, v) in choices {
        if n < *w {
            return *v;
        }
        n -= w;
    }
    choices[choices.len() - 1].1
}

// ---- the timeline of one operation -------------------------------------------------------------

/// Something the nemesis does at a time during an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Apply fault `i` of the plan.
    Apply(usize),
    /// Heal the proxy of fault `i` (a cut or latency whose hold is over).
    Heal(usize),
    /// Restart the agent fault `i` killed.
    Restart(usize),
    /// `failoverctl abort`.
    Abort,
}

impl OpPlan {
    /// Every event of the operation with its time from the start, in the order to run them
    /// (by time; at equal times in plan order, a fault's heal or restart after it).
    pub fn timeline(&self) -> Vec<(Duration, Event)> {
        let mut events = Vec::new();
        for (i, f) in self.faults.iter().enumerate() {
            events.push((f.at, Event::Apply(i)));
            match f.kind {
                FaultKind::Cut { hold, .. } | FaultKind::Latency { hold, .. } => {
                    events.push((f.at + hold, Event::Heal(i)));
                }
                FaultKind::Kill { down } => events.push((f.at + down, Event::Restart(i))),
                _ => {}
            }
        }
        events.extend(self.abort_after.map(|t| (t, Event::Abort)));
        // Stable: equal times keep the order pushed.
        events.sort_by_key(|(t, _)| *t);
        events
    }

    /// One line: group, mode, force, abort.
    pub fn describe(&self) -> String {
        let mut s = format!("group {} {}", self.group + 1, self.mode);
        if self.force {
            s.push_str(", forced");
        }
        if let Some(t) = self.abort_after {
            s.push_str(&format!(", abort at t+{}", secs(t)));
        }
        s
    }
}

#[cfg(test)]
mod tests;
