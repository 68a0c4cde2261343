//! The agent's actors: the SQS inbox and the operation runner (the serving lease is in
//! [`super::lease`]).
//!
//! Each actor is only a mailbox and a bit of state; every decision is a plain function
//! ([`operations_in_flight`], [`to_start`], [`run_result`], [`message_outcome`]) and other
//! components reach an actor through a [`seam::Sender`](crate::seam::Sender), never an
//! `Addr`. Work that awaits (DynamoDB, SQS, a workflow) runs as a future spawned from the
//! handler; its result comes back as a message, and state is re-checked when it does.
//!
//! * [`InboxActor`] – one long-poll loop on this cluster's inbox. A decoded envelope raises
//!   the shared [`Wakeups`] (waiting tasks re-read) and asks the runner to read the group
//!   and operation it names ([`RunnerCheck`]: one read, and a new operation starts), then is
//!   deleted; a `GroupRegistered` one also asks the fencer for a check now
//!   (the active side records the group's known replica counts). A malformed one is counted, logged by the inbox and left alone
//!   so SQS moves it to the dead-letter queue.
//! * [`RunnerActor`] – on the re-read timer (and when a run stopped) lists the operations
//!   in flight that involve this cluster, on a wake-up reads only the groups it names
//!   (never one whose operation runs here already), and spawns [`ManagerAdapter::process_failover`] for each one
//!   not already running. A run that ended early (a store error, a panic) resumes from the
//!   journal after a short pause that doubles with each interruption in a row
//!   ([`resume_after`]), never later than the next re-read; one that succeeded, or must
//!   stop (stale epoch, abort), is not run again by this process.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::{Inbox, Received};
use failover_messages::keys::GroupRef;
use failover_messages::store::{Store, StoreError};

use crate::adapter::{AdapterError, ManagerAdapter, RunKind};
use crate::errors::error_chain;
use crate::failover_group::fencing::When;
use crate::metrics::Metrics;
use crate::runtime::admin::Readiness;
use crate::runtime::fencer::FenceCheck;
use crate::runtime::lease_state::LeaseHandle;
use crate::seam::{Msg, Sender};
use crate::tasks::Wakeups;
use crate::workflow::RunReport;

#[cfg(test)]
use super::work::pending_op;
pub use super::work::{
    Settled, Work, involves, operations_in_flight, run_kind, to_start, unique_not_running,
    work_of_group, work_of_groups,
};

// ---------------------------------------------------------------------------------------------
// Operation runner
// ---------------------------------------------------------------------------------------------

/// Re-read the operations in flight (a wake-up arrived, or the timer fired).
#[derive(Debug, Clone, Copy)]
pub struct RunnerTick;

/// Read these groups now, each with the operation a wake-up named (`(group, operation id)`),
/// and start what they leave this cluster: the cheap answer to a wake-up, one read per
/// group instead of a listing of every group.
#[derive(Debug, Clone)]
pub struct RunnerCheck(pub Vec<(GroupRef, String)>);

/// A spawned run ended.
#[derive(Debug)]
pub struct RunFinished {
    /// The operation.
    pub op_id: String,
    /// What ran.
    pub kind: RunKind,
    /// How it ended.
    pub result: RunResult,
}

/// How one run of an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunResult {
    /// This cluster's side finished.
    Succeeded,
    /// The operation is no longer this agent's (stale epoch, abort, not involved).
    Stopped(String),
    /// The operation failed for good (a deadline ran out); it is recorded `Failed` and not
    /// run again (an abort then starts a rollback).
    Failed(String),
    /// The run stopped on an error running again may mend (an API call, a journal write);
    /// a later tick runs it again (resuming from the journal).
    Interrupted(String),
    /// The run panicked; a later tick runs it again (resuming from the journal).
    Panicked(String),
}

impl RunResult {
    /// The `result` label of `failover_operations_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Stopped(_) => "stopped",
            Self::Failed(_) => "failed",
            Self::Interrupted(_) => "interrupted",
            Self::Panicked(_) => "panicked",
        }
    }

    /// True when this process must not run the operation again.
    pub fn is_final(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Stopped(_) | Self::Failed(_))
    }
}

