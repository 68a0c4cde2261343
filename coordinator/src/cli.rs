//! The command line: clap-derive definitions and the dispatch from a parsed command to the
//! library function that runs it and the renderer that prints its result.
//!
//! Arguments are validated while parsing (a group must be `<namespace>/<name>`, cluster
//! names are DNS labels, table and queue names use the characters AWS allows), so bad input
//! is a usage error (exit 2) before any AWS call.

use clap::{Args, Parser, Subcommand};
use failover_messages::inbox::{DEFAULT_MAX_RECEIVE_COUNT, InboxOptions};
use failover_messages::keys::{self, GroupRef};

use crate::aws::{AwsOptions, Context, load_config};
use crate::error::CommandError;
use crate::exit::EXIT_CODES_HELP;
use crate::output::{OutputFormat, render};

/// failoverctl: set up, register and inspect failover groups through DynamoDB and SQS.
/// Needs AWS credentials only, never a kubeconfig.
#[derive(Debug, Parser)]
#[command(name = "failoverctl", version, after_long_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalOptions,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalOptions {
    /// DynamoDB table holding the failover records.
    #[arg(long, env = "FAILOVER_TABLE", default_value = "failover", global = true, value_parser = parse_table)]
    pub table: String,
    /// Prefix of the SQS queue names (`<prefix><cluster>` and `<prefix><cluster>-dlq`).
    #[arg(long, env = "FAILOVER_QUEUE_PREFIX", default_value = "failover-", global = true, value_parser = parse_queue_prefix)]
    pub queue_prefix: String,
    /// AWS region (else the AWS profile's).
    #[arg(long, env = "AWS_REGION", global = true)]
    pub region: Option<String>,
    /// Endpoint URL for DynamoDB and SQS (e.g. a local moto server).
    #[arg(long, env = "AWS_ENDPOINT_URL", global = true, value_parser = parse_endpoint_url)]
    pub endpoint_url: Option<String>,
    /// Output format of the result.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Plain, global = true)]
    pub output: OutputFormat,
    /// More log output on stderr (-v: info, -vv: debug). `RUST_LOG` overrides it.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or verify the table and each cluster's inbox and dead-letter queue
    /// (idempotent: reports what it created and what was already there).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Setup(SetupArgs),
    /// Register a FailoverGroup with its active cluster (epoch 0). Registering again with
    /// the same cluster is a no-op; with another cluster it is refused (exit 3).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Register(RegisterArgs),
    /// Show every registered group, or one: active cluster, epoch, operation in flight,
    /// lease holder and expiry.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Status(StatusArgs),
}

/// `failoverctl setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// A cluster whose inbox queues to set up (repeat, or separate with commas).
    #[arg(long = "cluster", required = true, value_delimiter = ',', value_parser = parse_cluster)]
    pub clusters: Vec<String>,
    /// Receives after which SQS moves a message to the cluster's dead-letter queue.
    #[arg(long, default_value_t = DEFAULT_MAX_RECEIVE_COUNT, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_receive_count: u32,
}

/// `failoverctl register`.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// The FailoverGroup, as NAMESPACE/NAME (e.g. shop/orders).
    #[arg(value_name = "NAMESPACE/GROUP", value_parser = parse_group)]
    pub group: GroupRef,
    /// The cluster whose side is active now.
    #[arg(long, value_parser = parse_cluster)]
    pub active: String,
}

/// `failoverctl status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this FailoverGroup, as NAMESPACE/NAME (e.g. shop/orders).
    #[arg(value_name = "NAMESPACE/GROUP", value_parser = parse_group)]
    pub group: Option<GroupRef>,
}

fn parse_group(s: &str) -> Result<GroupRef, String> {
    s.parse::<GroupRef>().map_err(|e| e.to_string())
}

