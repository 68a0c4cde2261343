//! A whole CONSISTENCY failover east → west with real processes: two `failover-agent`
//! binaries (one per cluster, each with only its own cluster's kubeconfig, whose credential is
//! a ServiceAccount token bound to nothing but the ClusterRole shipped in
//! `deploy/kustomize/base/clusterrole.yaml`, so a missing permission fails the test) and the
//! `failover-storage-sim` binary playing the volume driver in both clusters, against the
//! two real kube-apiservers of the test environment and one moto table plus two SQS inboxes.
//!
//! The test takes its own namespace (plus one for its Flux objects), table and queue names.
//! A failing test prints both clusters' objects and the logs of every process it started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use failover_messages::crd::FailoverGroup;
use failover_messages::envelope::{Envelope, EnvelopeKind};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::{Mode, Operation, Phase};
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::fixtures::{
    self, GROUP, SETTLE, VOLUMES, assert_records, create_application, install_crds,
    wait_ready_replicas, wait_starting_point,
};
use failover_tests::kube::{Cluster, TestEnv, TestNamespace, wait_for};
use failover_tests::storage_sim::{read_violations_file, wait_settled};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READY_DEADLINE: Duration = Duration::from_secs(60);
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);
const SIM: &str = env!("CARGO_BIN_EXE_failover-storage-sim");

// ---- processes ---------------------------------------------------------------------------------

/// One child process with its log file; dropping the guard kills it.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(file))
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    fn running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait()?.is_none())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every process of the test; on failure their logs are printed.
#[derive(Default)]
struct Procs(Vec<Proc>);

impl Procs {
    fn print_logs(&self) {
        for p in &self.0 {
            eprintln!(
                "===== {} log ({}) =====\n{}",
                p.name,
                p.log.display(),
                p.log_text()
            );
        }
    }
}

/// A workspace binary next to this test's executable (`target/debug/`), brought
/// up to date first (a no-op when `cargo test --workspace` already built it), so the test
/// never runs a stale agent.
fn workspace_binary(package: &str, name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("the test executable has no folder")?;
    let dir = if deps.file_name().is_some_and(|n| n == "deps") {
        deps.parent().context("deps/ has no parent")?
    } else {
        deps
    };
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    // Build the way `cargo test --workspace` does (every member, every target), so the
    // features match and this is a no-op inside `make test`; building one package alone
    // would resolve other features and recompile half the dependency tree.
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut built = BUILT.lock().map_err(|_| anyhow!("build lock poisoned"))?;
    if !*built {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--workspace", "--all-targets"])
            .current_dir(failover_tests::env::repo_root())
            .status()
            .with_context(|| format!("running cargo build for {name} ({package})"))?;
        ensure!(status.success(), "building {name} failed: {status}");
        *built = true;
    }
    ensure!(bin.exists(), "{} does not exist", bin.display());
    Ok(bin)
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The HTTP status of `GET path` on the loopback port.
async fn http_status(port: u16, path: &str) -> Result<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))
}

