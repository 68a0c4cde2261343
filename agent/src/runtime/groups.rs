//! The actor that keeps every `FailoverGroup` status of this cluster current
//! ([`GroupStatusActor`]), and the small watch cache it shares with the trigger actor.
//!
//! A `kube::runtime::watcher` on FailoverGroups (all namespaces) feeds the actor through a
//! [`Sender`]: each change refreshes that group ([`group_status::refresh`]: DynamoDB
//! state, objects in this cluster, status patched only when it differs); a timer (the
//! agent's `--reread-interval`) refreshes every group, so a change only DynamoDB knows of
//! (an operation started or finished elsewhere) shows up without a wake-up. At most one
//! refresh per group runs at a time; a change during one schedules one more. The watch
//! event of the actor's own status write (its echo, [`is_echo`]) causes no refresh, and the
//! timer skips a group refreshed less than half an interval ago ([`due_for_reread`]).
//!
//! A spec the factory cannot plan gets `SpecValid=False` naming the field and a Warning
//! Event on the group when that verdict first appears or changes; the agent keeps running.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler};
use failover_messages::crd::FailoverGroup;
use failover_messages::store::Store;
use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use crate::errors::error_chain;
use crate::failover_group::group_events::invalid_spec_event;
use crate::failover_group::group_spec::problems_message;
use crate::failover_group::group_status::{self, COND_SPEC_VALID, Refreshed};
use crate::kube_events::Events;
use crate::seam::{Msg, Sender};

/// `(namespace, name)` of a namespaced object.
pub type Key = (String, String);

/// The key of `obj`.
pub fn key_of<K: Resource>(obj: &K) -> Key {
    let m = obj.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// One watch event, as the actors receive it.
#[derive(Debug)]
pub enum Watched<K> {
    /// Added or changed (also during a relist).
    Applied(K),
    /// Deleted.
    Deleted(Key),
    /// A relist starts.
    RelistStarted,
    /// A relist is complete: objects not listed again are gone.
    RelistDone,
}

/// The objects a watch has seen, by key. Pure: fed watch events, answers what changed.
#[derive(Debug)]
pub struct WatchCache<K> {
    objects: BTreeMap<Key, K>,
    relisted: Option<BTreeSet<Key>>,
}

impl<K> Default for WatchCache<K> {
    fn default() -> Self {
        Self {
            objects: BTreeMap::new(),
            relisted: None,
        }
    }
}

impl<K: Resource> WatchCache<K> {
    /// Applies one event; returns the key of an object added or changed.
    pub fn apply(&mut self, ev: Watched<K>) -> Option<Key> {
        match ev {
            Watched::Applied(obj) => {
                let key = key_of(&obj);
                if let Some(r) = &mut self.relisted {
                    r.insert(key.clone());
                }
                self.objects.insert(key.clone(), obj);
                Some(key)
            }
            Watched::Deleted(key) => {
                self.objects.remove(&key);
                None
            }
            Watched::RelistStarted => {
                self.relisted = Some(BTreeSet::new());
                None
            }
            Watched::RelistDone => {
                if let Some(seen) = self.relisted.take() {
                    self.objects.retain(|k, _| seen.contains(k));
                }
                None
            }
        }
    }

    /// The object of `key`.
    pub fn get(&self, key: &Key) -> Option<&K> {
        self.objects.get(key)
    }

    /// Every key.
    pub fn keys(&self) -> Vec<Key> {
        self.objects.keys().cloned().collect()
    }
}

/// Runs a watcher on `api` forever, sending every event to `to`, and reporting the watch
/// `what` as synced to `readiness` once its first list is complete. Errors are logged and
/// the watch retried with backoff.
pub async fn watch_into<K>(
    api: Api<K>,
    what: &'static str,
    to: Sender<Watched<K>>,
    readiness: Option<crate::runtime::admin::Readiness>,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let mut stream = kube::runtime::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let msg = match ev {
            Ok(Event::Apply(o) | Event::InitApply(o)) => Watched::Applied(o),
            Ok(Event::Delete(o)) => Watched::Deleted(key_of(&o)),
            Ok(Event::Init) => Watched::RelistStarted,
            Ok(Event::InitDone) => {
                if let Some(r) = &readiness {
                    r.watch_synced(what);
                }
                Watched::RelistDone
            }
            Err(e) => {
                tracing::warn!(resource = what, error = %error_chain(&e), "watch failed; retrying");
                continue;
            }
        };
        if to.send(msg).is_err() {
            return;
        }
    }
}

