//! The state machine behind `tests/protocol_model.rs`: the handoff protocol of
//! `docs/protocol.md` (CONSISTENCY mode, abort, force, the operation lease, the agents'
//! serving leases, failures) as a `stateright` model. This file holds the state, the
//! protocol variants, the action list and the properties; `agent.rs` the transitions;
//! `report.rs` the liveness runs and the printing.
//!
//! One model state is the whole world: the DynamoDB table (the group state item with the
//! handoff of the operation in flight, the operation items), both clusters' storage and
//! workloads, both agents' in-memory state and serving leases, both SQS inboxes, the two
//! coordinators, and history variables that the properties read.
//!
//! **v2: single-item authority.** The table holds the items the product writes, with the
//! attributes its decisions read: the group state ([`Group`]: `epoch`, `activeCluster`,
//! `opId`, `lastOpId`, the operation lease, `promotionClaimedBy`, and the handoff of the
//! operation in flight: per-volume `ready` / `promoted` marks, `groupReadyAt`,
//! `promotionStartedAt`, `abortRequestedAt`, the failure mark `failedAt`) and one operation
//! item per start ([`Op`]:
//! source, target, force, epoch, phase). Every DynamoDB step below reads or writes exactly
//! the one item the product's write touches, under the product's condition:
//!
//! * start (1), the operation item: put `Pending` (new);
//! * start (2), the group state: `epoch + 1`, `opId`, the lease, `opTarget`/`opForce`, the
//!   handoff before cleared (its failure mark too), `promotionClaimedBy` kept; condition the
//!   epoch as read (a lost
//!   race re-reads and retries, so the model checks the item as it is), no live operation,
//!   unless forced `activeCluster = source` and no claim;
//! * abort, the group state: `abortRequestedAt`; `epoch`/`opId`, no `promotionClaimedBy`,
//!   no `promotionStartedAt`;
//! * READY, the group state: every volume's `ready` and `groupReadyAt`; `epoch`/`opId`, no
//!   abort, not marked, no `promotionStartedAt`;
//! * claim, the group state: `promotionClaimedBy`, `promotionStartedAt`; `epoch`/`opId`,
//!   `opTarget`, no abort, no `failedAt`, every volume ready (forced: none);
//! * PROMOTED, the group state: `epoch`/`opId`, `promotionStartedAt`;
//! * close (1), the group state (the release): `epoch`/`opId`; complete: claimed, no abort;
//!   the abort's close: abort, no claim;
//! * close (2), the operation item: its phase, `Succeeded` / `Aborted` (it exists);
//! * `Failed` (1), the group state: `failedAt`; `epoch`/`opId`, no `promotionClaimedBy`, no
//!   `promotionStartedAt`, no abort. Reads of the operation show it `Failed` from then on
//!   (unless an abort follows), as the store's reads do;
//! * `Failed` (2), the operation item: not closed (nor `Failed`); the same store call's
//!   continuation, lost with a crash.
//!
//! The abort's second write, its copy on the operation item (`abortRequestedAt`, phase
//! `Aborting`), is not a step: no decision reads it except the operation item's `Failed`
//! write, which it makes refuse. Leaving it out is the coordinator stopping right after the
//! abort's first write, which the product allows, so every operation-item `Failed` write
//! that could land after an abort lands.
//!
//! Every step is one of:
//! * a coordinator's conditional write of one item (in the list above). A coordinator
//!   is any front end (`failoverctl`, a `Failover` object, `plan`): they all ask one
//!   `decide_start`. A coordinator may stop after any of its writes (it then never acts
//!   again: P4's fault-free runs take no coordinator step), so a start that put its
//!   operation and stopped leaves a `Pending` operation no group names;
//! * an agent *deciding*: a strongly consistent re-read of DynamoDB plus its own cluster,
//!   then the next task. For a Kubernetes task the journal intent (`STARTED`, after the
//!   run's consistent check of `epoch`/`opId`) is written in the same step; for a DynamoDB
//!   write the decision is only remembered. Nothing is executed yet. A partitioned agent
//!   cannot read DynamoDB: the only thing it decides is its lease-loss fence;
//! * an agent *executing* what it decided. DynamoDB conditions are evaluated now, against
//!   whatever the item holds now, so every read-then-write gap of the real agent exists in
//!   the model (this is what exposes stale claims, stale Kubernetes changes and `Failed`
//!   marks that land late). A close's second write (the operation's phase) is the same
//!   store call's continuation: it is pending as soon as the release landed, without a new
//!   read, and a crash before it loses it (a restarted agent redoes it from `lastOpId`). A
//!   write sent before a partition may still land during it, or be lost;
//! * environment steps: kubelet starts/stops pods, an agent crashes/restarts, is cut off
//!   from AWS/heals, its serving lease lapses, the operation lease expires, SQS
//!   loses/duplicates/delivers a hint, a step runs out of time (`Fail`: the agent sends the
//!   failure mark of the group state; refused by a claim, it records nothing and retries
//!   forward).
//!
//! **The serving lease and its timing assumption.** Time is abstract. An agent's lease is
//! `leased` while it is up and connected (renewals succeed); once it is cut off or dead the
//! lease may lapse (`LeaseLapses`: `3L/4` without a successful renewal). An up agent whose
//! lease lapsed fences on its own (network off → scale 0 → pods gone → demote) without
//! DynamoDB. An observer (a forced target) concludes that a cluster's lease is over only in
//! a state where [`FailoverModel::lease_over`] holds: the lease lapsed **and the holder's
//! fence has completed** (its side fully down, no activating Kubernetes change of its own
//! still to land). That guard *is* the product's timing assumption (`L·(1+ε)+L/4` observed
//! ≥ `3L/4` held + the fence budget): every interleaving in which an observer acts before
//! the fence completed is excluded, every other one is explored. A dead agent cannot fence,
//! so the guard keeps the observer waiting until it restarts (Kubernetes restarts it well
//! within `L`) and fences or releases; a restart that cannot renew its lease fences first.
//!
//! Abstracted away (see ARCHITECTURE.md): UPTIME mode; `KeepServing` (the model is the
//! `Fence` policy) and `--source-is-down`; Flux (folded into "network off, then scale to
//! 0"); `spec.replicationState` → `status.state` lag (a demote/promote is one step, the
//! agent waits for status before its next task); original replica counts (a bool) and the
//! `Pending` → `Running` mark (descriptive; both are open phases, no decision reads the
//! difference); the history record (written with the operation's phase, read by no
//! decision); `Superseded` (best effort, descriptive: a taken-over operation's item stays
//! open); the journal's content (the agent re-derives its next task from DynamoDB and its
//! own cluster, every task is idempotent, so a restart resumes correctly); operation-lease
//! renewal (an expired operation lease stays expired until the operation ends, a superset
//! of behaviours); wall-clock time and deadlines (a step running out of time is the
//! nondeterministic `Fail`); `suspended`; heartbeat liveness as a start condition (force
//! is offered whether the source's agent is alive or not). Two clusters, one group, two
//! volumes.

