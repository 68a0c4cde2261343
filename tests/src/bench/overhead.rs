//! Orchestration overhead of a CONSISTENCY failover, and the AWS calls it costs, measured
//! with real processes: two `failover-agent` binaries, the `failover-storage-sim` binary
//! and the test environment's kube-apiservers and moto (see [`crate::agents::Stack`]).
//!
//! One stack (fresh table and inboxes, both agents) serves every case. A case is a
//! FailoverGroup of `workloads` workloads with one volume each ([`super::fleet`]) in its own
//! namespace, whose storage simulator completes every VolumeReplication transition after
//! `latency`. Each case runs one unmeasured warm-up failover and then `runs` measured ones,
//! alternating east → west and west → east. A run:
//!
//! 1. scrapes both agents' `/metrics`;
//! 2. starts the operation as the coordinator does (one `start_operation` transaction, then
//!    `OperationStarted` to both inboxes) and starts the clock just before;
//! 3. polls the group state (a consistent `GetItem` every 20 ms) until the target is active
//!    with no operation in flight: that is the run's **total**;
//! 4. waits until both agents count their side as succeeded (the source may still finish
//!    its side after the state flipped), scrapes again: the counters' growth is the run's
//!    calls.
//!
//! **Overhead** = total − 2 × latency: on the critical path of a CONSISTENCY failover the
//! storage delay counts twice, the demotion on the source and the promotion on the target
//! (each group's volumes transition in parallel). With several latencies the report shows
//! the measured slope of total over latency, which checks that factor. kwok adds no pod
//! delays (its default stages), so nothing is subtracted for pods: the time the real
//! controllers, scheduler and kwok need to remove and start pods stays in the overhead, as
//! does the simulator's own reaction time (a watch event and two status writes per
//! transition).
//!
//! **AWS calls**: the agents expose `failover_aws_calls_total{operation, api, outcome}`
//! (DynamoDB call attempts; the outcomes are summed here) and `failover_sqs_messages_total{kind, outcome}` (inbox messages handled).
//! After the runs, both agents are scraped across an idle window with no operation; that
//! background rate (heartbeats, re-read ticks) times each run's scrape window is subtracted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::Phase;
use failover_messages::store::{CallCounter, Store};

use super::cpu::{CpuSample, CpuUse};

mod report;

pub use self::report::{
    aws_latency_cases, calls_markdown, handoffs, headline, overhead_markdown, per_volume,
    summary_rows,
};
use super::fleet::{self, GroupShape};
use super::probe::{self, Scrape};
use crate::agents::{AgentOptions, AgentStart, Stack};
use crate::faults::Service;
use crate::kube::{TestEnv, TestNamespace};

/// Design §7 target of the orchestration overhead.
pub const TARGET_OVERHEAD: Duration = Duration::from_millis(1500);
/// Design target: what 30 ms added to every AWS call may add to a failover.
pub const TARGET_AWS_ADDED: Duration = Duration::from_secs(1);
/// Design targets of the handoff latency measured in the agents.
pub const TARGET_HANDOFF_P50: Duration = Duration::from_millis(50);
/// See [`TARGET_HANDOFF_P50`].
pub const TARGET_HANDOFF_P99: Duration = Duration::from_millis(250);
/// The AWS latency the target speaks of.
pub const TARGET_AWS_LATENCY: Duration = Duration::from_millis(30);
/// The group of every case.
const GROUP: &str = "bench";
/// Poll period of the group state while a failover runs.
const POLL: Duration = Duration::from_millis(20);

/// How the agents of a benchmark stack run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTiming {
    /// `--heartbeat-interval`.
    pub heartbeat_interval: Duration,
    /// `--reread-interval`.
    pub reread_interval: Duration,
}

impl Default for AgentTiming {
    /// The agent's own defaults (production settings).
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(10),
            reread_interval: Duration::from_secs(15),
        }
    }
}

