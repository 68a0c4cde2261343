//! Waiting for the other cluster: an SQS wake-up **or** a re-read timer, then a consistent
//! read. Never a bare sleep standing in for a wait.
//!
//! [`Wakeups`] is a cluster-wide wake-up signal (a generation counter on a `tokio::sync::watch`
//! channel). Whoever reads this cluster's SQS inbox ([`pump_inbox`], or the agent's inbox
//! actor) calls [`Wakeups::wake_for`] with the envelopes that decode; waiting tasks call
//! [`wait_until`] with the wake-ups of their group ([`Wakeups::for_group`]), which:
//!
//! 1. subscribes first (so a wake-up arriving during the read is not lost),
//! 2. runs the check, a strongly consistent DynamoDB read that decides done / not yet /
//!    failed,
//! 3. if not yet, sleeps until a wake-up of its group **or** the re-read interval,
//!    whichever comes first (an envelope about another group does not make it read: with
//!    many groups in flight, every envelope waking every waiter would cost a read per
//!    waiter; when more envelopes came than [`Wakeups`] keeps, it reads anyway),
//!    and goes back to 2. When the wait runs as a step with a limit ([`Rereads::for_step`]),
//!    one re-read is also placed just before the limit runs out, so a wait whose wake-up was
//!    lost never times out on a state it could have read: losing every wake-up makes a wait
//!    slower, never failed.
//!
//! Envelopes are hints and carry no authority: a wake-up only causes a re-read, so a lost,
//! duplicated or forged message can delay a wait by at most one re-read interval and never
//! make it finish early. The engine bounds every wait with the step's deadline.
//!
//! One exception saves the read on the handoff's path: [`Wakeups::wake_for`] keeps the
//! last envelopes' `(kind, operation, epoch)` ([`Wakeups::hinted`]), and the target's wait
//! for `READY_FOR_PROMOTION` ends on a `ReadyForPromotion` hint of its own operation and
//! epoch without reading. Nothing is decided on it: the claim that follows is a conditional
//! write that requires every volume's READY mark at the epoch, and a claim refused as not
//! ready goes back to waiting on reads alone (`tasks::record`). A forged or early hint
//! costs one refused claim, never an early promotion.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::Inbox;
use failover_messages::keys::GroupRef;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::workflow::{TaskContext, TaskError};

/// Default time between two consistent re-reads when no wake-up arrives.
pub const DEFAULT_REREAD_INTERVAL: Duration = Duration::from_secs(2);

/// How many envelopes' hints [`Wakeups`] keeps (the oldest go first).
const HINTS_KEPT: usize = 256;

/// What one envelope said happened: its kind, operation and epoch.
type Hint = (EnvelopeKind, String, u64);

/// The envelopes behind the last wake-ups, each with the generation it raised.
#[derive(Debug, Default)]
struct Recent {
    hints: VecDeque<(u64, GroupRef, Hint)>,
    /// Up to this generation, a wake-up may concern any group: [`Wakeups::wake`], or hints
    /// no longer kept.
    everyone_up_to: u64,
}

/// A cluster-wide wake-up signal, with the hints of the last envelopes that raised it.
/// Cheap to clone; clones share the signal. A waiter listens for its own group
/// ([`Wakeups::for_group`]): an envelope about another group does not make it read.
#[derive(Clone, Debug)]
pub struct Wakeups {
    tx: watch::Sender<u64>,
    recent: Arc<Mutex<Recent>>,
}

impl Default for Wakeups {
    fn default() -> Self {
        Self::new()
    }
}

impl Wakeups {
    /// A new signal nobody has raised yet.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(0),
            recent: Arc::default(),
        }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes every current waiter, whatever its group (they re-read the records).
    pub fn wake(&self) {
        let mut recent = self.recent();
        let generation = *self.tx.borrow() + 1;
        recent.everyone_up_to = generation;
        self.tx.send_replace(generation);
    }

    /// Keeps `envelopes`' hints, then wakes the current waiters of their groups once (none:
    /// no wake-up).
    pub fn wake_for<'a>(&self, envelopes: impl IntoIterator<Item = &'a Envelope>) {
        let mut recent = self.recent();
        let generation = *self.tx.borrow() + 1;
        let mut any = false;
        for e in envelopes {
            if recent.hints.len() == HINTS_KEPT
                && let Some((dropped, _, _)) = recent.hints.pop_front()
            {
                recent.everyone_up_to = recent.everyone_up_to.max(dropped);
            }
            let hint = (e.kind, e.operation_id.clone(), e.epoch);
            recent.hints.push_back((generation, e.group.clone(), hint));
            any = true;
        }
        if any {
            self.tx.send_replace(generation);
        }
    }

    /// Whether one of the last envelopes was of `kind` for operation `op_id` at `epoch`. A
    /// hint, never a fact: see the module docs.
    pub fn hinted(&self, kind: EnvelopeKind, op_id: &str, epoch: u64) -> bool {
        self.recent()
            .hints
            .iter()
            .any(|(_, _, (k, op, e))| *k == kind && op == op_id && *e == epoch)
    }

    /// Whether a wake-up after generation `seen` may concern `group`: an envelope naming it,
    /// a wake-up of everyone, or envelopes no longer kept (they might have named it).
    fn woke_since(&self, group: &GroupRef, seen: u64) -> bool {
        let recent = self.recent();
        recent.everyone_up_to > seen
            || recent
                .hints
                .iter()
                .any(|(generation, g, _)| *generation > seen && g == group)
    }

    /// A receiver that sees every later wake-up, of any group.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }

    /// The wake-ups a waiter on `group`'s operation listens for.
    pub fn for_group(&self, group: &GroupRef) -> GroupWakeups {
        GroupWakeups {
            wakeups: self.clone(),
            group: group.clone(),
        }
    }
}

