//! DynamoDB and SQS for tests: the moto server started by `tests/env/moto-up.sh`.
//!
//! [`moto()`] starts the server on first use (or reuses the one `make env-up` started)
//! and returns an SDK configuration pointed at it. Every test takes its own table and
//! queue names from [`AwsEnv::unique`], so tests run in parallel against one server.

use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
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
