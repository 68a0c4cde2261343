//! Setting the queues up: [`Inbox::ensure_queues`] creates a cluster's inbox and
//! dead-letter queue idempotently, sets the redrive policy, visibility timeout and
//! retention, and reads the attributes back to verify them ([`QueueSetup`] checks the names
//! and the values first, without I/O).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName;

use super::{Inbox, InboxError, InboxOptions, QueuePair};

impl Inbox {
    /// Creates `cluster`'s inbox and dead-letter queue if missing, sets their attributes
    /// (redrive policy, visibility timeout, retention) and reads them back to verify.
    /// Idempotent: running it again, or concurrently, converges on the same setup.
    pub async fn ensure_queues(&self, cluster: &str) -> Result<QueuePair, InboxError> {
        let setup = QueueSetup::new(&self.inner.options, cluster)?;

        // Dead-letter queue first: the inbox's redrive policy needs its ARN.
        let (dead_letter_url, dead_letter_arn) = self.ensure_dead_letter_queue(&setup).await?;

        let inbox_url = self.get_or_create(&setup.inbox_name).await?;
        self.set_attributes(
            &setup.inbox_name,
            &inbox_url,
            setup.inbox_attributes(&dead_letter_arn),
        )
        .await?;

        // Verify what SQS now holds.
        let attrs = self
            .get_attributes(
                &setup.inbox_name,
                &inbox_url,
                vec![
                    QueueAttributeName::RedrivePolicy,
                    QueueAttributeName::VisibilityTimeout,
                ],
            )
            .await?;
        setup.verify_inbox(&dead_letter_arn, &attrs)?;

        tracing::debug!(
            inbox = %setup.inbox_name,
            dead_letter = %setup.dead_letter_name,
            max_receive_count = setup.max_receive_count,
            visibility_timeout_seconds = setup.visibility,
            "SQS queues ready"
        );
        Ok(QueuePair {
            inbox_name: setup.inbox_name,
            inbox_url,
            dead_letter_name: setup.dead_letter_name,
            dead_letter_url,
            dead_letter_arn,
        })
    }

    /// Creates the dead-letter queue of `setup` if missing, sets its retention and returns
    /// its URL and ARN.
    async fn ensure_dead_letter_queue(
        &self,
        setup: &QueueSetup,
    ) -> Result<(String, String), InboxError> {
        let name = &setup.dead_letter_name;
        let url = self.get_or_create(name).await?;
        self.set_attributes(
            name,
            &url,
            vec![(
                QueueAttributeName::MessageRetentionPeriod,
                setup.dead_letter_retention.to_string(),
            )],
        )
        .await?;
        let attrs = self
            .get_attributes(name, &url, vec![QueueAttributeName::QueueArn])
            .await?;
        let arn = attrs
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .ok_or_else(|| InboxError::VerifyQueue {
                queue: name.clone(),
                reason: "GetQueueAttributes returned no QueueArn".into(),
            })?;
        Ok((url, arn))
    }

    /// GetQueueUrl, or CreateQueue (without attributes) when the queue is missing.
    async fn get_or_create(&self, queue: &str) -> Result<String, InboxError> {
        match self.queue_url(queue).await {
            Err(InboxError::QueueDoesNotExist { .. }) => {}
            other => return other,
        }
        let created = self
            .inner
            .client
            .create_queue()
            .queue_name(queue)
            .send()
            .await;
        match created {
            Ok(out) => {
                let url = out.queue_url().ok_or_else(|| InboxError::VerifyQueue {
                    queue: queue.to_owned(),
                    reason: "CreateQueue returned no URL".into(),
                })?;
                self.urls().insert(queue.to_owned(), url.to_owned());
                tracing::info!(queue = %queue, "created SQS queue");
                Ok(url.to_owned())
            }
            // Someone else created it meanwhile (with attributes already set).
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_queue_name_exists()) =>
            {
                self.queue_url(queue).await
            }
            Err(e) => Err(InboxError::CreateQueue {
                queue: queue.to_owned(),
                source: Box::new(e),
            }),
        }
    }

    async fn set_attributes(
        &self,
        queue: &str,
        url: &str,
        attributes: Vec<(QueueAttributeName, String)>,
    ) -> Result<(), InboxError> {
        let mut request = self.inner.client.set_queue_attributes().queue_url(url);
        for (name, value) in attributes {
            request = request.attributes(name, value);
        }
        request.send().await.map_err(|e| {
            if queue_missing!(e) {
                self.missing(queue, e)
            } else {
                InboxError::SetQueueAttributes {
                    queue: queue.to_owned(),
                    source: Box::new(e),
                }
            }
        })?;
        Ok(())
    }

    async fn get_attributes(
        &self,
        queue: &str,
        url: &str,
        names: Vec<QueueAttributeName>,
    ) -> Result<HashMap<QueueAttributeName, String>, InboxError> {
        let out = self
            .inner
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names))
            .send()
            .await
            .map_err(|e| {
                if queue_missing!(e) {
                    self.missing(queue, e)
                } else {
                    InboxError::GetQueueAttributes {
                        queue: queue.to_owned(),
                        source: Box::new(e),
                    }
                }
            })?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

