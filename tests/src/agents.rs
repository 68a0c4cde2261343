//! Real processes for the end-to-end scenarios and the benchmark: `failover-agent` (one per
//! cluster, each with only its own cluster's kubeconfig, whose credential is a ServiceAccount
//! token bound to nothing but the ClusterRole shipped in
//! `deploy/kustomize/base/clusterrole.yaml`), the `failover-storage-sim` binary, and the
//! `failoverctl` command, all against the test environment's kube-apiservers and moto.
//!
//! A [`Stack`] owns one table, one set of inboxes and every process it started; dropping it
//! kills them. An agent can be started with its DynamoDB/SQS endpoint behind a
//! [`CutProxy`] (a network partition on demand) or with DynamoDB, SQS and its apiserver
//! behind the stack's toxiproxy proxies ([`Stack::faults`]), and paused and resumed
//! (SIGSTOP/SIGCONT). Its logs are printed by [`Stack::print_logs`] when a scenario fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use failover_messages::crd::FailoverGroup;
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::setup::ensure_table;
use failover_messages::store::Store;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::faults::{AgentEndpoints, Faults};
use crate::isolation::{isolate_agent, remove_isolation};
use crate::kube::{Cluster, TestEnv, wait_for};
use crate::netcut::CutProxy;
use crate::process::exited;
pub use crate::process::{Proc, clean_command, free_port, http_get, workspace_binary};
use crate::storage_sim::{Violation, read_violations_file};

/// How long an agent may take to report `/ready`.
pub const READY_DEADLINE: Duration = Duration::from_secs(60);

// ---- least-privilege identity ------------------------------------------------------------------

/// The agent's ClusterRole as shipped (read and applied as is, only renamed per test).
const CLUSTER_ROLE_FILE: &str = "deploy/kustomize/base/clusterrole.yaml";
const AGENT_SA: &str = "failover-agent";

/// The per-test name of the ClusterRole and ClusterRoleBinding (cluster-scoped, so unique).
fn rbac_name(ns: &str) -> String {
    format!("failover-agent-{ns}")
}

/// Applies the shipped ClusterRole, a ServiceAccount in `ns` and a ClusterRoleBinding of
/// the two in cluster `c`, mints a token for the ServiceAccount (TokenRequest API) and
/// writes a kubeconfig with the admin kubeconfig's server and CA and that token only.
/// Returns its path once the apiserver authorizes the token. Idempotent per `ns`.
pub async fn agent_kubeconfig(c: &Cluster, ns: &str, dir: &Path) -> Result<PathBuf> {
    agent_kubeconfig_with(c, ns, dir, None).await
}

/// [`agent_kubeconfig`] with `role` (e.g. the Helm chart's, [`crate::chart::cluster_role`])
/// instead of the shipped `deploy/kustomize/base/clusterrole.yaml`, when given.
pub async fn agent_kubeconfig_with(
    c: &Cluster,
    ns: &str,
    dir: &Path,
    role: Option<&ClusterRole>,
) -> Result<PathBuf> {
    apply_agent_rbac(c, ns, role).await?;
    let token = agent_token(c, ns).await?;
    let kubeconfig = token_kubeconfig(c, token.as_deref())?;
    let path = dir.join(format!("agent-{}.kubeconfig", c.name));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)
        .with_context(|| format!("writing {}", path.display()))?;
    check_agent_token(c, ns, &path).await?;
    Ok(path)
}

