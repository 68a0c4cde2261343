//! The two Kubernetes clusters of the test environment.
//!
//! [`TestEnv::attach`] starts the environment with `tests/env/up.sh` (or reuses the running
//! one), reads `target/testenv/env.sh` and connects a kube client to each cluster. Each test
//! takes its own namespace, created with the same name in both clusters by
//! [`TestEnv::namespace`]; [`TestNamespace::dump`] prints what a failed test needs to see.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use tokio::sync::OnceCell;

use crate::aws::{self, AwsEnv};
use crate::env::{read_env_file, repo_root, run_script, state_dir, toxiproxy_url};

/// One cluster of the environment.
#[derive(Clone)]
pub struct Cluster {
    /// `east` or `west`.
    pub name: String,
    /// Path of its admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Client with the admin credentials.
    pub client: Client,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("kubeconfig", &self.kubeconfig)
            .finish()
    }
}

impl Cluster {
    /// Connects to a cluster through a kubeconfig file.
    pub async fn connect(name: &str, kubeconfig: PathBuf) -> Result<Self> {
        let kc = Kubeconfig::read_from(&kubeconfig)
            .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
        let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading kubeconfig of cluster {name}"))?;
        let client =
            Client::try_from(config).with_context(|| format!("client for cluster {name}"))?;
        Ok(Self {
            name: name.to_string(),
            kubeconfig,
            client,
        })
    }
}

/// The running environment: both clusters and moto.
#[derive(Clone, Debug)]
pub struct TestEnv {
    pub east: Cluster,
    pub west: Cluster,
    pub aws: AwsEnv,
    /// Environment variables from `target/testenv/env.sh`, for spawning binaries.
    pub vars: BTreeMap<String, String>,
    /// The toxiproxy server's API, `http://127.0.0.1:<port>` ([`crate::faults`]).
    pub toxiproxy_url: String,
}

/// The env file's variables, read once per process after `up.sh` ran. Clients are not
/// cached: each `#[tokio::test]` has its own runtime, and a kube client's worker dies with
/// the runtime that spawned it.
static VARS: OnceCell<BTreeMap<String, String>> = OnceCell::const_new();

impl TestEnv {
    /// Starts the environment if needed (once per test process) and connects to it.
    pub async fn attach() -> Result<TestEnv> {
        let vars = VARS
            .get_or_try_init(|| async {
                let script = repo_root().join("tests/env/up.sh");
                tokio::task::spawn_blocking(move || run_script(&script, &[]))
                    .await
                    .context("joining env up")??;
                read_env_file(&state_dir().join("env.sh"))
            })
            .await?
            .clone();
        let path = |k: &str| -> Result<PathBuf> {
            Ok(PathBuf::from(
                vars.get(k).with_context(|| format!("env.sh has no {k}"))?,
            ))
        };
        let east = Cluster::connect("east", path("EAST_KUBECONFIG")?).await?;
        let west = Cluster::connect("west", path("WEST_KUBECONFIG")?).await?;
        let aws = aws::moto().await?;
        Ok(TestEnv {
            east,
            west,
            aws,
            vars,
            toxiproxy_url: toxiproxy_url()?,
        })
    }

    /// Both clusters, east first.
    pub fn clusters(&self) -> [&Cluster; 2] {
        [&self.east, &self.west]
    }

    /// Creates a fresh namespace with the same name in both clusters.
    pub async fn namespace(&self, prefix: &str) -> Result<TestNamespace> {
        let name = unique_dns_name(prefix);
        for c in self.clusters() {
            let ns: Namespace = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": {"failover-tests": "true"}}
            }))?;
            Api::<Namespace>::all(c.client.clone())
                .create(&PostParams::default(), &ns)
                .await
                .with_context(|| format!("creating namespace {name} in cluster {}", c.name))?;
            ensure_storage_sim_class(c).await?;
        }
        Ok(TestNamespace {
            name,
            env: self.clone(),
        })
    }
}

/// The VolumeReplicationClass the storage simulator's volumes name
/// ([`crate::storage_sim::STORAGE_SIM_CLASS`]): cluster-scoped, shared by every test,
/// created when missing (the agent's preflight checks that a volume's class exists).
async fn ensure_storage_sim_class(c: &Cluster) -> Result<()> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "replication.storage.openshift.io",
            "v1alpha1",
            "VolumeReplicationClass",
        ),
        "volumereplicationclasses",
    );
    let api = Api::<DynamicObject>::all_with(c.client.clone(), &ar);
    let name = crate::storage_sim::STORAGE_SIM_CLASS;
    if api.get_opt(name).await?.is_some() {
        return Ok(());
    }
    let mut class = DynamicObject::new(name, &ar);
    class.data = serde_json::json!({
        "spec": {"provisioner": "storage-sim.failover.io", "parameters": {}}
    });
    match api.create(&PostParams::default(), &class).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e).with_context(|| {
            format!(
                "creating VolumeReplicationClass {name} in cluster {}",
                c.name
            )
        }),
    }
}

