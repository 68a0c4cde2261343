//! Self-fencing (protocol rule 7 and the entitlement rule of `docs/protocol.md`).
//!
//! A cluster is *entitled* to an active side of a group if and only if the group state's
//! `promotionClaimedBy` names it, or nobody claimed a promotion and `activeCluster` names it
//! ([`GroupState::is_entitled`]). An agent whose side of a group is active (a volume Primary
//! or asked to be, a Deployment/StatefulSet with replicas, a CronJob not suspended, traffic
//! on) while it is not entitled fences that side before anything else: traffic off, Flux
//! suspended, workloads scaled to 0 (original counts kept in `failover.io/original-replicas`),
//! CronJobs suspended, pods gone, then volumes demoted and awaited `Secondary`. The usual
//! way to get there: a forced failover moved the group while this cluster (or its agent)
//! was unreachable.
//!
//! When it checks ([`When`]):
//!
//! * at start, before the operation runner starts, and on regaining DynamoDB after losing
//!   it: every group, whatever is in flight;
//! * on every re-read: groups with no operation in flight (an operation in flight that
//!   involves this cluster is carried out by its workflow, whose source side shuts down in
//!   the order of its mode; fencing it early would cut an UPTIME dual-active window short);
//! * when this agent's serving lease runs out ([`When::LeaseLost`], [`fence_unleased`]):
//!   every group whose `spec.onCoordinationLoss` is `Fence` and whose side is active here,
//!   decided without DynamoDB (which is what was lost).
//!
//! Pure part: [`When::applies`], [`SideObservation`]. I/O part: [`observe_side`], [`fence`],
//! [`check_groups`]. Every fencing change is annotated with the group's epoch and the
//! operation that moved the group (or `fencing`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use failover_messages::crd::{
    CoordinationLoss, FailoverGroup, FailoverGroupSpec, TimeoutStage, WorkloadKind,
};
use failover_messages::records::GroupState;
use failover_messages::store::Store;
use kube::api::{Api, ListParams};

use crate::kube_ops::traffic::{self, TrafficConfig, TrafficState};
use crate::kube_ops::volumes::{self, ReplicationState, VolumeState};
use crate::kube_ops::{ClusterClient, KubeOpsError, Stamp, flux, workloads};

/// When a fencing check runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// The agent starts (before the operation runner).
    Startup,
    /// DynamoDB answered again after failing.
    Regained,
    /// The periodic re-read.
    Reread,
    /// This agent's serving lease ran out: fence every group whose policy is `Fence` and
    /// whose side is active here, without DynamoDB ([`fence_unleased`]).
    LeaseLost,
}

impl When {
    /// True when a group in `state` is checked on this occasion by `cluster`: never when
    /// `cluster` is entitled; on a re-read only without an operation in flight.
    pub fn applies(self, state: &GroupState, cluster: &str) -> bool {
        if state.is_entitled(cluster) {
            return false;
        }
        match self {
            Self::Startup | Self::Regained => true,
            Self::Reread => state.op_id.is_none(),
            // Not decided on the group state (see `fence_unleased`).
            Self::LeaseLost => false,
        }
    }

    /// For logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Startup => "startup",
            Self::Regained => "regained",
            Self::Reread => "reread",
            Self::LeaseLost => "lease_expired",
        }
    }
}

/// What is active on this cluster's side of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SideObservation {
    /// VolumeReplications that are Primary or asked to be.
    pub primary_volumes: Vec<String>,
    /// Deployments/StatefulSets with replicas, CronJobs not suspended (`Kind/name`).
    pub running_workloads: Vec<String>,
    /// Traffic objects switched on (`Kind/name`).
    pub traffic_on: Vec<String>,
}

impl SideObservation {
    /// True when anything of the side is active.
    pub fn is_active(&self) -> bool {
        !(self.primary_volumes.is_empty()
            && self.running_workloads.is_empty()
            && self.traffic_on.is_empty())
    }