/// Creates (if missing) the shipped ClusterRole under the test's name, the agent's
/// ServiceAccount in `ns` and the ClusterRoleBinding of the two in cluster `c`.
async fn apply_agent_rbac(c: &Cluster, ns: &str, role: Option<&ClusterRole>) -> Result<()> {
    let mut role: ClusterRole = match role {
        Some(role) => role.clone(),
        None => {
            let role_path = crate::env::repo_root().join(CLUSTER_ROLE_FILE);
            let text = std::fs::read_to_string(&role_path)
                .with_context(|| format!("reading {}", role_path.display()))?;
            serde_yaml::from_str(&text)
                .with_context(|| format!("parsing {} as a ClusterRole", role_path.display()))?
        }
    };
    let name = rbac_name(ns);
    role.metadata.name = Some(name.clone());
    let pp = PostParams::default();
    ignore_conflict(
        Api::<ClusterRole>::all(c.client.clone())
            .create(&pp, &role)
            .await,
    )
    .with_context(|| format!("creating ClusterRole {name} in {}", c.name))?;
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": AGENT_SA, "namespace": ns}}))?;
    ignore_conflict(sas.create(&pp, &sa).await)
        .with_context(|| format!("creating ServiceAccount {ns}/{AGENT_SA} in {}", c.name))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": AGENT_SA, "namespace": ns}],
    }))?;
    ignore_conflict(
        Api::<ClusterRoleBinding>::all(c.client.clone())
            .create(&pp, &binding)
            .await,
    )
    .with_context(|| format!("creating ClusterRoleBinding {name} in {}", c.name))?;
    Ok(())
}

/// A one-hour token for the agent's ServiceAccount in `ns` (TokenRequest API), as the
/// TokenRequest's status carries it.
async fn agent_token(c: &Cluster, ns: &str) -> Result<Option<String>> {
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), ns);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            audiences: Some(Vec::new()),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    Ok(sas
        .create_token_request(AGENT_SA, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for {ns}/{AGENT_SA} in {}", c.name))?
        .status
        .context("a TokenRequest without status")?
        .token)
}

/// A kubeconfig for cluster `c` with the same server and CA as its admin kubeconfig and
/// `token` as the only credential.
fn token_kubeconfig(c: &Cluster, token: Option<&str>) -> Result<serde_json::Value> {
    let admin = Kubeconfig::read_from(&c.kubeconfig)?;
    let context = admin
        .current_context
        .clone()
        .context("admin kubeconfig without a context")?;
    let cluster_name = admin
        .contexts
        .iter()
        .find(|n| n.name == context)
        .and_then(|n| n.context.as_ref())
        .map(|x| x.cluster.clone())
        .context("admin kubeconfig: current context not found")?;
    let cluster = admin
        .clusters
        .iter()
        .find(|n| n.name == cluster_name)
        .and_then(|n| n.cluster.clone())
        .context("admin kubeconfig: cluster not found")?;
    let mut cluster_entry = json!({"server": cluster.server.context("no server")?});
    if let Some(ca) = cluster.certificate_authority {
        cluster_entry["certificate-authority"] = json!(ca);
    }
    if let Some(ca) = cluster.certificate_authority_data {
        cluster_entry["certificate-authority-data"] = json!(ca);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c.name, "cluster": cluster_entry}],
        "users": [{"name": AGENT_SA, "user": {"token": token}}],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": AGENT_SA}}],
        "current-context": c.name,
    }))
}

/// Waits until the authorizer lets the kubeconfig at `path` list FailoverGroups in cluster
/// `c` (it has seen the binding), and makes sure it may not list Secrets in `ns` (the token
/// is not admin).
async fn check_agent_token(c: &Cluster, ns: &str, path: &Path) -> Result<()> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let groups: Api<FailoverGroup> = Api::all(client.clone());
    wait_for(
        &format!("the agent token may list FailoverGroups in {}", c.name),
        Duration::from_secs(30),
        || {
            let groups = groups.clone();
            async move {
                match groups.list_metadata(&ListParams::default().limit(1)).await {
                    Ok(_) => Ok(Some(())),
                    Err(e) => Err(e.to_string()),
                }
            }
        },
    )
    .await?;
    match Api::<Secret>::namespaced(client, ns)
        .list_metadata(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => bail!(
            "the agent token in {} must not list Secrets: {other:?}",
            c.name
        ),
    }
    Ok(())
}