/// Classifies the outcome of a spawned [`ManagerAdapter::process_failover`].
pub fn run_result(
    joined: Result<Result<RunReport, AdapterError>, tokio::task::JoinError>,
) -> RunResult {
    match joined {
        Ok(Ok(_)) => RunResult::Succeeded,
        Ok(Err(e)) => {
            let msg = error_chain(&e);
            if e.must_stop_working() || matches!(e, AdapterError::NotInvolved(_)) {
                RunResult::Stopped(msg)
            } else if e.fails_operation() {
                RunResult::Failed(msg)
            } else {
                RunResult::Interrupted(msg)
            }
        }
        Err(e) if e.is_panic() => RunResult::Panicked(e.to_string()),
        Err(e) => RunResult::Interrupted(e.to_string()),
    }
}

/// The pause before the first resume of an interrupted run.
const FIRST_RESUME: Duration = Duration::from_secs(1);

/// How long after its `interruptions`-th interruption in a row (counting from 0) a run is
/// resumed: 1 s, doubling, never later than `reread` (the timer would pick it up then).
pub fn resume_after(interruptions: u32, reread: Duration) -> Duration {
    FIRST_RESUME
        .saturating_mul(1u32 << interruptions.min(16))
        .min(reread)
}

/// Runs this cluster's side of the operations in flight, each at most once at a time.
pub struct RunnerActor {
    cluster: String,
    store: Store,
    adapter: ManagerAdapter,
    metrics: Metrics,
    readiness: Readiness,
    reread: Duration,
    running: HashSet<String>,
    finished: HashSet<(String, RunKind)>,
    /// Interruptions in a row, per operation.
    interrupted: HashMap<String, u32>,
    listing: bool,
    tick_pending: bool,
    /// Told of each group an operation runs for ([`LeaseHandle::note_registered`]).
    lease: LeaseHandle,
    /// Released groups' last operations found closed ([`operations_in_flight`]).
    settled: Settled,
}

impl RunnerActor {
    /// A runner for `adapter`'s cluster, re-reading every `reread`; each operation it runs
    /// marks its group registered in `lease` (the lease-lost fencing then covers it).
    pub fn new(
        store: Store,
        adapter: ManagerAdapter,
        metrics: Metrics,
        readiness: Readiness,
        reread: Duration,
        lease: LeaseHandle,
    ) -> Self {
        Self {
            cluster: adapter.cluster().to_owned(),
            store,
            adapter,
            metrics,
            readiness,
            reread,
            running: HashSet::new(),
            finished: HashSet::new(),
            interrupted: HashMap::new(),
            listing: false,
            tick_pending: false,
            lease,
            settled: Settled::default(),
        }
    }

    /// Starts what a read found (`res`), re-checked now against the runs started or ended
    /// during the read; logs a failed read (`what`), left for the next tick.
    fn found(&mut self, res: Result<Vec<Work>, StoreError>, what: &str, ctx: &mut Context<Self>) {
        match res {
            Ok(ops) => {
                self.readiness.aws_ok();
                for op in to_start(ops, &self.running, &self.finished) {
                    self.start(op, ctx);
                }
            }
            Err(e) => {
                tracing::warn!(error = %error_chain(&e), "{what} failed; retrying on the next tick");
            }
        }
    }

    fn start(&mut self, work: Work, ctx: &mut Context<Self>) {
        let Work { op, kind } = work;
        self.running.insert(op.id.clone());
        self.lease.note_registered(&op.group.to_string());
        tracing::info!(op = %op.id, group = %op.group, cluster = %self.cluster, %kind, "starting this cluster's side of the operation");
        let adapter = self.adapter.clone();
        let done: Sender<RunFinished> = Sender::from_addr(ctx.address());
        let op_id = op.id.clone();
        // The run is its own task so a panic ends only the run; the watcher reports it.
        let run = actix_rt::spawn(async move { adapter.process(&op, kind).await });
        actix_rt::spawn(async move {
            let result = run_result(run.await);
            if done
                .send(RunFinished {
                    op_id,
                    kind,
                    result,
                })
                .is_err()
            {
                tracing::warn!("the operation runner is gone; a run result was dropped");
            }
        });
    }
}

impl Actor for RunnerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Msg(RunnerTick));
        ctx.run_interval(self.reread, |_, ctx| ctx.notify(Msg(RunnerTick)));
    }
}

impl Handler<Msg<RunnerTick>> for RunnerActor {
    type Result = ();

