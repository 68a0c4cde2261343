//! This cluster's serving lease: the record `CLUSTERS` / `CLUSTER#<name>` (the heartbeat),
//! renewed every `L/3`, and the watch that fences when it runs out
//! ([`failover_messages::protocol::lease`] has the arithmetic).
//!
//! * Each renewal lists this cluster's FailoverGroups first and publishes which of them keep
//!   serving without DynamoDB (`spec.onCoordinationLoss: KeepServing`), so observers know for
//!   which groups the lease's end proves nothing. A renewal is bounded by `3L/4`: a hung call
//!   is abandoned (if it lands later, observers only wait longer).
//! * The lease is measured from the moment the last successful renewal was *sent*
//!   ([`HeldLease`]), on this process's monotonic clock.
//! * Every `L/12` the watch ticks `/live` (a gap over `L/4` makes the agent not live, so a
//!   hung agent is restarted within the lease) and asks [`HeldLease::holding`]; when the lease is lost it tells the
//!   fencer once per loss ([`FenceCheck`] with [`When::LeaseLost`]), which fences every group
//!   whose policy is `Fence` and whose side is active here, without asking DynamoDB. Nothing
//!   re-activates on its own when renewals succeed again: the usual entitlement checks
//!   ([`When::Regained`]) take over, and only an operation brings a side back.

use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use failover_messages::crd::{CoordinationLoss, FailoverGroup};
use failover_messages::protocol::lease::{Holding, LeaseTerms};
use failover_messages::store::Store;
use kube::api::{Api, ListParams};

use crate::errors::error_chain;
use crate::failover_group::fencing::When;
use crate::kube_ops::ClusterClient;
use crate::metrics::Metrics;
use crate::runtime::admin::Readiness;
use crate::runtime::fencer::FenceCheck;
pub use crate::runtime::lease_state::LeaseHandle;
use crate::seam::{Msg, Sender};

/// The agent version written into the lease record.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The groups (`namespace/name`) of `groups` that keep serving without DynamoDB.
pub fn keep_serving(groups: &[FailoverGroup]) -> Vec<String> {
    groups
        .iter()
        .filter(|g| g.spec.on_coordination_loss == CoordinationLoss::KeepServing)
        .filter_map(|g| {
            Some(format!(
                "{}/{}",
                g.metadata.namespace.as_deref()?,
                g.metadata.name.as_deref()?
            ))
        })
        .collect()
}

/// Renews the lease once: lists the FailoverGroups (for their policies; on failure the last
/// published list is kept), sends the renewal, and records it in `lease` when it succeeds
/// within `3L/4`. Returns the published list.
///
/// A group moved to `KeepServing` is published before this agent acts on it; one moved to
/// `Fence` is fenced at once on a lease loss ([`LeaseHandle::published_keep_serving`]).
pub async fn renew(
    cc: &ClusterClient,
    store: &Store,
    lease: &LeaseHandle,
    last_published: Vec<String>,
) -> Result<Vec<String>, String> {
    let terms = lease.terms();
    // The API server must not hold the renewal: a list that hangs (a stuck connection) would
    // keep this renewal from ever finishing and the lease from ever being renewed again.
    let bound = list_bound(terms);
    let listed = tokio::time::timeout(
        bound,
        Api::<FailoverGroup>::all(cc.client.clone()).list(&ListParams::default()),
    )
    .await;
    let keep = match listed {
        Ok(Ok(list)) => keep_serving(&list.items),
        Ok(Err(e)) => {
            tracing::debug!(cluster = %cc.cluster, error = %e, "cannot list FailoverGroups for the lease; publishing the last list");
            last_published
        }
        Err(_) => {
            tracing::warn!(cluster = %cc.cluster, bound = ?bound, "listing FailoverGroups for the lease took too long; renewing with the last list");
            last_published
        }
    };
    let sent = Instant::now();
    let armed = lease.auto_armed();
    let put = store.put_lease_armed(
        &cc.cluster,
        AGENT_VERSION,
        terms.record_ttl(),
        &keep,
        &armed,
    );
    // A renewal answered within 3L/4 of its send still extends the lease from its send;
    // one that takes longer is abandoned (if it lands later, observers only wait longer).
    match tokio::time::timeout(terms.holder_fences_after(), put).await {
        Ok(Ok(_)) => {
            lease.renewed(sent, keep.clone());
            Ok(keep)
        }
        Ok(Err(e)) => Err(error_chain(&e)),
        Err(_) => Err(format!(
            "no answer within {:?}",
            terms.holder_fences_after()
        )),
    }
}

/// How long a renewal waits for the FailoverGroup list: `L/12`, between 0.5 s and 5 s (the
/// renewal is due every `L/3` and must be sent well within `3L/4`).
pub fn list_bound(terms: LeaseTerms) -> Duration {
    (terms.duration / 12).clamp(Duration::from_millis(500), Duration::from_secs(5))
}