/// A command with nothing inherited that could change the child's configuration.
fn clean_command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAILOVER_") || k.starts_with("AWS_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "info");
    cmd
}

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
/// Returns its path once the apiserver authorizes the token.
async fn agent_kubeconfig(c: &Cluster, ns: &str, dir: &Path) -> Result<PathBuf> {
    let role_path = failover_tests::env::repo_root().join(CLUSTER_ROLE_FILE);
    let text = std::fs::read_to_string(&role_path)
        .with_context(|| format!("reading {}", role_path.display()))?;
    let mut role: ClusterRole = serde_yaml::from_str(&text)
        .with_context(|| format!("parsing {} as a ClusterRole", role_path.display()))?;
    let name = rbac_name(ns);
    role.metadata.name = Some(name.clone());
    Api::<ClusterRole>::all(c.client.clone())
        .create(&PostParams::default(), &role)
        .await
        .with_context(|| format!("creating ClusterRole {name} in {}", c.name))?;
    let sas = Api::<ServiceAccount>::namespaced(c.client.clone(), ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": AGENT_SA, "namespace": ns}}))?;
    sas.create(&PostParams::default(), &sa)
        .await
        .with_context(|| format!("creating ServiceAccount {ns}/{AGENT_SA} in {}", c.name))?;
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": AGENT_SA, "namespace": ns}],
    }))?;
    Api::<ClusterRoleBinding>::all(c.client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .with_context(|| format!("creating ClusterRoleBinding {name} in {}", c.name))?;
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(3600),
            audiences: Some(Vec::new()),
            ..TokenRequestSpec::default()
        }),
        ..TokenRequest::default()
    };
    let token = sas
        .create_token_request(AGENT_SA, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for {ns}/{AGENT_SA} in {}", c.name))?
        .status
        .context("a TokenRequest without status")?
        .token;

    // Same server and CA as the admin kubeconfig, the token as the only credential.
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
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c.name, "cluster": cluster_entry}],
        "users": [{"name": AGENT_SA, "user": {"token": token}}],
        "contexts": [{"name": c.name, "context": {"cluster": c.name, "user": AGENT_SA}}],
        "current-context": c.name,
    });
    let path = dir.join(format!("agent-{}.kubeconfig", c.name));
    std::fs::write(&path, serde_yaml::to_string(&kubeconfig)?)
        .with_context(|| format!("writing {}", path.display()))?;

    // Wait until the authorizer sees the binding, and make sure the token is not admin.
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    let client = kube::Client::try_from(config)?;
    let groups: Api<FailoverGroup> = Api::all(client.clone());
    wait_for(
        &format!("the agent token may list FailoverGroups in {}", c.name),
        SETTLE,
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
    Ok(path)
}

/// Removes the cluster-scoped RBAC objects of a test (the namespace takes the ServiceAccount).
async fn delete_rbac(c: &Cluster, ns: &str) {
    let name = rbac_name(ns);
    let dp = DeleteParams::default();
    let _ = Api::<ClusterRoleBinding>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
    let _ = Api::<ClusterRole>::all(c.client.clone())
        .delete(&name, &dp)
        .await;
}

// ---- assertions --------------------------------------------------------------------------------

/// One cluster's side: active (`true`) or passive. The shared checks, then the workloads'
/// readiness and the volumes' states read from the cluster.
async fn assert_side(c: &Cluster, ns: &str, flux_ns: &str, active: bool) -> Result<()> {
    fixtures::assert_side(c, ns, flux_ns, active).await?;
    if active {
        wait_ready_replicas(c, ns, "Deployment", "api", 2).await?;
        wait_ready_replicas(c, ns, "StatefulSet", "db", 1).await?;
    }
    let state = if active { "Primary" } else { "Secondary" };
    for (volume, _, _) in VOLUMES {
        wait_settled(&c.client, ns, volume, state, Duration::from_secs(10))
            .await
            .with_context(|| format!("{volume} in {}", c.name))?;
    }
    Ok(())
}

// ---- the coordinator's part -------------------------------------------------------------------

async fn start_with_library(store: &Store, inbox: &Inbox, group: &GroupRef) -> Result<Operation> {
    store.register_group(group, "east").await?;
    let op = match store
        .start_operation(StartRequest {
            group: group.clone(),
            source: "east".into(),
            target: "west".into(),
            mode: Mode::Consistency,
            force: false,
            reason: "real-process failover test".into(),
            requested_by: "e2e-agents-test".into(),
            lease_ttl: Duration::from_secs(120),
            op_id: None,
        })
        .await?
    {
        StartOutcome::Started(op) => op,
        other => bail!("the operation did not start: {other:?}"),
    };
    for cluster in ["east", "west"] {
        let envelope = Envelope {
            kind: EnvelopeKind::OperationStarted,
            operation_id: op.id.clone(),
            group: group.clone(),
            epoch: op.epoch,
            sender: "coordinator".into(),
            sent_at: jiff::Timestamp::now(),
        };
        inbox
            .send(cluster, &envelope)
            .await
            .with_context(|| format!("notifying {cluster}"))?;
    }
    Ok(op)
}

