//! `failover-bench`: the benchmarks behind `make bench` (design §7).
//!
//! ```text
//! failover-bench handoff [--handoffs 200] [--volumes 3] [--poll 1s --poll 30s]
//!                        [--source-work 0s] [--out target/bench/report.md]
//! ```
//!
//! Starts (or reuses) moto through `tests/env/moto-up.sh`, measures, prints the markdown
//! report on stdout and writes it to `--out`. Progress goes to stderr (`RUST_LOG` filters,
//! default `info` for the benchmark, `warn` for the rest). The measuring lives in
//! `failover_tests::bench`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use failover_tests::bench::{self, HandoffBenchConfig, MachineFacts};
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
    Handoff(HandoffArgs),
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
    /// Where the markdown report is written (folders are created).
    #[arg(long, default_value = "target/bench/report.md")]
    out: PathBuf,
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
    match cli.command {
        Command::Handoff(args) => handoff(args).await,
    }
}

async fn handoff(args: HandoffArgs) -> Result<()> {
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
    let page = bench::markdown(&report, &MachineFacts::probe(), &command_line());
    print!("{page}");
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.out, &page).with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("report written to {}", args.out.display());
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
        "bash tests/env/moto-up.sh && cargo run --release -p failover-tests --bin failover-bench -- {}",
        args.join(" ")
    )
}
