//! The automatic failover actor ([`AutoFailoverActor`]): every `L/6` (between 0.5 s and 5 s)
//! it lists this cluster's FailoverGroups with `spec.autoFailover.enabled`, reads each one's
//! group state and, on a standby, the active cluster's lease record, and asks
//! [`auto_failover::decide`] (the rules are there). A group with automatic failover off costs
//! no DynamoDB read.
//!
//! What it shows, per enabled group in this cluster registered in its table (a group it does
//! not find registered may belong to another installation sharing the cluster, and is left
//! alone):
//! * the `AutoFailover` condition: `True` while armed (`Watching`, `Counting` with the time it
//!   acts unless the lease is renewed, `Started`), `False` with the reason it is not armed;
//! * Events: `AutoFailoverCounting` (Warning) when the active cluster's lease missed its
//!   renewals, `AutoFailoverCancelled` when it is renewed again, `AutoFailoverStarted`
//!   (Warning) when it starts the operation, `AutoFailoverHeld` when the cooldown or the
//!   target order holds it back;
//! * metrics `failover_auto_failover_armed{group}` and `failover_auto_failovers_total{group}`.
//!
//! When it acts it starts a forced CONSISTENCY operation to this cluster exactly as a front
//! end does (`decide_start`, then the conditional start; `requestedBy: auto:<cluster>`) and
//! wakes the source and target inboxes. Losing the start to another standby is quiet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use failover_messages::crd::FailoverGroup;
use failover_messages::envelope::EnvelopeKind;
use failover_messages::inbox::Inbox;
use failover_messages::keys::GroupRef;
use failover_messages::protocol::lease::LeaseWatch;
use failover_messages::protocol::spec::{problems, problems_message};
use failover_messages::protocol::start;
use failover_messages::records::{AutoArmed, Mode, Operation};
use failover_messages::store::{StartOutcome, StartRequest, Store, StoreError};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::conditions::set_condition;
use crate::errors::error_chain;
use crate::failover_group::auto_failover::{
    self, COND_AUTO_FAILOVER, FireInputs, NotArmed, Observed, Settings, Verdict, human,
};
use crate::kube_events::{EventSpec, Events};
use crate::kube_ops::FIELD_MANAGER;
use crate::metrics::Metrics;
use crate::runtime::lease_state::LeaseHandle;
use crate::tasks::LeaseSightings;

/// The first lease of an automatic operation (as `failoverctl`'s default).
const OPERATION_LEASE: Duration = Duration::from_secs(120);
/// How many closed operations of the group are read for the cooldown.
const HISTORY_LOOKBACK: usize = 20;

/// What the actor needs to read and act.
#[derive(Clone)]
pub struct AutoDeps {
    /// This cluster's Kubernetes client.
    pub client: kube::Client,
    /// The table.
    pub store: Store,
    /// For the wake-ups of a started operation.
    pub inbox: Inbox,
    /// This cluster.
    pub cluster: String,
    /// This agent's serving lease.
    pub lease: LeaseHandle,
    /// Metrics.
    pub metrics: Metrics,
    /// This process's lease reads, shared with the forced target's wait: each read of the
    /// active cluster's record is added, so the operation it starts does not time the same
    /// version again.
    pub sightings: LeaseSightings,
}

/// What one group showed last, so Events mark transitions only.
#[derive(Clone, Debug, Default)]
struct Shown {
    /// The last verdict's label (`Watching`, `Counting`, a not-armed reason, …).
    label: String,
    /// Wall-clock start of the current count (kept while counting, so the message holds).
    counting_since: Option<Timestamp>,
    /// Cooldown known to hold until then (no history read before).
    held_until: Option<Instant>,
}

#[derive(Default)]
struct AutoState {
    watch: Option<LeaseWatch>,
    shown: BTreeMap<String, Shown>,
}

/// Watches the active clusters' leases for the groups with automatic failover (see the
/// module docs).
pub struct AutoFailoverActor {
    deps: AutoDeps,
    events: Events,
    state: Arc<Mutex<AutoState>>,
    busy: bool,
}

