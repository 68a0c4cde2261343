//! The agent's command line: every flag is also an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use failover_messages::protocol::lease::{self, LeaseTerms};

/// `failover-agent`: one per cluster; owns this cluster's side of every failover.
#[derive(Debug, Clone, Parser)]
#[command(name = "failover-agent", version, about)]
pub struct Cli {
    /// What to do (default: run the agent).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// How the agent runs.
    #[command(flatten)]
    pub agent: AgentConfig,
}

/// Subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print the FailoverGroup and Failover CRDs as YAML.
    Crd,
    /// Print whether this build has failpoints (`enabled`/`disabled`; test builds only).
    Failpoints,
}

/// Everything the running agent needs to know.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentConfig {
    /// This cluster's name (as the coordinator and the table know it).
    #[arg(long, env = "FAILOVER_CLUSTER")]
    pub cluster: Option<String>,
    /// Kubeconfig of this cluster (default: in-cluster, then `KUBECONFIG`).
    #[arg(long, env = "FAILOVER_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// DynamoDB table.
    #[arg(long, env = "FAILOVER_TABLE", default_value = "failover")]
    pub table: String,
    /// SQS queue name prefix; the inbox is `<prefix><cluster>`.
    #[arg(long, env = "FAILOVER_QUEUE_PREFIX", default_value = "failover-")]
    pub queue_prefix: String,
    /// AWS region (default: the SDK's resolution).
    #[arg(long, env = "AWS_REGION")]
    pub region: Option<String>,
    /// AWS endpoint URL for DynamoDB and SQS (moto, LocalStack).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// DynamoDB's endpoint alone (over --endpoint-url): the table's endpoint in this
    /// cluster's region.
    #[arg(long, env = "AWS_ENDPOINT_URL_DYNAMODB")]
    pub dynamodb_endpoint: Option<String>,
    /// SQS's endpoint alone (over --endpoint-url): this cluster's region's, where its inbox is.
    #[arg(long, env = "AWS_ENDPOINT_URL_SQS")]
    pub sqs_endpoint: Option<String>,
    /// How long this cluster's serving lease (its heartbeat record) lasts unless renewed; it
    /// is renewed every third of it. With no successful renewal for three quarters of it, the
    /// agent fences every group whose `spec.onCoordinationLoss` is `Fence` (the default).
    /// Default 30s.
    #[arg(long, env = "FAILOVER_LEASE_DURATION", value_parser = parse_duration, conflicts_with = "heartbeat_interval")]
    pub lease_duration: Option<Duration>,
    /// The older way to set the lease: the time between two renewals (the lease lasts three
    /// times as long).
    #[arg(long, env = "FAILOVER_HEARTBEAT_INTERVAL", value_parser = parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Address of `/live`, `/ready` and `/metrics`.
    #[arg(long, env = "FAILOVER_ADMIN_ADDR", default_value = "127.0.0.1:9090")]
    pub admin_addr: SocketAddr,
    /// Time between two re-reads of the operations in flight when no wake-up comes.
    #[arg(long, env = "FAILOVER_REREAD_INTERVAL", default_value = "15s", value_parser = parse_duration)]
    pub reread_interval: Duration,
    /// The annotation external-dns reads on VirtualServices and Ingresses to decide which
    /// side serves (`dns-controller` active, `ignore` passive).
    #[arg(
        long,
        env = "FAILOVER_TRAFFIC_ANNOTATION",
        default_value = crate::kube_ops::traffic::DEFAULT_ANNOTATION_KEY
    )]
    pub traffic_annotation: String,
}

impl AgentConfig {
    /// The serving lease's terms: `--lease-duration`, else three `--heartbeat-interval`s,
    /// else 30 s.
    pub fn lease_terms(&self) -> LeaseTerms {
        LeaseTerms::new(
            self.lease_duration
                .or(self.heartbeat_interval.map(|i| i * 3))
                .unwrap_or(lease::DEFAULT_DURATION),
        )
    }
}

/// `10s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m or h)"
            ));
        }
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("{s:?} must be longer than zero"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("1d").is_err());
    }

    #[test]
    fn defaults_match_the_brief() {
        let cli = Cli::try_parse_from(["failover-agent", "--cluster", "east"]).unwrap();
        assert_eq!(cli.agent.table, "failover");
        assert_eq!(cli.agent.queue_prefix, "failover-");
        assert_eq!(cli.agent.lease_terms().duration, Duration::from_secs(30));
        assert_eq!(
            cli.agent.lease_terms().renew_every(),
            Duration::from_secs(10)
        );
        assert_eq!(cli.agent.reread_interval, Duration::from_secs(15));
        assert_eq!(cli.agent.admin_addr.to_string(), "127.0.0.1:9090");
        assert_eq!(
            cli.agent.traffic_annotation,
            "external-dns.alpha.kubernetes.io/controller"
        );
        let lease = |args: &[&str]| {
            let mut all = vec!["failover-agent", "--cluster", "east"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all).map(|c| c.agent.lease_terms().duration)
        };
        assert_eq!(
            lease(&["--lease-duration", "6s"]).unwrap(),
            Duration::from_secs(6)
        );
        assert_eq!(
            lease(&["--heartbeat-interval", "1s"]).unwrap(),
            Duration::from_secs(3)
        );
        assert!(lease(&["--lease-duration", "6s", "--heartbeat-interval", "1s"]).is_err());
        let crd = Cli::try_parse_from(["failover-agent", "crd"]).unwrap();
        assert!(matches!(crd.command, Some(Command::Crd)));
    }
}
