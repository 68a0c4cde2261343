//! The fencing actor: runs [`fencing::check_groups`] when told to ([`FenceCheck`]) and on
//! every re-read, one check at a time (a check asked for while one runs is run after it,
//! with the strongest occasion asked for). The start-up check runs before this actor exists
//! (see [`super::run`]); the heartbeat actor asks for a [`When::Regained`] check when
//! DynamoDB answers again after failing.
//!
//! A [`When::LeaseLost`] ask (from the lease actor) is not queued behind a check that may be
//! waiting on DynamoDB: it runs [`fencing::fence_unleased`] at once, on its own, and again on
//! every later ask until it finishes or the lease is live again.
//!
//! A check that does not finish (DynamoDB or the API server failed, a group could not be
//! observed or fenced) leaves its occasion *owed*: every later check runs with the strongest
//! owed occasion until one finishes, so a failed start-up or "DynamoDB is back" check is
//! repeated in full rather than narrowed to a re-read (which skips groups with an operation
//! in flight).

use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use failover_messages::store::Store;

use std::sync::{Arc, Mutex};

use crate::errors::error_chain;
use crate::failover_group::fencing::{self, GroupVerdict, ReplicaCache, When};
use crate::kube_ops::ClusterClient;
use crate::kube_ops::traffic::TrafficConfig;
use crate::metrics::Metrics;
use crate::runtime::admin::Readiness;
use crate::runtime::lease_state::LeaseHandle;
use crate::seam::Msg;

/// Check the groups now.
#[derive(Debug, Clone, Copy)]
pub struct FenceCheck(pub When);

/// Of two occasions, the one that checks more groups.
pub fn stronger(a: When, b: When) -> When {
    if a == When::Reread { b } else { a }
}

/// The occasion to check with when `asked` for while `owed` is not finished.
pub fn occasion(owed: Option<When>, asked: When) -> When {
    owed.map_or(asked, |o| stronger(o, asked))
}

/// What is still owed after a check of occasion `ran` finished (`true`) or not.
pub fn owed_after(ran: When, finished: bool) -> Option<When> {
    (!finished).then_some(ran)
}

/// Runs fencing checks for this cluster.
pub struct FencerActor {
    cc: ClusterClient,
    store: Store,
    traffic: TrafficConfig,
    metrics: Metrics,
    reread: Duration,
    checking: bool,
    pending: Option<When>,
    owed: Option<When>,
    replicas: Arc<Mutex<ReplicaCache>>,
    lease: LeaseHandle,
    /// A lease-lost fencing is owed.
    unleased: bool,
    /// A lease-lost fencing runs.
    fencing_unleased: bool,
    /// Told when a check finishes (the start-up check is owed until one does).
    readiness: Option<Readiness>,
}

impl FencerActor {
    /// A fencer for `cc`'s cluster, checking at least every `reread`; `owed`: an occasion
    /// whose check did not finish before the actor started (the start-up check).
    pub fn new(
        cc: ClusterClient,
        store: Store,
        traffic: TrafficConfig,
        metrics: Metrics,
        reread: Duration,
        owed: Option<When>,
        lease: LeaseHandle,
    ) -> Self {
        Self {
            cc,
            store,
            traffic,
            metrics,
            reread,
            checking: false,
            pending: None,
            owed,
            replicas: Arc::default(),
            lease,
            unleased: false,
            fencing_unleased: false,
            readiness: None,
        }
    }

    /// Marks `readiness`'s start-up fencing done once a check finishes (an unfinished
    /// start-up check keeps `/ready` at 503 until a repeat of it finishes).
    pub fn with_readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    /// Runs the owed lease-lost fencing unless one runs or the lease is live again.
    fn fence_unleased(&mut self, ctx: &mut Context<Self>) {
        if !self.unleased || self.fencing_unleased {
            return;
        }
        if !self.lease.holding().is_lost() {
            self.unleased = false;
            return;
        }
        self.fencing_unleased = true;
        let (cc, traffic, metrics, lease) = (
            self.cc.clone(),
            self.traffic.clone(),
            self.metrics.clone(),
            self.lease.clone(),
        );
        let fut = async move { run_unleased(&cc, &traffic, &metrics, &lease).await };
        ctx.spawn(fut.into_actor(self).map(|finished, act, _| {
            act.fencing_unleased = false;
            if finished {
                act.unleased = false;
            }
        }));
    }
}