fn ignore_conflict<T>(r: Result<T, kube::Error>) -> Result<(), kube::Error> {
    match r {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes the cluster-scoped RBAC objects of a test (the namespace takes the ServiceAccount).
pub async fn delete_rbac(c: &Cluster, ns: &str) {
    let name = rbac_name(ns);
    let dp = DeleteParams::default();
    let _ = Api::<ClusterRoleBinding>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
}

// ---- the stack ---------------------------------------------------------------------------------

/// How the agents of a [`Stack`] run.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// `--heartbeat-interval` (unused when `lease_duration` is set).
    pub heartbeat_interval: Duration,
    /// `--lease-duration`, passed instead of `--heartbeat-interval` when set.
    pub lease_duration: Option<Duration>,
    /// `--reread-interval`.
    pub reread_interval: Duration,
    /// `RUST_LOG`; by default `info`, or `FAILOVER_AGENT_LOG` when set (e.g.
    /// `info,failover_messages::store=debug` logs every DynamoDB call with its time).
    pub log_filter: String,
    /// The ClusterRole the agents' ServiceAccount is bound to; `None`: the shipped
    /// `deploy/kustomize/base/clusterrole.yaml`.
    pub cluster_role: Option<ClusterRole>,
}

impl Default for AgentOptions {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            lease_duration: None,
            // Long enough that a broken SQS wake-up path fails a test instead of being
            // hidden by the re-read.
            reread_interval: Duration::from_secs(30),
            log_filter: std::env::var("FAILOVER_AGENT_LOG").unwrap_or_else(|_| "info".into()),
            cluster_role: None,
        }
    }
}

/// How [`Stack::start_agent_with`] starts one agent.
#[derive(Clone, Debug, Default)]
pub struct AgentStart {
    /// DynamoDB and SQS through the cluster's [`CutProxy`] (created on first use and kept
    /// across restarts, so a restarted agent is as cut off as its predecessor).
    pub aws_proxy: bool,
    /// DynamoDB, SQS and the cluster's apiserver each through its own proxy of
    /// [`Stack::faults`] ([`Faults::agent_endpoints`]).
    pub faults: bool,
    /// Arguments appended to the agent's command line.
    pub extra_args: Vec<String>,
    /// Environment variables set for the agent (e.g. `FAILPOINTS`).
    pub env: Vec<(String, String)>,
}

/// One scenario's table, inboxes and processes. Dropping it kills every process; call
/// [`Stack::cleanup`] to remove the RBAC objects it created.
pub struct Stack {
    env: TestEnv,
    /// The DynamoDB table.
    pub table: String,
    /// The SQS queue-name prefix.
    pub prefix: String,
    /// The store on the table (as the coordinator or a user reads it).
    pub store: Store,
    /// An inbox handle that sends as `coordinator`.
    pub inbox: Inbox,
    /// Where logs, kubeconfigs and the violations file go.
    pub dir: PathBuf,
    /// The namespace whose ServiceAccount the agents run as.
    rbac_ns: String,
    procs: Vec<Proc>,
    agent_ports: BTreeMap<String, u16>,
    aws_proxies: BTreeMap<String, CutProxy>,
    faults: Faults,
    isolated: bool,
    violations: Vec<(String, PathBuf)>,
    /// How the agents run.
    pub agent_options: AgentOptions,
}