/// Refresh every group now (the re-read timer).
#[derive(Debug, Clone, Copy)]
pub struct RefreshAll;

/// A refresh ended.
#[derive(Debug)]
struct RefreshDone {
    key: Key,
    result: Result<Refreshed, String>,
    /// `SpecValid` (status, message) before the refresh.
    before: Option<(String, String)>,
}

fn spec_valid(fg: &FailoverGroup) -> Option<(String, String)> {
    fg.status.as_ref().and_then(|s| {
        s.conditions
            .iter()
            .find(|c| c.type_ == COND_SPEC_VALID)
            .map(|c| (c.status.clone(), c.message.clone()))
    })
}

/// Keeps the FailoverGroup statuses of this cluster current (see the module docs).
pub struct GroupStatusActor {
    client: kube::Client,
    store: Store,
    cluster: String,
    traffic_key: String,
    reread: Duration,
    events: Events,
    cache: WatchCache<FailoverGroup>,
    busy: HashSet<Key>,
    again: HashSet<Key>,
    /// The resource version each group's last status write gave it: its watch event is
    /// that write's echo, and needs no refresh.
    written: BTreeMap<Key, String>,
    /// When each group's last refresh ended ([`due_for_reread`]).
    refreshed_at: BTreeMap<Key, std::time::Instant>,
    readiness: Option<crate::runtime::admin::Readiness>,
}

impl GroupStatusActor {
    /// An actor for `cluster`, reading `store`, refreshing every group every `reread`;
    /// `traffic_key` is the external-dns annotation that says whether traffic is on.
    pub fn new(
        client: kube::Client,
        store: Store,
        cluster: &str,
        traffic_key: &str,
        reread: Duration,
    ) -> Self {
        Self {
            events: Events::new(client.clone(), cluster),
            client,
            store,
            cluster: cluster.to_owned(),
            traffic_key: traffic_key.to_owned(),
            reread,
            cache: WatchCache::default(),
            busy: HashSet::new(),
            again: HashSet::new(),
            written: BTreeMap::new(),
            refreshed_at: BTreeMap::new(),
            readiness: None,
        }
    }

    /// Reports the watch as synced to `readiness` once its first list arrived (`/ready`
    /// waits for it).
    pub fn with_readiness(mut self, readiness: crate::runtime::admin::Readiness) -> Self {
        self.readiness = Some(readiness);
        self
    }

    fn refresh(&mut self, key: Key, ctx: &mut Context<Self>) {
        if self.busy.contains(&key) {
            self.again.insert(key);
            return;
        }
        let Some(fg) = self.cache.get(&key).cloned() else {
            return;
        };
        self.busy.insert(key.clone());
        let (client, store, cluster, traffic_key) = (
            self.client.clone(),
            self.store.clone(),
            self.cluster.clone(),
            self.traffic_key.clone(),
        );
        let done: Sender<RefreshDone> = Sender::from_addr(ctx.address());
        actix_rt::spawn(async move {
            let before = spec_valid(&fg);
            let result = group_status::refresh(&client, &store, &cluster, &fg, &traffic_key)
                .await
                .map_err(|e| error_chain(&e));
            let _ = done.send(RefreshDone {
                key,
                result,
                before,
            });
        });
    }
}

impl Actor for GroupStatusActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let api: Api<FailoverGroup> = Api::all(self.client.clone());
        let to: Sender<Watched<FailoverGroup>> = Sender::from_addr(ctx.address());
        actix_rt::spawn(watch_into(
            api,
            "failovergroups",
            to,
            self.readiness.clone(),
        ));
        ctx.run_interval(self.reread, |_, ctx| ctx.notify(Msg(RefreshAll)));
    }
}

impl Handler<Msg<Watched<FailoverGroup>>> for GroupStatusActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<Watched<FailoverGroup>>, ctx: &mut Context<Self>) {
        if let Some(key) = self.cache.apply(msg.0) {
            let version = self
                .cache
                .get(&key)
                .and_then(|g| g.metadata.resource_version.as_ref());
            if is_echo(self.written.get(&key), version) {
                self.written.remove(&key);
                return;
            }
            self.refresh(key, ctx);
        }
    }
}

impl Handler<Msg<RefreshAll>> for GroupStatusActor {
    type Result = ();

    fn handle(&mut self, _: Msg<RefreshAll>, ctx: &mut Context<Self>) {
        let now = std::time::Instant::now();
        for key in self.cache.keys() {
            if due_for_reread(self.refreshed_at.get(&key).copied(), now, self.reread) {
                self.refresh(key, ctx);
            }
        }
    }
}