/// Fences what the lost lease requires ([`fencing::fence_unleased`]); `true` when every group
/// was looked at to the end.
pub async fn run_unleased(
    cc: &ClusterClient,
    traffic: &TrafficConfig,
    metrics: &Metrics,
    lease: &LeaseHandle,
) -> bool {
    let when = When::LeaseLost;
    let owns = |g: &str, has_state: bool| lease.owns(g, has_state);
    let keep = |g: &str| lease.published_keep_serving(g);
    let rules = fencing::Unleased {
        owns: &owns,
        published_keep_serving: &keep,
    };
    match fencing::fence_unleased(cc, traffic, &rules).await {
        Ok(verdicts) => {
            let mut finished = true;
            for (group, verdict) in verdicts {
                match verdict {
                    GroupVerdict::Fenced(_) => metrics.fenced(&group, when.as_str()),
                    GroupVerdict::Unfinished => finished = false,
                    GroupVerdict::NotChecked | GroupVerdict::Passive => {}
                }
            }
            finished
        }
        Err(e) => {
            tracing::warn!(cluster = %cc.cluster, occasion = when.as_str(), error = %error_chain(&e), "fencing after the lease ran out failed; trying again");
            false
        }
    }
}

/// Runs one check and reports what it fenced; `true` when every group was checked to the end.
pub async fn run_check(
    cc: &ClusterClient,
    store: &Store,
    traffic: &TrafficConfig,
    metrics: &Metrics,
    when: When,
    replicas: &mut ReplicaCache,
    lease: &LeaseHandle,
) -> bool {
    let mut registered = std::collections::BTreeSet::new();
    match fencing::check_groups(cc, store, traffic, when, replicas, &mut registered).await {
        Ok(verdicts) => {
            lease.set_registered(registered);
            let mut finished = true;
            for (group, verdict) in verdicts {
                match verdict {
                    GroupVerdict::Fenced(_) => metrics.fenced(&group, when.as_str()),
                    GroupVerdict::Unfinished => finished = false,
                    GroupVerdict::NotChecked | GroupVerdict::Passive => {}
                }
            }
            finished
        }
        Err(e) => {
            tracing::warn!(cluster = %cc.cluster, occasion = when.as_str(), error = %error_chain(&e), "fencing check failed; trying again later");
            false
        }
    }
}

impl Actor for FencerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.reread, |_, ctx| {
            ctx.notify(Msg(FenceCheck(When::Reread)))
        });
    }
}

impl Handler<Msg<FenceCheck>> for FencerActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<FenceCheck>, ctx: &mut Context<Self>) {
        let FenceCheck(asked) = msg.0;
        if asked == When::LeaseLost {
            self.unleased = true;
        }
        self.fence_unleased(ctx);
        // The entitlement checks below need DynamoDB; a lease loss asks for a re-read.
        let asked = if asked == When::LeaseLost {
            When::Reread
        } else {
            asked
        };
        if self.checking {
            self.pending = Some(self.pending.map_or(asked, |p| stronger(p, asked)));
            return;
        }
        self.checking = true;
        let when = occasion(self.owed, asked);
        let (cc, store, traffic, metrics, replicas, lease) = (
            self.cc.clone(),
            self.store.clone(),
            self.traffic.clone(),
            self.metrics.clone(),
            Arc::clone(&self.replicas),
            self.lease.clone(),
        );
        let fut = async move {
            // One check at a time (see `checking`), so the cache is never contended.
            let mut cache = std::mem::take(&mut *replicas.lock().unwrap());
            let finished =
                run_check(&cc, &store, &traffic, &metrics, when, &mut cache, &lease).await;
            *replicas.lock().unwrap() = cache;
            finished
        };
        ctx.spawn(fut.into_actor(self).map(move |finished, act, ctx| {
            act.checking = false;
            act.owed = owed_after(when, finished);
            if finished && let Some(r) = &act.readiness {
                r.startup_fencing_done();
            }
            if let Some(owed) = act.owed.filter(|w| *w != When::Reread) {
                tracing::info!(cluster = %act.cc.cluster, occasion = owed.as_str(), "the fencing check did not finish; the next check repeats it");
            }
            if let Some(next) = act.pending.take() {
                ctx.notify(Msg(FenceCheck(next)));
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unfinished_check_is_repeated_with_its_occasion_until_one_finishes() {
        // The start-up check failed: the next re-read checks as at start-up.
        let owed = owed_after(When::Startup, false);
        assert_eq!(occasion(owed, When::Reread), When::Startup);
        // That one failed as well: still owed; then it finishes: back to re-reads.
        let owed = owed_after(occasion(owed, When::Reread), false);
        assert_eq!(owed, Some(When::Startup));
        let owed = owed_after(occasion(owed, When::Reread), true);
        assert_eq!(occasion(owed, When::Reread), When::Reread);
        // A finished check owes nothing.
        assert_eq!(owed_after(When::Regained, true), None);
    }

    #[test]
    fn a_queued_check_keeps_the_strongest_occasion() {
        assert_eq!(stronger(When::Reread, When::Regained), When::Regained);
        assert_eq!(stronger(When::Startup, When::Reread), When::Startup);
        assert_eq!(stronger(When::Reread, When::Reread), When::Reread);
    }
}