    /// One line for logs and events.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.primary_volumes.is_empty() {
            parts.push(format!(
                "primary volumes {}",
                self.primary_volumes.join(", ")
            ));
        }
        if !self.running_workloads.is_empty() {
            parts.push(format!("running {}", self.running_workloads.join(", ")));
        }
        if !self.traffic_on.is_empty() {
            parts.push(format!("traffic on {}", self.traffic_on.join(", ")));
        }
        if parts.is_empty() {
            "nothing active".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// Why fencing a group failed.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// A Kubernetes operation failed.
    #[error(transparent)]
    Kube(#[from] Box<KubeOpsError>),
    /// The group's timeouts do not parse.
    #[error("FailoverGroup {group}: {message}")]
    Spec {
        /// `namespace/name`.
        group: String,
        /// What is wrong.
        message: String,
    },
}

impl From<KubeOpsError> for FenceError {
    fn from(e: KubeOpsError) -> Self {
        Self::Kube(Box::new(e))
    }
}

/// Reads what is active on this cluster's side of the group with `spec` in `namespace`.
pub async fn observe_side(
    cc: &ClusterClient,
    traffic_config: &TrafficConfig,
    namespace: &str,
    spec: &FailoverGroupSpec,
) -> Result<SideObservation, KubeOpsError> {
    let mut obs = SideObservation::default();
    for v in &spec.volume_replications {
        let o = volumes::observe(cc, namespace, &v.name).await?;
        let asked = o.desired.as_deref() == Some("primary");
        let is = o.state.as_deref() == Some("Primary");
        if asked || is {
            obs.primary_volumes.push(v.name.clone());
        }
    }
    for w in &spec.workloads {
        let running = match w.kind {
            WorkloadKind::CronJob => {
                let api: Api<k8s_openapi::api::batch::v1::CronJob> =
                    Api::namespaced(cc.client.clone(), namespace);
                let cj = api
                    .get(&w.name)
                    .await
                    .map_err(|e| KubeOpsError::ReadWorkload {
                        object: cc.object("CronJob", namespace, &w.name),
                        source: e.into(),
                    })?;
                !cj.spec.suspend.unwrap_or(false)
            }
            kind => {
                workloads::get_workload(cc, kind, namespace, &w.name)
                    .await?
                    .replicas
                    > 0
            }
        };
        if running {
            obs.running_workloads
                .push(format!("{}/{}", workloads::kind_name(w.kind), w.name));
        }
    }
    for n in &spec.network {
        if traffic::get_traffic(cc, traffic_config, n.kind, namespace, &n.name).await?
            == Some(TrafficState::On)
        {
            obs.traffic_on
                .push(format!("{}/{}", traffic::kind_name(n.kind), n.name));
        }
    }
    Ok(obs)
}

/// Fences this cluster's side of a group: traffic off → Flux suspended → workloads scaled
/// to 0 and CronJobs suspended → pods gone → volumes demoted → volumes `Secondary`. Each
/// step is idempotent, so a fencing interrupted halfway is simply run again.
pub async fn fence(
    cc: &ClusterClient,
    traffic_config: &TrafficConfig,
    namespace: &str,
    spec: &FailoverGroupSpec,
    stamp: &Stamp,
) -> Result<(), FenceError> {
    let limit = |stage: TimeoutStage| {
        spec.timeouts.get(stage).map_err(|e| FenceError::Spec {
            group: format!("in namespace {namespace}"),
            message: e.to_string(),
        })
    };
    let shutdown: Duration = limit(TimeoutStage::SourceShutdown)?;
    let demotion: Duration = limit(TimeoutStage::VolumeDemotion)?;
    for n in &spec.network {
        traffic::set_traffic(
            cc,
            traffic_config,
            n.kind,
            namespace,
            &n.name,
            TrafficState::Off,
            stamp,
        )
        .await?;
    }
    for f in &spec.flux {
        flux::suspend_flux(cc, f.kind, &f.namespace, &f.name, stamp).await?;
    }
    for w in &spec.workloads {
        match w.kind {
            WorkloadKind::CronJob => {
                workloads::suspend_cronjob(cc, namespace, &w.name, stamp).await?;
            }
            kind => {
                workloads::scale_down(cc, kind, namespace, &w.name, stamp).await?;
            }
        }
    }
    for w in &spec.workloads {
        workloads::wait_pods_gone(cc, w.kind, namespace, &w.name, shutdown, |_| {}).await?;
    }
    for v in &spec.volume_replications {
        volumes::set_replication_state(cc, namespace, &v.name, ReplicationState::Secondary, stamp)
            .await?;
    }
    for v in &spec.volume_replications {
        volumes::wait_state(cc, namespace, &v.name, VolumeState::Secondary, demotion).await?;
    }
    Ok(())
}

/// What one check of one group came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupVerdict {
    /// The cluster is entitled, or the occasion does not check this group.
    NotChecked,
    /// Not entitled, and nothing was active.
    Passive,
    /// Not entitled and active: fenced now (what was active).
    Fenced(String),
    /// The check of this group could not finish (observing the side, re-reading the group
    /// state or fencing failed): it is owed, and the next check repeats this occasion.
    Unfinished,
}