impl AutoFailoverActor {
    /// An actor for `deps`.
    pub fn new(deps: AutoDeps) -> Self {
        Self {
            events: Events::new(deps.client.clone(), &deps.cluster),
            deps,
            state: Arc::new(Mutex::new(AutoState::default())),
            busy: false,
        }
    }

    /// The tick: `L/6`, between 0.5 s and 5 s.
    pub fn tick(&self) -> Duration {
        (self.deps.lease.terms().duration / 6)
            .clamp(Duration::from_millis(500), Duration::from_secs(5))
    }
}

impl Actor for AutoFailoverActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.tick(), |act, ctx| {
            if act.busy {
                return;
            }
            act.busy = true;
            let (deps, events, state) = (act.deps.clone(), act.events.clone(), act.state.clone());
            let fut = async move {
                let mut st = std::mem::take(&mut *state.lock().unwrap());
                check_all(&deps, &events, &mut st).await;
                *state.lock().unwrap() = st;
            };
            ctx.spawn(fut.into_actor(act).map(|(), act, _| act.busy = false));
        });
    }
}

/// One tick over every enabled group of this cluster.
async fn check_all(deps: &AutoDeps, events: &Events, st: &mut AutoState) {
    let api: Api<FailoverGroup> = Api::all(deps.client.clone());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(e) => {
            tracing::debug!(cluster = %deps.cluster, error = %error_chain(&e), "cannot list FailoverGroups for automatic failover; next tick");
            return;
        }
    };
    let mut seen = BTreeSet::new();
    let mut armed = Vec::new();
    for fg in list.items.iter().filter(|g| g.spec.auto_failover.enabled) {
        let ns = fg.metadata.namespace.clone().unwrap_or_default();
        let name = fg.metadata.name.clone().unwrap_or_default();
        let Ok(group) = GroupRef::new(&ns, &name) else {
            continue;
        };
        let key = group.to_string();
        seen.insert(key.clone());
        let mut shown = st.shown.remove(&key).unwrap_or_default();
        let watch = st
            .watch
            .get_or_insert_with(|| LeaseWatch::new(deps.lease.terms()));
        // A link that swallows requests must not hold the watch (or its condition) for ever;
        // what was counted before such a gap is forgotten.
        let bound = (deps.lease.terms().duration / 2).max(Duration::from_secs(3));
        let checked =
            tokio::time::timeout(bound, check_group(deps, watch, fg, &group, &mut shown)).await;
        let (verdict, started) = checked.unwrap_or_else(|_| {
            *watch = LeaseWatch::new(deps.lease.terms());
            let msg = format!("DynamoDB did not answer within {}", human(bound));
            (off("StoreUnreadable", msg), None)
        });
        show(
            deps,
            events,
            fg,
            &group,
            &verdict,
            started.as_ref(),
            &mut shown,
        )
        .await;
        if let Some(a) = published(&key, &verdict, &shown, fg) {
            armed.push(a);
        }
        st.shown.insert(key, shown);
    }
    for gone in st.shown.keys().filter(|k| !seen.contains(*k)) {
        deps.metrics.auto_failover_armed(gone, false);
    }
    st.shown.retain(|k, _| seen.contains(k));
    deps.lease.set_auto_armed(armed);
}

