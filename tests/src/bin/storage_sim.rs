//! `failover-storage-sim`: the storage simulator as a process (plays the csi-addons
//! VolumeReplication driver in every named cluster and records safety violations).
//!
//! ```text
//! failover-storage-sim --cluster east=<kubeconfig> --cluster west=<kubeconfig> \
//!     --violations <file.json> [--latency 200ms] [--namespace NS]
//! ```
//!
//! Logs one line per transition and every violation at WARN (`RUST_LOG` filters, default
//! `info`). On SIGINT or SIGTERM it stops the watches, rewrites the violations file and
//! exits 0. It exits non-zero, with a message naming the file, as soon as a write of the
//! violations file fails (the file would no longer tell the truth), and on any other error
//! it stops on (start-up, the engine stopping).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use failover_tests::kube::Cluster;
use failover_tests::storage_sim::{SimOptions, StorageSim};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "failover-storage-sim",
    about = "Simulated csi-addons VolumeReplication driver for the failover tests"
)]
struct Args {
    /// A cluster to drive, as NAME=KUBECONFIG (repeat for each cluster).
    #[arg(long = "cluster", value_name = "NAME=KUBECONFIG", required = true, value_parser = parse_cluster)]
    clusters: Vec<(String, PathBuf)>,
    /// JSON file the violations are written to (rewritten atomically on every change).
    #[arg(long, value_name = "FILE")]
    violations: PathBuf,
    /// Time from a desired-state change to its completion.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Only this namespace (default: all namespaces).
    #[arg(long)]
    namespace: Option<String>,
}

fn parse_cluster(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=KUBECONFIG, got {s:?}"))?;
    if name.is_empty() || path.is_empty() {
        return Err(format!("expected NAME=KUBECONFIG, got {s:?}"));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();

    let mut clusters = Vec::new();
    for (name, path) in &args.clusters {
        let c = Cluster::connect(name, path.clone()).await?;
        clusters.push((c.name, c.client));
    }
    let options = SimOptions {
        latency: args.latency,
        violations_file: Some(args.violations.clone()),
        namespace: args.namespace.clone(),
    };
    let sim = StorageSim::start(clusters, options).await?;

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let signal = tokio::select! {
        r = tokio::signal::ctrl_c() => { r.context("waiting for SIGINT")?; "SIGINT" }
        _ = term.recv() => "SIGTERM",
        e = sim.failed() => {
            sim.shutdown();
            return Err(e.context("storage simulator failed"));
        }
    };
    sim.shutdown();
    if let Some(failure) = sim.failure() {
        anyhow::bail!("storage simulator failed: {failure}");
    }
    sim.write_violations_file()?;
    let violations = sim.violations();
    tracing::info!(
        signal,
        violations = violations.len(),
        file = %args.violations.display(),
        "storage-sim: stopped"
    );
    Ok(())
}