/// The replica counts last recorded per group by this process (`namespace/name` →
/// counts), so an unchanged side costs no write.
pub type ReplicaCache = BTreeMap<String, BTreeMap<String, u32>>;

/// True when `cluster` is the idle active cluster of the group in `state`: the one that
/// records the group's known replica counts.
pub fn records_replicas(state: &GroupState, cluster: &str) -> bool {
    state.active_cluster == cluster && state.op_id.is_none() && state.promotion_claimed_by.is_none()
}

/// True when a re-read should look at a group with an operation in flight that `cluster` is
/// not entitled to, in case `cluster` takes no part in that operation (three clusters: an
/// operation between the others leaves this cluster's side to the fencing check, not to a
/// workflow).
pub fn outsider_reread(when: When, state: &GroupState, cluster: &str) -> bool {
    when == When::Reread && state.op_id.is_some() && !state.is_entitled(cluster)
}

/// True when `cluster` is the source or target of the operation in flight (or it cannot be
/// read: then the workflow is given the benefit of the doubt until the next check).
async fn participates(store: &Store, state: &GroupState, cluster: &str) -> bool {
    let Some(op_id) = state.op_id.as_deref() else {
        return false;
    };
    match store.get_operation(op_id).await {
        Ok(Some(op)) => op.source == cluster || op.target == cluster,
        Ok(None) => false,
        Err(e) => {
            tracing::debug!(op = %op_id, error = %crate::errors::error_chain(&e), "cannot read the operation in flight; leaving the group to it");
            true
        }
    }
}

/// The counts to record: every Deployment/StatefulSet with replicas (`Kind/name`).
async fn running_replicas(
    cc: &ClusterClient,
    namespace: &str,
    spec: &FailoverGroupSpec,
) -> Result<BTreeMap<String, u32>, KubeOpsError> {
    let mut out = BTreeMap::new();
    for w in spec
        .workloads
        .iter()
        .filter(|w| w.kind != WorkloadKind::CronJob)
    {
        let n = workloads::get_workload(cc, w.kind, namespace, &w.name)
            .await?
            .replicas;
        if n > 0 {
            out.insert(format!("{}/{}", workloads::kind_name(w.kind), w.name), n);
        }
    }
    Ok(out)
}

/// Records the replica counts of the group in `state` (this cluster its idle active side)
/// as its known counts, when they changed since the last write of this process.
async fn record_known_replicas(
    cc: &ClusterClient,
    store: &Store,
    state: &GroupState,
    spec: &FailoverGroupSpec,
    cache: &mut ReplicaCache,
) {
    let name = state.group.to_string();
    let counts = match running_replicas(cc, &state.group.namespace, spec).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(group = %name, error = %crate::errors::error_chain(&e), "cannot read the replica counts; trying again later");
            return;
        }
    };
    if counts.is_empty() || cache.get(&name) == Some(&counts) {
        return;
    }
    match store
        .record_known_replicas(&state.group, &cc.cluster, state.epoch, &counts)
        .await
    {
        Ok(failover_messages::store::Outcome::Done(())) => {
            tracing::info!(group = %name, cluster = %cc.cluster, replicas = ?counts, "known replica counts recorded");
            cache.insert(name, counts);
        }
        Ok(other) => {
            tracing::debug!(group = %name, answer = ?other, "known replica counts not recorded (the group moved)");
        }
        Err(e) => {
            tracing::warn!(group = %name, error = %crate::errors::error_chain(&e), "recording the known replica counts failed");
        }
    }
}