impl AgentTiming {
    /// The stack's agent options.
    pub fn options(&self) -> AgentOptions {
        AgentOptions {
            heartbeat_interval: self.heartbeat_interval,
            reread_interval: self.reread_interval,
            ..AgentOptions::default()
        }
    }
}

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverheadConfig {
    /// Workloads (and volumes) of the big group.
    pub workloads: usize,
    /// Storage latencies of the big group's cases (one case each).
    pub latencies: Vec<Duration>,
    /// Workloads (and volumes) of the small group (run at the first latency), for the calls
    /// per volume; 0: no small case.
    pub small_workloads: usize,
    /// Measured failovers per case (after one warm-up).
    pub runs: usize,
    /// Idle window over which the background calls are measured.
    pub idle_window: Duration,
    /// The agents' intervals.
    pub agents: AgentTiming,
    /// How long one failover may take.
    pub failover_timeout: Duration,
    /// When set, one more case of the big group at the first storage latency, with this
    /// added to every answer of DynamoDB and SQS to both agents (a toxiproxy latency toxic,
    /// standing for a table and queues in another region). The agents then reach AWS through
    /// the stack's proxies in every case, so the baseline pays the proxy too.
    pub aws_latency: Option<Duration>,
}

impl Default for OverheadConfig {
    fn default() -> Self {
        Self {
            workloads: 10,
            latencies: vec![Duration::ZERO, Duration::from_millis(500)],
            small_workloads: 1,
            runs: 3,
            idle_window: Duration::from_secs(30),
            agents: AgentTiming::default(),
            failover_timeout: Duration::from_secs(120),
            aws_latency: Some(TARGET_AWS_LATENCY),
        }
    }
}

/// One measured failover.
#[derive(Clone, Debug)]
pub struct Run {
    /// `east → west` or back.
    pub direction: String,
    /// From the start transaction to the group state showing the target active.
    pub total: Duration,
    /// `timings.totalMs` as the agents recorded it on the operation.
    pub agent_total: Option<Duration>,
    /// `timings.stagesMs` of the operation (`<cluster>/<stage>`).
    pub stages_ms: BTreeMap<String, u64>,
    /// Both agents' counters' growth over the run.
    pub calls: Scrape,
    /// Time between the two scrapes.
    pub window: Duration,
    /// The coordinator's DynamoDB calls (`start_operation`); it also sends 2 messages.
    pub coordinator_calls: u64,
    /// From the last `READY_FOR_PROMOTION` record to the target's claim, as the records the
    /// agents wrote show it (what the target's `failover_handoff_latency_seconds` observes).
    pub handoff: Option<Duration>,
    /// The machine's CPU from the start to the target active (`None` without `/proc`).
    pub cpu: Option<CpuUse>,
}

/// One case: a group size and a storage latency.
#[derive(Clone, Debug)]
pub struct Case {
    /// Workloads = volumes of the group.
    pub workloads: usize,
    /// The storage simulator's latency per transition.
    pub latency: Duration,
    /// Added to every DynamoDB and SQS answer to the agents.
    pub aws_latency: Duration,
    /// The measured runs.
    pub runs: Vec<Run>,
    /// The warm-up's total.
    pub warmup: Duration,
}

impl Case {
    /// Median total.
    pub fn median_total(&self) -> Duration {
        median(self.runs.iter().map(|r| r.total).collect())
    }

    /// Median overhead (total − 2 × latency).
    pub fn median_overhead(&self) -> Duration {
        self.median_total().saturating_sub(self.latency * 2)
    }

    /// Mean counters' growth per run.
    #[allow(clippy::cast_precision_loss)]
    pub fn mean_calls(&self) -> (f64, f64) {
        let n = self.runs.len().max(1) as f64;
        let aws: u64 = self.runs.iter().map(|r| r.calls.aws_total()).sum();
        let sqs: u64 = self.runs.iter().map(|r| r.calls.sqs_total()).sum();
        (aws as f64 / n, sqs as f64 / n)
    }

    /// Mean scrape window.
    pub fn mean_window(&self) -> Duration {
        let n = u32::try_from(self.runs.len().max(1)).unwrap_or(u32::MAX);
        self.runs.iter().map(|r| r.window).sum::<Duration>() / n
    }
}

