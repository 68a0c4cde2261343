//! The command line: clap-derive definitions and the dispatch from a parsed command to the
//! library function that runs it and the renderer that prints its result.
//!
//! Arguments are validated while parsing (a group must be `<namespace>/<name>`, cluster
//! names are DNS labels, table and queue names use the characters AWS allows), so bad input
//! is a usage error (exit 2) before any AWS call.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use failover_messages::inbox::{DEFAULT_MAX_RECEIVE_COUNT, InboxOptions};
use failover_messages::keys::{self, GroupRef};
use failover_messages::records::Mode;

use crate::aws::{AwsOptions, Context, load_config};
use crate::error::{CommandError, report};
use crate::exit::{EXIT_CODES_HELP, ExitStatus};
use crate::output::{OutputFormat, render};
use crate::report::ReportFormat;

/// failoverctl: set up, register, fail over, watch and abort failover groups through
/// DynamoDB and SQS. Needs AWS credentials only, never a kubeconfig.
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
    /// Endpoint URL for DynamoDB alone (over --endpoint-url), e.g. the table's region's.
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB", global = true, value_parser = parse_endpoint_url)]
    pub dynamodb_endpoint: Option<String>,
    /// Endpoint URL for SQS alone (over --endpoint-url).
    #[arg(long, env = "AWS_ENDPOINT_URL_SQS", global = true, value_parser = parse_endpoint_url)]
    pub sqs_endpoint: Option<String>,
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
    /// Start a failover of one or more groups to a cluster: one conditional write per
    /// group (refused with exit 3 while another operation holds the group, or when the group
    /// is active elsewhere), then an OperationStarted message to the source and target
    /// inboxes. Prints the operation id per group. With --wait, shows live progress on
    /// stderr until the operation ends (0 Succeeded, 6 Aborted/RolledBack, 4 Failed,
    /// 5 when --timeout runs out: the operation continues).
    #[command(after_long_help = EXIT_CODES_HELP)]
    Failover(FailoverArgs),
    /// Show live progress of an operation on stderr (each side's latest published journal
    /// step, stage by stage, each volume's handoff state, elapsed time) until its phase is
    /// final; exits like
    /// `failover --wait`.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Watch(WatchArgs),
    /// Request an abort of an operation whose promotion is not claimed yet (refused with
    /// exit 3 after the claim: only forward is possible), and notify source and target.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Abort(AbortArgs),
    /// Closed operations of one group or of every group, newest first.
    #[command(after_long_help = EXIT_CODES_HELP)]
    History(HistoryArgs),
    /// Draw one operation from DynamoDB alone: both clusters' stages and steps on one time
    /// axis (source and target lanes), each volume's handoff, the downtime and any
    /// dual-active window shaded, failures marked. HTML (default: one self-contained page,
    /// the drawing inline), SVG or text; to stdout or --out FILE.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Report(ReportArgs),
    /// Agent heartbeats: cluster, agent version, last seen, stale or not.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Clusters,
    /// Preview a failover without changing anything: the stages each side runs for the
    /// mode and what would block the start (stale or missing heartbeats, an operation in
    /// flight, a suspended or unregistered group, the target already active). Exit 0 when
    /// nothing blocks, 3 when something does.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Plan(PlanArgs),
    /// Suspend a group: no new operation may start on it (failover, a Failover object)
    /// until it is resumed. An operation in flight is not stopped (abort it for that).
    /// Suspending a suspended group changes nothing and succeeds; an unregistered group is
    /// exit 7.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Suspend(SuspendArgs),
    /// Resume a suspended group: operations may start on it again. Resuming a group that
    /// is not suspended changes nothing and succeeds; an unregistered group is exit 7.
    #[command(after_long_help = EXIT_CODES_HELP)]
    Resume(SuspendArgs),
}

/// `failoverctl suspend` and `failoverctl resume`.
#[derive(Debug, Args)]
pub struct SuspendArgs {
    /// The FailoverGroup, as NAMESPACE/NAME (e.g. shop/orders).
    #[arg(value_name = "NAMESPACE/GROUP", value_parser = parse_group)]
    pub group: GroupRef,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Source down and demoted before the target promotes (never two writers).
    #[default]
    Consistency,
    /// Target promoted and serving before the source shuts down (minimal downtime).
    Uptime,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Consistency => Mode::Consistency,
            ModeArg::Uptime => Mode::Uptime,
        }
    }
}