/// Checks every FailoverGroup of this cluster that has a group state, fencing those that
/// need it, and records the replica counts of the groups this cluster is the idle active
/// side of (when they changed; `cache` remembers what was written). Returns each checked
/// group's verdict; a group whose check fails is logged and left for the next check.
pub async fn check_groups(
    cc: &ClusterClient,
    store: &Store,
    traffic_config: &TrafficConfig,
    when: When,
    cache: &mut ReplicaCache,
    registered: &mut BTreeSet<String>,
) -> Result<Vec<(String, GroupVerdict)>, CheckError> {
    let states = store.list_groups().await.map_err(CheckError::Store)?;
    *registered = states.iter().map(|s| s.group.to_string()).collect();
    if states.iter().all(|s| {
        !when.applies(s, &cc.cluster)
            && !outsider_reread(when, s, &cc.cluster)
            && !records_replicas(s, &cc.cluster)
    }) {
        return Ok(Vec::new());
    }
    let groups: Api<FailoverGroup> = Api::all(cc.client.clone());
    let list = groups
        .list(&ListParams::default())
        .await
        .map_err(|source| CheckError::ListGroups {
            cluster: cc.cluster.clone(),
            source,
        })?;
    let mut out = Vec::new();
    for state in states {
        let name = state.group.to_string();
        let Some(fg) = list.items.iter().find(|g| {
            g.metadata.namespace.as_deref() == Some(state.group.namespace.as_str())
                && g.metadata.name.as_deref() == Some(state.group.name.as_str())
        }) else {
            continue;
        };
        if records_replicas(&state, &cc.cluster) {
            record_known_replicas(cc, store, &state, &fg.spec, cache).await;
        }
        let applies = when.applies(&state, &cc.cluster)
            || (outsider_reread(when, &state, &cc.cluster)
                && !participates(store, &state, &cc.cluster).await);
        if !applies {
            out.push((name, GroupVerdict::NotChecked));
            continue;
        }
        let ns = &state.group.namespace;
        let obs = match observe_side(cc, traffic_config, ns, &fg.spec).await {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(group = %name, cluster = %cc.cluster, error = %crate::errors::error_chain(&e), "cannot observe the group's side; checking again later");
                out.push((name, GroupVerdict::Unfinished));
                continue;
            }
        };
        if !obs.is_active() {
            out.push((name, GroupVerdict::Passive));
            continue;
        }
        // The listing is eventually consistent (GSI1): decide to fence only on a consistent
        // read of the group state, so a stale index never shuts an entitled side down.
        let state = match store.get_group_state(&state.group).await {
            Ok(Some(fresh))
                if when.applies(&fresh, &cc.cluster)
                    || (outsider_reread(when, &fresh, &cc.cluster)
                        && !participates(store, &fresh, &cc.cluster).await) =>
            {
                fresh
            }
            Ok(_) => {
                out.push((name, GroupVerdict::NotChecked));
                continue;
            }
            Err(e) => {
                tracing::warn!(group = %name, cluster = %cc.cluster, error = %crate::errors::error_chain(&e), "cannot re-read the group state; checking again later");
                out.push((name, GroupVerdict::Unfinished));
                continue;
            }
        };
        let verdict = fence_not_entitled(cc, traffic_config, fg, &state, when, &obs).await;
        out.push((name, verdict));
    }
    Ok(out)
}