impl Stack {
    /// A fresh table and inboxes for both clusters; the agents will run as a ServiceAccount
    /// in `rbac_ns` (which must exist in both clusters).
    pub async fn new(env: &TestEnv, rbac_ns: &str, label: &str) -> Result<Stack> {
        let ddb = env.aws.dynamodb();
        let table = env.aws.unique(&format!("fo-{label}"));
        ensure_table(&ddb, &table).await?;
        let store = Store::new(&ddb, &table);
        let prefix = format!("{}-", env.aws.unique("fo"));
        let inbox = Inbox::new(
            env.aws.sqs(),
            "coordinator",
            InboxOptions {
                prefix: prefix.clone(),
                ..InboxOptions::default()
            },
        );
        for c in env.clusters() {
            inbox.ensure_queues(&c.name).await?;
        }
        let dir = crate::env::repo_root()
            .join("target/tmp")
            .join(format!("{label}-{rbac_ns}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Stack {
            env: env.clone(),
            table,
            prefix,
            store,
            inbox,
            dir,
            rbac_ns: rbac_ns.to_owned(),
            procs: Vec::new(),
            agent_ports: BTreeMap::new(),
            aws_proxies: BTreeMap::new(),
            faults: Faults::new(env, label)?,
            isolated: false,
            violations: Vec::new(),
            agent_options: AgentOptions::default(),
        })
    }

    /// Starts the storage simulator for both clusters, one process per namespace in
    /// `namespaces`, with `latency` per transition.
    pub fn start_storage_sim(&mut self, namespaces: &[&str], latency: Duration) -> Result<()> {
        ensure!(
            !namespaces.is_empty(),
            "the storage simulator needs a namespace"
        );
        let bin = workspace_binary("failover-storage-sim")?;
        for ns in namespaces {
            let violations = self.dir.join(format!("violations-{ns}.json"));
            let mut sim = clean_command(&bin);
            for c in self.env.clusters() {
                sim.arg("--cluster")
                    .arg(format!("{}={}", c.name, c.kubeconfig.display()));
            }
            sim.arg("--violations")
                .arg(&violations)
                .arg("--latency")
                .arg(humantime::format_duration(latency).to_string())
                .args(["--namespace", ns]);
            let name = format!("storage-sim-{ns}");
            let log = self.dir.join(format!("{name}.log"));
            self.procs.push(Proc::spawn(&name, sim, log)?);
            self.violations.push((name, violations));
        }
        Ok(())
    }

    /// Starts (or restarts) the agent of `cluster` and waits until its `/ready` answers
    /// 200. Returns its admin port.
    pub async fn start_agent(&mut self, cluster: &str) -> Result<u16> {
        self.start_agent_with(cluster, AgentStart::default()).await
    }

    /// [`Stack::start_agent`], started as `how` says.
    pub async fn start_agent_with(&mut self, cluster: &str, how: AgentStart) -> Result<u16> {
        let port = self.spawn_agent_with(cluster, how).await?;
        self.wait_agent_ready(cluster).await?;
        Ok(port)
    }

    /// Starts (or restarts) the agent of `cluster` as `how` says, without waiting for it to
    /// be ready (see [`Stack::wait_agent_ready`]). Returns its admin port.
    pub async fn spawn_agent_with(&mut self, cluster: &str, how: AgentStart) -> Result<u16> {
        let c = self.cluster(cluster)?.clone();
        let role = self.agent_options.cluster_role.clone();
        let kubeconfig = agent_kubeconfig_with(&c, &self.rbac_ns, &self.dir, role.as_ref()).await?;
        let port = free_port()?;
        let endpoint = if how.aws_proxy {
            self.ensure_aws_proxy(cluster)?.url()
        } else {
            self.env.aws.endpoint_url.clone()
        };
        let reach = if how.faults {
            self.faults.agent_endpoints(cluster, &kubeconfig).await?
        } else {
            AgentEndpoints::direct(&kubeconfig, &endpoint)
        };
        let o = &self.agent_options;
        let mut cmd = clean_command(&workspace_binary("failover-agent")?);
        cmd.args(["--cluster", &c.name])
            .args(&reach.args)
            .envs(&reach.env)
            .args(["--table", &self.table, "--queue-prefix", &self.prefix])
            .args(["--region", &self.env.aws.region])
            .args(["--admin-addr", &format!("127.0.0.1:{port}")]);
        match o.lease_duration {
            Some(lease) => cmd.arg("--lease-duration").arg(humantime_arg(lease)),
            None => cmd
                .arg("--heartbeat-interval")
                .arg(humantime_arg(o.heartbeat_interval)),
        };
        cmd.arg("--reread-interval")
            .arg(humantime_arg(o.reread_interval))
            .args(&how.extra_args)
            .envs(how.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", &o.log_filter)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing");
        let name = agent_name(&c.name);
        let log = self.dir.join(format!("{name}.log"));
        self.procs.retain(|p| p.name != name);
        self.procs.push(Proc::spawn(&name, cmd, log)?);
        self.agent_ports.insert(c.name.clone(), port);
        Ok(port)
    }