    fn handle(&mut self, _: Msg<RunnerTick>, ctx: &mut Context<Self>) {
        if self.listing {
            // One listing at a time; run once more when it is done.
            self.tick_pending = true;
            return;
        }
        self.listing = true;
        let store = self.store.clone();
        let cluster = self.cluster.clone();
        let settled = self.settled.clone();
        let running = self.running.clone();
        let fut = async move { operations_in_flight(&store, &cluster, &settled, &running).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.listing = false;
            act.found(res, "listing the operations in flight", ctx);
            if std::mem::take(&mut act.tick_pending) {
                ctx.notify(Msg(RunnerTick));
            }
        }));
    }
}

impl Handler<Msg<RunnerCheck>> for RunnerActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<RunnerCheck>, ctx: &mut Context<Self>) {
        // A running operation's wake-ups are for its own run (`Wakeups`); what stops it
        // (an abort, a newer operation) is looked at when it ends.
        let wanted = unique_not_running(msg.0.0, &self.running);
        if wanted.is_empty() {
            return;
        }
        let store = self.store.clone();
        let cluster = self.cluster.clone();
        let settled = self.settled.clone();
        let fut = async move { Ok(work_of_groups(&store, &cluster, wanted, &settled).await) };
        ctx.spawn(fut.into_actor(self).map(|res, act, ctx| {
            act.found(res, "reading the groups a wake-up named", ctx);
        }));
    }
}