/// Fences the side of a group this cluster is not entitled to (`state`, read consistently),
/// active as `obs` shows, and publishes a `Fenced` Event.
async fn fence_not_entitled(
    cc: &ClusterClient,
    traffic_config: &TrafficConfig,
    fg: &FailoverGroup,
    state: &GroupState,
    when: When,
    obs: &SideObservation,
) -> GroupVerdict {
    let name = state.group.to_string();
    let seen = obs.describe();
    tracing::warn!(
        group = %name, cluster = %cc.cluster, entitled = state.entitled_cluster(),
        epoch = state.epoch, occasion = when.as_str(), active = %seen,
        "this cluster is not entitled to the group but its side is active: fencing it"
    );
    let operation = state
        .op_id
        .clone()
        .or_else(|| state.last_op_id.clone())
        .unwrap_or_else(|| "fencing".to_owned());
    let stamp = Stamp::new(state.epoch, operation);
    match fence(cc, traffic_config, &state.group.namespace, &fg.spec, &stamp).await {
        Ok(()) => {
            tracing::warn!(group = %name, cluster = %cc.cluster, epoch = state.epoch, "fenced: traffic off, workloads at 0, volumes Secondary");
            let ev = super::group_events::fenced_event(
                &cc.cluster,
                state.entitled_cluster(),
                state.epoch,
                &seen,
            );
            crate::kube_events::Events::new(cc.client.clone(), &cc.cluster)
                .publish(&kube::Resource::object_ref(fg, &()), &ev)
                .await;
            GroupVerdict::Fenced(seen)
        }
        Err(e) => {
            tracing::error!(group = %name, cluster = %cc.cluster, error = %crate::errors::error_chain(&e), "fencing failed; trying again on the next check");
            GroupVerdict::Unfinished
        }
    }
}

/// What decides, without DynamoDB, whether a group is this agent's to fence after its lease
/// ran out.
pub struct Unleased<'a> {
    /// `group` is registered in this agent's table (`status_has_state`: its status shows an
    /// agent recorded its state, for when no read has succeeded yet).
    pub owns: &'a dyn Fn(&str, bool) -> bool,
    /// The lease's last published renewal listed `group` as `KeepServing`.
    pub published_keep_serving: &'a dyn Fn(&str) -> bool,
}

/// Fences, without DynamoDB, every FailoverGroup of this cluster that is this agent's
/// ([`Unleased::owns`]), whose side is active, and which may not keep serving after the lease
/// ran out: its policy is `Fence`, or the lease's last published renewal did not list it as
/// `KeepServing`. Each fenced group gets a `LeaseExpired` Warning Event.
pub async fn fence_unleased(
    cc: &ClusterClient,
    traffic_config: &TrafficConfig,
    rules: &Unleased<'_>,
) -> Result<Vec<(String, GroupVerdict)>, CheckError> {
    let list = Api::<FailoverGroup>::all(cc.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(|source| CheckError::ListGroups {
            cluster: cc.cluster.clone(),
            source,
        })?;
    let mut out = Vec::new();
    for fg in &list.items {
        let (Some(ns), Some(name)) = (
            fg.metadata.namespace.as_deref(),
            fg.metadata.name.as_deref(),
        ) else {
            continue;
        };
        let key = format!("{ns}/{name}");
        let has_state = fg
            .status
            .as_ref()
            .is_some_and(|s| s.active_cluster.is_some());
        if !(rules.owns)(&key, has_state) {
            continue;
        }
        if fg.spec.on_coordination_loss == CoordinationLoss::KeepServing
            && (rules.published_keep_serving)(&key)
        {
            out.push((key, GroupVerdict::NotChecked));
            continue;
        }
        let verdict = fence_one_unleased(cc, traffic_config, fg, ns, &key).await;
        out.push((key, verdict));
    }
    Ok(out)
}

async fn fence_one_unleased(
    cc: &ClusterClient,
    traffic_config: &TrafficConfig,
    fg: &FailoverGroup,
    ns: &str,
    key: &str,
) -> GroupVerdict {
    let obs = match observe_side(cc, traffic_config, ns, &fg.spec).await {
        Ok(o) if !o.is_active() => return GroupVerdict::Passive,
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(group = %key, cluster = %cc.cluster, error = %crate::errors::error_chain(&e), "cannot observe the group's side after the lease ran out; trying again");
            return GroupVerdict::Unfinished;
        }
    };
    let seen = obs.describe();
    let epoch = fg.status.as_ref().and_then(|s| s.epoch).unwrap_or(0);
    tracing::warn!(group = %key, cluster = %cc.cluster, active = %seen, "the serving lease ran out and the group's side is active here: fencing it");
    match fence(
        cc,
        traffic_config,
        ns,
        &fg.spec,
        &Stamp::new(epoch, "lease-expired"),
    )
    .await
    {
        Ok(()) => {
            tracing::warn!(group = %key, cluster = %cc.cluster, "fenced after the lease ran out: traffic off, workloads at 0, volumes Secondary; only an operation brings it back");
            let ev = super::group_events::lease_expired_event(&cc.cluster, &seen);
            crate::kube_events::Events::new(cc.client.clone(), &cc.cluster)
                .publish(&kube::Resource::object_ref(fg, &()), &ev)
                .await;
            GroupVerdict::Fenced(seen)
        }
        Err(e) => {
            tracing::error!(group = %key, cluster = %cc.cluster, error = %crate::errors::error_chain(&e), "fencing after the lease ran out failed; trying again");
            GroupVerdict::Unfinished
        }
    }
}

