//! Whether an operation may start: protocol rule 1 and the checks every front end makes
//! before it asks for the conditional start.
//!
//! One function, [`decide_start`], answers for `failoverctl failover`, `failoverctl plan`,
//! the `Failover` trigger in the agents and the store's own re-check right before its
//! conditional write. Each front end gathers what it can observe ([`Observed`]), asks, and
//! renders the answer: a [`StartPlan`] (with notes worth showing) or the [`Refusal`]s, each
//! naming the group, the cluster it is about and why. `plan` shows every refusal, the others
//! the first; whether a start is refused is the same for all.
//!
//! What is not observed is not checked: the store re-checks the group state right before its
//! write but reads no heartbeats ([`AgentSeen::NotRead`]), and its conditional write is what
//! makes rule 1 hold under races. The checks, in the order their refusals are listed:
//!
//! 1. the target cluster is known (it has an inbox queue);
//! 2. the group is registered;
//! 3. the request's source is the active cluster (only when the request names one, as the
//!    store's re-check does; a forced request need not);
//! 4. the target is not already the active cluster (unless another cluster holds a claimed
//!    promotion: then a forced start back to it is the way out);
//! 5. the group is not suspended;
//! 6. no operation is in flight, or its lease expired (then the new one takes over);
//! 7. no promotion is claimed and not completed (only forward, or a forced start);
//! 8. not forced: the source's agent is alive (a CONSISTENCY handoff needs it). Forced: the
//!    source's last lease record does not say it keeps serving the group when it loses
//!    DynamoDB (`onCoordinationLoss: KeepServing`) — while that lease is live a forced start is
//!    refused, and once it is stale only the human's word that the source is down
//!    (`source_is_down`) lets it start. Under the default `Fence` a forced start is accepted
//!    with the source alive or not: the target promotes only after the source released its
//!    side or its lease is certainly over ([`super::lease`]);
//! 9. the target's agent is alive (nobody would promote).
//!
//! Agent liveness is judged from the heartbeat record's expiry against `now`, the reader's
//! clock: it decides whether to refuse a request, never the safety of the data (that rests on
//! the conditional writes and the entitlement rule).

use std::fmt;

use jiff::Timestamp;

use crate::keys::GroupRef;
use crate::records::{GroupState, Heartbeat};

/// What a front end observed of a cluster's agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentSeen<'a> {
    /// Not read (the store's re-check): liveness is not checked.
    NotRead,
    /// No heartbeat record: the agent never ran against this table.
    Missing,
    /// The heartbeat record as read.
    Seen(&'a Heartbeat),
}

impl<'a> AgentSeen<'a> {
    /// From a heartbeat read (`None`: no record).
    pub fn read(hb: Option<&'a Heartbeat>) -> Self {
        hb.map_or(Self::Missing, Self::Seen)
    }

    /// `Some(true)` when the heartbeat is fresh at `now`, `Some(false)` when it is missing or
    /// stale, `None` when not read.
    fn alive(self, now: Timestamp) -> Option<bool> {
        match self {
            Self::NotRead => None,
            Self::Missing => Some(false),
            Self::Seen(hb) => Some(hb.expires_at >= now),
        }
    }
}

/// What a front end observed before asking.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// The group state (`None`: not registered), read consistently.
    pub state: Option<&'a GroupState>,
    /// Whether the target cluster is known (its inbox queue exists); `None`: not checked.
    pub target_known: Option<bool>,
    /// The heartbeat of the group's active cluster.
    pub source_agent: AgentSeen<'a>,
    /// The heartbeat of the target cluster.
    pub target_agent: AgentSeen<'a>,
}

/// What is asked.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The group.
    pub group: &'a GroupRef,
    /// The cluster the group should move to.
    pub target: &'a str,
    /// The source the request was made for; `None`: whichever cluster is active.
    pub source: Option<&'a str>,
    /// Forced: the source cannot take part.
    pub force: bool,
    /// The id of the operation to start (a repeated start of the operation in flight is not
    /// refused: it is the same start).
    pub op_id: Option<&'a str>,
    /// Forced, and the human vouches that the source is down (needed for a group its
    /// cluster keeps serving when it loses DynamoDB).
    pub source_is_down: bool,
}