impl Handler<Msg<RunFinished>> for RunnerActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<RunFinished>, ctx: &mut Context<Self>) {
        let RunFinished {
            op_id,
            kind,
            result,
        } = msg.0;
        self.running.remove(&op_id);
        self.metrics.operation(result.label());
        match &result {
            RunResult::Succeeded => tracing::info!(op = %op_id, "this cluster's side finished"),
            RunResult::Stopped(why) => {
                tracing::info!(op = %op_id, reason = %why, "stopped working on the operation");
                // What stopped it (an abort granted, a newer operation) may be this cluster's
                // next work: look now rather than at the next re-read (the wake-up that told
                // the run is already consumed). The stopped run itself is not started again.
                ctx.notify(Msg(RunnerTick));
            }
            RunResult::Failed(why) => {
                tracing::warn!(op = %op_id, error = %why, "the operation failed; `failoverctl abort` rolls the source back if nothing was promoted")
            }
            RunResult::Interrupted(why) | RunResult::Panicked(why) => {
                let n = self.interrupted.entry(op_id.clone()).or_insert(0);
                let pause = resume_after(*n, self.reread);
                *n = n.saturating_add(1);
                tracing::warn!(op = %op_id, result = result.label(), error = %why, resumes_in = ?pause, "the run ended early; it resumes from the journal");
                ctx.run_later(pause, |_, ctx| ctx.notify(Msg(RunnerTick)));
                return;
            }
        }
        self.interrupted.remove(&op_id);
        if result.is_final() {
            self.finished.insert((op_id, kind));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQS inbox
// ---------------------------------------------------------------------------------------------

/// Poll the inbox once more.
#[derive(Debug, Clone, Copy)]
struct Poll;

/// The `(kind, outcome)` labels of one received message, and whether it should be deleted.
pub fn message_outcome(m: &Received) -> (&'static str, &'static str, bool) {
    match &m.envelope {
        Ok(envelope) => (envelope.kind.as_str(), "accepted", true),
        Err(_) => ("malformed", "rejected", false),
    }
}

/// Long-polls this cluster's inbox, one receive after another.
pub struct InboxActor {
    inbox: Inbox,
    wakeups: Wakeups,
    runner: Sender<RunnerCheck>,
    fencer: Sender<FenceCheck>,
    metrics: Metrics,
    readiness: Readiness,
    wait_seconds: u32,
    retry_after: Duration,
}

impl InboxActor {
    /// An inbox actor raising `wakeups` and asking `runner` to read the group and operation
    /// each decoded envelope names ([`runner_check`]), and
    /// asking `fencer` for a check on a `GroupRegistered` one.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        inbox: Inbox,
        wakeups: Wakeups,
        runner: Sender<RunnerCheck>,
        fencer: Sender<FenceCheck>,
        metrics: Metrics,
        readiness: Readiness,
        wait_seconds: u32,
        retry_after: Duration,
    ) -> Self {
        Self {
            inbox,
            wakeups,
            runner,
            fencer,
            metrics,
            readiness,
            wait_seconds,
            retry_after,
        }
    }
}

/// How much longer than its long-poll wait a receive may take before it is abandoned.
const RECEIVE_SLACK: Duration = Duration::from_secs(10);

/// True when `m` asks for a fencing check now: a group was registered (its active side
/// records the known replica counts on that check).
pub fn asks_for_group_check(m: &Received) -> bool {
    matches!(&m.envelope, Ok(e) if e.kind == EnvelopeKind::GroupRegistered)
}

/// What the runner reads for `envelopes`: the group and operation each names, except a
/// `GroupRegistered` one (it names no operation; the fencer checks the group).
pub fn runner_check(envelopes: &[&Envelope]) -> RunnerCheck {
    RunnerCheck(
        envelopes
            .iter()
            .filter(|e| e.kind != EnvelopeKind::GroupRegistered)
            .map(|e| (e.group.clone(), e.operation_id.clone()))
            .collect(),
    )
}

/// One receive and the handling of what it returned.
#[allow(clippy::too_many_arguments)]
async fn poll_once(
    inbox: Inbox,
    wakeups: Wakeups,
    runner: Sender<RunnerCheck>,
    fencer: Sender<FenceCheck>,
    metrics: Metrics,
    readiness: Readiness,
    wait_seconds: u32,
    retry_after: Duration,
) {
    // SQS answers a long poll within `wait_seconds`; a link that swallows the request
    // (accepted, never answered) must not hold the inbox for ever.
    let bound = Duration::from_secs(u64::from(wait_seconds)) + RECEIVE_SLACK;
    let received = match tokio::time::timeout(bound, inbox.receive(wait_seconds, 10)).await {
        Ok(received) => received,
        Err(_) => {
            tracing::warn!(queue = %inbox.queue_name(), ?bound, "receiving wake-ups got no answer; falling back to the re-read timer");
            return;
        }
    };
    match received {
        Ok(messages) => {
            readiness.aws_ok();
            if messages.iter().any(asks_for_group_check) {
                let _ = fencer.send(FenceCheck(When::Reread));
            }
            // One wake-up for all that decoded, with their hints (`Wakeups::wake_for`).
            let decoded: Vec<_> = messages
                .iter()
                .filter_map(|m| m.envelope.as_ref().ok())
                .collect();
            if !decoded.is_empty() {
                let check = runner_check(&decoded);
                wakeups.wake_for(decoded);
                if !check.0.is_empty() {
                    let _ = runner.send(check);
                }
            }
            for m in messages {
                let (kind, outcome, delete) = message_outcome(&m);
                metrics.sqs_message(kind, outcome);
                if !delete {
                    // Logged by the inbox; SQS moves it to the dead-letter queue.
                    continue;
                }
                if let Err(e) = inbox.delete(&m.receipt_handle).await {
                    tracing::warn!(error = %error_chain(&e), "could not delete a handled wake-up; it will come again");
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), queue = %inbox.queue_name(), "receiving wake-ups failed; falling back to the re-read timer");
            tokio::time::sleep(retry_after).await;
        }
    }
}

impl Actor for InboxActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Msg(Poll));
    }
}

impl Handler<Msg<Poll>> for InboxActor {
    type Result = ();

    fn handle(&mut self, _: Msg<Poll>, ctx: &mut Context<Self>) {
        let fut = poll_once(
            self.inbox.clone(),
            self.wakeups.clone(),
            self.runner.clone(),
            self.fencer.clone(),
            self.metrics.clone(),
            self.readiness.clone(),
            self.wait_seconds,
            self.retry_after,
        );
        ctx.spawn(fut.into_actor(self).map(|(), _, ctx| ctx.notify(Msg(Poll))));
    }
}

#[cfg(test)]
mod tests {
    use failover_messages::keys::GroupRef;

