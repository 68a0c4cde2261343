//! A seeded random nemesis (`make chaos`, the `failover-chaos` binary): the `shop`
//! application as two FailoverGroups in two namespaces, both registered active in east,
//! real agents whose DynamoDB, SQS and apiserver connections each pass through their own
//! toxiproxy proxy, and a storage simulator per namespace. After one baseline operation
//! without faults, `ops` operations drawn from the seed ([`schedule`]) move a group back
//! and forth (CONSISTENCY or UPTIME, some forced, some aborted shortly after the start)
//! while the nemesis ([`nemesis`]) cuts proxies, slows them, kills agents and restarts them
//! with crash or throttling failpoints, each at its planned time from the operation's start.
//! After each operation everything is healed, dead or armed agents restart clean, a
//! `Failed` operation that still holds its group is aborted, both groups must become idle,
//! and the run checker ([`crate::checker::check_run`]) judges the whole run so far; what it
//! finds for the first time is laid at that operation's door. [`report`] renders the
//! outcome.
//!
//! The agents run with a 30 s serving lease (the agent's default), so no planned cut
//! (at most [`schedule::Limits::max_cut`]) costs an agent its lease: a lost lease fences
//! every active group in the cluster and leaves it down until an operation moves it, which
//! the checker would rightly report as a group state that disagrees with the clusters.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use failover_messages::keys::GroupRef;
use failover_messages::records::Mode;

use crate::agents::{Stack, expect_exit};
use crate::checker::check_run;
use crate::fixtures::{GROUP, SETTLE, create_application, install_crds, wait_starting_point};
use crate::kube::{TestEnv, TestNamespace, wait_for};

pub mod nemesis;
mod operation;
pub mod report;
pub mod schedule;

use nemesis::{Agents, CLUSTERS, agent_start};
use report::{OpRecord, RunReport};
use schedule::{Limits, OpPlan};

/// How long the run checker's verdict may take to come clean after an operation (a state
/// the clusters only reach a moment after the records say so).
const VERDICT_SETTLE: Duration = Duration::from_secs(20);

/// What to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The seed of the schedule.
    pub seed: u64,
    /// Operations after the baseline.
    pub ops: usize,
    /// How long an operation may take to reach a terminal phase.
    pub deadline: Duration,
    /// What the schedule may draw.
    pub limits: Limits,
    /// The agents' `--lease-duration`.
    pub lease: Duration,
}

impl Config {
    /// `ops` operations from `seed`, with the defaults.
    pub fn new(seed: u64, ops: usize) -> Config {
        Config {
            seed,
            ops,
            deadline: Duration::from_secs(120),
            limits: Limits::default(),
            lease: Duration::from_secs(30),
        }
    }
}

/// A run in progress: the environment, its namespaces, the stack, the groups and the
/// nemesis's view of the agents.
pub(crate) struct Run {
    env: TestEnv,
    namespaces: Vec<TestNamespace>,
    stack: Stack,
    groups: Vec<GroupRef>,
    agents: Agents,
    /// Every problem the checker reported so far (each is laid at one operation's door).
    seen: BTreeSet<String>,
    config: Config,
}

/// Runs `config` against the test environment; the report says what happened, also when
/// the run could not finish.
pub async fn run(config: &Config) -> RunReport {
    let wall = Instant::now();
    let mut report = RunReport {
        seed: config.seed,
        ops: config.ops,
        settings: format!(
            "lease {} s, re-read {} s, DynamoDB, SQS and apiserver through toxiproxy; \
             operation deadline {} s",
            config.lease.as_secs(),
            crate::agents::AgentOptions::default()
                .reread_interval
                .as_secs(),
            config.deadline.as_secs()
        ),
        started: jiff::Timestamp::now()
            .round(jiff::Unit::Second)
            .map_or_else(|_| jiff::Timestamp::now().to_string(), |t| t.to_string()),
        ..RunReport::default()
    };
    let mut run = match Run::new(config).await {
        Ok(run) => run,
        Err(e) => {
            report.error = Some(format!("setting up: {e:#}"));
            report.wall = wall.elapsed();
            return report;
        }
    };
    report.groups = run.groups.iter().map(ToString::to_string).collect();
    let root = crate::env::repo_root();
    let dir = &run.stack.dir;
    report.logs = format!("`{}`", dir.strip_prefix(&root).unwrap_or(dir).display());
    let res = run.body(&mut report).await;
    if let Err(e) = res {
        report.error = Some(format!("{e:#}"));
    }
    match run.finish().await {
        Ok(problems) => report.final_problems = problems,
        Err(e) => {
            report.error.get_or_insert(format!("finishing: {e:#}"));
        }
    }
    let clean = report.exit_code() == 0;
    if !clean {
        run.stack.print_logs();
    }
    run.cleanup(clean).await;
    if clean {
        report.logs = format!("{} (removed: nothing found)", report.logs);
    }
    report.wall = wall.elapsed();
    report
}