/// `failoverctl failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// The FailoverGroups, as NAMESPACE/NAME (e.g. shop/orders); each gets its own operation.
    #[arg(value_name = "NAMESPACE/GROUP", required = true, value_parser = parse_group)]
    pub groups: Vec<GroupRef>,
    /// The cluster to move to.
    #[arg(long = "to", value_name = "CLUSTER", value_parser = parse_cluster)]
    pub to: String,
    /// How the two sides are ordered.
    #[arg(long, value_enum, default_value_t = ModeArg::Consistency)]
    pub mode: ModeArg,
    /// Do not wait for the graceful handoff (the source is lost or stuck): the target
    /// promotes once the source has shut its side down and released it, or once its serving
    /// lease is certainly over (data written after the last replication may be lost; two
    /// writers never). Always CONSISTENCY order. Requires --reason.
    #[arg(long, requires = "reason")]
    pub force: bool,
    /// With --force: you vouch that the source cluster is down. Needed for a group whose
    /// source keeps serving without DynamoDB (onCoordinationLoss: KeepServing); the target
    /// then promotes without waiting for the source's lease.
    #[arg(long, requires = "force")]
    pub source_is_down: bool,
    /// Why (recorded on the operation; required with --force).
    #[arg(long)]
    pub reason: Option<String>,
    /// Wait until the operation ends, showing progress on stderr.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (e.g. 90s, 10m); the operation continues afterwards.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Duration,
}

/// `failoverctl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The operation id (printed by `failoverctl failover`).
    #[arg(value_name = "OPERATION-ID", value_parser = parse_operation_id)]
    pub operation: String,
    /// How long to watch (e.g. 90s, 10m); the operation continues afterwards.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `failoverctl abort`.
#[derive(Debug, Args)]
pub struct AbortArgs {
    /// The operation id.
    #[arg(value_name = "OPERATION-ID", value_parser = parse_operation_id)]
    pub operation: String,
}

/// `failoverctl history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Only this FailoverGroup, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/GROUP", value_parser = parse_group)]
    pub group: Option<GroupRef>,
    /// At most this many operations.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Also print, per operation, the `failoverctl report` command that draws it.
    #[arg(long)]
    pub report: bool,
}

