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
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use failover_messages::keys::GroupRef;
use failover_messages::records::Phase;
use failover_messages::store::{CallCounter, Store};

use super::fleet::{self, GroupShape};
use super::probe::{self, Scrape};
use super::stats::{Summary, fmt_count, fmt_latency};
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
            log_filter: "info".into(),
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

// ---- report ------------------------------------------------------------------------------------

fn fmt_latency_setting(d: Duration) -> String {
    if d.is_zero() {
        "0 ms".into()
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// The big group's cases (the ones the overhead is about).
fn big_cases(r: &OverheadReport) -> impl Iterator<Item = &Case> {
    r.cases
        .iter()
        .filter(move |c| c.workloads == r.config.workloads && c.aws_latency.is_zero())
}

/// The handoff latencies of every measured run without added AWS latency.
pub fn handoffs(r: &OverheadReport) -> Option<Summary> {
    let samples: Vec<Duration> = r
        .cases
        .iter()
        .filter(|c| c.aws_latency.is_zero())
        .flat_map(|c| c.runs.iter().filter_map(|x| x.handoff))
        .collect();
    Summary::of(&samples)
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

/// The big group's case with AWS latency added, and its baseline: the big group at the same
/// storage latency without (same run, same proxies).
pub fn aws_latency_cases(r: &OverheadReport) -> Option<(&Case, &Case)> {
    let slow = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.workloads && !c.aws_latency.is_zero())?;
    let base = big_cases(r).find(|c| c.latency == slow.latency)?;
    Some((base, slow))
}

/// The headline: the median overhead of the big group at the first latency.
pub fn headline(r: &OverheadReport) -> Option<&Case> {
    big_cases(r).next()
}

/// Summary rows for the report's overview table (figure | target | measured | baseline |
/// verdict).
pub fn summary_rows(r: &OverheadReport) -> Vec<String> {
    let mut rows = Vec::new();
    let overheads: Vec<String> = big_cases(r)
        .map(|c| {
            format!(
                "{} at storage latency {}",
                fmt_latency(c.median_overhead()),
                fmt_latency_setting(c.latency)
            )
        })
        .collect();
    let worst = big_cases(r).map(Case::median_overhead).max();
    let totals: Vec<String> = big_cases(r)
        .map(|c| {
            format!(
                "total {} at {}",
                fmt_latency(c.median_total()),
                fmt_latency_setting(c.latency)
            )
        })
        .collect();
    rows.push(format!(
        "| orchestration overhead, CONSISTENCY failover, {} workloads + {} volumes (median total − 2 × storage latency) | ≤ {} | {} | {} | {} |",
        r.config.workloads,
        r.config.workloads,
        fmt_latency(TARGET_OVERHEAD),
        overheads.join("; "),
        totals.join("; "),
        verdict(worst.is_some_and(|w| w <= TARGET_OVERHEAD)),
    ));
    if let Some(h) = handoffs(r) {
        rows.push(format!(
            "| handoff latency p50 / p99 (last READY_FOR_PROMOTION record → the target's claim, from the records the agents wrote), {} real failovers | ≤ {} / ≤ {} | {} / {} | – | {} |",
            h.count,
            fmt_latency(TARGET_HANDOFF_P50),
            fmt_latency(TARGET_HANDOFF_P99),
            fmt_latency(h.p50),
            fmt_latency(h.p99),
            verdict(h.p50 <= TARGET_HANDOFF_P50 && h.p99 <= TARGET_HANDOFF_P99),
        ));
    }
    if let Some((base, slow)) = aws_latency_cases(r) {
        let added = slow.median_total().saturating_sub(base.median_total());
        rows.push(format!(
            "| added cost of {} on every DynamoDB and SQS call of the agents (toxiproxy), CONSISTENCY failover, {} workloads + {} volumes (median total with − without) | ≤ {} | +{} (total {}) | total {} without, same run | {} |",
            fmt_latency(slow.aws_latency),
            r.config.workloads,
            r.config.workloads,
            fmt_latency(TARGET_AWS_ADDED),
            fmt_latency(added),
            fmt_latency(slow.median_total()),
            fmt_latency(base.median_total()),
            verdict(slow.aws_latency == TARGET_AWS_LATENCY && added <= TARGET_AWS_ADDED),
        ));
    }
    let per_n: Vec<String> = r
        .cases
        .iter()
        .filter(|c| c.aws_latency.is_zero())
        .map(|c| {
            format!(
                "{} volume(s), {}: {}",
                c.workloads,
                fmt_latency_setting(c.latency),
                fmt_count(r.net_calls(c))
            )
        })
        .collect();
    rows.push(format!(
        "| DynamoDB calls per group failover, both agents, background subtracted | a fixed count + a small constant per volume | {} | idle background {} calls/s | {} |",
        per_n.join("; "),
        fmt_count(r.idle_rate()),
        per_volume(r).map_or_else(
            || "see table".to_owned(),
            |(fixed, per)| format!("≈ {} + {} × volumes", fmt_count(fixed), fmt_count(per))
        ),
    ));
    rows
}

/// Fixed count and per-volume slope of the net calls, from the small and the big group at
/// the first latency.
pub fn per_volume(r: &OverheadReport) -> Option<(f64, f64)> {
    let l0 = r.config.latencies.first()?;
    let small = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.small_workloads && c.latency == *l0)?;
    let big = r
        .cases
        .iter()
        .find(|c| c.workloads == r.config.workloads && c.latency == *l0)?;
    if big.workloads == small.workloads {
        return None;
    }
    #[allow(clippy::cast_precision_loss)]
    let per = (r.net_calls(big) - r.net_calls(small)) / (big.workloads - small.workloads) as f64;
    #[allow(clippy::cast_precision_loss)]
    let fixed = r.net_calls(small) - per * small.workloads as f64;
    Some((fixed, per))
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The overhead section (markdown, `##` headings).
pub fn overhead_markdown(r: &OverheadReport) -> String {
    let mut out = String::new();
    write_overhead_setup(&mut out, r);
    write_overhead_table(&mut out, r);
    let big: Vec<&Case> = big_cases(r).collect();
    write_slope_and_target(&mut out, r, &big);
    write_aws_latency(&mut out, r);
    if let Some(h) = handoffs(r) {
        let _ = writeln!(
            out,
            "Handoff in the agents (last `READY_FOR_PROMOTION` record written → the target's \
             claim, from the records, as the target's `failover_handoff_latency_seconds` \
             observes it), {} measured failovers without added AWS latency: min {}, p50 {}, \
             p90 {}, p99 {}, max {} (design target p50 ≤ {}, p99 ≤ {}: {}).\n",
            h.count,
            fmt_latency(h.min),
            fmt_latency(h.p50),
            fmt_latency(h.p90),
            fmt_latency(h.p99),
            fmt_latency(h.max),
            fmt_latency(TARGET_HANDOFF_P50),
            fmt_latency(TARGET_HANDOFF_P99),
            verdict(h.p50 <= TARGET_HANDOFF_P50 && h.p99 <= TARGET_HANDOFF_P99),
        );
    }
    write_stage_breakdown(&mut out, &big);
    write_overhead_notes(&mut out);
    out
}

/// A case's storage latency, and the AWS latency added to it if any.
fn case_label(c: &Case) -> String {
    if c.aws_latency.is_zero() {
        fmt_latency_setting(c.latency)
    } else {
        format!(
            "{} (+{} per AWS call)",
            fmt_latency_setting(c.latency),
            fmt_latency(c.aws_latency)
        )
    }
}

/// The case with AWS latency added, beside its baseline.
fn write_aws_latency(out: &mut String, r: &OverheadReport) {
    let Some((base, slow)) = aws_latency_cases(r) else {
        return;
    };
    let added = slow.median_total().saturating_sub(base.median_total());
    let _ = writeln!(
        out,
        "With {} added to every DynamoDB and SQS answer to both agents (a toxiproxy latency \
         toxic on their proxies, standing for a table and queues in another region; the \
         baseline runs through the same proxies without it): median total {} ({} failovers, \
         {} – {}) against {} at storage latency {}, so **+{}** (design target ≤ {} at {}: \
         {}).\n",
        fmt_latency(slow.aws_latency),
        fmt_latency(slow.median_total()),
        slow.runs.len(),
        fmt_latency(slow.runs.iter().map(|x| x.total).min().unwrap_or_default()),
        fmt_latency(slow.runs.iter().map(|x| x.total).max().unwrap_or_default()),
        fmt_latency(base.median_total()),
        fmt_latency_setting(base.latency),
        fmt_latency(added),
        fmt_latency(TARGET_AWS_ADDED),
        fmt_latency(TARGET_AWS_LATENCY),
        verdict(slow.aws_latency == TARGET_AWS_LATENCY && added <= TARGET_AWS_ADDED),
    );
}

/// The heading and what was run: date, processes, group shape.
fn write_overhead_setup(out: &mut String, r: &OverheadReport) {
    let cfg = &r.config;
    out.push_str("## Orchestration overhead of a CONSISTENCY failover\n\n");
    let _ = writeln!(
        out,
        "- date: {}; run took {}; load average before {} / after {}",
        r.started_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        fmt_latency(r.wall),
        r.load.0.as_deref().unwrap_or("?"),
        r.load.1.as_deref().unwrap_or("?"),
    );
    let _ = writeln!(
        out,
        "- real processes: 2 × `failover-agent` (heartbeat {}, re-read {}), `failover-storage-sim` per namespace, kube-apiservers east/west (kwok), moto; one fresh table",
        humantime::format_duration(cfg.agents.heartbeat_interval),
        humantime::format_duration(cfg.agents.reread_interval),
    );
    let _ = writeln!(
        out,
        "- group: {} workloads ({} Deployments + {} StatefulSets, 1 replica each) and {} VolumeReplications (+ PVCs) in both clusters; {} measured failovers per row after 1 warm-up, alternating east → west / west → east",
        cfg.workloads,
        GroupShape::mixed(cfg.workloads).deployments,
        GroupShape::mixed(cfg.workloads).statefulsets,
        cfg.workloads,
        cfg.runs
    );
    out.push('\n');
}

/// One row per storage latency of the big cases: totals, subtraction and overhead.
fn write_overhead_table(out: &mut String, r: &OverheadReport) {
    out.push_str(
        "| storage latency (per transition) | failovers | total: median (min – max) | warm-up total | 2 × latency subtracted | overhead (median) | agents' `timings.totalMs` (median) |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
    for c in big_cases(r) {
        let min = c.runs.iter().map(|x| x.total).min().unwrap_or_default();
        let max = c.runs.iter().map(|x| x.total).max().unwrap_or_default();
        let agent = median(c.runs.iter().filter_map(|x| x.agent_total).collect());
        let _ = writeln!(
            out,
            "| {} | {} | {} ({} – {}) | {} | {} | {} | {} |",
            fmt_latency_setting(c.latency),
            c.runs.len(),
            fmt_latency(c.median_total()),
            fmt_latency(min),
            fmt_latency(max),
            fmt_latency(c.warmup),
            fmt_latency(c.latency * 2),
            fmt_latency(c.median_overhead()),
            fmt_latency(agent),
        );
    }
    out.push('\n');
}

/// The measured slope of the total over the storage latency, and the design target's
/// verdict.
fn write_slope_and_target(out: &mut String, r: &OverheadReport, big: &[&Case]) {
    if let (Some(first), Some(last)) = (big.first(), big.last())
        && last.latency > first.latency
    {
        let slope = (last.median_total().as_secs_f64() - first.median_total().as_secs_f64())
            / (last.latency - first.latency).as_secs_f64();
        let _ = writeln!(
            out,
            "Measured slope of the median total over the storage latency: {slope:.2} (the subtraction assumes 2: one demotion, then one promotion, each group's volumes in parallel).\n"
        );
    }
    if let Some(c) = headline(r) {
        let _ = writeln!(
            out,
            "Design §7 target: overhead ≤ {} ({} at storage latency {}: {}).\n",
            fmt_latency(TARGET_OVERHEAD),
            fmt_latency(c.median_overhead()),
            fmt_latency_setting(c.latency),
            verdict(big.iter().all(|c| c.median_overhead() <= TARGET_OVERHEAD)),
        );
    }
}

/// Stage breakdown, medians over the runs of each big case (nothing when no run reported
/// stages).
fn write_stage_breakdown(out: &mut String, big: &[&Case]) {
    let mut labels: Vec<String> = big
        .iter()
        .flat_map(|c| {
            c.runs
                .iter()
                .flat_map(|x| x.stages_ms.keys().map(|k| stage_label(k)))
        })
        .collect();
    labels.sort_by_key(|l| {
        (
            STAGE_ORDER
                .iter()
                .position(|s| s == l)
                .unwrap_or(STAGE_ORDER.len()),
            l.clone(),
        )
    });
    labels.dedup();
    if labels.is_empty() {
        return;
    }
    out.push_str(
        "Where the time goes: the agents' `timings.stagesMs`, median per stage (a stage of \
         both sides shows the longer side; the two sides' stages overlap, so they do not \
         add up to the total):\n\n",
    );
    out.push_str("| stage |");
    for c in big {
        let _ = write!(out, " latency {} |", fmt_latency_setting(c.latency));
    }
    out.push_str("\n|---|");
    for _ in big {
        out.push_str("---:|");
    }
    out.push('\n');
    for label in &labels {
        let _ = write!(out, "| {label} |");
        for c in big {
            let v = median(
                c.runs
                    .iter()
                    .filter_map(|x| stage_value(&x.stages_ms, label).map(Duration::from_millis))
                    .collect(),
            );
            let _ = write!(out, " {} |", fmt_latency(v));
        }
        out.push('\n');
    }
    out.push('\n');
}

/// How the section's numbers were measured and what they leave out.
fn write_overhead_notes(out: &mut String) {
    out.push_str("Notes:\n\n");
    out.push_str(
        "- total: wall time from just before the coordinator's `start_operation` transaction \
         (followed by `OperationStarted` to both inboxes, as `failoverctl failover` does) to \
         the first consistent read of the group state showing the target active with no \
         operation in flight (read every 20 ms).\n",
    );
    out.push_str(
        "- subtracted: 2 × the simulated storage latency, the demotion on the source and the \
         promotion on the target that a CONSISTENCY failover must wait for one after the \
         other. Not subtracted: pod start and stop (kwok's default stages add no delay, but \
         the real kube-controller-manager, scheduler and kwok need their time), the storage \
         simulator's reaction (a watch event and two status writes per transition), moto's \
         and the apiservers' response times. The overhead is therefore an upper bound of \
         what the agents add.\n",
    );
    out.push_str(
        "- the agents' own `timings.totalMs` starts when an agent picks the operation up, so \
         it excludes the start transaction and the notification.\n",
    );
}

/// The stages of a CONSISTENCY failover, in order.
const STAGE_ORDER: [&str; 6] = [
    "Initialization",
    "SourceShutdown",
    "VolumeTransitionSource",
    "VolumeTransitionTarget",
    "TargetActivation",
    "Completion",
];

/// A `timings.stagesMs` key without its cluster (`east/SourceShutdown` → `SourceShutdown`):
/// the report folds the two directions into one row per stage.
fn stage_label(key: &str) -> String {
    key.rsplit_once('/').map_or(key, |(_, s)| s).to_owned()
}

/// A stage's time in one run: the longest of its keys (a stage that runs on both sides,
/// such as `Initialization`, shows the longer side).
fn stage_value(stages: &BTreeMap<String, u64>, label: &str) -> Option<u64> {
    stages
        .iter()
        .filter(|(k, _)| stage_label(k) == label)
        .map(|(_, v)| *v)
        .max()
}

/// The AWS calls section.
pub fn calls_markdown(r: &OverheadReport) -> String {
    let mut out = String::new();
    out.push_str("## AWS calls per group failover\n\n");
    let _ = writeln!(
        out,
        "Both agents' `/metrics` scraped before and after each measured failover of the overhead runs above (same processes); idle background measured right after over {} with no operation: {} DynamoDB calls ({} calls/s, both agents: {}).\n",
        fmt_latency(r.idle_window),
        r.idle.aws_total(),
        fmt_count(r.idle_rate()),
        breakdown(&r.idle.aws_calls, 1.0),
    );
    out.push_str(
        "| volumes (= workloads) | storage latency | failovers | scrape window (mean) | DynamoDB calls / failover (raw) | background subtracted | net | by store operation / API (raw, per failover) | inbox messages handled / failover | coordinator |\n",
    );
    out.push_str("|---:|---:|---:|---:|---:|---:|---:|---|---:|---|\n");
    for c in &r.cases {
        let (aws, sqs) = c.mean_calls();
        let bg = r.idle_rate() * c.mean_window().as_secs_f64();
        let mut merged = probe::Counters::new();
        for run in &c.runs {
            for (k, v) in &run.calls.aws_calls {
                *merged.entry(k.clone()).or_default() += v;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let n = c.runs.len().max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let coord = c.runs.iter().map(|x| x.coordinator_calls).sum::<u64>() as f64 / n;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} DynamoDB + 2 SendMessage |",
            c.workloads,
            case_label(c),
            c.runs.len(),
            fmt_latency(c.mean_window()),
            fmt_count(aws),
            fmt_count(bg),
            fmt_count(r.net_calls(c)),
            breakdown(&merged, n),
            fmt_count(sqs),
            fmt_count(coord),
        );
    }
    out.push('\n');
    if let Some((fixed, per)) = per_volume(r) {
        let _ = writeln!(
            out,
            "Fit from the {}-volume and {}-volume rows at the same latency: ≈ {} + {} × volumes DynamoDB calls per failover (both agents). Rows at different storage latencies with the same volumes show whether waiting longer costs calls (a polling loop would).\n",
            r.config.small_workloads,
            r.config.workloads,
            fmt_count(fixed),
            fmt_count(per),
        );
    }
    out.push_str("Notes:\n\n");
    out.push_str(
        "- counted: `failover_aws_calls_total{operation, api, outcome}` (outcomes summed), every \
         DynamoDB call attempt of the agents (retries included). SQS: the agents expose the messages they handled \
         (`failover_sqs_messages_total`), not their `ReceiveMessage` long polls, \
         `DeleteMessage` or `SendMessage` calls, so SQS API calls are not in the counts; each \
         handled message costs one receive and one delete, and while idle an agent issues one \
         20 s long poll at a time.\n",
    );
    out.push_str(
        "- background subtracted: the idle rate (both agents, no operation in flight) × the \
         run's scrape window. The window includes waiting for both agents to finish their \
         side, so it is longer than the failover.\n",
    );
    out
}

#[allow(clippy::cast_precision_loss)]
fn breakdown(counters: &probe::Counters, per: f64) -> String {
    let mut v: Vec<(&String, &u64)> = counters.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter()
        .map(|(k, n)| format!("{} {k}", fmt_count(**n as f64 / per)))
        .collect::<Vec<_>>()
        .join(", ")
}