/// What [`Inbox::ensure_queues`] sets up for one cluster, checked before any SQS call.
struct QueueSetup {
    inbox_name: String,
    dead_letter_name: String,
    max_receive_count: u32,
    /// Visibility timeout of the inbox, in seconds.
    visibility: u64,
    /// Retention of the inbox, in seconds.
    retention: u64,
    /// Retention of the dead-letter queue, in seconds.
    dead_letter_retention: u64,
}

impl QueueSetup {
    /// The queue names and attribute values for `cluster`; an error names the first bad
    /// name or option.
    fn new(opts: &InboxOptions, cluster: &str) -> Result<Self, InboxError> {
        let inbox_name = opts.inbox_queue_name(cluster);
        let dead_letter_name = opts.dead_letter_queue_name(cluster);
        check_queue_name(&inbox_name)?;
        check_queue_name(&dead_letter_name)?;
        let max_receive_count = opts.max_receive_count;
        if !(1..=1000).contains(&max_receive_count) {
            return Err(InboxError::InvalidOptions {
                queue: inbox_name,
                reason: format!("maxReceiveCount {max_receive_count} is outside 1..=1000"),
            });
        }
        let visibility = seconds_attr(
            &inbox_name,
            "visibility timeout",
            opts.visibility_timeout,
            0,
            12 * 3600,
        )?;
        let retention = seconds_attr(&inbox_name, "retention", opts.retention, 60, 14 * 24 * 3600)?;
        let dead_letter_retention = seconds_attr(
            &dead_letter_name,
            "retention",
            opts.dead_letter_retention,
            60,
            14 * 24 * 3600,
        )?;
        Ok(Self {
            inbox_name,
            dead_letter_name,
            max_receive_count,
            visibility,
            retention,
            dead_letter_retention,
        })
    }

    /// The inbox's attributes: the redrive policy to `dead_letter_arn`, the visibility
    /// timeout and the retention.
    fn inbox_attributes(&self, dead_letter_arn: &str) -> Vec<(QueueAttributeName, String)> {
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_letter_arn,
            "maxReceiveCount": self.max_receive_count,
        })
        .to_string();
        vec![
            (QueueAttributeName::RedrivePolicy, redrive),
            (
                QueueAttributeName::VisibilityTimeout,
                self.visibility.to_string(),
            ),
            (
                QueueAttributeName::MessageRetentionPeriod,
                self.retention.to_string(),
            ),
        ]
    }

    /// Checks the inbox's attributes as read back: the redrive policy's target and count,
    /// and the visibility timeout.
    fn verify_inbox(
        &self,
        dead_letter_arn: &str,
        attrs: &HashMap<QueueAttributeName, String>,
    ) -> Result<(), InboxError> {
        let max_receive_count = self.max_receive_count;
        let visibility = self.visibility;
        let verify = |reason: String| InboxError::VerifyQueue {
            queue: self.inbox_name.clone(),
            reason,
        };
        let policy = attrs
            .get(&QueueAttributeName::RedrivePolicy)
            .ok_or_else(|| verify("no RedrivePolicy".into()))?;
        let policy: serde_json::Value = serde_json::from_str(policy)
            .map_err(|e| verify(format!("RedrivePolicy {policy:?} is not JSON: {e}")))?;
        let target = policy.get("deadLetterTargetArn").and_then(|v| v.as_str());
        if target != Some(dead_letter_arn) {
            return Err(verify(format!(
                "RedrivePolicy targets {target:?}, expected {dead_letter_arn:?}"
            )));
        }
        let count = policy.get("maxReceiveCount").and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        if count != Some(u64::from(max_receive_count)) {
            return Err(verify(format!(
                "RedrivePolicy maxReceiveCount is {count:?}, expected {max_receive_count}"
            )));
        }
        let found_visibility = attrs.get(&QueueAttributeName::VisibilityTimeout);
        if found_visibility.map(String::as_str) != Some(visibility.to_string().as_str()) {
            return Err(verify(format!(
                "VisibilityTimeout is {found_visibility:?}, expected {visibility}"
            )));
        }
        Ok(())
    }
}

/// SQS queue names: 1–80 characters of `[A-Za-z0-9_-]`.
pub(super) fn check_queue_name(queue: &str) -> Result<(), InboxError> {
    let reason = if queue.is_empty() {
        Some("empty".to_owned())
    } else if queue.len() > 80 {
        Some(format!("{} characters, at most 80 allowed", queue.len()))
    } else {
        queue
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            .map(|c| format!("contains {c:?}; allowed are letters, digits, - and _"))
    };
    match reason {
        None => Ok(()),
        Some(reason) => Err(InboxError::InvalidQueueName {
            queue: queue.to_owned(),
            reason,
        }),
    }
}

/// A duration as whole seconds within `min..=max`.
pub(super) fn seconds_attr(
    queue: &str,
    what: &str,
    value: Duration,
    min: u64,
    max: u64,
) -> Result<u64, InboxError> {
    let secs = value.as_secs();
    if value.subsec_nanos() != 0 || !(min..=max).contains(&secs) {
        return Err(InboxError::InvalidOptions {
            queue: queue.to_owned(),
            reason: format!("{what} {value:?} must be whole seconds in {min}..={max}"),
        });
    }
    Ok(secs)
}