use stateright::{Model, Property};

pub use crate::report::{format_trace, summary};

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
    /// Fix 1: the promotion claim is conditioned on the group state's `epoch = e AND opId =
    /// id`. As written, the claim's `epoch = e` condition was on the *operation* item, whose
    /// epoch never changes, so it was vacuous: modelled as the claim's write of the group
    /// state without its `epoch`/`opId` condition (the rest of its condition kept).
    pub claim_checks_group: bool,
    /// Fix 2a: the claim also sets `promotionClaimedBy = <target>` on the group state
    /// (removed by completion, kept by a forced start). A non-forced start requires it
    /// absent: an expired operation whose promotion was claimed cannot be taken over
    /// (after promotion only forward is offered). Given 2b and the `Entitled` fence rule
    /// this is defence in depth: the model finds no violation without it.
    pub start_blocks_claimed: bool,
    /// Fix 2b: the abort's write of the group state is also conditioned on
    /// `attribute_not_exists(promotionClaimedBy)`: an operation that took over a claimed
    /// one by force cannot be aborted either (its own `promotionStartedAt` is absent: the
    /// start removed it).
    pub abort_blocks_claimed: bool,
    /// Fix 3: on abort the `activeCluster`'s agent re-activates its side and closes the
    /// operation. As written "the source re-activates", but a forced operation's source
    /// need not be the active cluster: it promotes, fences (it is not entitled), promotes
    /// again, ... and the operation never closes.
    pub abort_reactivates_active_only: bool,
    pub fence_rule: FenceRule,
    /// Serving lease: a forced target claims only once every other cluster that may serve
    /// the group released its side (every volume READY on the group state) or its lease is
    /// over. Without it (the first protocol, and the broken variant) a forced target claims
    /// at once.
    pub force_waits_for_release: bool,
    /// The first protocol offered `--force` only while the source's agent was down.
    pub force_needs_source_down: bool,
    /// Broken: the observer concludes "lease over" as soon as the holder's lease lapsed,
    /// before the holder's fence completed (the timing assumption does not hold).
    pub broken_observer_ignores_fence: bool,
    /// Broken: the agent whose step ran out of time records `Failed` on the operation item
    /// without any check for a claim, so a `Failed` mark lands while the group holds a
    /// claim. A `Failed` operation's runs stop (the product's runner runs no closed phase,
    /// and the close refuses it): the target stops half-way, abort is refused, only a
    /// forced start gets the group out.
    pub broken_failed_stops_claimed: bool,
    /// Broken (the product before the failure mark moved to the group state): the agent
    /// reads the group state and, without a claim, marks the operation item alone `Failed`;
    /// the claim does not look at it. The mark decided on the read can land after a claim
    /// made meanwhile: the group holds a claim while its operation is `Failed`.
    pub broken_failed_mark_on_operation_only: bool,
    /// Broken: the source marks each volume `READY_FOR_PROMOTION` in its own write of the
    /// group state item as it demotes it, and the target claims as soon as it sees one
    /// (its claim names the volumes it saw ready): no atomic handoff.
    pub broken_non_atomic_ready: bool,
    /// Broken: abort without its conditions on the claim (`promotionStartedAt`,
    /// `promotionClaimedBy`; `epoch`/`opId` kept).
    pub broken_abort_ignores_claim: bool,
    /// Broken: the source demotes without waiting for the pods to be gone.
    pub broken_demote_before_pods_gone: bool,
    /// Broken: the target scales up before its volumes are Primary.
    pub broken_scale_up_before_promote: bool,
    /// Broken: a close whose phase write was lost after the release is not redone (no run
    /// looks for `lastOpId`): the operation item stays open, without its history record.
    pub broken_close_not_resumed: bool,
}

