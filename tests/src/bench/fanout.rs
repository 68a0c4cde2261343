//! Many groups failed over at once against one group, with the same agents, and the agents'
//! peak memory.
//!
//! One stack (fresh table, so what earlier runs left in moto cannot slow its writes) with
//! both agents and one storage simulator on one namespace holding `groups + 2` small groups
//! (`shape` workloads with one volume each; 1 Deployment + 1 volume by default), all active
//! in east. Then, each started by one `failoverctl failover … --to west` process (without
//! `--wait`):
//!
//! 1. `warm`: one group, unmeasured (first connections, caches);
//! 2. `solo`: one group, the baseline;
//! 3. `g00 … g49`: all the others in one invocation.
//!
//! Wall time runs from just before `failoverctl` starts to the latest `finishedAt` of the
//! step's operations (the close that released each group), read once a `list_groups` read
//! (every second) shows every group of the step active in west with no operation in
//! flight. Each agent's `VmHWM` (peak resident set, `/proc/<pid>/status`) is read after
//! start-up, after the one-group step and after the many-group step.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use failover_messages::keys::GroupRef;

use super::cpu::{CpuSample, CpuUse};
use super::fleet::{self, GroupShape};
use super::overhead::AgentTiming;
use super::probe::{self, Memory, Scrape};
use super::stats::fmt_latency;
use crate::agents::Stack;
use crate::kube::TestEnv;

/// Design §7: many groups at most this many times one group.
pub const TARGET_RATIO: f64 = 2.0;
/// Design §7: agent peak RSS.
pub const TARGET_RSS_KIB: u64 = 64 * 1024;
/// Poll period of `list_groups`.
const POLL: Duration = Duration::from_secs(1);

/// What to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanoutConfig {
    /// Groups failed over at once.
    pub groups: usize,
    /// Each group's workloads (one volume each).
    pub shape: GroupShape,
    /// The storage simulator's latency per transition.
    pub latency: Duration,
    /// The agents' intervals.
    pub agents: AgentTiming,
    /// How long the many-group step may take.
    pub timeout: Duration,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        Self {
            groups: 50,
            shape: GroupShape {
                deployments: 1,
                statefulsets: 0,
            },
            latency: Duration::from_millis(200),
            agents: AgentTiming::default(),
            timeout: Duration::from_secs(900),
        }
    }
}

/// One measured step.
#[derive(Clone, Debug)]
pub struct Step {
    /// Groups in the step.
    pub groups: usize,
    /// Start to all groups active in west.
    pub wall: Duration,
    /// When the first group of the step showed west active.
    pub first: Duration,
    /// How long the `failoverctl` process ran (starting every operation).
    pub failoverctl: Duration,
    /// Both agents' memory after the step (both sides finished).
    pub memory: Vec<(String, Memory)>,
    /// Both agents' AWS calls during the step (heartbeats and re-reads included).
    pub calls: Scrape,
    /// The machine's CPU from just before `failoverctl` to every group seen done (`None`
    /// without `/proc`).
    pub cpu: Option<CpuUse>,
}

/// Everything one run measured.
#[derive(Clone, Debug)]
pub struct FanoutReport {
    /// What was asked for.
    pub config: FanoutConfig,
    /// When it started.
    pub started_at: jiff::Timestamp,
    /// Wall time of the whole benchmark (setup included).
    pub wall: Duration,
    /// Memory after start-up and registration, before any failover.
    pub idle_memory: Vec<(String, Memory)>,
    /// The one-group step (after the warm-up).
    pub one: Step,
    /// The many-group step.
    pub many: Step,
    /// Load average before and after.
    pub load: (Option<String>, Option<String>),
}

impl FanoutReport {
    /// Many groups' wall time over one group's.
    pub fn ratio(&self) -> f64 {
        self.many.wall.as_secs_f64() / self.one.wall.as_secs_f64().max(1e-9)
    }

    /// The largest peak RSS of any agent at the end.
    pub fn peak_kib(&self) -> u64 {
        self.many
            .memory
            .iter()
            .map(|(_, m)| m.peak_kib)
            .max()
            .unwrap_or(0)
    }
}