fn parse_cluster(s: &str) -> Result<String, String> {
    keys::validate_cluster(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
}

/// DynamoDB table names: 3–255 characters of `[A-Za-z0-9_.-]`.
fn parse_table(s: &str) -> Result<String, String> {
    if !(3..=255).contains(&s.len()) {
        return Err(format!("table name {s:?} must be 3 to 255 characters long"));
    }
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        Some(c) => Err(format!(
            "table name {s:?} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        )),
        None => Ok(s.to_owned()),
    }
}

/// SQS queue names allow `[A-Za-z0-9_-]`; the cluster name and `-dlq` come after the prefix.
fn parse_queue_prefix(s: &str) -> Result<String, String> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
    {
        Some(c) => Err(format!(
            "queue prefix {s:?} contains {c:?}; only letters, digits, '_' and '-' are allowed"
        )),
        None if s.len() > 60 => Err(format!(
            "queue prefix {s:?} is {} characters long; at most 60 leave room for the cluster name",
            s.len()
        )),
        None => Ok(s.to_owned()),
    }
}

fn parse_endpoint_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() => Ok(s.to_owned()),
        _ => Err(format!(
            "endpoint URL {s:?} must be http://<host>[:<port>] or https://<host>[:<port>]"
        )),
    }
}

impl Cli {
    /// Runs the command and returns its rendered result (for stdout).
    pub async fn run(&self) -> Result<String, CommandError> {
        let g = &self.global;
        let config = load_config(&AwsOptions {
            region: g.region.clone(),
            endpoint_url: g.endpoint_url.clone(),
        })
        .await?;
        let queues = InboxOptions {
            prefix: g.queue_prefix.clone(),
            ..InboxOptions::default()
        };
        let ctx = Context::new(&config, g.table.clone(), queues);
        Ok(match &self.command {
            Command::Setup(args) => render(
                &crate::setup::setup(&ctx, &args.clusters, args.max_receive_count).await?,
                g.output,
            ),
            Command::Register(args) => render(
                &crate::register::register(&ctx, &args.group, &args.active).await?,
                g.output,
            ),
            Command::Status(args) => render(
                &crate::status::status(&ctx, args.group.as_ref()).await?,
                g.output,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("failoverctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_group_without_a_namespace_is_a_usage_error_naming_the_form() {
        let err = parse(&["register", "orders", "--active", "east"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(msg.contains("<namespace>/<name>"), "{msg}");
        assert!(msg.contains("orders"), "{msg}");
    }

    #[test]
    fn clusters_repeat_or_split_on_commas() {
        let cli = parse(&["setup", "--cluster", "east,west", "--cluster", "north"]).unwrap();
        let Command::Setup(args) = cli.command else {
            panic!("not setup")
        };
        assert_eq!(args.clusters, ["east", "west", "north"]);
        assert_eq!(args.max_receive_count, DEFAULT_MAX_RECEIVE_COUNT);
        assert!(parse(&["setup"]).is_err());
        assert!(parse(&["setup", "--cluster", "East"]).is_err());
        assert!(parse(&["setup", "--cluster", "east", "--max-receive-count", "0"]).is_err());
    }

    #[test]
    fn global_options_go_anywhere_and_are_checked() {
        let cli = parse(&[
            "status",
            "--table",
            "t-1",
            "-o",
            "json",
            "--queue-prefix",
            "x_",
        ])
        .unwrap();
        assert_eq!(cli.global.table, "t-1");
        assert_eq!(cli.global.output, OutputFormat::Json);
        assert_eq!(cli.global.queue_prefix, "x_");
        assert!(parse(&["status", "--table", "a b c"]).is_err());
        assert!(parse(&["status", "--table", "ab"]).is_err());
        assert!(parse(&["status", "--queue-prefix", "a.b"]).is_err());
        assert!(parse(&["status", "--endpoint-url", "localhost:4566"]).is_err());
        assert!(parse(&["status", "--endpoint-url", "http://127.0.0.1:4566"]).is_ok());
        assert!(parse(&["status", "-o", "xml"]).is_err());
    }

    #[test]
    fn long_help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("7  not found"), "{help}");
        for sub in ["setup", "register", "status"] {
            let mut cmd = Cli::command();
            let help = cmd
                .find_subcommand_mut(sub)
                .unwrap()
                .render_long_help()
                .to_string();
            assert!(help.contains("3  refused"), "{sub}: {help}");
        }
    }
}