/// The start to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartPlan {
    /// The group's active cluster, the operation's source.
    pub source: String,
    /// The epoch the start is conditioned on (the new operation gets `epoch + 1`).
    pub from_epoch: u64,
    /// The operation whose lease expired and which the start takes over, if any.
    pub takes_over: Option<String>,
    /// Worth showing, not refusing (a takeover, a forced start past a claim or a down source).
    pub notes: Vec<String>,
}

/// Why a start is refused, with what names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// The target has no inbox queue.
    UnknownCluster,
    /// The group has no state record.
    NotRegistered,
    /// The target is the active cluster already.
    AlreadyActive,
    /// The group is suspended.
    Suspended,
    /// Another operation holds the group and its lease is live.
    InFlight {
        /// The operation.
        op_id: String,
        /// Who holds its lease.
        holder: String,
        /// When the lease expires unless renewed.
        expires: Timestamp,
    },
    /// Another start committed between the read and the write (reported by the store only).
    LostRace {
        /// The operation that won.
        op_id: String,
        /// Who holds its lease.
        holder: String,
        /// When the lease expires unless renewed.
        expires: Timestamp,
    },
    /// A promotion was claimed and not completed: only forward, or a forced start.
    PromotionClaimed {
        /// The cluster that claimed it.
        claimed_by: String,
        /// The operation still in flight, if any.
        op_id: Option<String>,
    },
    /// The request was made for a source that is no longer the active cluster.
    NotActive {
        /// The active cluster.
        active: String,
    },
    /// Forced, but the source's agent is alive and keeps serving the group when it loses
    /// DynamoDB (`onCoordinationLoss: KeepServing`).
    SourceAlive {
        /// When its heartbeat was written.
        last_seen: Timestamp,
    },
    /// Forced, the source's lease is stale, but the source keeps serving the group when it
    /// loses DynamoDB and nobody vouched that it is down.
    SourceMayServe {
        /// Its last heartbeat.
        last: Heartbeat,
    },
    /// Not forced, but the source's agent is not alive.
    SourceDown {
        /// Its last heartbeat, if any.
        last: Option<Heartbeat>,
    },
    /// The target's agent is not alive.
    TargetDown {
        /// Its last heartbeat, if any.
        last: Option<Heartbeat>,
    },
}

/// [`Refusal::reason`] of an unregistered group: the one refusal a `Failover` trigger treats
/// as not final (the group may be registered later, or in another agent's table).
pub const REASON_NOT_REGISTERED: &str = "GroupNotRegistered";

/// A refused start: the group, the cluster the reason is about, and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The group.
    pub group: GroupRef,
    /// The cluster the reason is about (the target, the active cluster or the claimant);
    /// empty when it comes from a store answer that names none
    /// ([`StartOutcome::refusal`](crate::store::StartOutcome::refusal)).
    pub cluster: String,
    /// Why.
    pub blocker: Blocker,
}

