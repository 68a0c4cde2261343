//! `failover-chaos`: a seeded random nemesis against the test environment (`make chaos`).
//!
//! ```text
//! failover-chaos [--seed <n>] [--ops 20] [--groups 2] [--deadline 120s] [--out target/chaos/report.md]
//! ```
//!
//! Without `--seed` the seed comes from the clock and is printed first, so any run can be
//! replayed. The run needs the agents built with failpoints, which the workspace's test
//! builds are (`cargo build --workspace --all-targets`, what `make chaos` runs first; the
//! binary builds the same way before it starts an agent). The markdown report goes to
//! `--out`; progress goes to stderr (`RUST_LOG` filters, default `info` for the run and
//! `warn` for the rest); the last line on stdout is
//! `chaos: <k> operations, <f> faults, <v> violations`. Exit 0 clean, 1 with violations
//! (a stuck operation is one), 2 when the run itself failed. The work lives in
//! `failover_tests::chaos`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use clap::Parser;
use failover_tests::chaos::{self, Config};
use failover_tests::scenario::failpoints_built;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "failover-chaos",
    about = "Seeded random failovers under injected faults, judged by the run checker"
)]
struct Cli {
    /// The schedule's seed (default: from the clock, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Operations after the baseline.
    #[arg(long, default_value_t = 20)]
    ops: usize,
    /// FailoverGroups (one namespace each) the operations choose from.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=4))]
    groups: u8,
    /// How long an operation may take to reach a terminal phase before it counts as stuck.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    deadline: Duration,
    /// Where the markdown report is written (folders are created).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("warn,failover_tests::chaos=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let seed = cli.seed.unwrap_or_else(clock_seed);
    eprintln!(
        "chaos seed {seed} (replay: make chaos SEED={seed} OPS={})",
        cli.ops
    );
    match body(&cli, seed).await {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn body(cli: &Cli, seed: u64) -> Result<u8> {
    ensure!(
        failpoints_built()?,
        "the agent was built without failpoints: build with `cargo build --workspace --all-targets`"
    );
    let mut config = Config::new(seed, cli.ops);
    config.deadline = cli.deadline;
    config.limits.groups = usize::from(cli.groups);
    let report = chaos::run(&config).await;
    let out = cli.out.clone().unwrap_or_else(chaos::default_report_path);
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, report.markdown())
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!("report written to {}", out.display());
    if let Some(e) = &report.error {
        eprintln!("error: {e}");
    }
    for (at, what) in report.violations() {
        eprintln!("violation ({at}): {what}");
    }
    println!("{}", report.summary_line());
    Ok(report.exit_code())
}

/// Seconds since the epoch.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
