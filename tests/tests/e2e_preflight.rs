//! The preflight, end to end with real processes (see `failover_tests::agents`):
//!
//! * a FailoverGroup whose VolumeReplication in the target cluster names a
//!   PersistentVolumeClaim that does not exist there;
//! * a forced failover (the source's agent never ran) with no replica count known for the
//!   workloads the target would scale up.
//!
//! In both, `failoverctl failover --wait` fails (exit 4) within a bit over one stage's limit,
//! naming the object and the cluster; the operation is `Failed` in DynamoDB with that
//! message; and nothing changed in either cluster: east still serves (volumes Primary,
//! workloads ready, Flux and traffic on), west is still passive (volumes Secondary), no object
//! of the group carries the operation's stamp or differs from before, both journals stop in
//! the Initialization stage, no promotion was claimed, and the storage simulator saw no
//! violation.
//!
//! Without the preflight the first failover shuts east down, promotes west's volumes and
//! fails only at `VerifyData`, after the promotion; the second promotes and then cannot
//! scale up. Either test then fails on its first check.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::crd::{FailoverGroup, FailoverPhase};
use failover_messages::keys::GroupRef;
use failover_messages::protocol::names::ANNOTATION_OPERATION;
use failover_messages::records::Phase;
use failover_tests::agents::Stack;
use failover_tests::fixtures::{
    GROUP, SETTLE, TRAFFIC_KEY, VOLUMES, create_application, helm_release_resource, install_crds,
    virtual_service_resource, wait_failover_object, wait_ready_replicas, wait_starting_point,
};
use failover_tests::kube::{
    Cluster, TestEnv, TestNamespace, volume_replication_resource, wait_for,
};
use failover_tests::storage_sim::wait_settled;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::ApiResource;
use serde_json::{Value, json};

/// The volume whose claim is missing in west.
const VOLUME: &str = "db-data";
/// Its claim (the fixture names each claim `<volume>-pvc`).
const PVC: &str = "db-data-pvc";
/// The limit of the stages that could run into the missing claim.
const STAGE_LIMIT: &str = "10s";
/// `failoverctl --wait`'s limit: a bit over one stage's.
const WAIT_LIMIT: &str = "25s";

/// Namespaces, stack, application, agents; the group registered active in east.
struct Scenario {
    env: TestEnv,
    ns: TestNamespace,
    flux_ns: TestNamespace,
    stack: Stack,
    group: GroupRef,
}

impl Scenario {
    async fn new(label: &str) -> Result<Scenario> {
        let env = TestEnv::attach().await?;
        for c in env.clusters() {
            install_crds(c, SETTLE).await?;
        }
        let ns = env.namespace(&format!("fo-{label}")).await?;
        let flux_ns = env.namespace(&format!("fo-{label}-flux")).await?;
        let stack = Stack::new(&env, &ns.name, label).await?;
        let group = GroupRef::new(&ns.name, GROUP)?;
        Ok(Scenario {
            env,
            ns,
            flux_ns,
            stack,
            group,
        })
    }

    /// The application in both clusters, short stage limits, the agents of `agents`
    /// started and the group registered active in east.
    async fn start(&mut self, agents: &[&str]) -> Result<()> {
        let ns = self.ns.name.clone();
        self.stack
            .start_storage_sim(&[&ns], Duration::from_millis(200))?;
        Box::pin(create_application(&self.env, &ns, &self.flux_ns.name)).await?;
        wait_starting_point(&self.env, &ns).await?;
        for c in self.env.clusters() {
            Api::<FailoverGroup>::namespaced(c.client.clone(), &ns)
                .patch(
                    GROUP,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"timeouts": {
                        "initialization": STAGE_LIMIT,
                        "volumePromotion": STAGE_LIMIT,
                    }}})),
                )
                .await
                .with_context(|| format!("shortening the stage limits in {}", c.name))?;
        }
        for cluster in agents {
            self.stack.start_agent(cluster).await?;
        }
        let out =
            self.stack
                .failoverctl(&["register", &self.group.to_string(), "--active", "east"])?;
        ensure!(
            out.status.success(),
            "failoverctl register: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Runs `body`, printing logs and objects on failure, then cleans up.
    async fn finish(self, res: Result<()>) -> Result<()> {
        let out = match res {
            Ok(()) => Ok(()),
            Err(e) => {
                self.stack.print_logs();
                Err(anyhow!("{e:#}\n\n{}", self.ns.dump().await))
            }
        };
        self.stack.cleanup(out.is_ok()).await;
        self.ns.cleanup().await;
        self.flux_ns.cleanup().await;
        out
    }
}

