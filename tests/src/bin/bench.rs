//! `failover-bench`: the benchmarks behind `make bench` (design §7).
//!
//! ```text
//! failover-bench handoff  [--handoffs 200] [--volumes 3] [--poll 1s --poll 30s] [--source-work 0s]
//! failover-bench overhead [--workloads 10] [--latency 0s --latency 500ms] [--small-workloads 1]
//!                         [--runs 3] [--idle-window 30s]
//! failover-bench fanout   [--groups 50] [--latency 200ms]
//! failover-bench all      (all three with their defaults; what `make bench` runs)
//! ```
//!
//! Every subcommand takes `--out target/bench/report.md`: the markdown report is printed on
//! stdout and merged into that file (its own sections replaced, the others kept), so after
//! `all` the file has every figure. `handoff` needs moto only (started or reused through
//! `tests/env/moto-up.sh`); the others run real `failover-agent`, `failover-storage-sim`
//! and `failoverctl` processes against the whole test environment (started or reused
//! through `tests/env/up.sh`), built first in the same profile as this binary. Progress goes
//! to stderr (`RUST_LOG` filters, default `info` for the benchmark, `warn` for the rest).
//! The measuring lives in `failover_tests::bench`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use failover_tests::bench::{
    self, AgentTiming, FanoutConfig, HandoffBenchConfig, MachineFacts, OverheadConfig, Section,
    fleet::GroupShape, page,
};
use failover_tests::kube::TestEnv;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "failover-bench",
    about = "Benchmarks of the failover system against the local test environment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Handoff latency: READY_FOR_PROMOTION durable → target confirmed; event-driven vs polling.
    Handoff(HandoffCmd),
    /// Orchestration overhead of a CONSISTENCY failover and AWS calls per group failover,
    /// with real agent processes.
    Overhead(OverheadCmd),
    /// Many groups failed over at once vs one group, and the agents' peak RSS.
    Fanout(FanoutCmd),
    /// Everything `make bench` reports: handoff, overhead (+ AWS calls), fanout.
    All(AllCmd),
}