/// A namespace that exists in both clusters for one test.
#[derive(Clone, Debug)]
pub struct TestNamespace {
    pub name: String,
    env: TestEnv,
}

impl TestNamespace {
    /// Deletes the namespace in both clusters (best effort, not waited for).
    pub async fn cleanup(&self) {
        for c in self.env.clusters() {
            let _ = Api::<Namespace>::all(c.client.clone())
                .delete(&self.name, &DeleteParams::background())
                .await;
        }
    }

    /// A readable dump of the namespace's objects in both clusters, for failed tests.
    pub async fn dump(&self) -> String {
        let mut out = String::new();
        for c in self.env.clusters() {
            out.push_str(&format!(
                "=== cluster {} namespace {} ===\n",
                c.name, self.name
            ));
            for (kind, ar) in dump_kinds() {
                let api: Api<DynamicObject> =
                    Api::namespaced_with(c.client.clone(), &self.name, &ar);
                match api.list(&ListParams::default()).await {
                    Ok(list) => {
                        for o in list.items {
                            let status = o.data.get("status").cloned().unwrap_or_default();
                            let spec = o.data.get("spec").cloned().unwrap_or_default();
                            out.push_str(&format!(
                                "{kind}/{} annotations={:?}\n  spec={}\n  status={}\n",
                                o.metadata.name.unwrap_or_default(),
                                o.metadata.annotations.unwrap_or_default(),
                                compact(&spec),
                                compact(&status)
                            ));
                        }
                    }
                    Err(e) => out.push_str(&format!("{kind}: list failed: {e}\n")),
                }
            }
        }
        out
    }
}

fn compact(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.len() > 600 {
        format!("{}…", &s[..600])
    } else {
        s
    }
}

fn dump_kinds() -> Vec<(&'static str, ApiResource)> {
    let gvk = |g: &str, v: &str, k: &str| GroupVersionKind::gvk(g, v, k);
    vec![
        (
            "Deployment",
            ApiResource::from_gvk(&gvk("apps", "v1", "Deployment")),
        ),
        (
            "StatefulSet",
            ApiResource::from_gvk(&gvk("apps", "v1", "StatefulSet")),
        ),
        (
            "CronJob",
            ApiResource::from_gvk(&gvk("batch", "v1", "CronJob")),
        ),
        ("Pod", ApiResource::from_gvk(&gvk("", "v1", "Pod"))),
        ("VolumeReplication", volume_replication_resource()),
        (
            "VirtualService",
            ApiResource::from_gvk(&gvk("networking.istio.io", "v1", "VirtualService")),
        ),
        (
            "Ingress",
            ApiResource::from_gvk(&gvk("networking.k8s.io", "v1", "Ingress")),
        ),
        (
            "HelmRelease",
            ApiResource::from_gvk(&gvk("helm.toolkit.fluxcd.io", "v2", "HelmRelease")),
        ),
        (
            "Kustomization",
            ApiResource::from_gvk(&gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization")),
        ),
    ]
}

/// The csi-addons VolumeReplication resource (`replication.storage.openshift.io/v1alpha1`).
pub fn volume_replication_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            "replication.storage.openshift.io",
            "v1alpha1",
            "VolumeReplication",
        ),
        "volumereplications",
    )
}

/// A DNS-1123 label unique to this process and call.
pub fn unique_dns_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{:x}{n}{:x}", std::process::id(), nanos & 0xfff)
}

/// Polls `check` until it returns `Some`, or fails after `deadline` naming `what` and the
/// last observation. Used for conditions no watch event tells us about cheaply.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, String>>,
{
    let start = tokio::time::Instant::now();
    let mut last: String;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "condition not met".into(),
            Err(e) => last = e,
        }
        if start.elapsed() >= deadline {
            anyhow::bail!("timed out after {deadline:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Names of the pods in `namespace` whose labels match `selector`.
pub async fn pod_names(client: &Client, namespace: &str, selector: &str) -> Result<Vec<String>> {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(selector))
        .await?;
    Ok(pods
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect())
}
