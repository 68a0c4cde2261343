//! The fencing actor: runs [`fencing::check_groups`] when told to ([`FenceCheck`]) and on
//! every re-read, one check at a time (a check asked for while one runs is run after it,
//! with the strongest occasion asked for). The start-up check runs before this actor exists
//! (see [`super::run`]); the heartbeat actor asks for a [`When::Regained`] check when
//! DynamoDB answers again after failing.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use failover_messages::store::Store;

use std::sync::{Arc, Mutex};

use crate::errors::error_chain;
use crate::failover_group::fencing::{self, GroupVerdict, ReplicaCache, When};
use crate::kube_ops::ClusterClient;
use crate::kube_ops::traffic::TrafficConfig;
use crate::metrics::Metrics;
use crate::seam::Msg;

/// Check the groups now.
#[derive(Debug, Clone, Copy)]
pub struct FenceCheck(pub When);

/// Of two occasions, the one that checks more groups.
pub fn stronger(a: When, b: When) -> When {
    if a == When::Reread { b } else { a }
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
    replicas: Arc<Mutex<ReplicaCache>>,
}

impl FencerActor {
    /// A fencer for `cc`'s cluster, checking at least every `reread`.
    pub fn new(
        cc: ClusterClient,
        store: Store,
        traffic: TrafficConfig,
        metrics: Metrics,
        reread: Duration,
    ) -> Self {
        Self {
            cc,
            store,
            traffic,
            metrics,
            reread,
            checking: false,
            pending: None,
            replicas: Arc::default(),
        }
    }
}

/// Runs one check and reports what it fenced.
pub async fn run_check(
    cc: &ClusterClient,
    store: &Store,
    traffic: &TrafficConfig,
    metrics: &Metrics,
    when: When,
    replicas: &mut ReplicaCache,
) {
    match fencing::check_groups(cc, store, traffic, when, replicas).await {
        Ok(verdicts) => {
            for (group, verdict) in verdicts {
                if let GroupVerdict::Fenced(_) = verdict {
                    metrics.fenced(&group, when.as_str());
                }
            }
        }
        Err(e) => {
            tracing::warn!(cluster = %cc.cluster, occasion = when.as_str(), error = %error_chain(&e), "fencing check failed; trying again later");
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
        let FenceCheck(when) = msg.0;
        if self.checking {
            self.pending = Some(self.pending.map_or(when, |p| stronger(p, when)));
            return;
        }
        self.checking = true;
        let (cc, store, traffic, metrics, replicas) = (
            self.cc.clone(),
            self.store.clone(),
            self.traffic.clone(),
            self.metrics.clone(),
            Arc::clone(&self.replicas),
        );
        let fut = async move {
            // One check at a time (see `checking`), so the cache is never contended.
            let mut cache = std::mem::take(&mut *replicas.lock().unwrap());
            run_check(&cc, &store, &traffic, &metrics, when, &mut cache).await;
            *replicas.lock().unwrap() = cache;
        };
        ctx.spawn(fut.into_actor(self).map(|(), act, ctx| {
            act.checking = false;
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
    fn a_queued_check_keeps_the_strongest_occasion() {
        assert_eq!(stronger(When::Reread, When::Regained), When::Regained);
        assert_eq!(stronger(When::Startup, When::Reread), When::Startup);
        assert_eq!(stronger(When::Reread, When::Reread), When::Reread);
    }
}
