//! The actor that submits user-created `Failover` objects of this cluster
//! ([`TriggerActor`]; the decisions and the submission are in [`crate::failover_object::trigger`]).
//!
//! A watcher on Failovers (all namespaces) feeds the actor; every object that
//! [`needs_submission`] is submitted once at a time; the re-read timer retries those still
//! waiting (a transient DynamoDB or SQS failure, or a group not registered yet). Objects the
//! agents create, and objects already submitted, are ignored.

use std::collections::HashSet;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler};
use failover_messages::crd::Failover;
use kube::api::Api;

use crate::errors::error_chain;
use crate::failover_object::trigger::{Trigger, needs_submission};
use crate::runtime::groups::{Key, WatchCache, Watched, watch_into};
use crate::seam::{Msg, Sender};

/// Retry every Failover still waiting (the re-read timer).
#[derive(Debug, Clone, Copy)]
pub struct RetryPending;

#[derive(Debug)]
struct Submitted {
    key: Key,
}

/// Submits user-created Failovers (see the module docs).
pub struct TriggerActor {
    client: kube::Client,
    trigger: Trigger,
    reread: Duration,
    cache: WatchCache<Failover>,
    busy: HashSet<Key>,
    again: HashSet<Key>,
    readiness: Option<crate::runtime::admin::Readiness>,
}

impl TriggerActor {
    /// An actor submitting through `trigger`, retrying every `reread`.
    pub fn new(client: kube::Client, trigger: Trigger, reread: Duration) -> Self {
        Self {
            client,
            trigger,
            reread,
            cache: WatchCache::default(),
            busy: HashSet::new(),
            again: HashSet::new(),
            readiness: None,
        }
    }

    /// Reports the watch as synced to `readiness` once its first list arrived (`/ready`
    /// waits for it).
    pub fn with_readiness(mut self, readiness: crate::runtime::admin::Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    fn submit(&mut self, key: Key, ctx: &mut Context<Self>) {
        let Some(fo) = self
            .cache
            .get(&key)
            .filter(|f| needs_submission(f))
            .cloned()
        else {
            return;
        };
        if self.busy.contains(&key) {
            self.again.insert(key);
            return;
        }
        self.busy.insert(key.clone());
        let trigger = self.trigger.clone();
        let done: Sender<Submitted> = Sender::from_addr(ctx.address());
        actix_rt::spawn(async move {
            if let Err(e) = trigger.reconcile(&fo).await {
                tracing::warn!(
                    failover = %format!("{}/{}", key.0, key.1), error = %error_chain(&e),
                    "cannot submit the Failover yet; retrying on the next re-read"
                );
            }
            let _ = done.send(Submitted { key });
        });
    }
}

impl Actor for TriggerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let api: Api<Failover> = Api::all(self.client.clone());
        let to: Sender<Watched<Failover>> = Sender::from_addr(ctx.address());
        actix_rt::spawn(watch_into(api, "failovers", to, self.readiness.clone()));
        ctx.run_interval(self.reread, |_, ctx| ctx.notify(Msg(RetryPending)));
    }
}

impl Handler<Msg<Watched<Failover>>> for TriggerActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<Watched<Failover>>, ctx: &mut Context<Self>) {
        if let Some(key) = self.cache.apply(msg.0) {
            self.submit(key, ctx);
        }
    }
}

impl Handler<Msg<RetryPending>> for TriggerActor {
    type Result = ();

    fn handle(&mut self, _: Msg<RetryPending>, ctx: &mut Context<Self>) {
        for key in self.cache.keys() {
            self.submit(key, ctx);
        }
    }
}

impl Handler<Msg<Submitted>> for TriggerActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<Submitted>, ctx: &mut Context<Self>) {
        let key = msg.0.key;
        self.busy.remove(&key);
        if self.again.remove(&key) {
            self.submit(key, ctx);
        }
    }
}