/// The wake-ups of one group ([`Wakeups::for_group`]): what a waiting task listens for.
#[derive(Clone, Debug)]
pub struct GroupWakeups {
    wakeups: Wakeups,
    group: GroupRef,
}

/// The last look comes this share of the step's limit before its end ...
const LAST_LOOK_SHARE: u32 = 20;
/// ... but at least this long before it ...
const LAST_LOOK_MIN: Duration = Duration::from_millis(100);
/// ... and at most this long.
const LAST_LOOK_MAX: Duration = Duration::from_secs(1);

/// When a wait re-reads without a wake-up: every `every`, and once more shortly before the
/// step's limit runs out (the last look), when it has one.
#[derive(Clone, Copy, Debug)]
pub struct Rereads {
    every: Duration,
    last_look: Option<Instant>,
}

impl Rereads {
    /// A re-read every `every`, with no last look.
    pub fn every(every: Duration) -> Self {
        Self {
            every,
            last_look: None,
        }
    }

    /// A re-read every `every` and a last look before the running step's limit (the
    /// [`StepInfo::deadline`](crate::workflow::StepInfo) the engine set, counted from now).
    pub fn for_step(every: Duration, ctx: &TaskContext) -> Self {
        match ctx.step() {
            Some(step) => Self::every(every).with_limit(step.deadline),
            None => Self::every(every),
        }
    }

    /// Adds a last look before `left` (from now) runs out.
    pub fn with_limit(mut self, left: Duration) -> Self {
        let margin = (left / LAST_LOOK_SHARE).clamp(LAST_LOOK_MIN, LAST_LOOK_MAX);
        self.last_look = left.checked_sub(margin).map(|d| Instant::now() + d);
        self
    }

    /// How long to sleep from `now` before the next re-read: the interval, cut short by
    /// the last look while that is still ahead.
    fn next(&self, now: Instant) -> Duration {
        match self.last_look {
            Some(at) if at > now => self.every.min(at - now),
            _ => self.every,
        }
    }
}

impl From<Duration> for Rereads {
    fn from(every: Duration) -> Self {
        Self::every(every)
    }
}

/// What one check of a wait found.
#[derive(Debug)]
pub enum Check<T> {
    /// The awaited state is there.
    Done(T),
    /// Not yet; the text says what was seen (logged when it changes).
    Pending(String),
}

/// Runs `check` until it answers [`Check::Done`] or fails, re-running it on every wake-up
/// of `wakeups` (when given) and at the times of `rereads`. See the module docs.
pub async fn wait_until<T, F, Fut>(
    what: &str,
    wakeups: Option<GroupWakeups>,
    rereads: impl Into<Rereads>,
    mut check: F,
) -> Result<T, TaskError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>, TaskError>>,
{
    let rereads = rereads.into();
    let mut rx = wakeups.as_ref().map(|w| w.wakeups.subscribe());
    let mut last = String::new();
    loop {
        // The generation before the read: a wake-up during it is not lost.
        let seen = rx.as_mut().map_or(0, |rx| *rx.borrow_and_update());
        match check().await? {
            Check::Done(t) => return Ok(t),
            Check::Pending(seen) => {
                if seen != last {
                    tracing::info!(waiting_for = %what, seen = %seen, "waiting for the other cluster");
                    last = seen;
                }
            }
        }
        let until = Instant::now() + rereads.next(Instant::now());
        match (rx.as_mut(), wakeups.as_ref()) {
            (Some(rx), Some(w)) => loop {
                tokio::select! {
                    changed = rx.changed() => {
                        if changed.is_err() {
                            // The signal is gone: fall back to the timer alone.
                            tokio::time::sleep_until(until).await;
                            break;
                        }
                        if w.wakeups.woke_since(&w.group, seen) {
                            break;
                        }
                        // Another group's news: keep waiting.
                    }
                    () = tokio::time::sleep_until(until) => break,
                }
            },
            _ => tokio::time::sleep_until(until).await,
        }
    }
}