impl Run {
    /// Namespaces and a stack; nothing runs yet.
    async fn new(config: &Config) -> Result<Run> {
        let env = TestEnv::attach().await?;
        for c in env.clusters() {
            install_crds(c, SETTLE).await?;
        }
        let mut namespaces = Vec::new();
        let letters = ["a", "b", "c", "d"];
        for letter in letters.iter().take(config.limits.groups.clamp(1, 4)) {
            for suffix in ["", "-flux"] {
                match env.namespace(&format!("fo-chaos-{letter}{suffix}")).await {
                    Ok(ns) => namespaces.push(ns),
                    Err(e) => {
                        for ns in &namespaces {
                            ns.cleanup().await;
                        }
                        return Err(e);
                    }
                }
            }
        }
        let groups = namespaces
            .iter()
            .step_by(2)
            .map(|ns| GroupRef::new(&ns.name, GROUP))
            .collect::<Result<Vec<_>, _>>()?;
        let mut stack = match Stack::new(&env, &namespaces[0].name, "chaos").await {
            Ok(stack) => stack,
            Err(e) => {
                for ns in &namespaces {
                    ns.cleanup().await;
                }
                return Err(e);
            }
        };
        stack.agent_options.lease_duration = Some(config.lease);
        Ok(Run {
            env,
            namespaces,
            stack,
            groups,
            agents: Agents::default(),
            seen: BTreeSet::new(),
            config: config.clone(),
        })
    }

    /// Storage simulators, the applications, both agents and the groups registered active
    /// in east with east's replica counts known.
    async fn start(&mut self) -> Result<()> {
        let names: Vec<String> = self.namespaces.iter().map(|n| n.name.clone()).collect();
        let apps: Vec<&str> = names.iter().step_by(2).map(String::as_str).collect();
        self.stack
            .start_storage_sim(&apps, Duration::from_millis(200))?;
        for pair in names.chunks(2) {
            Box::pin(create_application(&self.env, &pair[0], &pair[1])).await?;
        }
        for ns in &apps {
            wait_starting_point(&self.env, ns).await?;
        }
        // A lost lease fences every active group in the cluster: keep other tests' groups
        // out of reach.
        let all: Vec<&str> = names.iter().map(String::as_str).collect();
        self.stack.isolate_agents(&all).await?;
        for cluster in CLUSTERS {
            self.stack
                .start_agent_with(cluster, agent_start(None))
                .await?;
        }
        for group in &self.groups {
            let out =
                self.stack
                    .failoverctl(&["register", &group.to_string(), "--active", "east"])?;
            expect_exit(&out, 0, "register")?;
            let store = &self.stack.store;
            wait_for(
                &format!("{group}: east's replica counts in DynamoDB"),
                SETTLE,
                || async {
                    let known = store
                        .get_known_replicas(group)
                        .await
                        .map_err(|e| e.to_string())?;
                    Ok(known.filter(|k| k.cluster == "east"))
                },
            )
            .await?;
        }
        Ok(())
    }

    /// The baseline, then every planned operation, each judged after it.
    async fn body(&mut self, report: &mut RunReport) -> Result<()> {
        self.start().await?;
        let baseline = OpPlan {
            index: 0,
            group: 0,
            mode: Mode::Consistency,
            force: false,
            abort_after: None,
            faults: Vec::new(),
        };
        let (mut rec, ok) = self.operation(&baseline).await?;
        if rec.outcome != report::Outcome::Closed(failover_messages::records::Phase::Succeeded) {
            rec.problems
                .push(format!("the baseline without faults ended {}", rec.outcome));
        }
        self.judge(&mut rec).await?;
        report.baseline = Some(rec);
        if !ok {
            return Err(anyhow!("the baseline left a group held"));
        }
        for plan in schedule::plan(self.config.seed, self.config.ops, &self.config.limits) {
            let (mut rec, ok) = self.operation(&plan).await?;
            self.judge(&mut rec).await?;
            report.records.push(rec);
            if !ok {
                tracing::warn!("a group stays held: the run stops here");
                break;
            }
        }
        Ok(())
    }

    /// The run checker's verdict on everything so far (given a moment to come clean); its
    /// problems not reported before go to `rec`.
    async fn judge(&mut self, rec: &mut OpRecord) -> Result<()> {
        let started = Instant::now();
        let verdict = loop {
            let verdict = check_run(&self.env, &mut self.stack, &self.groups).await?;
            let new = verdict
                .problems
                .iter()
                .any(|p| !self.seen.contains(&p.to_string()));
            if !new || started.elapsed() >= VERDICT_SETTLE {
                break verdict;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };
        for p in verdict.problems {
            let text = p.to_string();
            if self.seen.insert(text.clone()) {
                tracing::warn!("violation: {text}");
                rec.problems.push(text);
            }
        }
        Ok(())
    }

    /// The end of the run: the agents must still run with no RBAC refusal, and the
    /// checker's last verdict, with the storage simulators stopped (their files final);
    /// returns the problems not reported before.
    async fn finish(&mut self) -> Result<Vec<String>> {
        let mut problems = Vec::new();
        if let Err(e) = self.stack.check_agents() {
            problems.push(format!("{e:#}"));
        }
        self.stack
            .stop_storage_sim()
            .await
            .context("stopping the storage simulators")?;
        let verdict = check_run(&self.env, &mut self.stack, &self.groups).await?;
        for p in verdict.problems {
            let text = p.to_string();
            if self.seen.insert(text.clone()) {
                problems.push(text);
            }
        }
        Ok(problems)
    }

    /// Kills every process, removes the namespaces and (when `clean`) the logs.
    async fn cleanup(self, clean: bool) {
        self.stack.cleanup(clean).await;
        for ns in &self.namespaces {
            ns.cleanup().await;
        }
    }
}

/// Where the report goes by default: `target/chaos/report.md` in the repository.
pub fn default_report_path() -> PathBuf {
    crate::env::repo_root().join("target/chaos/report.md")
}