impl Handler<Msg<RefreshDone>> for GroupStatusActor {
    type Result = ();

    fn handle(&mut self, msg: Msg<RefreshDone>, ctx: &mut Context<Self>) {
        let RefreshDone {
            key,
            result,
            before,
        } = msg.0;
        self.busy.remove(&key);
        self.refreshed_at
            .insert(key.clone(), std::time::Instant::now());
        match result {
            Ok(r) => {
                match &r.written_version {
                    Some(v) => self.written.insert(key.clone(), v.clone()),
                    None => self.written.remove(&key),
                };
                let now = r
                    .status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == COND_SPEC_VALID);
                let changed = now.map(|c| (c.status.clone(), c.message.clone())) != before;
                if !r.problems.is_empty() && changed {
                    tracing::warn!(
                        group = %format!("{}/{}", key.0, key.1), cluster = %self.cluster,
                        problems = %problems_message(&r.problems),
                        "the FailoverGroup spec is invalid"
                    );
                    if let Some(fg) = self.cache.get(&key) {
                        let mut regarding = fg.object_ref(&());
                        regarding.namespace = Some(key.0.clone());
                        let ev = invalid_spec_event(&r.problems, &self.cluster);
                        let events = self.events.clone();
                        actix_rt::spawn(async move { events.publish(&regarding, &ev).await });
                    }
                }
            }
            Err(e) => tracing::warn!(
                group = %format!("{}/{}", key.0, key.1), cluster = %self.cluster, error = %e,
                "cannot refresh the FailoverGroup status; retrying on the next re-read"
            ),
        }
        if self.again.remove(&key) {
            self.refresh(key, ctx);
        }
    }
}

/// Whether the timer's refresh of every group (every `reread`) refreshes a group whose last
/// refresh ended at `last`: not when a change refreshed it less than half an interval ago
/// (during an operation its changes refresh it often; the timer is for what no change
/// shows).
pub fn due_for_reread(
    last: Option<std::time::Instant>,
    now: std::time::Instant,
    reread: Duration,
) -> bool {
    last.is_none_or(|at| now.saturating_duration_since(at) >= reread / 2)
}

/// Whether a watched object of resource version `version` is the echo of this actor's own
/// status write (`written`): the object it computed that status from, with that status.
pub fn is_echo(written: Option<&String>, version: Option<&String>) -> bool {
    written.is_some() && written == version
}

#[cfg(test)]
mod tests {
    use failover_messages::crd::FailoverGroupSpec;

    use super::*;

    fn fg(ns: &str, name: &str) -> FailoverGroup {
        let mut g = FailoverGroup::new(name, FailoverGroupSpec::default());
        g.metadata.namespace = Some(ns.into());
        g
    }

    #[test]
    fn the_timer_skips_a_group_refreshed_less_than_half_an_interval_ago() {
        let reread = Duration::from_secs(15);
        let now = std::time::Instant::now();
        assert!(due_for_reread(None, now, reread), "never refreshed");
        let at = |ago: u64| now.checked_sub(Duration::from_secs(ago));
        assert!(!due_for_reread(at(7), now, reread));
        assert!(due_for_reread(at(8), now, reread));
        assert!(due_for_reread(at(30), now, reread));
    }

    #[test]
    fn only_the_version_of_its_own_write_is_an_echo() {
        let (mine, later) = ("41".to_owned(), "42".to_owned());
        assert!(is_echo(Some(&mine), Some(&mine)));
        assert!(
            !is_echo(Some(&mine), Some(&later)),
            "a change after the write"
        );
        assert!(!is_echo(None, Some(&mine)), "nothing written");
        assert!(!is_echo(None, None));
    }

    #[test]
    fn the_cache_follows_the_watch_and_forgets_what_a_relist_misses() {
        let mut c = WatchCache::default();
        assert_eq!(
            c.apply(Watched::Applied(fg("a", "x"))),
            Some(("a".into(), "x".into()))
        );
        c.apply(Watched::Applied(fg("a", "y")));
        c.apply(Watched::Deleted(("a".into(), "x".into())));
        assert_eq!(c.keys(), [("a".to_owned(), "y".to_owned())]);
        c.apply(Watched::RelistStarted);
        c.apply(Watched::Applied(fg("b", "z")));
        c.apply(Watched::RelistDone);
        assert_eq!(c.keys(), [("b".to_owned(), "z".to_owned())]);
    }
}