/// The verdict for one group, and the operation started when it fired.
async fn check_group(
    deps: &AutoDeps,
    watch: &mut LeaseWatch,
    fg: &FailoverGroup,
    group: &GroupRef,
    shown: &mut Shown,
) -> (Verdict, Option<Operation>) {
    let terms = deps.lease.terms();
    let settings = match Settings::of(&fg.spec.auto_failover, terms) {
        Ok(Some(s)) => s,
        Ok(None) => return (off("Disabled", "automatic failover is off".into()), None),
        Err(n) => return (Verdict::Off(n), None),
    };
    let found = problems(&fg.spec);
    if !found.is_empty() {
        return (off("SpecInvalid", problems_message(&found)), None);
    }
    // The count runs only over reads in a row while this cluster is connected: after a gap
    // (a failed read, its own lease not live) it starts again, so a standby whose own link
    // healed never mistakes the gap for the active cluster standing still.
    let state = match deps.store.get_group_state(group).await {
        Ok(s) => s,
        Err(e) => {
            *watch = LeaseWatch::new(terms);
            return (unreadable(&e), None);
        }
    };
    let own_lease_live = !deps.lease.holding().is_lost();
    let mut active_unchanged = None;
    let mut active_keeps_serving = false;
    if !own_lease_live && let Some(s) = state.as_ref().filter(|s| s.active_cluster != deps.cluster)
    {
        watch.forget(&s.active_cluster);
    }
    if let Some(s) = state.as_ref().filter(|s| s.active_cluster != deps.cluster)
        && own_lease_live
    {
        let record = match deps.store.get_heartbeat(&s.active_cluster).await {
            Ok(r) => r,
            Err(e) => {
                watch.forget(&s.active_cluster);
                return (unreadable(&e), None);
            }
        };
        let now = Instant::now();
        let heartbeat = record.as_ref().map(|r| &r.heartbeat);
        watch.observe(&s.active_cluster, heartbeat, now);
        deps.sightings
            .lock()
            .unwrap()
            .observe(&s.active_cluster, heartbeat, now);
        active_unchanged = watch.unchanged_for(&s.active_cluster, now);
        active_keeps_serving = watch.keeps_serving(&s.active_cluster, &group.to_string());
    }
    let verdict = auto_failover::decide(
        &settings,
        &Observed {
            cluster: &deps.cluster,
            state: state.as_ref(),
            own_lease_live,
            active_unchanged,
            active_keeps_serving,
            lease: terms,
        },
    );
    let Verdict::Fire { active, unchanged } = &verdict else {
        return (verdict, None);
    };
    if shown.held_until.is_some_and(|t| Instant::now() < t) {
        return (off("CoolingDown", "the cooldown still runs".into()), None);
    }
    match fire(deps, &settings, fg, group, active, *unchanged).await {
        Ok(Some(op)) => (verdict, Some(op)),
        Ok(None) => (
            off("StartLost", "another start won; nothing to do".into()),
            None,
        ),
        Err(Held::Refused(n)) => {
            // The history is read again when the cooldown ends (at most 30 s on: the
            // history may change meanwhile, e.g. a failover by hand).
            if let Some(left) = n.retry_after {
                shown.held_until = Some(Instant::now() + left.min(Duration::from_secs(30)));
            }
            (Verdict::Off(n), None)
        }
        Err(Held::Store(e)) => (unreadable(&e), None),
    }
}

enum Held {
    Refused(NotArmed),
    Store(StoreError),
}