/// Everything one run of the benchmark measured.
#[derive(Clone, Debug)]
pub struct OverheadReport {
    /// What was asked for.
    pub config: OverheadConfig,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// Wall time of the whole benchmark (setup included).
    pub wall: Duration,
    /// The big group's cases (one per latency), then the small one.
    pub cases: Vec<Case>,
    /// Background over the idle window: both agents' counters' growth.
    pub idle: Scrape,
    /// The idle window as measured.
    pub idle_window: Duration,
    /// Load average before and after.
    pub load: (Option<String>, Option<String>),
}

impl OverheadReport {
    /// Idle DynamoDB calls per second (both agents).
    pub fn idle_rate(&self) -> f64 {
        #[allow(clippy::cast_precision_loss)]
        let n = self.idle.aws_total() as f64;
        n / self.idle_window.as_secs_f64().max(0.001)
    }

    /// Mean DynamoDB calls of one failover of `case`, minus the background.
    pub fn net_calls(&self, case: &Case) -> f64 {
        let (aws, _) = case.mean_calls();
        (aws - self.idle_rate() * case.mean_window().as_secs_f64()).max(0.0)
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort_unstable();
    v[(v.len() - 1) / 2]
}

struct CaseSetup {
    shape: GroupShape,
    latency: Duration,
    aws_latency: Duration,
    ns: TestNamespace,
    group: GroupRef,
}

/// Runs the benchmark (see the module docs). Creates its namespaces, table and queues and
/// removes the namespaces and RBAC objects afterwards (the table stays, as with the tests).
pub async fn run_overhead_bench(env: &TestEnv, config: &OverheadConfig) -> Result<OverheadReport> {
    ensure!(config.workloads > 0, "--workloads must be at least 1");
    ensure!(config.runs > 0, "--runs must be at least 1");
    ensure!(!config.latencies.is_empty(), "at least one latency");
    // A fresh environment has no failover CRDs until something installs them.
    for c in env.clusters() {
        crate::fixtures::install_crds(c, crate::fixtures::SETTLE).await?;
    }
    let started_at = jiff::Timestamp::now();
    let wall = Instant::now();
    let load_before = probe::load_average();

    let mut shapes: Vec<(GroupShape, Duration, Duration)> = config
        .latencies
        .iter()
        .map(|l| (GroupShape::mixed(config.workloads), *l, Duration::ZERO))
        .collect();
    if config.small_workloads > 0 {
        shapes.push((
            GroupShape::mixed(config.small_workloads),
            config.latencies[0],
            Duration::ZERO,
        ));
    }
    if let Some(aws) = config.aws_latency.filter(|l| !l.is_zero()) {
        shapes.push((
            GroupShape::mixed(config.workloads),
            config.latencies[0],
            aws,
        ));
    }
    let mut setups = Vec::new();
    for (shape, latency, aws_latency) in shapes {
        let ns = env.namespace("bench-ovh").await?;
        setups.push(CaseSetup {
            shape,
            latency,
            aws_latency,
            group: GroupRef::new(&ns.name, GROUP)?,
            ns,
        });
    }
    let mut stack = Stack::new(env, &setups[0].ns.name, "bench-overhead").await?;
    stack.agent_options = config.agents.options();
    let result = Box::pin(measure(env, &mut stack, &setups, config)).await;
    let ok = result.is_ok();
    if !ok {
        stack.print_logs();
    }
    stack.cleanup(ok).await;
    for s in &setups {
        s.ns.cleanup().await;
    }
    let (cases, idle, idle_window) = result?;
    Ok(OverheadReport {
        config: config.clone(),
        started_at,
        wall: wall.elapsed(),
        cases,
        idle,
        idle_window,
        load: (load_before, probe::load_average()),
    })
}

async fn measure(
    env: &TestEnv,
    stack: &mut Stack,
    setups: &[CaseSetup],
    config: &OverheadConfig,
) -> Result<(Vec<Case>, Scrape, Duration)> {
    for s in setups {
        stack.start_storage_sim(&[&s.ns.name], s.latency)?;
    }
    for s in setups {
        fleet::create_groups(env, &s.ns.name, &[GROUP.to_owned()], s.shape).await?;
    }
    for s in setups {
        fleet::wait_settled(env, &s.ns.name, "east", s.shape.workloads()).await?;
    }
    // Through the stack's proxies when a case adds AWS latency, for every case alike.
    let proxied = setups.iter().any(|s| !s.aws_latency.is_zero());
    for c in ["east", "west"] {
        let how = AgentStart {
            faults: proxied,
            ..AgentStart::default()
        };
        stack.start_agent_with(c, how).await?;
    }
    let counter = CallCounter::new();
    let coordinator =
        Store::new(&env.aws.dynamodb(), &stack.table).with_call_counter(counter.clone());
    for s in setups {
        stack.store.register_group(&s.group, "east").await?;
    }

    let mut cases = Vec::new();
    let mut succeeded = 0;
    for s in setups {
        tracing::info!(
            workloads = s.shape.workloads(),
            latency = ?s.latency,
            "overhead: measuring"
        );
        if proxied {
            set_aws_latency(stack, s.aws_latency).await?;
        }
        let mut runs = Vec::new();
        let mut warmup = Duration::ZERO;
        for i in 0..=config.runs {
            let (from, to) = if i % 2 == 0 {
                ("east", "west")
            } else {
                ("west", "east")
            };
            let before = probe::scrape_agents(stack).await?;
            let scraped = Instant::now();
            counter.reset();
            let cpu_before = CpuSample::now();
            let start = Instant::now();
            let op = probe::start_failover(stack, &coordinator, &s.group, from, to).await?;
            let total = probe::wait_active(
                &stack.store,
                &s.group,
                to,
                start,
                POLL,
                config.failover_timeout,
            )
            .await?;
            let cpu = cpu_before.zip(CpuSample::now()).map(|(a, b)| a.until(&b));
            let coordinator_calls = counter.total();
            succeeded += 2;
            probe::wait_succeeded(stack, succeeded, config.failover_timeout).await?;
            let after = probe::scrape_agents(stack).await?;
            let window = scraped.elapsed();
            let stored = stack
                .store
                .get_operation(&op.id)
                .await?
                .context("the operation is gone")?;
            ensure!(stored.phase == Phase::Succeeded, "phase: {stored:?}");
            let handoff = stored.handoff_latency(&stack.store.list_handoffs(&op.id).await?);
            fleet::wait_settled(env, &s.ns.name, to, s.shape.workloads()).await?;
            tracing::info!(run = i, %from, %to, ?total, "overhead: failover done");
            if i == 0 {
                warmup = total;
                continue;
            }
            runs.push(Run {
                direction: format!("{from} → {to}"),
                total,
                agent_total: stored.timings.total_ms.map(Duration::from_millis),
                stages_ms: stored.timings.stages_ms.clone(),
                calls: after.since(&before),
                window,
                coordinator_calls,
                handoff,
                cpu,
            });
        }
        cases.push(Case {
            workloads: s.shape.workloads(),
            latency: s.latency,
            aws_latency: s.aws_latency,
            runs,
            warmup,
        });
    }

    if proxied {
        set_aws_latency(stack, Duration::ZERO).await?;
    }
    tracing::info!(window = ?config.idle_window, "overhead: measuring the idle background");
    let before = probe::scrape_agents(stack).await?;
    let t = Instant::now();
    tokio::time::sleep(config.idle_window).await;
    let idle = probe::scrape_agents(stack).await?.since(&before);
    let idle_window = t.elapsed();
    probe::finish_stack(stack).await?;
    Ok((cases, idle, idle_window))
}

/// Every answer of DynamoDB and SQS to both agents waits `latency` (none: no toxic).
async fn set_aws_latency(stack: &Stack, latency: Duration) -> Result<()> {
    for cluster in ["east", "west"] {
        for service in [Service::Dynamo, Service::Sqs] {
            stack.faults().heal(cluster, service).await?;
            if !latency.is_zero() {
                stack
                    .faults()
                    .latency(cluster, service, latency, Duration::ZERO)
                    .await?;
            }
        }
    }
    Ok(())
}