impl Refusal {
    /// A short CamelCase reason, for a condition or an event (`OperationInFlight`).
    pub fn reason(&self) -> &'static str {
        match self.blocker {
            Blocker::UnknownCluster => "UnknownCluster",
            Blocker::NotRegistered => REASON_NOT_REGISTERED,
            Blocker::AlreadyActive => "AlreadyActive",
            Blocker::Suspended => "Suspended",
            Blocker::InFlight { .. } | Blocker::LostRace { .. } => "OperationInFlight",
            Blocker::PromotionClaimed { .. } => "PromotionClaimed",
            Blocker::NotActive { .. } => "NotActive",
            Blocker::SourceAlive { .. } => "SourceAgentAlive",
            Blocker::SourceMayServe { .. } => "SourceMayBeServing",
            Blocker::SourceDown { .. } => "SourceAgentDown",
            Blocker::TargetDown { .. } => "TargetAgentDown",
        }
    }

    /// Why, in words naming the cluster (and the holder, the claimant, the times); without
    /// the group, which the front end puts where it belongs.
    pub fn message(&self) -> String {
        let c = &self.cluster;
        match &self.blocker {
            Blocker::UnknownCluster => {
                format!(
                    "unknown cluster {c}: it has no inbox queue (set it up with `failoverctl setup --cluster {c}`)"
                )
            }
            Blocker::NotRegistered => format!(
                "the group is not registered (register it with `failoverctl register {} --active <cluster>`)",
                self.group
            ),
            Blocker::AlreadyActive => {
                format!("{c} is already the active cluster; there is nothing to fail over")
            }
            Blocker::Suspended => {
                "the group is suspended (no operation may start until it is resumed)".to_owned()
            }
            Blocker::InFlight {
                op_id,
                holder,
                expires,
            } => format!(
                "operation {op_id} is in flight, its lease held by {holder} until {expires} \
                 (watch it with `failoverctl watch {op_id}`)"
            ),
            Blocker::LostRace {
                op_id,
                holder,
                expires,
            } => format!(
                "another start won the race: operation {op_id} is in flight, its lease held by \
                 {holder} until {expires}"
            ),
            Blocker::PromotionClaimed { op_id, .. } => format!(
                "promotion already claimed by {c}{}; only forward is possible (let it finish, \
                 or start a forced failover with a reason)",
                op_id
                    .as_ref()
                    .map(|id| format!(" in operation {id}"))
                    .unwrap_or_default()
            ),
            Blocker::NotActive { .. } => {
                format!("the active cluster is now {c}; ask again to fail over from {c}")
            }
            Blocker::SourceAlive { last_seen } => format!(
                "the agent of {c} is alive (heartbeat at {last_seen}) and keeps serving the \
                 group when it loses DynamoDB (onCoordinationLoss: KeepServing); a forced \
                 failover would not wait for it: fail over without force (its agent hands the \
                 volumes off), or stop that agent first"
            ),
            Blocker::SourceMayServe { last } => format!(
                "{}, but it keeps serving the group when it loses DynamoDB \
                 (onCoordinationLoss: KeepServing), so it may still be serving: make sure {c} \
                 is down, then force again with --source-is-down",
                agent_down("source", c, Some(last))
            ),
            Blocker::SourceDown { last } => format!(
                "{}; its agent must hand the volumes off (if {c} is down, fail over with force \
                 and a reason)",
                agent_down("source", c, last.as_ref())
            ),
            Blocker::TargetDown { last } => format!(
                "{}; nobody would promote the volumes there (start its failover-agent first)",
                agent_down("target", c, last.as_ref())
            ),
        }
    }
}

fn agent_down(role: &str, cluster: &str, last: Option<&Heartbeat>) -> String {
    match last {
        None => format!("{role} {cluster} has no agent heartbeat (is its failover-agent running?)"),
        Some(h) => format!(
            "{role} {cluster}'s agent heartbeat is stale (last seen {}, expired {})",
            h.last_seen, h.expires_at
        ),
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.group, self.message())
    }
}

/// Every check of the module docs at `now`: the plan when nothing refuses, else every refusal
/// in the documented order (the first is the one to report when only one is shown).
pub fn decide_start(
    observed: &Observed<'_>,
    request: &Request<'_>,
    now: Timestamp,
) -> Result<StartPlan, Vec<Refusal>> {
    let mut d = Decision {
        request,
        refusals: Vec::new(),
        notes: Vec::new(),
    };
    if observed.target_known == Some(false) {
        d.refuse(request.target, Blocker::UnknownCluster);
    }
    let Some(state) = observed.state else {
        d.refuse(request.target, Blocker::NotRegistered);
        return Err(d.refusals);
    };
    let takes_over = d.check_group_state(state, now);
    d.check_agents(observed, &state.active_cluster, now);
    if d.refusals.is_empty() {
        Ok(StartPlan {
            source: state.active_cluster.clone(),
            from_epoch: state.epoch,
            takes_over,
            notes: d.notes,
        })
    } else {
        Err(d.refusals)
    }
}

/// The refusals and notes gathered so far, in the documented order.
struct Decision<'r, 'a> {
    request: &'r Request<'a>,
    refusals: Vec<Refusal>,
    notes: Vec<String>,
}

impl Decision<'_, '_> {
    fn refuse(&mut self, cluster: &str, blocker: Blocker) {
        self.refusals.push(Refusal {
            group: self.request.group.clone(),
            cluster: cluster.to_owned(),
            blocker,
        });
    }