/// Runs `failoverctl register` and `failoverctl failover --wait` as a user would, checks
/// their exit codes and output, and returns the operation the command reported.
async fn start_with_failoverctl(
    table: &str,
    prefix: &str,
    region: &str,
    endpoint: &str,
    group: &GroupRef,
    store: &Store,
) -> Result<Operation> {
    let ctl = workspace_binary("failover-coordinator", "failoverctl")?;
    let run = |args: &[&str]| -> Result<std::process::Output> {
        let mut cmd = clean_command(&ctl);
        cmd.args([
            "--table",
            table,
            "--queue-prefix",
            prefix,
            "--region",
            region,
            "--endpoint-url",
            endpoint,
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(Stdio::null());
        Ok(cmd.output()?)
    };
    let g = group.to_string();
    let out = tokio::task::block_in_place(|| run(&["register", &g, "--active", "east"]))?;
    ensure!(
        out.status.success(),
        "failoverctl register failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = tokio::task::block_in_place(|| {
        run(&[
            "-o",
            "json",
            "failover",
            &g,
            "--to",
            "west",
            "--wait",
            "--timeout",
            "60s",
        ])
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(0),
        "failoverctl failover --wait exited {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    let history = store.history(group, None).await?;
    let entry = history
        .first()
        .context("no history entry after failoverctl succeeded")?;
    let op = entry.operation.clone();
    ensure!(
        stdout.contains(&op.id),
        "failoverctl's output names the operation {}: {stdout}",
        op.id
    );
    ensure!(
        op.phase == Phase::Succeeded,
        "operation phase {:?}",
        op.phase
    );
    Ok(op)
}

// ---- the test ----------------------------------------------------------------------------------

/// Who plays the coordinator: the store and inbox called directly, or the real
/// `failoverctl` binary (`register`, then `failover --wait`).
#[derive(Clone, Copy, PartialEq)]
enum Coordinator {
    Library,
    Failoverctl,
}

struct Run<'a> {
    coordinator: Coordinator,
    env: &'a TestEnv,
    ns: &'a TestNamespace,
    flux_ns: &'a TestNamespace,
    dir: PathBuf,
    procs: Procs,
}

impl Run<'_> {
    async fn body(&mut self) -> Result<()> {
        let env = self.env;
        let ns = self.ns.name.clone();
        let flux_ns = self.flux_ns.name.clone();

        // The storage simulator, as a process, watching this test's namespace.
        let violations = self.dir.join("violations.json");
        let mut sim = clean_command(Path::new(SIM));
        sim.arg("--cluster")
            .arg(format!("east={}", env.east.kubeconfig.display()))
            .arg("--cluster")
            .arg(format!("west={}", env.west.kubeconfig.display()))
            .arg("--violations")
            .arg(&violations)
            .args(["--latency", "200ms", "--namespace", &ns]);
        self.procs.0.push(Proc::spawn(
            "storage-sim",
            sim,
            self.dir.join("storage-sim.log"),
        )?);

        // Table, queues, application.
        let ddb = env.aws.dynamodb();
        let table = env.aws.unique("fo-e2e");
        ensure_table(&ddb, &table).await?;
        let store = Store::new(&ddb, &table);
        let prefix = format!("{}-", env.aws.unique("fo"));
        let options = InboxOptions {
            prefix: prefix.clone(),
            ..InboxOptions::default()
        };
        let inbox = Inbox::new(env.aws.sqs(), "coordinator", options);
        for c in env.clusters() {
            inbox.ensure_queues(&c.name).await?;
        }
        Box::pin(create_application(env, &ns, &flux_ns)).await?;
        wait_starting_point(env, &ns).await?;

        // Two agents, each with its own cluster's kubeconfig only, holding a ServiceAccount
        // token bound to the shipped least-privilege ClusterRole.
        let agent = workspace_binary("failover-agent", "failover-agent")?;
        let mut ports = Vec::new();
        for c in env.clusters() {
            let kubeconfig = agent_kubeconfig(c, &ns, &self.dir).await?;
            let port = free_port()?;
            let mut cmd = clean_command(&agent);
            cmd.args(["--cluster", &c.name])
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["--table", &table, "--queue-prefix", &prefix])
                .args(["--region", &env.aws.region])
                .args(["--endpoint-url", &env.aws.endpoint_url])
                .args(["--admin-addr", &format!("127.0.0.1:{port}")])
                .args(["--heartbeat-interval", "1s", "--reread-interval", "2s"])
                .env("AWS_ACCESS_KEY_ID", "testing")
                .env("AWS_SECRET_ACCESS_KEY", "testing");
            let name = format!("agent-{}", c.name);
            let log = self.dir.join(format!("{name}.log"));
            self.procs.0.push(Proc::spawn(&name, cmd, log)?);
            ports.push((c.name.clone(), port));
        }
        for (cluster, port) in &ports {
            let port = *port;
            wait_for(
                &format!("/ready = 200 on the {cluster} agent"),
                READY_DEADLINE,
                || async move {
                    match http_status(port, "/ready").await {
                        Ok(200) => Ok(Some(())),
                        Ok(s) => Err(format!("status {s}")),
                        Err(e) => Err(format!("{e:#}")),
                    }
                },
            )
            .await?;
        }
        for p in &mut self.procs.0 {
            ensure!(p.running()?, "{} exited during start-up", p.name);
        }

        // The coordinator's part: register the group, start the operation, wake both agents.
        let group = GroupRef::new(&ns, GROUP)?;
        let started = Instant::now();
        let op = match self.coordinator {
            Coordinator::Library => start_with_library(&store, &inbox, &group).await?,
            Coordinator::Failoverctl => {
                let aws = &env.aws;
                start_with_failoverctl(
                    &table,
                    &prefix,
                    &aws.region,
                    &aws.endpoint_url,
                    &group,
                    &store,
                )
                .await?
            }
        };

        // The agents carry it out on their own.
        wait_for(
            "active = west and no operation in flight",
            FAILOVER_DEADLINE,
            || {
                let store = store.clone();
                let group = group.clone();
                async move {
                    let state = store
                        .get_group_state(&group)
                        .await
                        .map_err(|e| e.to_string())?;
                    match state {
                        Some(s) if s.active_cluster == "west" && s.op_id.is_none() => Ok(Some(())),
                        other => Err(format!("{other:?}")),
                    }
                }
            },
        )
        .await?;
        eprintln!("failover took {:?}", started.elapsed());

        assert_records(&store, &group, &op).await?;
        assert_side(&env.east, &ns, &flux_ns, false).await?;
        assert_side(&env.west, &ns, &flux_ns, true).await?;
        for p in &mut self.procs.0 {
            ensure!(p.running()?, "{} is no longer running", p.name);
            // Best-effort writes (Failover status) only log a refused call: catch those too.
            if p.name.starts_with("agent-") {
                let log = p.log_text();
                let denied: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).collect();
                ensure!(
                    denied.is_empty(),
                    "{} was refused by RBAC: {denied:#?}",
                    p.name
                );
            }
        }

        // The simulator rewrites its violations file on SIGTERM.
        let sim = &mut self.procs.0[0];
        let pid = sim.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status()?;
        ensure!(status.success(), "kill -TERM {pid} failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if sim.child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                bail!("the storage simulator did not exit after SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let found = read_violations_file(&violations)?;
        ensure!(found.is_empty(), "storage violations: {found:#?}");
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistency_failover_east_to_west_with_real_agent_processes() -> Result<()> {
    failover_with(Coordinator::Library).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failoverctl_failover_wait_moves_the_group_with_real_agent_processes() -> Result<()> {
    failover_with(Coordinator::Failoverctl).await
}

async fn failover_with(coordinator: Coordinator) -> Result<()> {
    let env = TestEnv::attach().await?;
    for c in env.clusters() {
        install_crds(c, SETTLE).await?;
    }
    let ns = env.namespace("fo-e2e").await?;
    let flux_ns = env.namespace("fo-e2e-flux").await?;
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("e2e-agents-{}", ns.name));
    std::fs::create_dir_all(&dir)?;
    let mut run = Run {
        coordinator,
        env: &env,
        ns: &ns,
        flux_ns: &flux_ns,
        dir,
        procs: Procs::default(),
    };
    let res = Box::pin(run.body()).await;
    let out = match res {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&run.dir);
            Ok(())
        }
        Err(e) => {
            run.procs.print_logs();
            Err(anyhow!("{e:#}\n\n{}", ns.dump().await))
        }
    };
    // Kills every child (the guards' Drop) before the namespaces go.
    drop(run);
    for c in env.clusters() {
        delete_rbac(c, &ns.name).await;
    }
    ns.cleanup().await;
    flux_ns.cleanup().await;
    out
}
