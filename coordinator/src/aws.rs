//! Where `failoverctl` finds AWS: the SDK's default configuration chain (credentials from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, the shared profile, web identity, ECS or
//! IMDS; region from `AWS_REGION` or the profile), with `--region` and `--endpoint-url` on
//! top (they also read `AWS_REGION` and `AWS_ENDPOINT_URL`), and bounded
//! timeouts and retries so that an unreachable endpoint fails in seconds, not minutes.
//!
//! [`Context`] holds what every command needs: the DynamoDB and SQS clients, the table and
//! the queue naming.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use failover_messages::inbox::{Inbox, InboxOptions};

use crate::error::CommandError;

/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt of an AWS call may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one AWS call may take, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts per AWS call made through the SDK's retry (the store has its own policy).
pub const MAX_ATTEMPTS: u32 = 3;

/// Overrides of the default AWS configuration chain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AwsOptions {
    /// The region (else the default chain's).
    pub region: Option<String>,
    /// The endpoint for DynamoDB and SQS (e.g. a moto server).
    pub endpoint_url: Option<String>,
    /// DynamoDB's own endpoint (over `endpoint_url`), e.g. the table's region.
    pub dynamodb_endpoint: Option<String>,
    /// SQS's own endpoint (over `endpoint_url`).
    pub sqs_endpoint: Option<String>,
}

/// Loads the SDK configuration: the default chain, the overrides, bounded timeouts and
/// retries. Fails with [`CommandError::NoRegion`] when no region is configured anywhere.
pub async fn load_config(options: &AwsOptions) -> Result<SdkConfig, CommandError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(100))
                .with_max_backoff(Duration::from_secs(2)),
        );
    if let Some(region) = &options.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(url) = &options.endpoint_url {
        loader = loader.endpoint_url(url);
    }
    let config = loader.load().await;
    if config.region().is_none() {
        return Err(CommandError::NoRegion);
    }
    Ok(config)
}

/// What every command works with.
#[derive(Clone, Debug)]
pub struct Context {
    /// DynamoDB client.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The failover table.
    pub table: String,
    /// Queue naming (`<prefix><cluster>`, `-dlq`) and setup options.
    pub queues: InboxOptions,
}

impl Context {
    /// Clients for `config`.
    pub fn new(config: &SdkConfig, table: impl Into<String>, queues: InboxOptions) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            table: table.into(),
            queues,
        }
    }

    /// As [`Context::new`], each service at its own endpoint where `options` names one.
    pub fn with_endpoints(
        config: &SdkConfig,
        options: &AwsOptions,
        table: impl Into<String>,
        queues: InboxOptions,
    ) -> Self {
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(config);
        if let Some(url) = &options.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(url);
        }
        let mut sqs = aws_sdk_sqs::config::Builder::from(config);
        if let Some(url) = &options.sqs_endpoint {
            sqs = sqs.endpoint_url(url);
        }
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            table: table.into(),
            queues,
        }
    }

    /// The store for the table.
    pub fn store(&self) -> failover_messages::store::Store {
        failover_messages::store::Store::new(&self.dynamodb, self.table.clone())
    }

    /// A sender's inbox that reaches each cluster by the route `setup` recorded for it.
    pub fn inbox(&self, sender: &str) -> Inbox {
        Inbox::routed(self.sqs.clone(), sender, self.queues.clone(), self.store())
    }

    /// An SQS client for `region` and `endpoint` (each `None`: this command's).
    pub fn sqs_for(&self, region: Option<&str>, endpoint: Option<&str>) -> aws_sdk_sqs::Client {
        let mut b = self.sqs.config().to_builder();
        if let Some(region) = region {
            b = b.region(aws_sdk_sqs::config::Region::new(region.to_owned()));
        }
        if let Some(endpoint) = endpoint {
            b = b.endpoint_url(endpoint);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    }

    /// Whether `cluster` has an inbox: a route `setup` recorded in the table, else its queue
    /// `queue` by name.
    pub async fn inbox_known(&self, cluster: &str, queue: &str) -> Result<bool, CommandError> {
        match self.store().get_inbox_route(cluster).await {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => {}
            Err(e) => tracing::debug!(cluster, error = %e, "the inbox route could not be read"),
        }
        self.queue_exists(cluster, queue).await
    }

    /// Whether SQS queue `queue` of `cluster` exists.
    pub async fn queue_exists(&self, cluster: &str, queue: &str) -> Result<bool, CommandError> {
        Self::queue_exists_with(&self.sqs, cluster, queue).await
    }

    /// Whether SQS queue `queue` of `cluster` exists, asked through `sqs`.
    pub async fn queue_exists_with(
        sqs: &aws_sdk_sqs::Client,
        cluster: &str,
        queue: &str,
    ) -> Result<bool, CommandError> {
        match sqs.get_queue_url().queue_name(queue).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_does_not_exist()) =>
            {
                Ok(false)
            }
            Err(e) => Err(CommandError::LookUpQueue {
                cluster: cluster.to_owned(),
                queue: queue.to_owned(),
                source: Box::new(e),
            }),
        }
    }
}