/// Why a fencing check could not look at the groups.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The group states could not be read.
    #[error("cannot read the group states for the fencing check")]
    Store(#[source] failover_messages::store::StoreError),
    /// The FailoverGroups could not be listed.
    #[error("cannot list FailoverGroups in cluster {cluster}")]
    ListGroups {
        /// This cluster.
        cluster: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
}

#[cfg(test)]
mod tests {
    use failover_messages::keys::GroupRef;

    use super::*;

    fn state(active: &str, claimed: Option<&str>, op: Option<&str>) -> GroupState {
        GroupState {
            group: GroupRef::new("shop", "orders").unwrap(),
            active_cluster: active.into(),
            epoch: 3,
            op_id: op.map(str::to_owned),
            promotion_claimed_by: claimed.map(str::to_owned),
            lease: None,
            suspended: false,
            version: 1,
            last_op_id: None,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
        }
    }

    #[test]
    fn an_entitled_cluster_is_never_fenced() {
        for when in [When::Startup, When::Regained, When::Reread] {
            assert!(!when.applies(&state("east", None, None), "east"));
            assert!(!when.applies(&state("east", Some("west"), Some("op")), "west"));
        }
    }

    #[test]
    fn start_and_reconnect_check_every_group_the_cluster_is_not_entitled_to() {
        // The group moved away (e.g. a forced failover while this cluster was cut off).
        assert!(When::Startup.applies(&state("west", None, None), "east"));
        // A promotion claimed by the other side, even with an operation in flight.
        assert!(When::Regained.applies(&state("east", Some("west"), Some("op")), "east"));
    }

    #[test]
    fn a_reread_leaves_operations_in_flight_to_their_workflow() {
        assert!(When::Reread.applies(&state("west", None, None), "east"));
        assert!(!When::Reread.applies(&state("east", Some("west"), Some("op")), "east"));
    }

    #[test]
    fn a_reread_looks_at_an_operation_in_flight_only_for_a_cluster_not_entitled() {
        // south is not entitled: the re-read asks whether south takes part in the operation.
        let s = state("east", Some("west"), Some("op"));
        assert!(outsider_reread(When::Reread, &s, "south"));
        assert!(
            !outsider_reread(When::Reread, &s, "west"),
            "west is entitled"
        );
        assert!(
            !outsider_reread(When::Startup, &s, "south"),
            "start-up checks anyway"
        );
        assert!(!outsider_reread(
            When::Reread,
            &state("west", None, None),
            "east"
        ));
    }

    #[test]
    fn a_side_is_active_when_anything_of_it_is() {
        assert!(!SideObservation::default().is_active());
        let obs = SideObservation {
            traffic_on: vec!["Ingress/web".into()],
            ..SideObservation::default()
        };
        assert!(obs.is_active());
        assert_eq!(obs.describe(), "traffic on Ingress/web");
    }
}