/// `failoverctl report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The operation id.
    #[arg(value_name = "OPERATION-ID", value_parser = parse_operation_id)]
    pub operation: String,
    /// What to draw: one self-contained HTML page, the SVG alone, or text.
    #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,
    /// Write the report to FILE instead of stdout. (`-o/--output` is the result format
    /// every command takes.)
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `failoverctl plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The FailoverGroup, as NAMESPACE/NAME.
    #[arg(value_name = "NAMESPACE/GROUP", value_parser = parse_group)]
    pub group: GroupRef,
    /// The cluster to move to.
    #[arg(long = "to", value_name = "CLUSTER", value_parser = parse_cluster)]
    pub to: String,
    /// How the two sides are ordered.
    #[arg(long, value_enum, default_value_t = ModeArg::Consistency)]
    pub mode: ModeArg,
    /// Preview a forced failover (a stale source heartbeat no longer blocks).
    #[arg(long)]
    pub force: bool,
}

fn parse_operation_id(s: &str) -> Result<String, String> {
    keys::validate_operation_id(s)
        .map(|()| s.to_owned())
        .map_err(|e| e.to_string())
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
    /// CLUSTER=REGION: create that cluster's queues in its own region (repeat per cluster;
    /// default: this command's region). Recorded in the table, so senders reach the queue
    /// in that region.
    #[arg(long = "queue-region", value_name = "CLUSTER=REGION", value_parser = parse_cluster_value)]
    pub queue_regions: Vec<(String, String)>,
    /// CLUSTER=URL: reach that cluster's SQS through this endpoint (a VPC endpoint, a
    /// local emulator); recorded in the table for the senders too.
    #[arg(long = "queue-endpoint", value_name = "CLUSTER=URL", value_parser = parse_cluster_endpoint)]
    pub queue_endpoints: Vec<(String, String)>,
    /// Make the table a DynamoDB global table in multi-Region strong consistency, so it
    /// stays writable when a region is lost: this command's region plus two
    /// --replica-region, or one --replica-region and a --witness-region. Only a new (empty)
    /// table can become one; TTL is left off. Waits until every region is ACTIVE.
    #[arg(long, requires = "replica_regions")]
    pub global_table: bool,
    /// A region holding a replica of the global table (repeat, or separate with commas).
    #[arg(
        long = "replica-region",
        value_name = "REGION",
        value_delimiter = ',',
        requires = "global_table"
    )]
    pub replica_regions: Vec<String>,
    /// The global table's witness region (stores the replication log, serves nothing).
    #[arg(
        long = "witness-region",
        value_name = "REGION",
        requires = "global_table"
    )]
    pub witness_region: Option<String>,
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

/// `CLUSTER=VALUE` with a valid cluster name and a non-empty value.
fn parse_cluster_value(s: &str) -> Result<(String, String), String> {
    let (cluster, value) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not CLUSTER=VALUE"))?;
    let cluster = parse_cluster(cluster)?;
    if value.is_empty() {
        return Err(format!("{s:?} gives no value for cluster {cluster}"));
    }
    Ok((cluster, value.to_owned()))
}

/// `CLUSTER=URL` with an endpoint URL.
fn parse_cluster_endpoint(s: &str) -> Result<(String, String), String> {
    let (cluster, url) = parse_cluster_value(s)?;
    Ok((cluster, parse_endpoint_url(&url)?))
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

/// What a command leaves behind: its result for stdout, messages for stderr (refusals of
/// some groups of a multi-group failover, a wait's timeout notice) and the exit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// For stdout.
    pub stdout: String,
    /// For stderr (after stdout).
    pub stderr: String,
    /// The exit status.
    pub status: ExitStatus,
}

impl Finished {
    fn ok(stdout: String) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            status: ExitStatus::Success,
        }
    }
}

/// `failoverctl:<user>` for `requestedBy` and the first lease.
fn requested_by() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    format!("failoverctl:{user}")
}

impl Cli {
    /// Runs the command and returns what to print and how to exit.
    pub async fn run(&self) -> Result<Finished, CommandError> {
        let g = &self.global;
        let options = AwsOptions {
            region: g.region.clone(),
            endpoint_url: g.endpoint_url.clone(),
            dynamodb_endpoint: g.dynamodb_endpoint.clone(),
            sqs_endpoint: g.sqs_endpoint.clone(),
        };
        let config = load_config(&options).await?;
        let queues = InboxOptions {
            prefix: g.queue_prefix.clone(),
            ..InboxOptions::default()
        };
        let ctx = Context::with_endpoints(&config, &options, g.table.clone(), queues);
        Ok(match &self.command {
            Command::Setup(args) => Finished::ok(render(
                &crate::setup::setup(
                    &ctx,
                    &args.clusters,
                    args.max_receive_count,
                    &crate::setup::QueuePlaces {
                        regions: args.queue_regions.iter().cloned().collect(),
                        endpoints: args.queue_endpoints.iter().cloned().collect(),
                    },
                    args.global_table.then(|| crate::setup::GlobalRegions {
                        replicas: args.replica_regions.clone(),
                        witness: args.witness_region.clone(),
                    }),
                )
                .await?,
                g.output,
            )),
            Command::Register(args) => Finished::ok(render(
                &crate::register::register(&ctx, &args.group, &args.active).await?,
                g.output,
            )),
            Command::Status(args) => Finished::ok(render(
                &crate::status::status(&ctx, args.group.as_ref()).await?,
                g.output,
            )),
            Command::Failover(args) => self.failover(&ctx, args).await?,
            Command::Watch(args) => {
                let result = crate::watch::watch(
                    &ctx,
                    std::slice::from_ref(&args.operation),
                    args.timeout,
                    &mut std::io::stderr(),
                )
                .await?;
                watched(render(&result, g.output), &result)
            }
            Command::Abort(args) => Finished::ok(render(
                &crate::abort::abort(&ctx, &args.operation).await?,
                g.output,
            )),
            Command::History(args) => Finished::ok(render(
                &crate::history::history(
                    &ctx,
                    args.group.as_ref(),
                    args.limit as usize,
                    args.report,
                )
                .await?,
                g.output,
            )),
            Command::Clusters => {
                Finished::ok(render(&crate::history::clusters(&ctx).await?, g.output))
            }
            Command::Report(args) => write_report(&ctx, args).await?,
            Command::Suspend(args) => Finished::ok(render(
                &crate::suspend::set_suspended(&ctx, &args.group, true).await?,
                g.output,
            )),
            Command::Resume(args) => Finished::ok(render(
                &crate::suspend::set_suspended(&ctx, &args.group, false).await?,
                g.output,
            )),
            Command::Plan(args) => {
                let plan =
                    crate::plan::plan(&ctx, &args.group, &args.to, args.mode.into(), args.force)
                        .await?;
                let status = if plan.blockers.is_empty() {
                    ExitStatus::Success
                } else {
                    ExitStatus::Refused
                };
                Finished {
                    stdout: render(&plan, g.output),
                    stderr: if plan.blockers.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "error: failover of {} to {} is blocked: {}\n",
                            args.group,
                            args.to,
                            plan.blockers.join("; ")
                        )
                    },
                    status,
                }
            }
        })
    }

    async fn failover(&self, ctx: &Context, args: &FailoverArgs) -> Result<Finished, CommandError> {
        let req = crate::failover::FailoverRequest {
            groups: args.groups.clone(),
            target: args.to.clone(),
            mode: args.mode.into(),
            force: args.force,
            source_is_down: args.source_is_down,
            reason: args.reason.clone().unwrap_or_default(),
            requested_by: requested_by(),
            lease_ttl: crate::failover::DEFAULT_LEASE_TTL,
        };
        let (result, mut errors) = crate::failover::failover(ctx, &req).await?;
        if result.operations.is_empty() && errors.len() == 1 {
            return Err(errors.remove(0));
        }
        let mut stderr: String = errors.iter().map(|e| report(e)).collect();
        let mut status = errors
            .first()
            .map_or(ExitStatus::Success, CommandError::exit_status);
        let mut stdout = render(&result, self.global.output);
        if args.wait && !result.operations.is_empty() {
            // For people, the ids first, so a user who interrupts the wait still has them;
            // scripts (json, yaml) get one document with both at the end.
            let for_people = matches!(
                self.global.output,
                OutputFormat::Plain | OutputFormat::Table
            );
            if for_people {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(stdout.as_bytes()).and_then(|()| out.flush());
            }
            let ids: Vec<String> = result
                .operations
                .iter()
                .map(|o| o.operation_id.clone())
                .collect();
            let watch =
                crate::watch::watch(ctx, &ids, args.timeout, &mut std::io::stderr()).await?;
            stderr.push_str(&watch.timeout_notice().unwrap_or_default());
            if status == ExitStatus::Success {
                status = watch.exit_status();
            }
            stdout = if for_people {
                render(&watch, self.global.output)
            } else {
                render(
                    &crate::failover::FailoverWaited {
                        operations: result.operations,
                        wait: watch,
                    },
                    self.global.output,
                )
            };
        }
        Ok(Finished {
            stdout,
            stderr,
            status,
        })
    }
}

/// `failoverctl report`: the report on stdout, or written to `--out` with a line saying so.
async fn write_report(ctx: &Context, args: &ReportArgs) -> Result<Finished, CommandError> {
    let report = crate::report::report(ctx, &args.operation).await?;
    let text = match args.format {
        ReportFormat::Html => crate::report::html::render(&report),
        ReportFormat::Svg => crate::report::svg::render(&report),
        ReportFormat::Text => report.text(),
    };
    let Some(path) = &args.out else {
        return Ok(Finished::ok(text));
    };
    std::fs::write(path, &text).map_err(|source| CommandError::WriteFile {
        path: path.clone(),
        source,
    })?;
    Ok(Finished::ok(format!(
        "wrote the {} report of operation {} ({}) to {}\n",
        args.format.extension(),
        args.operation,
        report.title(),
        path.display()
    )))
}

fn watched(stdout: String, result: &crate::watch::WatchResult) -> Finished {
    Finished {
        stdout,
        stderr: result.timeout_notice().unwrap_or_default(),
        status: result.exit_status(),
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
    fn force_without_a_reason_is_a_usage_error() {
        let err = parse(&["failover", "shop/orders", "--to", "west", "--force"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--reason"), "{err}");
        let cli = parse(&[
            "failover",
            "shop/orders",
            "shop/cart",
            "--to",
            "west",
            "--force",
            "--reason",
            "east down",
            "--mode",
            "uptime",
            "--wait",
            "--timeout",
            "90s",
        ])
        .unwrap();
        let Command::Failover(args) = cli.command else {
            panic!("not failover")
        };
        assert_eq!(args.groups.len(), 2);
        assert_eq!(Mode::from(args.mode), Mode::Uptime);
        assert_eq!(args.timeout, Duration::from_secs(90));
        assert!(
            parse(&["failover", "shop/orders"]).is_err(),
            "--to is required"
        );
        assert!(
            parse(&["failover", "--to", "west"]).is_err(),
            "a group is required"
        );
        assert!(parse(&["failover", "shop/orders", "--to", "west", "--timeout", "1s"]).is_err());
    }

    #[test]
    fn operation_ids_and_plans_are_checked_while_parsing() {
        assert!(parse(&["watch", "a#b"]).is_err());
        assert!(parse(&["abort", ""]).is_err());
        assert!(parse(&["abort", "3f2a-1"]).is_ok());
        assert!(parse(&["plan", "shop/orders", "--to", "West"]).is_err());
        assert!(parse(&["history"]).is_ok());
        assert!(parse(&["clusters"]).is_ok());
        assert!(parse(&["suspend", "shop/orders"]).is_ok());
        assert!(parse(&["report", "op-1", "--format", "svg", "--out", "r.svg"]).is_ok());
        assert!(parse(&["report", "op-1", "--format", "pdf"]).is_err());
        assert!(parse(&["history", "--report"]).is_ok());
        assert!(parse(&["resume", "orders"]).is_err());
        assert!(parse(&["suspend"]).is_err());
    }

    #[test]
    fn long_help_documents_the_exit_codes() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("Exit codes:"), "{help}");
        assert!(help.contains("7  not found"), "{help}");
        for sub in [
            "setup", "register", "status", "failover", "watch", "abort", "history", "clusters",
            "plan", "suspend", "resume", "report",
        ] {
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
