//! `failover-agent`: the per-cluster failover agent (see `failover_agent::runtime`).

use clap::Parser;
use failover_agent::runtime;
use failover_agent::runtime::config::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    if let Some(Command::Failpoints) = cli.command {
        let enabled = failover_messages::failpoint::enabled();
        println!("{}", if enabled { "enabled" } else { "disabled" });
        return;
    }
    if let Some(Command::Crd) = cli.command {
        let docs: Vec<String> = failover_messages::crd::crd_files()
            .into_iter()
            .map(|(_, yaml)| yaml)
            .collect();
        print!("{}", docs.join("---\n"));
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match failover_messages::failpoint::setup() {
        Ok(points) if !points.is_empty() => tracing::warn!(?points, "failpoints configured"),
        Ok(_) => {}
        Err(e) => {
            eprintln!("failover-agent: error: {e}");
            std::process::exit(2);
        }
    }
    let result = actix_rt::System::new().block_on(runtime::run(cli.agent));
    if let Err(e) = result {
        let e = anyhow::Error::new(e);
        eprintln!("failover-agent: error: {e:#}");
        std::process::exit(1);
    }
}