#[derive(Debug, clap::Args)]
struct Out {
    /// Where the markdown report is merged into (folders are created).
    #[arg(long, default_value = "target/bench/report.md")]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
struct HandoffArgs {
    /// Handoffs per target side.
    #[arg(long, default_value_t = 200)]
    handoffs: usize,
    /// Volumes per group.
    #[arg(long, default_value_t = 3)]
    volumes: usize,
    /// Interval of a polling baseline (repeat for several).
    #[arg(long = "poll", value_name = "DURATION", value_parser = humantime::parse_duration, default_values = ["1s", "30s"])]
    poll: Vec<Duration>,
    /// Long-poll wait of the event-driven target, in seconds (at most 20).
    #[arg(long, default_value_t = 20)]
    receive_wait: u32,
    /// Time the source works between the operation's start and marking the volumes ready.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    source_work: Duration,
}

#[derive(Debug, clap::Args)]
struct HandoffCmd {
    #[command(flatten)]
    handoff: HandoffArgs,
    #[command(flatten)]
    out: Out,
}

#[derive(Debug, clap::Args)]
struct AgentArgs {
    /// The agents' `--heartbeat-interval` (default: the agent's own default).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// The agents' `--reread-interval` (default: the agent's own default).
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    reread_interval: Duration,
}

impl AgentArgs {
    fn timing(&self) -> AgentTiming {
        AgentTiming {
            heartbeat_interval: self.heartbeat_interval,
            reread_interval: self.reread_interval,
        }
    }
}

#[derive(Debug, clap::Args)]
struct OverheadArgs {
    /// Workloads (one volume each) of the measured group.
    #[arg(long, default_value_t = 10)]
    workloads: usize,
    /// Storage latency per transition of a case of the measured group (repeat for several).
    #[arg(long = "latency", value_name = "DURATION", value_parser = humantime::parse_duration, default_values = ["0s", "500ms"])]
    latencies: Vec<Duration>,
    /// Workloads of the small group (AWS calls per volume; 0: none).
    #[arg(long, default_value_t = 1)]
    small_workloads: usize,
    /// Measured failovers per case (after one warm-up).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Idle window over which the agents' background calls are measured.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    idle_window: Duration,
    /// One more case of the measured group at the first latency with this added to every
    /// DynamoDB and SQS answer to the agents (toxiproxy; a table in another region); 0s: none.
    #[arg(long, default_value = "30ms", value_parser = humantime::parse_duration)]
    aws_latency: Duration,
}

impl OverheadArgs {
    fn config(&self, agents: &AgentArgs) -> OverheadConfig {
        OverheadConfig {
            workloads: self.workloads,
            latencies: self.latencies.clone(),
            small_workloads: self.small_workloads,
            runs: self.runs,
            idle_window: self.idle_window,
            agents: agents.timing(),
            aws_latency: Some(self.aws_latency).filter(|l| !l.is_zero()),
            ..OverheadConfig::default()
        }
    }
}

#[derive(Debug, clap::Args)]
struct OverheadCmd {
    #[command(flatten)]
    overhead: OverheadArgs,
    #[command(flatten)]
    agents: AgentArgs,
    #[command(flatten)]
    out: Out,
}

#[derive(Debug, clap::Args)]
struct FanoutArgs {
    /// Groups failed over at once.
    #[arg(long, default_value_t = 50)]
    groups: usize,
    /// Storage latency per transition.
    #[arg(long = "fanout-latency", default_value = "200ms", value_parser = humantime::parse_duration)]
    latency: Duration,
}

impl FanoutArgs {
    fn config(&self, agents: &AgentArgs) -> FanoutConfig {
        FanoutConfig {
            groups: self.groups,
            shape: GroupShape {
                deployments: 1,
                statefulsets: 0,
            },
            latency: self.latency,
            agents: agents.timing(),
            ..FanoutConfig::default()
        }
    }
}

#[derive(Debug, clap::Args)]
struct FanoutCmd {
    #[command(flatten)]
    fanout: FanoutArgs,
    #[command(flatten)]
    agents: AgentArgs,
    #[command(flatten)]
    out: Out,
}

#[derive(Debug, clap::Args)]
struct AllCmd {
    #[command(flatten)]
    handoff: HandoffArgs,
    #[command(flatten)]
    overhead: OverheadArgs,
    #[command(flatten)]
    fanout: FanoutArgs,
    #[command(flatten)]
    agents: AgentArgs,
    #[command(flatten)]
    out: Out,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,failover_tests::bench=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let machine = MachineFacts::probe();
    let command = command_line();
    match cli.command {
        Command::Handoff(c) => {
            let sections = vec![handoff(&c.handoff, &machine, &command).await?];
            write_page(&c.out.out, sections, &machine, &command)
        }
        Command::Overhead(c) => {
            let sections = overhead(&c.overhead, &c.agents).await?;
            write_page(&c.out.out, sections, &machine, &command)
        }
        Command::Fanout(c) => {
            let sections = vec![fanout(&c.fanout, &c.agents).await?];
            write_page(&c.out.out, sections, &machine, &command)
        }
        Command::All(c) => {
            // Each benchmark's sections are merged into the file as soon as they are
            // measured, so a later failure keeps what was measured before it.
            let sections = vec![handoff(&c.handoff, &machine, &command).await?];
            write_page(&c.out.out, sections, &machine, &command)?;
            let sections = overhead(&c.overhead, &c.agents).await?;
            write_page(&c.out.out, sections, &machine, &command)?;
            let sections = vec![fanout(&c.fanout, &c.agents).await?];
            write_page(&c.out.out, sections, &machine, &command)
        }
    }
}

async fn handoff(args: &HandoffArgs, machine: &MachineFacts, command: &str) -> Result<Section> {
    let config = HandoffBenchConfig {
        handoffs: args.handoffs,
        volumes: args.volumes,
        poll_intervals: args.poll.clone(),
        receive_wait_seconds: args.receive_wait,
        source_work: args.source_work,
        ..HandoffBenchConfig::default()
    };
    let env = failover_tests::aws::moto().await.context("starting moto")?;
    tracing::info!(endpoint = %env.endpoint_url, "measuring handoff latency");
    let report = bench::run_handoff_bench(&env, &config).await?;
    Ok(page::handoff_section(&report, machine, command))
}

async fn overhead(args: &OverheadArgs, agents: &AgentArgs) -> Result<Vec<Section>> {
    let env = TestEnv::attach()
        .await
        .context("starting the test environment")?;
    tracing::info!("measuring the orchestration overhead and the AWS calls per failover");
    let report = bench::run_overhead_bench(&env, &args.config(agents)).await?;
    Ok(bench::overhead_sections(&report))
}

async fn fanout(args: &FanoutArgs, agents: &AgentArgs) -> Result<Section> {
    let env = TestEnv::attach()
        .await
        .context("starting the test environment")?;
    tracing::info!(groups = args.groups, "measuring many groups at once");
    let report = bench::run_fanout_bench(&env, &args.config(agents)).await?;
    Ok(bench::fanout_section(&report))
}

/// Prints the new sections and merges them into `out`.
fn write_page(
    out: &Path,
    sections: Vec<Section>,
    machine: &MachineFacts,
    command: &str,
) -> Result<()> {
    let fresh = page::compose(&sections, machine, command);
    print!("{fresh}");
    let old = std::fs::read_to_string(out)
        .map(|p| page::parse(&p))
        .unwrap_or_default();
    let merged = page::merge(old, sections);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, page::compose(&merged, machine, command))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {}", out.display());
    Ok(())
}

/// The command that reproduces this run, from the repository root.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!(
        "make env-up && cargo run --release -p failover-tests --bin failover-bench -- {}",
        args.join(" ")
    )
}