/// Deletes claim `name` in `c` and waits until it is gone (the PVC protection finalizer is
/// lifted once no pod uses it; west's pods are scaled to 0).
async fn delete_claim(c: &Cluster, ns: &str, name: &str) -> Result<()> {
    let api = Api::<PersistentVolumeClaim>::namespaced(c.client.clone(), ns);
    api.delete(name, &DeleteParams::default())
        .await
        .with_context(|| format!("deleting PersistentVolumeClaim {ns}/{name} in {}", c.name))?;
    wait_for(
        &format!("PersistentVolumeClaim {ns}/{name} gone from {}", c.name),
        SETTLE,
        || {
            let api = api.clone();
            async move {
                match api.get_opt(name).await {
                    Ok(None) => Ok(Some(())),
                    Ok(Some(_)) => Err("still there".to_owned()),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The group's objects in one cluster: `(kind, resource, namespace, name)`.
fn group_objects<'a>(
    ns: &'a str,
    flux_ns: &'a str,
) -> Vec<(&'static str, ApiResource, &'a str, String)> {
    let mut objects = vec![
        (
            "Deployment",
            ApiResource::erase::<Deployment>(&()),
            ns,
            "api".to_owned(),
        ),
        (
            "StatefulSet",
            ApiResource::erase::<StatefulSet>(&()),
            ns,
            "db".to_owned(),
        ),
        (
            "Ingress",
            ApiResource::erase::<Ingress>(&()),
            ns,
            "api".to_owned(),
        ),
        (
            "VirtualService",
            virtual_service_resource(),
            ns,
            "api".to_owned(),
        ),
        (
            "HelmRelease",
            helm_release_resource(),
            flux_ns,
            "api".to_owned(),
        ),
    ];
    for (volume, _, _) in VOLUMES {
        objects.push((
            "VolumeReplication",
            volume_replication_resource(),
            ns,
            volume.to_owned(),
        ));
    }
    objects
}

/// What an operation could change on the group's objects in `c`, by `Kind ns/name`: the
/// spec, labels and annotations (statuses are the controllers' and the simulator's).
async fn desired_state(c: &Cluster, ns: &str, flux_ns: &str) -> Result<BTreeMap<String, Value>> {
    let mut out = BTreeMap::new();
    for (kind, ar, namespace, name) in group_objects(ns, flux_ns) {
        let obj = Api::<DynamicObject>::namespaced_with(c.client.clone(), namespace, &ar)
            .get(&name)
            .await
            .with_context(|| format!("reading {kind} {namespace}/{name} in {}", c.name))?;
        out.insert(
            format!("{kind} {namespace}/{name}"),
            json!({
                "spec": obj.data.get("spec"),
                "labels": obj.metadata.labels,
                "annotations": obj.metadata.annotations,
            }),
        );
    }
    Ok(out)
}

/// The objects of `state` that carry `op_id`'s stamp (an operation stamps every object it
/// changes).
fn stamped_by(state: &BTreeMap<String, Value>, op_id: &str) -> Vec<String> {
    state
        .iter()
        .filter(|(_, v)| v["annotations"][ANNOTATION_OPERATION] == json!(op_id))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The traffic annotation of `c`'s VirtualService and Ingress in `state`.
fn traffic(state: &BTreeMap<String, Value>, ns: &str) -> [Value; 2] {
    ["VirtualService", "Ingress"]
        .map(|kind| state[&format!("{kind} {ns}/api")]["annotations"][TRAFFIC_KEY].clone())
}

/// Nothing changed in either cluster since `before` ([`desired_state`] of east and west): no
/// object of the group carries `op_id`'s stamp or differs; east serves (volumes Primary,
/// workloads ready, traffic on), west is passive (volumes Secondary, traffic off).
async fn assert_unchanged(
    s: &Scenario,
    before: &[BTreeMap<String, Value>; 2],
    op_id: &str,
) -> Result<()> {
    let (ns, flux_ns) = (&s.ns.name, &s.flux_ns.name);
    let (east, west) = (&s.env.east, &s.env.west);
    for (c, before) in [east, west].into_iter().zip(before) {
        let after = desired_state(c, ns, flux_ns).await?;
        let stamped = stamped_by(&after, op_id);
        ensure!(
            stamped.is_empty(),
            "changed by the operation in {}: {stamped:?}",
            c.name
        );
        ensure!(
            &after == before,
            "the group's objects in {} changed:\nbefore: {before:#?}\nafter: {after:#?}",
            c.name
        );
        let (volumes, dns) = if c.name == "east" {
            ("Primary", "dns-controller")
        } else {
            ("Secondary", "ignore")
        };
        ensure!(
            traffic(&after, ns) == [json!(dns), json!(dns)],
            "traffic in {}: {:?}",
            c.name,
            traffic(&after, ns)
        );
        for (volume, _, _) in VOLUMES {
            wait_settled(&c.client, ns, volume, volumes, SETTLE)
                .await
                .with_context(|| format!("{ns}/{volume} in {}", c.name))?;
        }
    }
    wait_ready_replicas(east, ns, "Deployment", "api", 2).await?;
    wait_ready_replicas(east, ns, "StatefulSet", "db", 1).await
}

/// The state of both clusters, for [`assert_unchanged`].
async fn snapshot(s: &Scenario) -> Result<[BTreeMap<String, Value>; 2]> {
    let (ns, flux_ns) = (&s.ns.name, &s.flux_ns.name);
    Ok([
        desired_state(&s.env.east, ns, flux_ns).await?,
        desired_state(&s.env.west, ns, flux_ns).await?,
    ])
}

/// Runs `failoverctl failover <group> --to west --wait --timeout WAIT_LIMIT` plus `extra`
/// and checks that it failed in west's preflight: exit 4, every one of `problems` in its
/// output and in the operation's `Failed` message, the operation still holding the group
/// with nothing claimed, recorded or handed off, both journals ending in Initialization, and
/// west's `Failover` object `Failed`. Returns the operation id.
async fn fails_in_preflight(s: &Scenario, extra: &[&str], problems: &[String]) -> Result<String> {
    let g = s.group.to_string();
    let mut args = vec![
        "failover",
        &g,
        "--to",
        "west",
        "--wait",
        "--timeout",
        WAIT_LIMIT,
    ];
    args.extend_from_slice(extra);
    let out = s.stack.failoverctl(&args)?;
    let (stdout, stderr) = text(&out);
    ensure!(
        out.status.code() == Some(4),
        "failoverctl {args:?} exited {:?} (want 4, failed)\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    for problem in problems {
        ensure!(
            stdout.contains(problem) || stderr.contains(problem),
            "failoverctl's output says {problem:?}:\nstdout: {stdout}\nstderr: {stderr}"
        );
    }
    let store = &s.stack.store;
    let state = store
        .get_group_state(&s.group)
        .await?
        .context("no group state")?;
    let op_id = state
        .op_id
        .clone()
        .context("the failed operation no longer holds the group")?;
    let op = store
        .get_operation(&op_id)
        .await?
        .context("no operation record")?;
    ensure!(op.phase == Phase::Failed, "phase {:?}", op.phase);
    let message = op.message.clone().unwrap_or_default();
    for problem in problems {
        ensure!(
            message.contains(problem.as_str()) && message.contains("Preflight"),
            "the failure names the step and says {problem:?}: {message:?}"
        );
    }
    ensure!(state.active_cluster == "east", "{state:?}");
    ensure!(state.promotion_claimed_by.is_none(), "{state:?}");
    ensure!(op.promotion_started_at.is_none(), "{op:?}");
    ensure!(op.original_replicas.is_empty(), "{op:?}");
    let handoffs = store.list_handoffs(&op_id).await?;
    ensure!(handoffs.is_empty(), "handoff records: {handoffs:?}");
    for cluster in ["east", "west"] {
        let beyond: Vec<String> = store
            .journal(&op_id, cluster)
            .await?
            .iter()
            .filter(|j| j.stage != "Initialization")
            .map(|j| format!("{}/{}", j.stage, j.task))
            .collect();
        ensure!(
            beyond.is_empty(),
            "{cluster} went past the Initialization stage: {beyond:?}"
        );
    }
    wait_failover_object(&s.env.west, &s.ns.name, &op_id, FailoverPhase::Failed).await?;
    Ok(op_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_claim_fails_the_failover_in_preflight_before_anything_changes() -> Result<()> {
    let mut s = Scenario::new("e2e-preflight").await?;
    let res = Box::pin(missing_claim(&mut s)).await;
    s.finish(res).await
}

async fn missing_claim(s: &mut Scenario) -> Result<()> {
    s.start(&["east", "west"]).await?;
    let ns = s.ns.name.clone();
    delete_claim(&s.env.west, &ns, PVC).await?;
    let before = snapshot(s).await?;
    // The failover fails (exit 4) within a bit over one stage's limit, naming the claim,
    // the volume and the cluster; nothing changed in either cluster.
    let problem = format!(
        "VolumeReplication {ns}/{VOLUME} in cluster west: its PersistentVolumeClaim {PVC} does not exist"
    );
    let op_id = fails_in_preflight(s, &[], &[problem]).await?;
    assert_unchanged(s, &before, &op_id).await?;
    s.stack.check_agents()?;
    let found = s.stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_failover_with_no_known_replica_count_fails_in_preflight() -> Result<()> {
    let mut s = Scenario::new("e2e-preflight-force").await?;
    let res = Box::pin(unknown_replicas(&mut s)).await;
    s.finish(res).await
}

/// East's agent never ran: nothing recorded its replica counts (no operation, no history,
/// no known-replicas record), west's standby objects carry no
/// `failover.io/original-replicas` annotation, and the FailoverGroup declares none. A forced
/// failover to west would promote the volumes and then have nothing to scale up to.
async fn unknown_replicas(s: &mut Scenario) -> Result<()> {
    s.start(&["west"]).await?;
    let ns = s.ns.name.clone();
    ensure!(
        s.stack.store.get_known_replicas(&s.group).await?.is_none(),
        "east's agent never ran, yet replica counts are recorded"
    );
    let before = snapshot(s).await?;
    let problems = [("Deployment", "api"), ("StatefulSet", "db")].map(|(kind, name)| {
        format!("{kind} {ns}/{name} in cluster west: no replica count is known to scale it up to")
    });
    let op_id = fails_in_preflight(s, &["--force", "--reason", "east lost"], &problems).await?;
    assert_unchanged(s, &before, &op_id).await?;
    s.stack.check_agents()?;
    let found = s.stack.stop_storage_sim().await?;
    ensure!(found.is_empty(), "storage violations: {found:#?}");
    Ok(())
}
