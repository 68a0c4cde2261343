//! One end-to-end scenario's setting, shared by the fault tests: two namespaces (the
//! application's and its Flux objects'), a [`Stack`] (table, queues, agents, storage
//! simulator), the shop application registered active in east, and what every such test
//! checks at its end (the operation's record, the storage simulator's violations), plus
//! [`Scenario::run_through_crashes`], which keeps restarting agents that a failpoint
//! crashed until the operation ends, and [`Scenario::run_with_nemesis`], which injects
//! faults while `failoverctl` runs, when the records show the moment has come
//! ([`Scenario::wait_operation`], [`Scenario::wait_journal`], [`Scenario::wait_group`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use failover_messages::crd::Failover;
use failover_messages::keys::GroupRef;
use failover_messages::records::{GroupState, JournalStep, Operation, Phase};

use kube::api::Api;

use crate::agents::{AgentStart, Stack, workspace_binary};
use crate::fixtures::{
    GROUP, OPERATION_DEADLINE, SETTLE, create_application, install_crds, wait_group_idle_on,
    wait_starting_point,
};
use crate::kube::{TestEnv, TestNamespace, wait_for};

/// The agents' `--lease-duration` in a scenario unless the test sets another.
pub const SCENARIO_LEASE: Duration = Duration::from_secs(15);

/// Namespaces, stack, application, agents; the group registered active in east.
pub struct Scenario {
    /// The environment.
    pub env: TestEnv,
    /// The application's namespace (in both clusters).
    pub ns: TestNamespace,
    /// The Flux objects' namespace.
    pub flux_ns: TestNamespace,
    /// Table, queues and processes.
    pub stack: Stack,
    /// The FailoverGroup.
    pub group: GroupRef,
}

impl Scenario {
    /// Namespaces and a stack labelled `label`; nothing runs yet.
    pub async fn new(label: &str) -> Result<Scenario> {
        Self::with_env(TestEnv::attach().await?, label).await
    }

    /// [`Scenario::new`] on `env` (e.g. with a moto server of the test's own).
    pub async fn with_env(env: TestEnv, label: &str) -> Result<Scenario> {
        for c in env.clusters() {
            install_crds(c, SETTLE).await?;
        }
        let ns = env.namespace(&format!("fo-{label}")).await?;
        let flux_ns = env.namespace(&format!("fo-{label}-flux")).await?;
        let mut stack = Stack::new(&env, &ns.name, label).await?;
        // A loaded machine can keep moto from answering a renewal for seconds; a 15 s lease
        // keeps fault scenarios about their faults, not about lost leases (the lease tests
        // use their own).
        stack.agent_options.lease_duration = Some(SCENARIO_LEASE);
        let group = GroupRef::new(&ns.name, GROUP)?;
        Ok(Scenario {
            env,
            ns,
            flux_ns,
            stack,
            group,
        })
    }

    /// Storage simulator, application, both agents (started as `east` and `west` say), the
    /// group registered active in east, and east's replica counts known in DynamoDB.
    pub async fn start(&mut self, east: AgentStart, west: AgentStart) -> Result<()> {
        self.prepare_application().await?;
        self.start_agents(east, west).await
    }

    /// Storage simulator and application at their starting point, the agents' writes
    /// confined to the scenario's namespaces; no agent runs yet.
    pub async fn prepare_application(&mut self) -> Result<()> {
        let ns = self.ns.name.clone();
        self.stack
            .start_storage_sim(&[&ns], Duration::from_millis(200))?;
        Box::pin(create_application(&self.env, &ns, &self.flux_ns.name)).await?;
        wait_starting_point(&self.env, &ns).await?;
        // A lost lease fences every active group in the cluster: keep other tests' out of
        // reach.
        let flux_ns = self.flux_ns.name.clone();
        self.stack.isolate_agents(&[&ns, &flux_ns]).await
    }