/// Runs the benchmark; removes its namespace and RBAC objects afterwards.
pub async fn run_fanout_bench(env: &TestEnv, config: &FanoutConfig) -> Result<FanoutReport> {
    ensure!(config.groups > 0, "--groups must be at least 1");
    ensure!(config.shape.workloads() > 0, "a group needs a workload");
    // A fresh environment has no failover CRDs until something installs them.
    for c in env.clusters() {
        crate::fixtures::install_crds(c, crate::fixtures::SETTLE).await?;
    }
    let started_at = jiff::Timestamp::now();
    let wall = Instant::now();
    let load_before = probe::load_average();
    let ns = env.namespace("bench-fan").await?;
    let mut stack = Stack::new(env, &ns.name, "bench-fanout").await?;
    stack.agent_options = config.agents.options();
    let result = Box::pin(measure(env, &mut stack, &ns.name, config)).await;
    let ok = result.is_ok();
    if !ok {
        stack.print_logs();
    }
    stack.cleanup(ok).await;
    ns.cleanup().await;
    let (idle_memory, one, many) = result?;
    Ok(FanoutReport {
        config: config.clone(),
        started_at,
        wall: wall.elapsed(),
        idle_memory,
        one,
        many,
        load: (load_before, probe::load_average()),
    })
}

async fn measure(
    env: &TestEnv,
    stack: &mut Stack,
    ns: &str,
    config: &FanoutConfig,
) -> Result<(Vec<(String, Memory)>, Step, Step)> {
    let many: Vec<String> = (0..config.groups).map(|i| format!("g{i:02}")).collect();
    let mut all = vec!["warm".to_owned(), "solo".to_owned()];
    all.extend(many.iter().cloned());
    stack.start_storage_sim(&[ns], config.latency)?;
    tracing::info!(groups = all.len(), "fanout: creating the groups");
    fleet::create_groups(env, ns, &all, config.shape).await?;
    fleet::wait_settled(env, ns, "east", all.len() * config.shape.workloads()).await?;
    stack.start_agents().await?;
    for g in &all {
        stack
            .store
            .register_group(&GroupRef::new(ns, g)?, "east")
            .await?;
    }
    let idle_memory = probe::agents_memory(stack)?;

    let mut succeeded = 0;
    let mut step = |names: &[String]| {
        succeeded += 2 * names.len() as u64;
        (names.to_vec(), succeeded)
    };
    let (warm, n) = step(&all[..1]);
    run_step(stack, ns, &warm, n, config).await?;
    let (solo, n) = step(&all[1..2]);
    let one = run_step(stack, ns, &solo, n, config).await?;
    tracing::info!(wall = ?one.wall, "fanout: one group done");
    let (rest, n) = step(&many);
    let many = run_step(stack, ns, &rest, n, config).await?;
    tracing::info!(wall = ?many.wall, groups = rest.len(), "fanout: many groups done");
    fleet::wait_settled(env, ns, "west", all.len() * config.shape.workloads()).await?;
    probe::finish_stack(stack).await?;
    Ok((idle_memory, one, many))
}

