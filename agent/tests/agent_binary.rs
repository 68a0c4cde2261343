//! The real `failover-agent` binary against the test environment: start-up checks, the
//! `crd` subcommand, and a properly started agent (probes, heartbeat, metrics, a malformed
//! SQS message that must not stop it).
//!
//! Each test takes its own table and queue names.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use failover_messages::inbox::{Inbox, InboxOptions};
use failover_messages::keys::GroupRef;
use failover_messages::records::Mode;
use failover_messages::setup::ensure_table;
use failover_messages::store::{StartOutcome, StartRequest, Store};
use failover_tests::fixtures::install_crds;
use failover_tests::kube::TestEnv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

const AGENT: &str = env!("CARGO_BIN_EXE_failover-agent");
const DEADLINE: Duration = Duration::from_secs(60);

/// The agent command with the AWS settings of the test environment and nothing inherited
/// that could change its configuration.
fn agent(env: &TestEnv) -> Command {
    let mut cmd = Command::new(AGENT);
    for (k, _) in std::env::vars() {
        if k.starts_with("FAILOVER_") || k.starts_with("AWS_") || k == "KUBECONFIG" {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ENDPOINT_URL", &env.aws.endpoint_url)
        .env("AWS_REGION", &env.aws.region)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// `GET path` on the admin address: (status, body).
async fn get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut raw)).await??;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `check` until it answers `Some`, or fails after `DEADLINE` with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match check().await {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() > DEADLINE {
            bail!("{what} did not happen within {DEADLINE:?} (last error: {last})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn log_file(name: &str) -> Result<(PathBuf, std::fs::File)> {
    let path = std::env::temp_dir().join(format!(
        "failover-agent-{name}-{}-{}.log",
        std::process::id(),
        free_port()?
    ));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}

#[tokio::test]
async fn the_agent_refuses_to_start_without_its_table_and_names_it() -> Result<()> {
    let env = TestEnv::attach().await?;
    let table = env.aws.unique("fo-missing");
    let out = agent(&env)
        .args(["--cluster", "east", "--table", &table])
        .arg("--kubeconfig")
        .arg(&env.east.kubeconfig)
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "expected exit code 1, got {:?}; stderr:\n{stderr}",
        out.status
    );
    ensure!(
        stderr.contains(&table),
        "the error does not name table {table}:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn the_agent_refuses_to_start_without_its_inbox_queue_and_names_it() -> Result<()> {
    let env = TestEnv::attach().await?;
    let table = env.aws.unique("fo-noqueue");
    ensure_table(&env.aws.dynamodb(), &table).await?;
    let prefix = format!("{}-", env.aws.unique("fo-none"));
    let out = agent(&env)
        .args([
            "--cluster",
            "east",
            "--table",
            &table,
            "--queue-prefix",
            &prefix,
        ])
        .arg("--kubeconfig")
        .arg(&env.east.kubeconfig)
        .args(["--admin-addr", &format!("127.0.0.1:{}", free_port()?)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1),
        "expected exit code 1, got {:?}; stderr:\n{stderr}",
        out.status
    );
    let queue = format!("{prefix}east");
    ensure!(
        stderr.contains(&queue),
        "the error does not name queue {queue}:\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn the_crd_subcommand_prints_both_crds_as_yaml() -> Result<()> {
    let out = std::process::Command::new(AGENT).arg("crd").output()?;
    ensure!(out.status.success(), "failover-agent crd failed: {out:?}");
    let yaml = String::from_utf8(out.stdout)?;
    ensure!(yaml.contains("name: failovergroups.failover.io"), "{yaml}");
    ensure!(yaml.contains("name: failovers.failover.io"), "{yaml}");
    ensure!(yaml.contains("kind: CustomResourceDefinition"), "{yaml}");
    Ok(())
}

#[tokio::test]
async fn a_started_agent_is_ready_beats_and_survives_a_malformed_message() -> Result<()> {
    let env = TestEnv::attach().await?;
    install_crds(&env.east, DEADLINE).await?;
    let ddb = env.aws.dynamodb();
    let table = env.aws.unique("fo-agent");
    ensure_table(&ddb, &table).await?;
    let prefix = format!("{}-", env.aws.unique("fo"));
    let inbox = Inbox::new(
        env.aws.sqs(),
        "east",
        InboxOptions {
            prefix: prefix.clone(),
            ..InboxOptions::default()
        },
    );
    let queues = inbox.ensure_queues("east").await?;

    let port = free_port()?;
    let (log_path, log) = log_file("started")?;
    let mut child: Child = agent(&env)
        .args([
            "--cluster",
            "east",
            "--table",
            &table,
            "--queue-prefix",
            &prefix,
        ])
        .arg("--kubeconfig")
        .arg(&env.east.kubeconfig)
        .args(["--admin-addr", &format!("127.0.0.1:{port}")])
        .args(["--heartbeat-interval", "2s", "--reread-interval", "2s"])
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()?;

    let res = async {
        eventually("/live answering 200", || async {
            Ok(get(port, "/live").await?.0.eq(&200).then_some(()))
        })
        .await?;
        eventually("/ready answering 200", || async {
            Ok(get(port, "/ready").await?.0.eq(&200).then_some(()))
        })
        .await?;

        let store = Store::new(&ddb, &table);
        let hb = eventually("a heartbeat for east", || async {
            Ok(store.get_heartbeat("east").await?)
        })
        .await?;
        ensure!(!hb.heartbeat.agent_version.is_empty(), "{hb:?}");

        let (_, metrics) = get(port, "/metrics").await?;
        // The step duration histogram has no series before a workflow step ran (its labels
        // are the stage and task); the counters start at zero for their known labels.
        for name in [
            "failover_operations_total{result=\"succeeded\"} 0",
            "failover_operations_total{result=\"panicked\"} 0",
            "failover_sqs_messages_total{kind=\"malformed\",outcome=\"rejected\"} 0",
            "failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"ok\"}",
            "failover_heartbeat_writes_total{outcome=\"ok\"}",
        ] {
            ensure!(
                metrics.contains(name),
                "{name} missing from /metrics:\n{metrics}"
            );
        }

        env.aws
            .sqs()
            .send_message()
            .queue_url(&queues.inbox_url)
            .message_body("this is not an envelope {")
            .send()
            .await?;
        let metrics =
            eventually("the malformed message counted", || async {
                let (_, m) = get(port, "/metrics").await?;
                Ok(m.contains(
                    "failover_sqs_messages_total{kind=\"malformed\",outcome=\"rejected\"} 1",
                )
                .then_some(m))
            })
            .await?;
        ensure!(
            metrics.contains("failover_aws_calls_total{"),
            "no AWS calls counted:\n{metrics}"
        );
        ensure!(child.try_wait()?.is_none(), "the agent exited");

        // The runner picks up an operation that involves east from the group states, records
        // how its run ended, and runs it again on a later tick (here it is interrupted: the
        // group has no FailoverGroup in east, which may still be created).
        let group = GroupRef::new(format!("nowhere-{}", free_port()?), "shop")?;
        store.register_group(&group, "east").await?;
        let started = store
            .start_operation(StartRequest {
                group: group.clone(),
                source: "east".into(),
                target: "west".into(),
                mode: Mode::Consistency,
                force: false,
                source_is_down: false,
                reason: "agent binary test".into(),
                requested_by: "agent-binary-test".into(),
                lease_ttl: Duration::from_secs(120),
                op_id: None,
            })
            .await?;
        ensure!(matches!(started, StartOutcome::Started(_)), "{started:?}");
        eventually("the interrupted run retried on a later tick", || async {
            let (_, m) = get(port, "/metrics").await?;
            let failed = m
                .lines()
                .find_map(|l| l.strip_prefix("failover_operations_total{result=\"interrupted\"} "))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
            Ok((failed >= 2).then_some(()))
        })
        .await?;
        ensure!(child.try_wait()?.is_none(), "the agent exited");
        let (live, _) = get(port, "/live").await?;
        ensure!(
            live == 200,
            "/live answered {live} after the malformed message"
        );
        Ok(())
    }
    .await;

    child.kill().await?;
    if res.is_err() {
        eprintln!(
            "agent log ({}):\n{}",
            log_path.display(),
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
    }
    let _ = std::fs::remove_file(&log_path);
    res
}
