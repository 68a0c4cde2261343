//! DynamoDB and SQS for tests: the moto server started by `tests/env/moto-up.sh`.
//!
//! [`moto()`] starts the server on first use (or reuses the one `make env-up` started)
//! and returns an SDK configuration pointed at it. Every test takes its own table and
//! queue names from [`AwsEnv::unique`], so tests run in parallel against one server.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail, ensure};
use aws_config::{BehaviorVersion, Region, SdkConfig};

use crate::env::{read_env_file, repo_root, run_script, state_dir};

/// A moto server and an SDK configuration for it.
#[derive(Clone, Debug)]
pub struct AwsEnv {
    /// `http://127.0.0.1:<port>`.
    pub endpoint_url: String,
    /// The region every client in a test must share (moto keeps state per region).
    pub region: String,
    /// SDK configuration with the endpoint, region and static test credentials.
    pub sdk: SdkConfig,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl AwsEnv {
    /// A name unique to this process and call, for a test's table or queue prefix.
    pub fn unique(&self, prefix: &str) -> String {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
    }

    /// A DynamoDB client for this server.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        aws_sdk_dynamodb::Client::new(&self.sdk)
    }

    /// An SQS client for this server.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk)
    }
}

/// Starts or reuses the moto server and returns its configuration.
pub async fn moto() -> Result<AwsEnv> {
    let script = repo_root().join("tests/env/moto-up.sh");
    tokio::task::spawn_blocking(move || run_script(&script, &[]))
        .await
        .context("joining moto-up")??;
    let vars = read_env_file(&state_dir().join("moto.env"))?;
    let endpoint_url = vars
        .get("AWS_ENDPOINT_URL")
        .cloned()
        .context("moto.env has no AWS_ENDPOINT_URL")?;
    let region = vars
        .get("AWS_REGION")
        .cloned()
        .unwrap_or_else(|| "us-east-1".into());
    if !endpoint_url.starts_with("http://127.0.0.1:") {
        bail!("moto endpoint {endpoint_url} is not on loopback");
    }
    Ok(AwsEnv {
        sdk: sdk_config(&endpoint_url, &region).await,
        endpoint_url,
        region,
    })
}

/// SDK configuration for an endpoint with the static test credentials.
pub async fn sdk_config(endpoint_url: &str, region: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_string()))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "failover-tests",
        ))
        .endpoint_url(endpoint_url)
        .load()
        .await
}

/// A moto server of one test's own (the environment's venv and wrapper, another port), for
/// scenarios that restart it: a restart loses every table and queue, which is how the loss
/// of the coordination store's data looks to the agents.
pub struct PrivateMoto {
    proc: crate::process::Proc,
    port: u16,
    log: std::path::PathBuf,
    /// Endpoint, region and SDK configuration of this server.
    pub aws: AwsEnv,
}

impl PrivateMoto {
    /// Starts one on a free port, logging to `dir/moto-private.log`.
    pub async fn start(dir: &std::path::Path) -> Result<PrivateMoto> {
        let port = crate::process::free_port()?;
        let log = dir.join("moto-private.log");
        let proc = spawn_moto(port, &log).await?;
        let endpoint_url = format!("http://127.0.0.1:{port}");
        let region = "us-east-1".to_owned();
        Ok(PrivateMoto {
            proc,
            port,
            log,
            aws: AwsEnv {
                sdk: sdk_config(&endpoint_url, &region).await,
                endpoint_url,
                region,
            },
        })
    }

    /// Kills the server (SIGKILL) and starts a fresh one on the same port: every table and
    /// queue is gone.
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.kill()?;
        self.proc = spawn_moto(self.port, &self.log).await?;
        Ok(())
    }
}

/// Starts `moto_linearizable.py` from the environment's venv on `port` and waits until it
/// answers.
async fn spawn_moto(port: u16, log: &std::path::Path) -> Result<crate::process::Proc> {
    let root = repo_root();
    let venv = std::process::Command::new("bash")
        .arg("-c")
        .arg(". tests/env/versions.sh && printf %s \"$VENV_DIR\"")
        .current_dir(&root)
        .output()
        .context("reading the moto venv's location")?;
    let python = std::path::PathBuf::from(String::from_utf8_lossy(&venv.stdout).into_owned())
        .join("bin/python");
    let mut cmd = std::process::Command::new(&python);
    cmd.arg(root.join("tests/env/moto_linearizable.py")).args([
        "-H",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ]);
    let proc = crate::process::Proc::spawn("moto-private", cmd, log.to_path_buf())?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok((200, _)) = crate::process::http_get(port, "/moto-api/").await {
            return Ok(proc);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "moto did not answer on port {port} within 30 s; log: {}",
            log.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