/// Fails over `groups` east → west with one `failoverctl` invocation and waits until all
/// show west active and the agents count `succeeded` finished sides in total.
async fn run_step(
    stack: &mut Stack,
    ns: &str,
    groups: &[String],
    succeeded: u64,
    config: &FanoutConfig,
) -> Result<Step> {
    let refs: Vec<String> = groups.iter().map(|g| format!("{ns}/{g}")).collect();
    let mut args: Vec<&str> = vec!["failover"];
    args.extend(refs.iter().map(String::as_str));
    args.extend(["--to", "west"]);
    let calls_before = probe::scrape_agents(stack).await?;
    let cpu_before = CpuSample::now();
    let start = Instant::now();
    let started_at = stack.store.now();
    let out = stack.failoverctl(&args)?;
    let failoverctl = start.elapsed();
    ensure!(
        out.status.success(),
        "failoverctl failover exited {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The probe reads every second (each `list_groups` is a query moto answers by going
    // through the whole table, so reading more often would load it more than the agents
    // do); the times come from the records: each operation's `finishedAt`, written by the
    // close that released its group.
    let last_ops = loop {
        let states = stack.store.list_groups().await?;
        let done: Vec<String> = states
            .iter()
            .filter(|s| {
                s.group.namespace == ns
                    && groups.contains(&s.group.name)
                    && s.active_cluster == "west"
                    && s.op_id.is_none()
            })
            .filter_map(|s| s.last_op_id.clone())
            .collect();
        if done.len() == groups.len() {
            break done;
        }
        ensure!(
            start.elapsed() < config.timeout,
            "{} of {} groups active in west after {:?}",
            done.len(),
            groups.len(),
            config.timeout
        );
        tokio::time::sleep(POLL).await;
    };
    let cpu = cpu_before.zip(CpuSample::now()).map(|(a, b)| a.until(&b));
    // The close releases the group before it writes the operation's `finishedAt`.
    let mut finished = Vec::with_capacity(last_ops.len());
    for id in &last_ops {
        let at = loop {
            let op = stack
                .store
                .get_operation(id)
                .await?
                .with_context(|| format!("operation {id} is gone"))?;
            if let Some(at) = op.finished_at {
                break at;
            }
            ensure!(
                start.elapsed() < config.timeout,
                "operation {id} has no finishedAt after {:?}",
                config.timeout
            );
            tokio::time::sleep(POLL).await;
        };
        finished.push(Duration::try_from(at.duration_since(started_at)).unwrap_or_default());
    }
    let wall = finished.iter().copied().max().unwrap_or_default();
    let first = finished.iter().copied().min();
    probe::wait_succeeded(stack, succeeded, config.timeout).await?;
    let calls = probe::scrape_agents(stack).await?.since(&calls_before);
    Ok(Step {
        groups: groups.len(),
        wall,
        first: first.unwrap_or(wall),
        failoverctl,
        memory: probe::agents_memory(stack)?,
        calls,
        cpu,
    })
}

// ---- report ------------------------------------------------------------------------------------

fn mib(kib: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let m = kib as f64 / 1024.0;
    format!("{m:.1} MiB")
}

fn memory_cell(m: &[(String, Memory)]) -> String {
    m.iter()
        .map(|(c, m)| format!("{c} {}", mib(m.peak_kib)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Summary rows for the overview table.
pub fn summary_rows(r: &FanoutReport) -> Vec<String> {
    let one_peak = r
        .one
        .memory
        .iter()
        .map(|(_, m)| m.peak_kib)
        .max()
        .unwrap_or(0);
    vec![
        format!(
            "| {} groups failed over at once (one `failoverctl` invocation), wall time | ≤ {TARGET_RATIO}× one group | {} (×{:.2} of one group){} | one group: {} | {} |",
            r.many.groups,
            fmt_latency(r.many.wall),
            r.ratio(),
            r.many.cpu.as_ref().map_or_else(String::new, |c| format!(
                "; machine {:.0} % busy, its CPU work alone takes ≥ {} on {} cores",
                c.busy_share() * 100.0,
                fmt_latency(c.floor()),
                c.cores
            )),
            fmt_latency(r.one.wall),
            if r.ratio() <= TARGET_RATIO {
                "met"
            } else {
                "NOT met"
            },
        ),
        format!(
            "| agent peak RSS (`VmHWM`) after the {}-group run | ≤ 64 MiB | {} | after one group: {} | {} |",
            r.many.groups,
            memory_cell(&r.many.memory),
            mib(one_peak),
            if r.peak_kib() <= TARGET_RSS_KIB {
                "met"
            } else {
                "NOT met"
            },
        ),
    ]
}

/// The section (markdown, `##` headings).
pub fn markdown(r: &FanoutReport) -> String {
    let cfg = &r.config;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## {} groups failed over at once, and agent memory\n",
        cfg.groups
    );
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
        "- each group: {} Deployment(s) + {} StatefulSet(s), 1 replica and 1 VolumeReplication (+ PVC) each, in one namespace of both clusters; storage latency {} per transition; agents: heartbeat {}, re-read {}; one fresh table for this run",
        cfg.shape.deployments,
        cfg.shape.statefulsets,
        fmt_latency(cfg.latency),
        humantime::format_duration(cfg.agents.heartbeat_interval),
        humantime::format_duration(cfg.agents.reread_interval),
    );
    out.push('\n');
    out.push_str("| step (same agents, one after another) | groups | wall time | first group done | `failoverctl` ran | vs one group | agents' peak RSS after the step |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---|\n");
    let _ = writeln!(
        out,
        "| idle (started, groups registered) | 0 | – | – | – | – | {} |",
        memory_cell(&r.idle_memory)
    );
    for (label, s) in [("one group (baseline)", &r.one), ("all at once", &r.many)] {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} | ×{:.2} | {} |",
            s.groups,
            fmt_latency(s.wall),
            fmt_latency(s.first),
            fmt_latency(s.failoverctl),
            s.wall.as_secs_f64() / r.one.wall.as_secs_f64().max(1e-9),
            memory_cell(&s.memory),
        );
    }
    out.push('\n');
    out.push_str("Both agents' AWS calls per group during each step (from `failoverctl` starting it to every side counted finished; heartbeats and re-reads included):\n\n");
    out.push_str("| step | DynamoDB calls / group | by store operation / API, per group | SQS calls / group |\n");
    out.push_str("|---|---:|---|---:|\n");
    for (label, s) in [("one group (baseline)", &r.one), ("all at once", &r.many)] {
        #[allow(clippy::cast_precision_loss)]
        let n = s.groups.max(1) as f64;
        #[allow(clippy::cast_precision_loss)]
        let per = |v: u64| v as f64 / n;
        let mut by: Vec<(&String, &u64)> = s.calls.aws_calls.iter().collect();
        by.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let by = by
            .iter()
            .map(|(k, v)| format!("{:.1} {k}", per(**v)))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "| {label} | {:.1} | {by} | {:.1} |",
            per(s.calls.aws_total()),
            per(s.calls.sqs_calls_total()),
        );
    }
    out.push('\n');
    out.push_str("The machine's CPU during each step (just before `failoverctl` starts to every group seen done; `/proc/stat` for the machine, `/proc/<pid>/stat` for each process of the environment). The step cannot end sooner than its CPU work divided by the cores:\n\n");
    out.push_str("| step | window | machine busy | CPU-s per group | by component |\n");
    out.push_str("|---|---:|---|---:|---|\n");
    for (label, s) in [("one group (baseline)", &r.one), ("all at once", &r.many)] {
        match &s.cpu {
            Some(c) => {
                #[allow(clippy::cast_precision_loss)]
                let per = c.busy / s.groups.max(1) as f64;
                let _ = writeln!(
                    out,
                    "| {label} | {} | {} | {per:.2} | {} |",
                    fmt_latency(c.window),
                    c.summary(),
                    c.components_cell()
                );
            }
            None => {
                let _ = writeln!(out, "| {label} | – | not measured (no `/proc`) | – | – |");
            }
        }
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "Design §7 targets: wall time ≤ {TARGET_RATIO}× one group (×{:.2}: {}); agent RSS ≤ 64 MiB ({}: {}).\n",
        r.ratio(),
        if r.ratio() <= TARGET_RATIO {
            "met"
        } else {
            "NOT met"
        },
        mib(r.peak_kib()),
        if r.peak_kib() <= TARGET_RSS_KIB {
            "met"
        } else {
            "NOT met"
        },
    );
    out.push_str("Notes:\n\n");
    out.push_str(
        "- wall time: from just before `failoverctl failover <groups…> --to west` starts (one \
         process; it starts the operations one conditional write per group, then notifies both \
         inboxes) to the latest `finishedAt` of the step's operations (the close that released each group; read once a `list_groups` read, every second, shows every group of the \
         step active in west with no operation in flight. An unmeasured one-group warm-up \
         runs first.\n",
    );
    out.push_str(
        "- peak RSS: `VmHWM` of each agent process from `/proc/<pid>/status`, read after both \
         agents counted every side of the step as finished; it only grows, so the last row is \
         the peak of the whole run.\n",
    );
    out.push_str(
        "- all groups share one table in moto, which serializes requests; the many-group step \
         pays for that, DynamoDB would not.\n",
    );
    out
}