impl From<StoreError> for Held {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// The fire-time checks, then the forced start; `Ok(None)`: another start won.
async fn fire(
    deps: &AutoDeps,
    settings: &Settings,
    fg: &FailoverGroup,
    group: &GroupRef,
    active: &str,
    unchanged: Duration,
) -> Result<Option<Operation>, Held> {
    let now = Timestamp::now();
    let last_auto = deps
        .store
        .history(group, Some(HISTORY_LOOKBACK))
        .await?
        .into_iter()
        .map(|h| h.operation)
        .filter(|op| auto_failover::is_automatic(&op.requested_by))
        .map(|op| op.requested_at)
        .max();
    let mut live_targets = Vec::new();
    for t in &settings.targets {
        if let Some(hb) = deps.store.get_heartbeat(t).await?
            && !hb.stale
        {
            live_targets.push(t.clone());
        }
    }
    let inputs = FireInputs {
        last_auto,
        live_targets,
    };
    auto_failover::fire_check(settings, &deps.cluster, active, &inputs, now)
        .map_err(Held::Refused)?;
    let view = deps.store.read_start_view(group, &deps.cluster).await?;
    let ask = start::Request {
        group,
        target: &deps.cluster,
        source: None,
        force: true,
        op_id: None,
        source_is_down: false,
    };
    let plan = start::decide_start(&view.observed(Some(true)), &ask, view.read_at).map_err(
        |refusals| {
            let first = refusals.into_iter().next().map(|r| r.to_string());
            Held::Refused(NotArmed::new(
                "StartRefused",
                first.unwrap_or_else(|| "the start was refused".into()),
            ))
        },
    )?;
    let req = StartRequest {
        group: group.clone(),
        source: plan.source,
        target: deps.cluster.clone(),
        mode: Mode::Consistency,
        force: true,
        source_is_down: false,
        reason: auto_failover::reason(active, unchanged, now),
        requested_by: auto_failover::requested_by(&deps.cluster),
        lease_ttl: OPERATION_LEASE,
        op_id: None,
    };
    let op = match deps.store.start_operation(req).await? {
        StartOutcome::Started(op) => op,
        other => {
            tracing::debug!(group = %group, answer = ?other, "automatic failover: another start won");
            return Ok(None);
        }
    };
    tracing::warn!(
        group = %group, op = %op.id, lost = %active, cluster = %deps.cluster,
        generation = fg.metadata.generation, reason = %op.reason,
        "automatic failover started"
    );
    deps.metrics.auto_failover(&group.to_string());
    for (cluster, sent) in deps
        .inbox
        .notify_operation(&op, EnvelopeKind::OperationStarted, Timestamp::now())
        .await
    {
        if let Err(e) = sent {
            tracing::warn!(%cluster, op = %op.id, error = %error_chain(&e), "cannot notify a cluster of an automatic failover; its agent finds it on its next re-read");
        }
    }
    Ok(Some(op))
}

/// What the heartbeat publishes of an armed group (for `failoverctl status`): watching, or
/// counting with when this cluster acts.
fn published(
    group: &str,
    verdict: &Verdict,
    shown: &Shown,
    fg: &FailoverGroup,
) -> Option<AutoArmed> {
    let acts_at = match verdict {
        Verdict::Off(_) => return None,
        Verdict::Watching { .. } => None,
        Verdict::Counting { .. } | Verdict::Fire { .. } => {
            let after = fg.spec.auto_failover.after().ok()?;
            let since = shown.counting_since.unwrap_or_else(Timestamp::now);
            SignedDuration::try_from(after)
                .ok()
                .and_then(|a| since.checked_add(a).ok())
        }
    };
    Some(AutoArmed {
        group: group.to_owned(),
        acts_at,
    })
}

fn off(reason: &'static str, message: String) -> Verdict {
    Verdict::Off(NotArmed::new(reason, message))
}

fn unreadable(e: &StoreError) -> Verdict {
    off(
        "StoreUnreadable",
        format!("cannot read DynamoDB: {}", error_chain(e)),
    )
}

/// The condition (status, reason, message) and Event of `verdict` for this group, given what
/// was shown last (`shown` is updated).
fn presentation(
    cluster: &str,
    verdict: &Verdict,
    started: Option<&Operation>,
    after: Option<Duration>,
    shown: &mut Shown,
    now: Timestamp,
) -> ((bool, &'static str, String), Option<EventSpec>) {
    let was = std::mem::take(&mut shown.label);
    let (cond, event) = match verdict {
        Verdict::Fire { active, unchanged } => {
            let msg = match started {
                Some(op) => format!(
                    "started forced failover {} from {active} to {cluster}: {}",
                    op.id, op.reason
                ),
                None => auto_failover::reason(active, *unchanged, now),
            };
            let ev = EventSpec::new(true, "AutoFailoverStarted", "Failover", msg.clone());
            ((true, "Started", msg), started.map(|_| ev))
        }
        Verdict::Counting {
            active,
            unchanged,
            left,
        } => {
            let since = *shown.counting_since.get_or_insert_with(|| {
                let t = SignedDuration::try_from(*unchanged)
                    .ok()
                    .and_then(|d| now.checked_sub(d).ok())
                    .unwrap_or(now);
                t.round(jiff::Unit::Second).unwrap_or(t)
            });
            let at = after
                .and_then(|a| SignedDuration::try_from(a).ok())
                .and_then(|a| since.checked_add(a).ok())
                .map_or_else(
                    || format!("in {}", human(*left)),
                    |t| format!("at about {t}"),
                );
            let msg = format!(
                "{active}'s serving lease unrenewed since about {since}: failing over to \
                 {cluster} {at} unless it is renewed"
            );
            let ev = (was != "Counting")
                .then(|| EventSpec::new(true, "AutoFailoverCounting", "Watch", msg.clone()));
            ((true, "Counting", msg), ev)
        }
        Verdict::Watching { active } => {
            shown.counting_since = None;
            let msg = format!(
                "armed: watching {active}'s serving lease (acts after {} unrenewed)",
                after.map_or_else(|| "its limit".to_owned(), human)
            );
            let ev = (was == "Counting").then(|| {
                EventSpec::new(
                    false,
                    "AutoFailoverCancelled",
                    "Watch",
                    format!("{active}'s serving lease is renewed again; not failing over"),
                )
            });
            ((true, "Watching", msg), ev)
        }
        Verdict::Off(n) => {
            shown.counting_since = None;
            let held = matches!(
                n.reason,
                "CoolingDown" | "PreferredTargetAlive" | "NotATarget"
            );
            let ev = (held && was != n.reason)
                .then(|| EventSpec::new(false, "AutoFailoverHeld", "Watch", n.message.clone()));
            ((false, n.reason, n.message.clone()), ev)
        }
    };
    shown.label = cond.1.to_owned();
    (cond, event)
}

/// Shows `verdict` on the FailoverGroup (condition, Event), in the metrics and the log.
async fn show(
    deps: &AutoDeps,
    events: &Events,
    fg: &FailoverGroup,
    group: &GroupRef,
    verdict: &Verdict,
    started: Option<&Operation>,
    shown: &mut Shown,
) {
    let key = group.to_string();
    deps.metrics.auto_failover_armed(&key, verdict.armed());
    let after = fg.spec.auto_failover.after().ok();
    let now = Timestamp::now();
    let ((status, reason, message), event) =
        presentation(&deps.cluster, verdict, started, after, shown, now);
    // A group not registered in this agent's table may belong to another installation
    // sharing the cluster (another table): its condition is not this agent's to write.
    let foreign = matches!(verdict, Verdict::Off(n) if n.reason == "NotRegistered");
    let current = fg
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut conditions: Vec<Condition> = current.clone();
    set_condition(
        &mut conditions,
        COND_AUTO_FAILOVER,
        status,
        reason,
        message,
        fg.metadata.generation,
        now,
    );
    let same = |c: &Vec<Condition>| {
        c.iter()
            .find(|x| x.type_ == COND_AUTO_FAILOVER)
            .map(|x| (x.status.clone(), x.reason.clone(), x.message.clone()))
    };
    if !foreign && same(&current) != same(&conditions) {
        tracing::debug!(group = %key, cluster = %deps.cluster, was = ?same(&current), now = ?same(&conditions), "AutoFailover condition");
        let api: Api<FailoverGroup> = Api::namespaced(deps.client.clone(), &group.namespace);
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        // Conditioned on the version listed, so a newer list is never overwritten (a
        // conflict is retried on the next tick, from a fresh list).
        let patch = json!({
            "metadata": { "resourceVersion": fg.metadata.resource_version },
            "status": { "conditions": conditions },
        });
        if let Err(e) = api
            .patch_status(&group.name, &pp, &Patch::Merge(&patch))
            .await
        {
            tracing::debug!(group = %key, error = %error_chain(&e), "cannot set the AutoFailover condition; next tick");
        }
    }
    if let Some(ev) = event {
        tracing::info!(group = %key, cluster = %deps.cluster, reason = %ev.reason, "{}", ev.note);
        let mut regarding = fg.object_ref(&());
        regarding.namespace = Some(group.namespace.clone());
        events.publish(&regarding, &ev).await;
    }
}

#[cfg(test)]
mod tests;