impl Protocol {
    pub const fn fixed() -> Self {
        Protocol {
            claim_checks_group: true,
            start_blocks_claimed: true,
            abort_blocks_claimed: true,
            abort_reactivates_active_only: true,
            fence_rule: FenceRule::Entitled,
            force_waits_for_release: true,
            force_needs_source_down: false,
            broken_observer_ignores_fence: false,
            broken_failed_stops_claimed: false,
            broken_failed_mark_on_operation_only: false,
            broken_non_atomic_ready: false,
            broken_abort_ignores_claim: false,
            broken_demote_before_pods_gone: false,
            broken_scale_up_before_promote: false,
            broken_close_not_resumed: false,
        }
    }

    /// The fixed protocol as it stood before the serving lease: `--force` only while the
    /// source's agent is down, and its target claims at once.
    pub const fn before_lease() -> Self {
        Protocol {
            force_waits_for_release: false,
            force_needs_source_down: true,
            ..Protocol::fixed()
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
            ..Protocol::before_lease()
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
    /// Partitions (cut off from AWS) per agent (heals are unbounded).
    pub partitions: [u8; 2],
    /// How many times the operation lease may expire in one run.
    pub lease_expiries: u8,
    /// How many steps (of the source or the target) may run out of time (`Fail`) in one
    /// run. The source's last step waits for the operation to close, so its deadline can
    /// run out while the target claims.
    pub failures: u8,
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

/// The operation item's `phase`. `Pending` stands for `Pending` and `Running` (the product
/// marks `Running` on the operation item alone; no decision reads the difference).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Open: put by the start (named by the group state once the start's second write
    /// landed, else a leftover nobody reads).
    Pending,
    /// A step ran out of time (the second write of `fail_operation`, conditioned on this item
    /// alone; the group state's `failedAt` decides, see [`State::reads_failed`]). Closed for
    /// the runner: no forward run starts, and the close as `Succeeded` refuses it; an abort
    /// (rollback) still closes it as `Aborted`.
    Failed,
    /// Closed (the close's second write, after the group state released the group).
    Succeeded,
    Aborted,
}

impl Phase {
    /// `Succeeded` or `Aborted`: the close's phase write landed.
    pub fn closed(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Aborted)
    }
}

/// Operation item `OP#<id>` / `OP`. `epoch` is the epoch the start gives the group: the
/// product puts the item with the epoch it asks for and puts it again when a retry asks
/// for another; the model writes it with the group-state write (0 before: nothing reads a
/// `Pending` item no group names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub epoch: u8,
    pub source: u8,
    pub target: u8,
    pub force: bool,
    pub phase: Phase,
}

