//! `failoverctl`: parses the command line, runs the command, prints its result on stdout or
//! its error report on stderr, and exits with the code of the error's category (see
//! `failover_coordinator::exit`). Usage errors are clap's (exit 2).

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;

use clap::Parser as _;
use failover_coordinator::cli::Cli;
use failover_coordinator::error::report;
use failover_coordinator::exit::ExitStatus;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    if let Err(e) = failover_messages::failpoint::setup() {
        eprintln!("failoverctl: error: {e}");
        return ExitStatus::Usage.into();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprint!("{}", report(&e));
            return ExitStatus::Failed.into();
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(finished) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`failoverctl status | head -1`) is not worth a panic.
            let _ = stdout
                .write_all(finished.stdout.as_bytes())
                .and_then(|()| stdout.flush());
            eprint!("{}", finished.stderr);
            finished.status.into()
        }
        Err(error) => {
            eprint!("{}", report(&error));
            error.exit_status().into()
        }
    }
}

/// Logs go to stderr: warnings by default, more with `-v`, anything with `RUST_LOG`.
fn init_logging(verbose: u8) {
    let default = match verbose {
        // IMDS region lookups warn on every machine outside EC2; the missing region is
        // reported as an error of its own.
        0 => "warn,aws_config::imds=error",
        1 => "info,aws_config::imds=error",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