    #[test]
    fn an_interrupted_run_resumes_soon_then_less_often_never_after_the_re_read() {
        let reread = Duration::from_secs(15);
        let pauses: Vec<u64> = (0..6).map(|n| resume_after(n, reread).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 15, 15]);
        assert_eq!(resume_after(u32::MAX, reread), reread);
        assert_eq!(
            resume_after(0, Duration::from_millis(300)),
            Duration::from_millis(300)
        );
    }
    use failover_messages::records::{GroupState, Mode, Operation, Phase};

    use super::*;

    #[test]
    fn results_that_end_the_operation_are_final() {
        assert!(RunResult::Succeeded.is_final());
        assert!(RunResult::Stopped("stale".into()).is_final());
        assert!(RunResult::Failed("deadline".into()).is_final());
        assert!(!RunResult::Interrupted("boom".into()).is_final());
        assert!(!RunResult::Panicked("boom".into()).is_final());
        assert_eq!(RunResult::Panicked(String::new()).label(), "panicked");
    }

    fn op(id: &str, source: &str, target: &str, phase: Phase) -> Operation {
        Operation {
            id: id.into(),
            group: GroupRef::new("shop", "orders").unwrap(),
            epoch: 1,
            mode: Mode::Consistency,
            source: source.into(),
            target: target.into(),
            force: false,
            source_is_down: false,
            reason: String::new(),
            requested_by: "test".into(),
            phase,
            requested_at: jiff::Timestamp::UNIX_EPOCH,
            promotion_started_at: None,
            abort_requested_at: None,
            dual_active_started_at: None,
            dual_active_ended_at: None,
            finished_at: None,
            timings: Default::default(),
            original_replicas: Default::default(),
            message: None,
        }
    }

    #[test]
    fn only_open_operations_naming_this_cluster_involve_it() {
        assert!(involves(&op("a", "east", "west", Phase::Running), "east"));
        assert!(involves(&op("a", "east", "west", Phase::Running), "west"));
        assert!(!involves(&op("a", "east", "west", Phase::Running), "south"));
        assert!(!involves(
            &op("a", "east", "west", Phase::Succeeded),
            "east"
        ));
    }

    #[test]
    fn an_operation_already_running_or_finished_is_not_started_again() {
        let running = HashSet::from(["busy".to_owned()]);
        let finished = HashSet::from([("done".to_owned(), RunKind::Forward)]);
        let work = |id: &str, kind| Work {
            op: op(id, "east", "west", Phase::Running),
            kind,
        };
        let ops = vec![
            work("busy", RunKind::Rollback),
            work("done", RunKind::Forward),
            work("new", RunKind::Forward),
            work("new", RunKind::Forward),
        ];
        let ids: Vec<String> = to_start(ops, &running, &finished)
            .into_iter()
            .map(|w| w.op.id)
            .collect();
        assert_eq!(ids, ["new"]);
        // A rollback after a finished forward run is new work.
        let ids: Vec<(String, RunKind)> =
            to_start(vec![work("done", RunKind::Rollback)], &running, &finished)
                .into_iter()
                .map(|w| (w.op.id, w.kind))
                .collect();
        assert_eq!(ids, [("done".to_owned(), RunKind::Rollback)]);
    }

    fn state(active: &str, claimed: Option<&str>) -> GroupState {
        GroupState {
            group: GroupRef::new("shop", "orders").unwrap(),
            active_cluster: active.into(),
            epoch: 1,
            op_id: Some("a".into()),
            promotion_claimed_by: claimed.map(str::to_owned),
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_released_groups_last_operation_is_looked_at_until_known_closed() {
        let mut s = state("west", None);
        let none = HashSet::new();
        assert_eq!(pending_op(&s, &none), Some(("a".to_owned(), false)));
        s.op_id = None;
        assert_eq!(pending_op(&s, &none), None, "idle, nothing closed here");
        s.last_op_id = Some("a".into());
        assert_eq!(pending_op(&s, &none), Some(("a".to_owned(), true)));
        let settled = HashSet::from(["a".to_owned()]);
        assert_eq!(pending_op(&s, &settled), None);
        // An operation in flight always wins over the last one.
        s.op_id = Some("b".into());
        assert_eq!(pending_op(&s, &settled), Some(("b".to_owned(), false)));
    }

    #[test]
    fn the_source_and_target_run_forward_until_an_abort_is_granted() {
        let o = op("a", "east", "west", Phase::Running);
        let s = state("east", None);
        assert_eq!(run_kind(&o, &s, "east"), Some(RunKind::Forward));
        assert_eq!(run_kind(&o, &s, "west"), Some(RunKind::Forward));
        assert_eq!(run_kind(&o, &s, "south"), None);
        // A failed operation is not run forward again.
        assert_eq!(
            run_kind(&op("a", "east", "west", Phase::Failed), &s, "east"),
            None
        );
    }

    #[test]
    fn after_a_granted_abort_only_the_entitled_cluster_rolls_back() {
        let mut o = op("a", "east", "west", Phase::Aborting);
        o.abort_requested_at = Some(jiff::Timestamp::UNIX_EPOCH);
        let s = state("east", None);
        assert_eq!(run_kind(&o, &s, "east"), Some(RunKind::Rollback));
        assert_eq!(run_kind(&o, &s, "west"), None);
        // Also when the operation had failed before the abort.
        let mut failed = o.clone();
        failed.phase = Phase::Failed;
        assert_eq!(run_kind(&failed, &s, "east"), Some(RunKind::Rollback));
        // Never once a promotion was claimed, nor after the rollback closed it.
        assert_eq!(run_kind(&o, &state("east", Some("west")), "east"), None);
        let mut claimed = o.clone();
        claimed.promotion_started_at = Some(jiff::Timestamp::UNIX_EPOCH);
        assert_eq!(run_kind(&claimed, &s, "east"), None);
        let mut closed = o;
        closed.phase = Phase::Aborted;
        assert_eq!(run_kind(&closed, &s, "east"), None);
    }

    #[test]
    fn malformed_messages_are_counted_and_kept_for_the_dead_letter_queue() {
        let m = Received {
            message_id: "m".into(),
            envelope: failover_messages::envelope::Envelope::decode("not json"),
            receipt_handle: "r".into(),
            receive_count: 1,
        };
        assert_eq!(message_outcome(&m), ("malformed", "rejected", false));
        assert!(!asks_for_group_check(&m));
    }

    #[test]
    fn a_wake_up_names_its_group_and_operation_to_the_runner_once_unless_it_runs() {
        use failover_messages::envelope::{Envelope, EnvelopeKind};
        let (orders, carts): (GroupRef, GroupRef) = (
            "shop/orders".parse().unwrap(),
            "shop/carts".parse().unwrap(),
        );
        let at = jiff::Timestamp::UNIX_EPOCH;
        let about =
            |kind, op: &str, g: &GroupRef| Envelope::for_operation(kind, op, g, 1, "east", at);
        let envelopes = [
            about(EnvelopeKind::OperationStarted, "a", &orders),
            about(EnvelopeKind::ReadyForPromotion, "a", &orders),
            about(EnvelopeKind::OperationStarted, "b", &carts),
            Envelope::for_group(EnvelopeKind::GroupRegistered, &orders, 1, "coordinator", at),
        ];
        let check = runner_check(&envelopes.iter().collect::<Vec<_>>());
        assert_eq!(
            check.0,
            [
                (orders.clone(), "a".to_owned()),
                (orders.clone(), "a".to_owned()),
                (carts.clone(), "b".to_owned()),
            ],
            "a group registration names no operation"
        );
        let none = HashSet::new();
        assert_eq!(
            unique_not_running(check.0.clone(), &none),
            [
                (orders.clone(), "a".to_owned()),
                (carts.clone(), "b".to_owned())
            ]
        );
        let running = HashSet::from(["a".to_owned()]);
        assert_eq!(
            unique_not_running(check.0, &running),
            [(carts, "b".to_owned())],
            "a running operation's wake-ups are its run's"
        );
    }

    #[test]
    fn only_a_group_registered_envelope_asks_for_a_fencing_check() {
        use failover_messages::envelope::{Envelope, EnvelopeKind};
        let group: GroupRef = "shop/orders".parse().unwrap();
        let received = |kind| Received {
            message_id: "m".into(),
            envelope: Ok(Envelope::for_group(
                kind,
                &group,
                0,
                "coordinator",
                jiff::Timestamp::UNIX_EPOCH,
            )),
            receipt_handle: "r".into(),
            receive_count: 1,
        };
        for kind in EnvelopeKind::ALL {
            assert_eq!(
                asks_for_group_check(&received(kind)),
                kind == EnvelopeKind::GroupRegistered,
                "{kind}"
            );
        }
    }

    #[tokio::test]
    async fn a_panicking_run_is_reported_as_panicked_and_retried() {
        let joined = tokio::spawn(async {
            if true {
                panic!("boom");
            }
            unreachable!()
        })
        .await;
        let r = run_result(joined);
        assert_eq!(r.label(), "panicked");
        assert!(!r.is_final());
    }
}