/// Group state `GROUP#<ns>/<name>` / `STATE`, with the handoff of the operation in flight
/// (kept after its close until the next start clears it). The operation lease is either
/// live or expired; renewals are not modelled (they only remove behaviours: an expired
/// lease stays expired until the operation ends, so takeovers are possible at any later
/// moment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Group {
    pub epoch: u8,
    pub active: u8,
    /// `opId`: the operation in flight.
    pub op: Option<u8>,
    /// `lastOpId`: the operation the last close released (a resumed close finds it).
    pub last_op: Option<u8>,
    pub lease_expired: bool,
    /// `promotionClaimedBy` (fix 2): set by a successful claim, removed by completion, kept
    /// by a forced start.
    pub claimed_by: Option<u8>,
    /// `ready.<volume>`: the source's `READY_FOR_PROMOTION`.
    pub ready: [bool; NV],
    /// `groupReadyAt`: the source handed the whole group off (same write as `ready`).
    pub group_ready: bool,
    /// `promotionStartedAt`: the claim of the operation in flight.
    pub promotion_started: bool,
    /// `promoted.<volume>`: the target's `PROMOTED`.
    pub promoted: [bool; NV],
    /// `abortRequestedAt`.
    pub abort_requested: bool,
    /// `failedAt`: the failure mark, only before a claim and without an abort (cleared by
    /// the next start).
    pub failed: bool,
}

impl Group {
    /// Every volume marked `READY_FOR_PROMOTION` (for this operation: the start cleared the
    /// marks of the one before).
    pub fn all_ready(&self) -> bool {
        self.ready.iter().all(|r| *r)
    }
    /// The group holds a claim while the operation is in flight (its own
    /// `promotionStartedAt`, or a `promotionClaimedBy` a forced start kept): the failure
    /// mark's condition (and the read the broken variants decide on).
    pub fn claimed(&self) -> bool {
        self.promotion_started || self.claimed_by.is_some()
    }
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
    // DynamoDB, the group state item.
    WriteReady,
    /// Broken variant: one volume's `READY_FOR_PROMOTION` in its own write.
    WriteReadyVol(u8),
    /// The claim, naming the volumes whose `ready` mark it requires (none: forced, or a
    /// group marked ready as a whole).
    Claim([bool; NV]),
    MarkPromoted,
    Complete,
    CloseAborted,
    /// `fail_operation`'s first write: the failure mark (`failedAt`).
    MarkFailedGroup,
    // DynamoDB, the operation item (descriptive: no decision of another cluster rests on
    // them, except that a `Failed` operation is not run forward).
    /// The operation item's `Failed` (`fail_operation`'s second write; alone in the broken
    /// variants).
    MarkFailed,
    /// The close's second write: the operation's phase (with its history record).
    RecordClose(Phase),
}