    /// Both agents (started as `east` and `west` say), the group registered active in east,
    /// and east's replica counts known in DynamoDB.
    pub async fn start_agents(&mut self, east: AgentStart, west: AgentStart) -> Result<()> {
        self.stack.start_agent_with("east", east).await?;
        self.stack.start_agent_with("west", west).await?;
        let out =
            self.stack
                .failoverctl(&["register", &self.group.to_string(), "--active", "east"])?;
        ensure!(
            out.status.success(),
            "failoverctl register: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (store, group) = (&self.stack.store, &self.group);
        // East's agent records them on a fencing check that sees the group registered: the
        // one `register`'s GroupRegistered wake-up asks for at once (the re-read timer only
        // as a fallback, so a long re-read interval makes a lost wake-up fail here).
        let reread = self.stack.agent_options.reread_interval;
        let deadline = SETTLE + (reread * 2).min(SETTLE);
        wait_for(
            "east's known replica counts in DynamoDB",
            deadline,
            || async {
                let known = store
                    .get_known_replicas(group)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(known.filter(|k| k.cluster == "east" && k.replicas.len() == 2))
            },
        )
        .await?;
        Ok(())
    }

    /// `failoverctl failover <group> --to <to> --reason <reason> --wait` with `extra`
    /// arguments (`--mode uptime`, `--force`, …).
    pub fn failover_args(&self, to: &str, reason: &str, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "failover",
            &self.group.to_string(),
            "--to",
            to,
            "--reason",
            reason,
            "--wait",
            "--timeout",
            "180s",
        ]
        .map(str::to_owned)
        .to_vec();
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        args
    }

    /// The operation that moved the group to `cluster`: idle there, first in its history,
    /// Succeeded with `reason`.
    pub async fn succeeded_on(&self, cluster: &str, reason: &str) -> Result<Operation> {
        let store = &self.stack.store;
        let state = wait_group_idle_on(store, &self.group, cluster, OPERATION_DEADLINE).await?;
        let history = store.history(&self.group, None).await?;
        let op = history
            .first()
            .map(|h| h.operation.clone())
            .context("no history entry")?;
        ensure!(
            op.reason == reason && op.phase == Phase::Succeeded,
            "the last operation is not the one that succeeded with reason {reason:?}: {op:?}"
        );
        ensure!(
            state.epoch == op.epoch && state.promotion_claimed_by.is_none(),
            "the group state does not match its last operation: {state:?}"
        );
        Ok(op)
    }

    /// Stops the storage simulator; fails on any violation or dead agent.
    pub async fn assert_no_violations(&mut self) -> Result<()> {
        self.stack.check_agents()?;
        let found = self.stack.stop_storage_sim().await?;
        ensure!(found.is_empty(), "storage violations: {found:#?}");
        Ok(())
    }