    /// Checks 3–7 on the group state; the operation a start would take over, if any.
    fn check_group_state(&mut self, state: &GroupState, now: Timestamp) -> Option<String> {
        let req = self.request;
        let active = state.active_cluster.as_str();
        // A repeated start of the operation in flight is the same start, not a new one.
        let same_op = req.op_id.is_some() && state.op_id.as_deref() == req.op_id;
        if same_op {
            return None;
        }
        if req.source.is_some_and(|source| source != active) && !req.force {
            let active = active.to_owned();
            self.refuse(
                &active,
                Blocker::NotActive {
                    active: active.clone(),
                },
            );
        }
        // The target is entitled already: active, and no other cluster holds a claimed
        // promotion (a forced start back to the active cluster past another's claim is a
        // way out).
        let claimed_by = state.promotion_claimed_by.as_deref();
        if active == req.target && claimed_by.is_none_or(|by| by == req.target) {
            self.refuse(req.target, Blocker::AlreadyActive);
        }
        if state.suspended {
            self.refuse(active, Blocker::Suspended);
        }
        let takes_over = state
            .op_id
            .as_ref()
            .and_then(|op_id| self.check_in_flight(op_id, state, now));
        match claimed_by {
            Some(by) if req.force => self.notes.push(format!(
                "promotion claimed by {by}; a forced start keeps the claim"
            )),
            Some(by) => self.refuse(
                by,
                Blocker::PromotionClaimed {
                    claimed_by: by.to_owned(),
                    op_id: state.op_id.clone(),
                },
            ),
            None => {}
        }
        takes_over
    }

    /// An operation in flight refuses while its lease is live; an expired one is taken over.
    fn check_in_flight(
        &mut self,
        op_id: &str,
        state: &GroupState,
        now: Timestamp,
    ) -> Option<String> {
        match &state.lease {
            Some(l) if l.expires_at < now => {
                self.notes.push(format!(
                    "operation {op_id} is stalled (lease of {} expired at {}); this start takes it over",
                    l.holder, l.expires_at
                ));
                Some(op_id.to_owned())
            }
            lease => {
                let (holder, expires) = lease.as_ref().map_or_else(
                    || ("(no lease recorded)".to_owned(), Timestamp::MAX),
                    |l| (l.holder.clone(), l.expires_at),
                );
                self.refuse(
                    &state.active_cluster,
                    Blocker::InFlight {
                        op_id: op_id.to_owned(),
                        holder,
                        expires,
                    },
                );
                None
            }
        }
    }

    /// Checks 8–9: the source's agent (alive for a handoff; for force, what its lease says
    /// about the group) and the target's agent (alive).
    fn check_agents(&mut self, observed: &Observed<'_>, active: &str, now: Timestamp) {
        let req = self.request;
        let seen = observed.source_agent;
        let keeps_serving = heartbeat(seen).is_some_and(|hb| {
            let group = req.group.to_string();
            hb.keep_serving.contains(&group)
        });
        match (seen, seen.alive(now)) {
            (AgentSeen::Seen(hb), Some(true)) if req.force && keeps_serving => self.refuse(
                active,
                Blocker::SourceAlive {
                    last_seen: hb.last_seen,
                },
            ),
            (_, Some(true)) if req.force => self.notes.push(format!(
                "the agent of {active} is alive: forced, so it shuts its side down and releases \
                 it without waiting for the handoff, and the target promotes only after that \
                 (or after its lease is certainly over)"
            )),
            (AgentSeen::Seen(hb), Some(false))
                if req.force && keeps_serving && !req.source_is_down =>
            {
                self.refuse(active, Blocker::SourceMayServe { last: hb.clone() })
            }
            (seen, Some(false)) if req.force => self.notes.push(format!(
                "{}; forced, so the target promotes without its handoff once its lease is \
                 certainly over{}",
                agent_down("source", active, heartbeat(seen)),
                if req.source_is_down {
                    " (or at once: the source is vouched down)"
                } else {
                    ""
                }
            )),
            (seen, Some(false)) => self.refuse(
                active,
                Blocker::SourceDown {
                    last: heartbeat(seen).cloned(),
                },
            ),
            _ => {}
        }
        if observed.target_agent.alive(now) == Some(false) {
            self.refuse(
                req.target,
                Blocker::TargetDown {
                    last: heartbeat(observed.target_agent).cloned(),
                },
            );
        }
    }
}

fn heartbeat(seen: AgentSeen<'_>) -> Option<&Heartbeat> {
    match seen {
        AgentSeen::Seen(hb) => Some(hb),
        AgentSeen::NotRead | AgentSeen::Missing => None,
    }
}

#[cfg(test)]
mod tests;