    /// Waits until the agent of `cluster` answers `/ready` with 200; fails when it exits
    /// first or takes longer than [`READY_DEADLINE`].
    pub async fn wait_agent_ready(&mut self, cluster: &str) -> Result<()> {
        let name = agent_name(cluster);
        let port = self.agent_port(cluster)?;
        let pid = self.proc_mut(&name)?.pid();
        wait_for(
            &format!("/ready = 200 on the {cluster} agent"),
            READY_DEADLINE,
            || async move {
                if exited(pid) {
                    // Reported below, with the log.
                    return Ok(Some(()));
                }
                match http_get(port, "/ready").await {
                    Ok((200, _)) => Ok(Some(())),
                    Ok((s, body)) => Err(format!("status {s}: {body}")),
                    Err(e) => Err(format!("{e:#}")),
                }
            },
        )
        .await?;
        ensure!(
            self.proc_mut(&name)?.running()?,
            "{name} exited during start-up"
        );
        Ok(())
    }

    /// Confines the writes of this stack's agents to `namespaces` in both clusters
    /// ([`crate::isolation`]), for scenarios in which an agent fences without DynamoDB;
    /// [`Stack::cleanup`] removes the policies.
    pub async fn isolate_agents(&mut self, namespaces: &[&str]) -> Result<()> {
        self.isolated = true;
        for c in self.env.clusters() {
            let role = self.agent_options.cluster_role.as_ref();
            let kubeconfig = agent_kubeconfig_with(c, &self.rbac_ns, &self.dir, role).await?;
            isolate_agent(c, &self.rbac_ns, namespaces, &kubeconfig).await?;
        }
        Ok(())
    }

    /// Starts the agents of both clusters.
    pub async fn start_agents(&mut self) -> Result<()> {
        for c in ["east", "west"] {
            self.start_agent(c).await?;
        }
        Ok(())
    }

    /// Kills the agent of `cluster` at once (SIGKILL), as a crash or a lost cluster would.
    pub fn kill_agent(&mut self, cluster: &str) -> Result<()> {
        let name = agent_name(cluster);
        self.proc_mut(&name)?.kill()
    }

    /// Stops `cluster`'s agent where it stands (SIGSTOP): alive to the kernel, silent to
    /// everyone else, as a process stuck in a long pause.
    pub fn pause_agent(&mut self, cluster: &str) -> Result<()> {
        self.signal_agent(cluster, "-STOP")
    }

    /// Lets a paused agent run on (SIGCONT).
    pub fn resume_agent(&mut self, cluster: &str) -> Result<()> {
        self.signal_agent(cluster, "-CONT")
    }

    fn signal_agent(&mut self, cluster: &str, signal: &str) -> Result<()> {
        let p = self.proc_mut(&agent_name(cluster))?;
        ensure!(p.running()?, "{} is not running", p.name);
        let pid = p.pid().to_string();
        let status = Command::new("kill").args([signal, &pid]).status()?;
        ensure!(status.success(), "kill {signal} {pid} failed: {status}");
        Ok(())
    }

    /// The proxy between `cluster`'s agent and DynamoDB/SQS (an agent started with
    /// [`AgentStart::aws_proxy`]).
    pub fn aws_proxy(&self, cluster: &str) -> Result<&CutProxy> {
        self.aws_proxies
            .get(cluster)
            .with_context(|| format!("the agent of {cluster} was not started behind a proxy"))
    }