    /// Ends the scenario with `res`: on failure prints logs and the namespace's objects;
    /// cleans up either way.
    pub async fn finish(self, res: Result<()>) -> Result<()> {
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

    /// Runs `failoverctl` with `args` to its end while watching both agents: an agent that
    /// exits is restarted as `restart` says for it, its `n`-th restart as the `n`-th entry
    /// (the last one for every further restart); a crash that a failpoint caused is
    /// expected, and its log must say so. Fails when `failoverctl` does not finish within
    /// `deadline` or an agent exits without a failpoint's crash.
    pub async fn run_through_crashes(
        &mut self,
        args: &[String],
        restart: &BTreeMap<String, Vec<AgentStart>>,
        deadline: Duration,
    ) -> Result<CrashReport> {
        let Background { mut child, started } = self.spawn_failoverctl(args)?;
        let mut report = CrashReport::default();
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            ensure!(
                started.elapsed() < deadline,
                "failoverctl did not finish within {deadline:?}; crashes so far: {report:?}"
            );
            for (cluster, how) in restart {
                let name = format!("agent-{cluster}");
                let proc = self.stack.proc_mut(&name)?;
                if proc.running()? {
                    continue;
                }
                // Every crash since the last look (a restart may crash before it is ready).
                let log = proc.log_text();
                let before = report.crashes_of(cluster);
                let new: Vec<String> = crash_points(&log).skip(before).collect();
                ensure!(
                    !new.is_empty(),
                    "{name} exited without a failpoint crash; its log ends:\n{}",
                    tail(&log, 20)
                );
                report
                    .crashes
                    .extend(new.into_iter().map(|p| (cluster.clone(), p)));
                let n = report.crashes_of(cluster) - 1;
                let how = how.get(n).or(how.last()).cloned().unwrap_or_default();
                if let Err(e) = self.stack.start_agent_with(cluster, how).await {
                    // Crashed again during start-up (a new crash line): the next look
                    // restarts it. Any other failure to start is the test's failure.
                    let proc = self.stack.proc_mut(&name)?;
                    let crashed = !proc.running()?
                        && crash_points(&proc.log_text()).count() > report.crashes_of(cluster);
                    if !crashed {
                        return Err(e.context(format!("restarting {name} after a crash")));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let out = child.wait_with_output().await?;
        report.exit = status.code();
        report.stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        report.stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        report.elapsed = started.elapsed();
        Ok(report)
    }
}

/// What [`Scenario::run_through_crashes`] saw.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Each crash: the agent's cluster and the failpoint's line.
    pub crashes: Vec<(String, String)>,
    /// `failoverctl`'s exit code.
    pub exit: Option<i32>,
    /// Its output.
    pub stdout: String,
    /// Its error output.
    pub stderr: String,
    /// How long the operation took, crashes and restarts included.
    pub elapsed: Duration,
}

impl CrashReport {
    /// How many times the agent of `cluster` crashed.
    pub fn crashes_of(&self, cluster: &str) -> usize {
        self.crashes.iter().filter(|(c, _)| c == cluster).count()
    }
}

/// `failoverctl` running in the background ([`Scenario::spawn_failoverctl`]); killed when
/// dropped.
pub struct Background {
    child: tokio::process::Child,
    started: Instant,
}

impl Background {
    /// Waits until `failoverctl` exits, at most `deadline` from its start (then kills it
    /// and fails).
    pub async fn finish(self, deadline: Duration) -> Result<CtlReport> {
        let Background { child, started } = self;
        let left = deadline.saturating_sub(started.elapsed());
        let out = tokio::time::timeout(left, child.wait_with_output())
            .await
            .map_err(|_| anyhow!("failoverctl did not finish within {deadline:?}"))??;
        Ok(CtlReport {
            exit: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        })
    }
}

/// How a `failoverctl` run ended.
#[derive(Debug, Default)]
pub struct CtlReport {
    /// Its exit code.
    pub exit: Option<i32>,
    /// Its output.
    pub stdout: String,
    /// Its error output.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CtlReport {
    /// Fails unless `failoverctl` exited 0.
    pub fn ensure_success(&self) -> Result<()> {
        ensure!(
            self.exit == Some(0),
            "failoverctl exited {:?} after {:?}\nstdout: {}\nstderr: {}",
            self.exit,
            self.elapsed,
            self.stdout,
            self.stderr
        );
        Ok(())
    }
}

impl Scenario {
    /// Starts `failoverctl` with `args` in the background, its output piped.
    pub fn spawn_failoverctl(&self, args: &[String]) -> Result<Background> {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let cmd = self.stack.failoverctl_command(&args)?;
        let child = tokio::process::Command::from(cmd)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting failoverctl")?;
        Ok(Background {
            child,
            started: Instant::now(),
        })
    }

    /// Runs `failoverctl` with `args` to its end (within `deadline`) while `nemesis` runs
    /// beside it (typically: wait for a moment in the records, inject a fault, heal it);
    /// returns both results once both are done. A nemesis that fails fails the run, after
    /// `failoverctl` ended.
    pub async fn run_with_nemesis<T>(
        &self,
        args: &[String],
        deadline: Duration,
        nemesis: impl Future<Output = Result<T>>,
    ) -> Result<(CtlReport, T)> {
        let ctl = self.spawn_failoverctl(args)?;
        let (report, injected) = tokio::join!(ctl.finish(deadline), nemesis);
        let injected = injected.context("injecting the faults")?;
        Ok((report?, injected))
    }

    /// The group state once `pred` holds for it (read directly, consistently), within
    /// `deadline`; `what` names the moment.
    pub async fn wait_group(
        &self,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&GroupState) -> bool,
    ) -> Result<GroupState> {
        let (store, group) = (&self.stack.store, &self.group);
        crate::kube::wait_for(what, deadline, || async {
            match store.get_group_state(group).await {
                Ok(Some(s)) if pred(&s) => Ok(Some(s)),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(format!("{e:#}")),
            }
        })
        .await
    }

    /// The id of the operation in flight on the group, once there is one.
    pub async fn wait_operation(&self, deadline: Duration) -> Result<String> {
        let state = self
            .wait_group("an operation in flight", deadline, |s| s.op_id.is_some())
            .await?;
        state.op_id.context("no operation in flight")
    }

    /// `cluster`'s own journal of operation `op_id`: the `status.journal` of the operation's
    /// `Failover` in that cluster (every step, as the agent resumes from it; DynamoDB has
    /// only the published stages). Empty before the agent created the object.
    pub async fn local_journal(&self, op_id: &str, cluster: &str) -> Result<Vec<JournalStep>> {
        let c = self
            .env
            .clusters()
            .into_iter()
            .find(|c| c.name == cluster)
            .with_context(|| format!("no cluster {cluster} in the environment"))?;
        let list = Api::<Failover>::namespaced(c.client.clone(), &self.ns.name)
            .list(&Default::default())
            .await
            .with_context(|| format!("listing the Failovers in {cluster}"))?;
        Ok(list
            .items
            .into_iter()
            .filter_map(|fo| fo.status)
            .find(|st| st.operation_id.as_deref() == Some(op_id))
            .map(|st| st.journal_of(op_id, cluster))
            .unwrap_or_default())
    }

    /// The first step of `cluster`'s own journal of operation `op_id`
    /// ([`Scenario::local_journal`]) for which `pred` holds, once there is one, within
    /// `deadline`; `what` names the moment.
    pub async fn wait_journal(
        &self,
        op_id: &str,
        cluster: &str,
        what: &str,
        deadline: Duration,
        pred: impl Fn(&JournalStep) -> bool,
    ) -> Result<JournalStep> {
        crate::kube::wait_for(what, deadline, || async {
            let steps = self
                .local_journal(op_id, cluster)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let last = steps.last().map(|j| format!("{}/{}", j.stage, j.task));
            match steps.into_iter().find(|j| pred(j)) {
                Some(j) => Ok(Some(j)),
                None => Err(format!("last step so far: {last:?}")),
            }
        })
        .await
    }
}

/// The `failpoint …: crash` lines of an agent's log (which every restart appends to).
pub fn crash_points(log: &str) -> impl Iterator<Item = String> + '_ {
    log.lines()
        .filter(|l| l.starts_with("failpoint ") && l.ends_with(": crash"))
        .map(str::to_owned)
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An [`AgentStart`] whose agent runs with `FAILPOINTS=<failpoints>`.
pub fn with_failpoints(failpoints: &str) -> AgentStart {
    AgentStart {
        env: vec![("FAILPOINTS".into(), failpoints.into())],
        ..AgentStart::default()
    }
}

/// True when the test binaries were built with failpoints (the workspace's test builds
/// always are); a fault test checks it so it never passes without injecting anything.
pub fn failpoints_built() -> Result<bool> {
    let agent = workspace_binary("failover-agent")?;
    let out = std::process::Command::new(agent)
        .arg("failpoints")
        .output()
        .context("running failover-agent failpoints")?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "enabled")
}