/// Long-polls `inbox` (this cluster's SQS queue) forever, raising `wakeups` for every
/// envelope that decodes and then deleting it. Messages that do not decode are left alone
/// so SQS moves them to the dead-letter queue (the inbox logs them). A failing receive is
/// logged and retried after `retry_after` (waiters keep re-reading on their timer meanwhile).
/// Meant to run next to a workflow and be dropped with it.
pub async fn pump_inbox(inbox: Inbox, wakeups: Wakeups, wait_seconds: u32, retry_after: Duration) {
    loop {
        match inbox.receive(wait_seconds, 10).await {
            Ok(messages) => {
                wakeups.wake_for(messages.iter().filter_map(|m| m.envelope.as_ref().ok()));
                for m in messages {
                    let Ok(envelope) = &m.envelope else { continue };
                    tracing::debug!(
                        kind = %envelope.kind,
                        operation = %envelope.operation_id,
                        sender = %envelope.sender,
                        "wake-up received"
                    );
                    if let Err(e) = inbox.delete(&m.receipt_handle).await {
                        tracing::warn!(error = %e, "could not delete a handled wake-up; it will come again");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, queue = %inbox.queue_name(), "receiving wake-ups failed; waiters fall back to their re-read timer");
                tokio::time::sleep(retry_after).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn orders() -> GroupRef {
        "shop/orders".parse().unwrap()
    }

    fn envelope(kind: EnvelopeKind, op: &str, epoch: u64) -> Envelope {
        Envelope::for_operation(kind, op, &orders(), epoch, "east", jiff::Timestamp::now())
    }

    /// A waiter on `group` whose check is done on its second read; the number of reads.
    fn waiter_on(
        wakeups: &Wakeups,
        group: GroupRef,
        reads: &Arc<AtomicU32>,
    ) -> tokio::task::JoinHandle<Result<u32, TaskError>> {
        let (w, r) = (wakeups.clone(), reads.clone());
        tokio::spawn(async move {
            wait_until(
                "test",
                Some(w.for_group(&group)),
                Duration::from_secs(3600),
                || {
                    let n = r.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Ok(if n >= 1 {
                            Check::Done(n)
                        } else {
                            Check::Pending("not yet".into())
                        })
                    }
                },
            )
            .await
        })
    }

    async fn first_read(reads: &AtomicU32) {
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_waiter_reads_again_on_news_of_its_own_group_only() {
        let wakeups = Wakeups::new();
        let reads = Arc::new(AtomicU32::new(0));
        let waiter = waiter_on(&wakeups, orders(), &reads);
        first_read(&reads).await;
        let carts: GroupRef = "shop/carts".parse().unwrap();
        let other = Envelope::for_operation(
            EnvelopeKind::ReadyForPromotion,
            "op-9",
            &carts,
            1,
            "east",
            jiff::Timestamp::now(),
        );
        wakeups.wake_for([&other]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1, "another group's envelope");
        wakeups.wake_for([&envelope(EnvelopeKind::Wake, "op-1", 1)]);
        let n = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken by its group's envelope")
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn a_waiter_reads_again_when_its_groups_news_may_have_been_dropped() {
        let wakeups = Wakeups::new();
        let reads = Arc::new(AtomicU32::new(0));
        let waiter = waiter_on(&wakeups, orders(), &reads);
        first_read(&reads).await;
        // More envelopes of other groups than are kept, in one batch: the waiter cannot
        // tell whether one named its group, so it reads.
        let carts: GroupRef = "shop/carts".parse().unwrap();
        let many: Vec<Envelope> = (0..=HINTS_KEPT)
            .map(|i| {
                Envelope::for_operation(
                    EnvelopeKind::Wake,
                    &format!("op-{i}"),
                    &carts,
                    1,
                    "east",
                    jiff::Timestamp::now(),
                )
            })
            .collect();
        wakeups.wake_for(&many);
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken")
            .unwrap()
            .unwrap();
    }

    #[test]
    fn a_hint_names_its_kind_operation_and_epoch_only() {
        let w = Wakeups::new();
        let mut rx = w.subscribe();
        rx.mark_unchanged();
        w.wake_for([
            &envelope(EnvelopeKind::ReadyForPromotion, "op-1", 3),
            &envelope(EnvelopeKind::Wake, "op-2", 3),
        ]);
        assert!(rx.has_changed().unwrap(), "one wake-up for the envelopes");
        assert!(w.hinted(EnvelopeKind::ReadyForPromotion, "op-1", 3));
        assert!(
            !w.hinted(EnvelopeKind::ReadyForPromotion, "op-1", 2),
            "another epoch"
        );
        assert!(
            !w.hinted(EnvelopeKind::ReadyForPromotion, "op-2", 3),
            "another kind"
        );
        assert!(!w.hinted(EnvelopeKind::Promoted, "op-1", 3), "another kind");
        // No envelope, no wake-up.
        rx.mark_unchanged();
        w.wake_for([]);
        assert!(!rx.has_changed().unwrap());
    }

    #[test]
    fn only_the_last_hints_are_kept() {
        let w = Wakeups::new();
        w.wake_for([&envelope(EnvelopeKind::ReadyForPromotion, "old", 1)]);
        let later: Vec<Envelope> = (0..HINTS_KEPT)
            .map(|i| envelope(EnvelopeKind::Wake, &format!("op-{i}"), 1))
            .collect();
        w.wake_for(&later);
        assert!(!w.hinted(EnvelopeKind::ReadyForPromotion, "old", 1));
        assert!(w.hinted(EnvelopeKind::Wake, "op-0", 1));
        assert!(w.hinted(EnvelopeKind::Wake, &format!("op-{}", HINTS_KEPT - 1), 1));
    }

    #[tokio::test]
    async fn a_wake_up_triggers_a_re_read_before_the_timer() {
        let wakeups = Wakeups::new();
        let reads = Arc::new(AtomicU32::new(0));
        let waiter = waiter_on(&wakeups, orders(), &reads);
        first_read(&reads).await;
        // A wake-up during the read is not lost either: the waiter subscribed before reading.
        wakeups.wake();
        let n = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("woken before the hour-long timer")
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }

    #[tokio::test]
    async fn without_wake_ups_the_timer_re_reads() {
        let reads = Arc::new(AtomicU32::new(0));
        let r = reads.clone();
        let started = tokio::time::Instant::now();
        let n = wait_until("test", None, Duration::from_millis(20), || {
            let n = r.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(if n >= 2 {
                    Check::Done(n)
                } else {
                    Check::Pending(format!("read {n}"))
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(n, 2);
        assert!(started.elapsed() >= Duration::from_millis(40));
    }

    /// A check that finds the awaited state from `ready_after` on, counting its reads.
    fn ready_after(
        ready_after: Duration,
        reads: &Arc<AtomicU32>,
    ) -> impl FnMut() -> std::future::Ready<Result<Check<()>, TaskError>> + use<> {
        let started = Instant::now();
        let reads = reads.clone();
        move || {
            reads.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok(if started.elapsed() >= ready_after {
                Check::Done(())
            } else {
                Check::Pending("not yet".into())
            }))
        }
    }

    #[tokio::test]
    async fn a_lost_wake_up_does_not_run_a_wait_out_of_its_limit() {
        // The state is there after 300 ms, the re-read comes every 10 s, the step may run
        // 1 s: the last look (at 900 ms) finds it.
        let reads = Arc::new(AtomicU32::new(0));
        let limit = Duration::from_secs(1);
        let rereads = Rereads::every(Duration::from_secs(10)).with_limit(limit);
        let check = ready_after(Duration::from_millis(300), &reads);
        let started = Instant::now();
        tokio::time::timeout(limit, wait_until("test", None, rereads, check))
            .await
            .expect("the last look comes before the limit")
            .unwrap();
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the first read and the last look"
        );
        assert!(started.elapsed() >= Duration::from_millis(850));
    }

    #[tokio::test]
    async fn without_a_last_look_the_same_wait_runs_out() {
        // The variant the test above guards against: the re-read timer alone.
        let reads = Arc::new(AtomicU32::new(0));
        let limit = Duration::from_secs(1);
        let check = ready_after(Duration::from_millis(300), &reads);
        let waited = tokio::time::timeout(
            limit,
            wait_until("test", None, Duration::from_secs(10), check),
        )
        .await;
        assert!(waited.is_err(), "no re-read within the limit");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_last_look_cuts_one_sleep_short_then_the_interval_applies() {
        let every = Duration::from_secs(30);
        let r = Rereads::every(every).with_limit(Duration::from_secs(30));
        let now = Instant::now();
        let first = r.next(now);
        assert!(first <= Duration::from_secs(29) && first > Duration::from_millis(28_900));
        assert_eq!(r.next(now + Duration::from_secs(29)), every);
        // A limit shorter than the margin leaves no room for a last look.
        let tight = Rereads::every(every).with_limit(Duration::from_millis(50));
        assert_eq!(tight.next(now), every);
        // A short interval is not stretched by a far limit.
        let short = Rereads::every(Duration::from_secs(2)).with_limit(Duration::from_secs(600));
        assert_eq!(short.next(now), Duration::from_secs(2));
    }

    #[tokio::test]
    async fn a_failed_check_ends_the_wait() {
        let err = wait_until::<(), _, _>("test", None, Duration::from_millis(1), || async {
            Err(TaskError::failed("boom"))
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("boom"));
    }
}