    fn ensure_aws_proxy(&mut self, cluster: &str) -> Result<&CutProxy> {
        if !self.aws_proxies.contains_key(cluster) {
            let url = &self.env.aws.endpoint_url;
            let upstream = url
                .strip_prefix("http://")
                .and_then(|a| a.trim_end_matches('/').parse().ok())
                .with_context(|| format!("the AWS endpoint {url} is not http://<ip>:<port>"))?;
            let proxy = CutProxy::start(upstream)?;
            self.aws_proxies.insert(cluster.to_owned(), proxy);
        }
        self.aws_proxy(cluster)
    }

    /// The toxiproxy proxies of this stack.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The admin port of `cluster`'s agent.
    pub fn agent_port(&self, cluster: &str) -> Result<u16> {
        self.agent_ports
            .get(cluster)
            .copied()
            .with_context(|| format!("no agent was started for {cluster}"))
    }

    /// The agent's `/metrics` text.
    pub async fn metrics(&self, cluster: &str) -> Result<String> {
        let (code, body) = http_get(self.agent_port(cluster)?, "/metrics").await?;
        ensure!(code == 200, "/metrics of {cluster}: status {code}");
        Ok(body)
    }

    /// The process of `name` (`agent-east`, `storage-sim`, …).
    pub fn proc_mut(&mut self, name: &str) -> Result<&mut Proc> {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("no process {name}"))
    }

    /// The log of `cluster`'s agent so far (every restart appends to it).
    pub fn agent_log(&self, cluster: &str) -> Result<String> {
        let name = agent_name(cluster);
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(Proc::log_text)
            .with_context(|| format!("no process {name}"))
    }

    /// Runs `failoverctl` with this stack's table, prefix and moto endpoint before `args`.
    pub fn failoverctl(&self, args: &[&str]) -> Result<Output> {
        let mut cmd = self.failoverctl_command(args)?;
        let out = tokio::task::block_in_place(|| cmd.output())
            .with_context(|| format!("running failoverctl {args:?}"))?;
        Ok(out)
    }

    /// The `failoverctl` command of [`Stack::failoverctl`], to run alongside other work
    /// (`spawn` it with piped output, `wait_with_output` later).
    pub fn failoverctl_command(&self, args: &[&str]) -> Result<Command> {
        let ctl = workspace_binary("failoverctl")?;
        let aws = &self.env.aws;
        let mut cmd = clean_command(&ctl);
        cmd.args(["--table", &self.table, "--queue-prefix", &self.prefix])
            .args(["--region", &aws.region, "--endpoint-url", &aws.endpoint_url])
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("USER", "e2e-test")
            .stdin(Stdio::null());
        Ok(cmd)
    }

    /// Fails when an agent is no longer running or any agent log line shows an RBAC refusal
    /// (best-effort writes only log a refused call, so the log is where they show); the
    /// refusals of [`Stack::isolate_agents`]'s policy are not RBAC's.
    pub fn check_agents(&mut self) -> Result<()> {
        self.check_storage_sims()?;
        for p in &mut self.procs {
            if !p.name.starts_with("agent-") {
                continue;
            }
            ensure!(p.running()?, "{} is no longer running", p.name);
            let log = p.log_text();
            let denied: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("forbidden") && !l.contains(crate::isolation::POLICY_PREFIX))
                .collect();
            ensure!(
                denied.is_empty(),
                "{} was refused by RBAC: {denied:#?}",
                p.name
            );
        }
        Ok(())
    }

    /// Stops the storage simulators (each rewrites its violations file on SIGTERM) and
    /// returns every violation they recorded. Fails ([`Proc::check_exit`]) when one had
    /// died before or exits other than with status 0.
    pub async fn stop_storage_sim(&mut self) -> Result<Vec<Violation>> {
        ensure!(
            !self.violations.is_empty(),
            "the storage simulator was not started"
        );
        let mut found = Vec::new();
        for (name, file) in self.violations.clone() {
            let p = self.proc_mut(&name)?;
            p.check_exit()?;
            if p.running()? {
                p.terminate().await?;
            }
            p.check_exit()?;
            found.extend(read_violations_file(&file)?);
        }
        Ok(found)
    }

    /// Fails, naming the simulator and the tail of its log, when a storage simulator died
    /// while it should run or exited other than with status 0 ([`Proc::check_exit`]).
    pub fn check_storage_sims(&mut self) -> Result<()> {
        for (name, _) in self.violations.clone() {
            self.proc_mut(&name)?.check_exit()?;
        }
        Ok(())
    }

    /// The violations the storage simulators recorded so far, while they keep running
    /// (each rewrites its file on every change); after [`Stack::stop_storage_sim`], the
    /// final ones. Fails as [`Stack::check_storage_sims`] does: a simulator that died left
    /// a file that no longer tells the truth.
    pub fn violations_so_far(&mut self) -> Result<Vec<Violation>> {
        self.check_storage_sims()?;
        let mut found = Vec::new();
        for (_, file) in &self.violations {
            if file.exists() {
                found.extend(read_violations_file(file)?);
            }
        }
        Ok(found)
    }

    /// Prints every process's log (for a failing scenario).
    pub fn print_logs(&self) {
        for p in &self.procs {
            eprintln!(
                "===== {} log ({}) =====\n{}",
                p.name,
                p.log.display(),
                p.log_text()
            );
        }
    }

    /// Kills every process and removes the cluster-scoped RBAC objects; on success also the
    /// log folder (kept when `FAILOVER_KEEP_LOGS` is set).
    pub async fn cleanup(mut self, succeeded: bool) {
        self.procs.clear();
        for c in self.env.clusters() {
            delete_rbac(c, &self.rbac_ns).await;
            if self.isolated {
                remove_isolation(c, &self.rbac_ns).await;
            }
        }
        if succeeded && std::env::var_os("FAILOVER_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        self.delete_table_and_queues().await;
    }

    /// Deletes the stack's table and queues (moto keeps, and copies, whatever is left, so
    /// leftovers slow every later test). Failures are only reported: cleanup never fails a
    /// test.
    async fn delete_table_and_queues(&self) {
        let ddb = self.env.aws.dynamodb();
        if let Err(e) = ddb.delete_table().table_name(&self.table).send().await {
            eprintln!("cleanup: deleting table {}: {e}", self.table);
        }
        let sqs = self.env.aws.sqs();
        let options = self.inbox.options();
        let mut names = vec![options.inbox_queue_name("coordinator")];
        for c in self.env.clusters() {
            names.push(options.inbox_queue_name(&c.name));
            names.push(options.dead_letter_queue_name(&c.name));
        }
        names.push(options.dead_letter_queue_name("coordinator"));
        for name in names {
            let Ok(url) = sqs.get_queue_url().queue_name(&name).send().await else {
                continue;
            };
            if let Some(url) = url.queue_url()
                && let Err(e) = sqs.delete_queue().queue_url(url).send().await
            {
                eprintln!("cleanup: deleting queue {name}: {e}");
            }
        }
    }

    fn cluster(&self, name: &str) -> Result<&Cluster> {
        self.env
            .clusters()
            .into_iter()
            .find(|c| c.name == name)
            .with_context(|| format!("no cluster {name} in the test environment"))
    }
}

fn humantime_arg(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn agent_name(cluster: &str) -> String {
    format!("agent-{cluster}")
}

/// Checks that `failoverctl` (`what`: its arguments, for messages) exited with `code`;
/// returns its stdout and stderr.
pub fn expect_exit(out: &Output, code: i32, what: &str) -> Result<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    ensure!(
        out.status.code() == Some(code),
        "failoverctl {what} exited {:?}, expected {code}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    Ok((stdout, stderr))
}