/// Renew the lease now.
#[derive(Debug, Clone, Copy)]
struct Renew;

/// Look at the lease now.
#[derive(Debug, Clone, Copy)]
struct Watch;

/// Renews this cluster's serving lease and fences when it runs out.
pub struct LeaseActor {
    cc: ClusterClient,
    store: Store,
    lease: LeaseHandle,
    metrics: Metrics,
    readiness: Readiness,
    fencer: Sender<FenceCheck>,
    renewing: bool,
    failing: bool,
    lost_told: bool,
    published: Vec<String>,
}

impl LeaseActor {
    /// The lease actor for `cc`'s cluster; `fencer` is told when the lease is lost and when
    /// DynamoDB answers again after failing.
    pub fn new(
        cc: ClusterClient,
        store: Store,
        lease: LeaseHandle,
        metrics: Metrics,
        readiness: Readiness,
        fencer: Sender<FenceCheck>,
    ) -> Self {
        Self {
            cc,
            store,
            lease,
            metrics,
            readiness,
            fencer,
            renewing: false,
            failing: false,
            lost_told: false,
            published: Vec::new(),
        }
    }
}

impl Actor for LeaseActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let terms = self.lease.terms();
        ctx.notify(Msg(Renew));
        ctx.run_interval(terms.renew_every(), |_, ctx| ctx.notify(Msg(Renew)));
        let watch = (terms.duration / 12).max(Duration::from_millis(100));
        ctx.run_interval(watch, |_, ctx| ctx.notify(Msg(Watch)));
    }
}

impl Handler<Msg<Renew>> for LeaseActor {
    type Result = ();

    fn handle(&mut self, _: Msg<Renew>, ctx: &mut Context<Self>) {
        if self.renewing {
            return;
        }
        self.renewing = true;
        let (cc, store, lease) = (self.cc.clone(), self.store.clone(), self.lease.clone());
        let last = self.published.clone();
        let fut = async move { renew(&cc, &store, &lease, last).await };
        ctx.spawn(fut.into_actor(self).map(|res, act, _| {
            act.renewing = false;
            match res {
                Ok(published) => {
                    act.published = published;
                    act.metrics.heartbeat("ok");
                    act.readiness.aws_ok();
                    act.readiness.heartbeat_written();
                    if std::mem::take(&mut act.failing) {
                        tracing::info!(cluster = %act.cc.cluster, "DynamoDB answers again: serving lease renewed; checking whether this cluster must fence");
                        let _ = act.fencer.send(FenceCheck(When::Regained));
                    }
                }
                Err(e) => {
                    act.failing = true;
                    act.metrics.heartbeat("error");
                    tracing::warn!(cluster = %act.cc.cluster, error = %e, "renewing the serving lease failed");
                }
            }
        }));
    }
}

impl Handler<Msg<Watch>> for LeaseActor {
    type Result = ();

    fn handle(&mut self, _: Msg<Watch>, _: &mut Context<Self>) {
        self.readiness
            .lease_loop_tick(self.lease.terms().duration / 4);
        match self.lease.holding() {
            Holding::Live(_) => self.lost_told = false,
            // The first renewal is still on its way (start-up handles a failed one).
            Holding::NeverHeld => {}
            Holding::Lost(since) => {
                if !std::mem::replace(&mut self.lost_told, true) {
                    let terms = self.lease.terms();
                    tracing::error!(
                        cluster = %self.cc.cluster,
                        lease = ?terms.duration,
                        unrenewed_for = ?(terms.holder_fences_after() + since),
                        "serving lease lost: fencing every group with onCoordinationLoss Fence that is active here"
                    );
                    self.metrics.lease_lost();
                    let _ = self.fencer.send(FenceCheck(When::LeaseLost));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_before_a_renewal_is_bounded_well_within_the_renewal_interval() {
        let bound = |secs| list_bound(LeaseTerms::new(Duration::from_secs(secs)));
        assert_eq!(bound(30), Duration::from_millis(2500));
        assert_eq!(bound(3), Duration::from_millis(500));
        assert_eq!(bound(600), Duration::from_secs(5));
        for secs in [3, 6, 30, 600] {
            let terms = LeaseTerms::new(Duration::from_secs(secs));
            assert!(bound(secs) < terms.renew_every(), "{secs}");
        }
    }

    fn group(ns: &str, name: &str, policy: CoordinationLoss) -> FailoverGroup {
        let mut g = FailoverGroup::new(name, Default::default());
        g.metadata.namespace = Some(ns.into());
        g.spec.on_coordination_loss = policy;
        g
    }

    #[test]
    fn only_keep_serving_groups_are_published() {
        let groups = [
            group("shop", "orders", CoordinationLoss::Fence),
            group("shop", "cart", CoordinationLoss::KeepServing),
        ];
        assert_eq!(keep_serving(&groups), ["shop/cart"]);
    }
}