impl Step {
    pub fn is_k8s(self) -> bool {
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
    pub fn is_fencing_kind(self) -> bool {
        matches!(self, Step::NetOff | Step::ScaleDown | Step::Demote(_))
    }
    /// Writes of the operation item alone, which carry no authority.
    pub fn is_descriptive(self) -> bool {
        matches!(self, Step::MarkFailed | Step::RecordClose(_))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pending {
    pub step: Step,
    /// The operation and epoch the agent is working for (`None` while fencing).
    pub op: Option<u8>,
    pub epoch: u8,
    /// A step of the fence on lease loss (history only: the protocol never reads it).
    pub lease_loss: bool,
}

/// The agent process. Only `pending` is in-memory; everything else it re-reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Agent {
    pub up: bool,
    /// Reaches AWS (DynamoDB, SQS). Its Kubernetes API is always reachable.
    pub connected: bool,
    /// Holds its serving lease: renewals succeed while it is up and connected; once cut
    /// off (or dead) the lease may lapse.
    pub leased: bool,
    pub pending: Option<Pending>,
    pub crashes_left: u8,
    pub partitions_left: u8,
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

/// A coordinator's start. Coordinator `c`'s operation is operation item `c`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordStart {
    NotYet,
    /// The operation item is put (`Pending`); the group-state write is next.
    Put,
    /// The group-state write landed: the group names the operation.
    Started,
    /// The group-state write was refused; the `Pending` item is deleted.
    Rejected(Reject),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CoordAbort {
    NotYet,
    /// The group-state write landed.
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
    /// Side X was (partly) fenced by its agent's lease loss and has not served fully since.
    pub lease_fenced: [bool; 2],
    /// A forced claim relied on the source's lease being over (not on its release).
    pub forced_on_lease: bool,
    /// A forced claim relied on the alive source's release.
    pub forced_on_release: bool,
    /// A write sent before a partition landed during it.
    pub late_write: bool,
    /// A step ran out of time after the claim (nothing recorded: only forward).
    pub failed_after_claim: bool,
    /// A failure mark sent before the claim landed after it and was refused.
    pub failure_overtaken: bool,
    /// A claim decided before the failure mark landed after it and was refused.
    pub claim_refused_by_failure: bool,
    /// An abort was granted for an operation whose item reads `Failed`.
    pub failed_aborted: bool,
    /// A start took over an operation whose lease expired.
    pub took_over: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct State {
    pub group: Group,
    pub ops: [Option<Op>; MAX_OPS],
    pub sides: [Side; 2],
    pub agents: [Agent; 2],
    pub coords: [Coord; 2],
    pub lease_expiries_left: u8,
    pub failures_left: u8,
    pub dups_left: u8,
    pub hist: History,
}

impl State {
    pub fn op(&self, o: u8) -> &Op {
        self.ops[o as usize].as_ref().expect("op exists")
    }
    /// The operation whose handoff the group state carries: the one in flight, else the one
    /// the last close released.
    pub fn handoff_op(&self) -> Option<&Op> {
        self.group.op.or(self.group.last_op).map(|o| self.op(o))
    }
    /// The operation in flight reads `Failed`: its item says so, or the group state carries
    /// its failure mark and no abort (the store's reads overlay the mark on the item).
    pub fn reads_failed(&self) -> bool {
        self.current().is_some_and(|(_, op)| {
            op.phase == Phase::Failed || (self.group.failed && !self.group.abort_requested)
        })
    }
    /// The close of the operation the group released last is written on its item too.
    pub fn close_recorded(&self) -> bool {
        self.group.op.is_some() || self.group.last_op.is_none_or(|o| self.op(o).phase.closed())
    }
    pub fn op_mut(&mut self, o: u8) -> &mut Op {
        self.ops[o as usize].as_mut().expect("op exists")
    }
    /// The operation in flight, if any.
    pub fn current(&self) -> Option<(u8, &Op)> {
        self.group.op.map(|o| (o, self.op(o)))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Coordinator `coord` (any front end) starts `failover --to target [--force]`: its
    /// read and `decide_start`, then the put of the operation item (`Pending`).
    Start {
        coord: u8,
        target: u8,
        force: bool,
    },
    /// The start's write of the group state (its re-read and retries included).
    TakeGroup {
        coord: u8,
    },
    /// Coordinator `coord` runs `failoverctl abort` on its operation: the group state.
    Abort {
        coord: u8,
    },
    /// The operation lease (`leaseExpiresAt` on the group state) expires.
    LeaseExpires,
    Crash(u8),
    Restart(u8),
    /// The agent is cut off from AWS (its Kubernetes API still answers).
    Partition(u8),
    Heal(u8),
    /// `3L/4` without a successful renewal: the serving lease of a cut-off agent (a dead
    /// one loses it when it crashes).
    LeaseLapses(u8),
    /// A DynamoDB write sent before the partition is lost.
    DropWrite(u8),
    /// The agent's current step runs out of time: it sends the failure mark of the group
    /// state (the broken variants: it marks the operation item).
    Fail(u8),
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
// Model + properties
// ---------------------------------------------------------------------------------------

pub const P1_DUAL_PRIMARY: &str = "P1 no volume Primary on both sides, ever";
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
pub const W_FORCED_ON_LEASE: &str = "W a forced target claims after the source's lease is over";
pub const W_FORCED_ON_RELEASE: &str = "W a forced target claims after the alive source released";
pub const W_LEASE_FENCE_PARKED: &str =
    "W a lease-loss fence leaves the idle active cluster down for an operator";
pub const W_LATE_WRITE: &str = "W a write sent before a partition lands during it";
pub const W_FAILED_AFTER_CLAIM: &str =
    "W a step times out after the claim (not marked Failed) and the operation completes";
pub const W_FAILED_ABORTED: &str = "W a Failed operation (no claim) is aborted and rolled back";
pub const W_FAILED_AFTER_ABORT: &str = "W the operation item's Failed lands after the abort's write \
     (the failure mark before it; the operation item does not show the abort)";
pub const W_FAILURE_OVERTAKEN: &str =
    "W a failure mark sent before the claim is refused by it and the operation completes";
pub const W_CLAIM_REFUSED_BY_FAILURE: &str =
    "W a claim decided before the failure mark is refused by it";
pub const W_CLOSE_LOST: &str =
    "W the group is released but the close's phase write was lost (P4: a later run redoes it)";

fn dual_primary_ok(_: &FailoverModel, s: &State) -> bool {
    let [a, b] = &s.sides;
    (0..NV).all(|v| !(a.primary[v] && b.primary[v]))
}
fn pods_on_primary(_: &FailoverModel, s: &State) -> bool {
    s.sides
        .iter()
        .all(|x| !x.pods || x.primary.iter().all(|p| *p))
}
fn ops(s: &State) -> impl Iterator<Item = &Op> {
    s.ops.iter().flatten()
}

impl FailoverModel {
    /// Whether a front end offers `ch` now: the first protocol offered `--force` only with
    /// the source's agent down.
    pub fn start_offered(&self, s: &State, ch: &StartChoice) -> bool {
        !(ch.force
            && self.protocol.force_needs_source_down
            && s.agents[(1 - ch.target) as usize].up)
    }
}

impl Model for FailoverModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let agent = |x: usize| Agent {
            up: true,
            connected: true,
            leased: true,
            pending: None,
            crashes_left: self.bounds.crashes[x],
            partitions_left: self.bounds.partitions[x],
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
                last_op: None,
                lease_expired: false,
                claimed_by: None,
                ready: [false; NV],
                group_ready: false,
                promotion_started: false,
                promoted: [false; NV],
                abort_requested: false,
                failed: false,
            },
            ops: [None; MAX_OPS],
            sides: [Side::serving(), Side::standby()],
            agents: [agent(0), agent(1)],
            coords: [coord; 2],
            lease_expiries_left: self.bounds.lease_expiries,
            failures_left: self.bounds.failures,
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
                        if !self.start_offered(s, ch) {
                            continue;
                        }
                        out.push(Action::Start {
                            coord: c,
                            target: ch.target,
                            force: ch.force,
                        });
                    }
                }
                CoordStart::Put => out.push(Action::TakeGroup { coord: c }),
                CoordStart::Started => {
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
                if a.connected && a.partitions_left > 0 {
                    out.push(Action::Partition(x));
                }
                if let Some(p) = a.pending {
                    out.push(Action::Execute(x));
                    if !a.connected && !p.step.is_k8s() {
                        out.push(Action::DropWrite(x));
                    }
                } else {
                    out.push(Action::Timer(x));
                    if a.connected && a.inbox > 0 {
                        out.push(Action::Deliver(x));
                    }
                    if a.connected && s.failures_left > 0 && self.may_fail(s, x) {
                        out.push(Action::Fail(x));
                    }
                }
            } else {
                out.push(Action::Restart(x));
            }
            if !a.connected {
                out.push(Action::Heal(x));
            }
            if a.leased && a.up && !a.connected {
                out.push(Action::LeaseLapses(x));
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
                m.coordinators_quiet(s) && FailoverModel::settled(s)
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
                // Released by the abort's close with every READY mark on the group state.
                let g = &s.group;
                g.op.is_none() && g.last_op.is_some() && g.abort_requested && g.all_ready()
            }),
            Property::sometimes(W_ABORT_LOSES, |_: &FailoverModel, s: &State| {
                s.coords.iter().any(|c| c.abort == CoordAbort::Rejected)
            }),
            Property::sometimes(W_RACE_LOST, |_: &FailoverModel, s: &State| {
                s.coords
                    .iter()
                    .any(|c| c.start == CoordStart::Rejected(Reject::InFlight))
            }),
            Property::sometimes(W_TAKEOVER, |_: &FailoverModel, s: &State| s.hist.took_over),
            Property::sometimes(W_FORCED, |_: &FailoverModel, s: &State| {
                s.group.promotion_started && s.handoff_op().is_some_and(|o| o.force)
            }),
            Property::sometimes(W_FENCED, |_: &FailoverModel, s: &State| {
                s.hist.fenced_after_restart
            }),
            Property::sometimes(W_CRASH_RESUME, |_: &FailoverModel, s: &State| {
                s.hist.target_crashed_after_claim && ops(s).any(|o| o.phase == Phase::Succeeded)
            }),
            Property::sometimes(W_FORCED_ON_LEASE, |_: &FailoverModel, s: &State| {
                s.hist.forced_on_lease
            }),
            Property::sometimes(W_FORCED_ON_RELEASE, |_: &FailoverModel, s: &State| {
                s.hist.forced_on_release
            }),
            Property::sometimes(W_LEASE_FENCE_PARKED, |_: &FailoverModel, s: &State| {
                FailoverModel::parked_by_lease(s) && !FailoverModel::converged(s)
            }),
            Property::sometimes(W_LATE_WRITE, |_: &FailoverModel, s: &State| {
                s.hist.late_write
            }),
            Property::sometimes(W_FAILED_AFTER_CLAIM, |_: &FailoverModel, s: &State| {
                s.hist.failed_after_claim && ops(s).any(|o| o.phase == Phase::Succeeded)
            }),
            Property::sometimes(W_FAILURE_OVERTAKEN, |_: &FailoverModel, s: &State| {
                s.hist.failure_overtaken && ops(s).any(|o| o.phase == Phase::Succeeded)
            }),
            Property::sometimes(
                W_CLAIM_REFUSED_BY_FAILURE,
                |_: &FailoverModel, s: &State| s.hist.claim_refused_by_failure,
            ),
            Property::sometimes(W_FAILED_AFTER_ABORT, |_: &FailoverModel, s: &State| {
                // `failed_aborted` records an abort granted for an operation whose item
                // already read `Failed`.
                s.group.abort_requested
                    && s.current().is_some_and(|(_, op)| op.phase == Phase::Failed)
                    && !s.hist.failed_aborted
            }),
            Property::sometimes(W_CLOSE_LOST, |_: &FailoverModel, s: &State| {
                !s.close_recorded()
                    && !s
                        .agents
                        .iter()
                        .any(|a| matches!(a.pending, Some(p) if p.step.is_descriptive()))
            }),
            Property::sometimes(W_FAILED_ABORTED, |_: &FailoverModel, s: &State| {
                s.hist.failed_aborted && ops(s).any(|o| o.phase == Phase::Aborted)
            }),
        ];
        props.extend(all.into_iter().filter(|p| self.witnesses.contains(&p.name)));
        props
    }
}
