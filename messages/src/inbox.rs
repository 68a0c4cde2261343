//! The SQS layer: one inbox queue per cluster, each with a dead-letter queue.
//!
//! Queue names are `<prefix><cluster>` and `<prefix><cluster>-dlq` (default prefix
//! `failover-`). [`Inbox::ensure_queues`] creates both idempotently, points the inbox's
//! redrive policy at the dead-letter queue (`maxReceiveCount`, default 3) and reads the
//! attributes back to verify them. [`Inbox::send`] posts an [`Envelope`] to any cluster's
//! inbox; [`Inbox::receive`] long-polls this cluster's inbox; [`Inbox::delete`] removes a
//! handled message.
//!
//! Messages are only wake-up hints (see [`crate::envelope`]), so the rules are simple:
//!
//! * A message that decodes is handed to the caller, who re-reads DynamoDB, acts, and then
//!   deletes it. Duplicates and reordering are harmless by construction.
//! * A message that does not decode (malformed, unknown kind, future version, oversize) is
//!   returned as `Err`, logged with `tracing::warn!` (message id, receive count, decode
//!   error), counted ([`Inbox::rejected_count`]) and **not deleted**: after
//!   `maxReceiveCount` receives SQS moves it to the dead-letter queue, where an operator can
//!   inspect it. Callers must not delete such messages either.
//!
//! Every error names the SQS operation that failed and the queue; a missing queue is its own
//! variant, [`InboxError::QueueDoesNotExist`].

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use jiff::Timestamp;

use crate::envelope::{DecodeError, Envelope, EnvelopeKind};
use crate::records::Operation;
use crate::store::{CallCounter, CallOutcome};

mod error;

pub use error::InboxError;

/// Default queue name prefix.
pub const DEFAULT_QUEUE_PREFIX: &str = "failover-";
/// Suffix of dead-letter queue names.
pub const DEAD_LETTER_SUFFIX: &str = "-dlq";
/// Default number of receives before SQS moves a message to the dead-letter queue.
pub const DEFAULT_MAX_RECEIVE_COUNT: u32 = 3;
/// Longest long poll SQS allows.
pub const MAX_WAIT_SECONDS: u32 = 20;
/// Most messages one receive may return.
pub const MAX_MESSAGES_PER_RECEIVE: u32 = 10;
/// How long the messages of one receive stay hidden (the queue's own visibility timeout
/// when that is shorter). Wake-ups are deleted as soon as they are handled, so this only
/// matters when a receive's answer never reached a live reader: an agent killed during a
/// long poll leaves the poll open in SQS, that poll still takes the next wake-ups, and they
/// come back to the restarted agent after this long instead of the queue's 30 s.
pub const RECEIVE_VISIBILITY: Duration = Duration::from_secs(5);
/// How long [`Inbox::notify_operation`] waits for each notification: a hint that cannot
/// reach a lost region is reported, never waited for.
pub const NOTIFY_BOUND: Duration = Duration::from_secs(3);

/// How queues are named and set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxOptions {
    /// Queue name prefix (default `failover-`).
    pub prefix: String,
    /// Receives after which SQS moves a message to the dead-letter queue (default 3, 1–1000).
    pub max_receive_count: u32,
    /// The queue's visibility timeout: how long a received message stays hidden before SQS
    /// delivers it again (default 30 s; whole seconds, at most 12 h). The inbox's own
    /// receives hide messages for at most [`RECEIVE_VISIBILITY`]. Tests use 1 s so a poison
    /// message reaches the dead-letter queue quickly.
    pub visibility_timeout: Duration,
    /// How long the inbox keeps a message (default 4 days, the SQS default).
    pub retention: Duration,
    /// How long the dead-letter queue keeps a message (default 14 days, the SQS maximum).
    /// Keep it longer than `retention`: a moved message keeps its original enqueue time.
    pub dead_letter_retention: Duration,
}

impl Default for InboxOptions {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_QUEUE_PREFIX.to_owned(),
            max_receive_count: DEFAULT_MAX_RECEIVE_COUNT,
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(4 * 24 * 3600),
            dead_letter_retention: Duration::from_secs(14 * 24 * 3600),
        }
    }
}

impl InboxOptions {
    /// `<prefix><cluster>`.
    pub fn inbox_queue_name(&self, cluster: &str) -> String {
        format!("{}{cluster}", self.prefix)
    }

    /// `<prefix><cluster>-dlq`.
    pub fn dead_letter_queue_name(&self, cluster: &str) -> String {
        format!("{}{cluster}{DEAD_LETTER_SUFFIX}", self.prefix)
    }
}

/// The two queues of one cluster, as set up by [`Inbox::ensure_queues`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuePair {
    /// Name of the inbox queue.
    pub inbox_name: String,
    /// URL of the inbox queue.
    pub inbox_url: String,
    /// Name of the dead-letter queue.
    pub dead_letter_name: String,
    /// URL of the dead-letter queue.
    pub dead_letter_url: String,
    /// ARN of the dead-letter queue (the redrive target).
    pub dead_letter_arn: String,
}

/// One received message.
#[derive(Debug)]
pub struct Received {
    /// SQS message id.
    pub message_id: String,
    /// The decoded envelope, or why the body is not one. `Err` messages must not be deleted:
    /// they reach the dead-letter queue through the redrive policy.
    pub envelope: Result<Envelope, DecodeError>,
    /// Handle for [`Inbox::delete`].
    pub receipt_handle: String,
    /// How many times SQS has delivered this message (`ApproximateReceiveCount`, 1 on the
    /// first delivery; 0 if SQS did not report it).
    pub receive_count: u32,
}

/// `true` when an SDK error says the queue does not exist.
macro_rules! queue_missing {
    ($err:expr) => {
        $err.as_service_error()
            .is_some_and(|e| e.is_queue_does_not_exist())
    };
}

mod queues;

use queues::check_queue_name;
#[cfg(test)]
use queues::seconds_attr;

/// This cluster's SQS inbox, and the sender for every cluster's inbox. Cheap to clone; the
/// clones share the queue URL cache and the rejected-message counter.
#[derive(Clone, Debug)]
pub struct Inbox {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: aws_sdk_sqs::Client,
    cluster: String,
    options: InboxOptions,
    urls: Mutex<HashMap<String, String>>,
    rejected: AtomicU64,
    routes: Option<Routes>,
    calls: Arc<CallCounter>,
}

/// How long a route looked up in the table (or found missing) is used before it is read
/// again.
const ROUTE_TTL: Duration = Duration::from_secs(60);

/// The other clusters' inbox routes ([`crate::records::InboxRoute`]), read from the table
/// on first use and kept for [`ROUTE_TTL`]: where to send, through a client for the queue's
/// region (and endpoint).
struct Routes {
    store: crate::store::Store,
    base: aws_sdk_sqs::Config,
    known: Mutex<HashMap<String, (std::time::Instant, Option<Destination>)>>,
}

/// A queue URL and the client to send to it with.
type Destination = (String, aws_sdk_sqs::Client);

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Inbox {
    /// The inbox of `cluster` (the cluster this process runs for). A process that only sends
    /// (the coordinator) may pass any name and never call [`Inbox::receive`].
    pub fn new(
        client: aws_sdk_sqs::Client,
        cluster: impl Into<String>,
        options: InboxOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                cluster: cluster.into(),
                options,
                urls: Mutex::new(HashMap::new()),
                rejected: AtomicU64::new(0),
                routes: None,
                calls: CallCounter::new(),
            }),
        }
    }

    /// As [`Inbox::new`], sending to each cluster by the inbox route `failoverctl setup`
    /// recorded for it in the table behind `store` (its queue URL, through a client built
    /// from `base` for the route's region and endpoint); to a cluster without one, by queue
    /// name through `client`, as [`Inbox::new`] does.
    pub fn routed(
        client: aws_sdk_sqs::Client,
        cluster: impl Into<String>,
        options: InboxOptions,
        store: crate::store::Store,
    ) -> Self {
        let base = client.config().clone();
        Self {
            inner: Arc::new(Inner {
                client,
                cluster: cluster.into(),
                options,
                urls: Mutex::new(HashMap::new()),
                rejected: AtomicU64::new(0),
                routes: Some(Routes {
                    store,
                    base,
                    known: Mutex::new(HashMap::new()),
                }),
                calls: CallCounter::new(),
            }),
        }
    }

    /// SQS calls made through this inbox (and its clones), by API (`SendMessage`,
    /// `ReceiveMessage`, `DeleteMessage`, `GetQueueUrl`) and outcome (`ok`, `error`); the
    /// operation label is always `inbox`.
    pub fn calls(&self) -> &Arc<CallCounter> {
        &self.inner.calls
    }

    fn count<T, E>(&self, api: &'static str, result: &Result<T, E>) {
        let outcome = if result.is_ok() {
            CallOutcome::Ok
        } else {
            CallOutcome::Error
        };
        self.inner.calls.record("inbox", api, outcome);
    }

    /// Where to send to `cluster`: its recorded route, else its queue (`queue`) by name
    /// through this inbox's client.
    async fn destination(
        &self,
        cluster: &str,
        queue: &str,
    ) -> Result<(String, aws_sdk_sqs::Client), InboxError> {
        if let Some(routes) = &self.inner.routes {
            let cached = routes
                .known
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(cluster)
                .filter(|(at, _)| at.elapsed() < ROUTE_TTL)
                .map(|(_, hit)| hit.clone());
            let found = match cached {
                Some(hit) => hit,
                None => match routes.store.get_inbox_route(cluster).await {
                    Ok(route) => {
                        let hit = route.map(|r| {
                            let mut b = routes.base.to_builder();
                            if let Some(region) = r.region {
                                b = b.region(aws_sdk_sqs::config::Region::new(region));
                            }
                            if let Some(endpoint) = r.endpoint {
                                b = b.endpoint_url(endpoint);
                            }
                            (r.queue_url, aws_sdk_sqs::Client::from_conf(b.build()))
                        });
                        routes
                            .known
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(cluster.to_owned(), (std::time::Instant::now(), hit.clone()));
                        hit
                    }
                    Err(e) => {
                        tracing::debug!(cluster, error = %error_chain(&e), "the inbox route could not be read; sending by queue name");
                        None
                    }
                },
            };
            if let Some(hit) = found {
                return Ok(hit);
            }
        }
        Ok((self.queue_url(queue).await?, self.inner.client.clone()))
    }

    /// The cluster whose inbox this reads.
    pub fn cluster(&self) -> &str {
        &self.inner.cluster
    }

    /// The options.
    pub fn options(&self) -> &InboxOptions {
        &self.inner.options
    }

    /// Name of this cluster's inbox queue.
    pub fn queue_name(&self) -> String {
        self.inner.options.inbox_queue_name(&self.inner.cluster)
    }

    /// How many received messages failed to decode (each receive of a poison message
    /// counts, so one message counts up to `maxReceiveCount` times).
    pub fn rejected_count(&self) -> u64 {
        self.inner.rejected.load(Ordering::Relaxed)
    }

    /// Sends a `kind` wake-up about `op` (sent by this inbox's cluster at `sent_at`) to the
    /// inboxes of its source and target, both at once, each given at most [`NOTIFY_BOUND`].
    /// Returns each cluster's answer, source first; a failed send is only a delay
    /// (receivers re-read the table on a timer).
    pub async fn notify_operation(
        &self,
        op: &Operation,
        kind: EnvelopeKind,
        sent_at: Timestamp,
    ) -> Vec<(String, Result<String, InboxError>)> {
        let envelope = Envelope::for_operation(
            kind,
            &op.id,
            &op.group,
            op.epoch,
            &self.inner.cluster,
            sent_at,
        );
        let bounded = |cluster: &str| {
            let envelope = &envelope;
            let cluster = cluster.to_owned();
            async move {
                let sent =
                    match tokio::time::timeout(NOTIFY_BOUND, self.send(&cluster, envelope)).await {
                        Ok(sent) => sent,
                        Err(_) => Err(InboxError::SendTimedOut {
                            queue: self.inner.options.inbox_queue_name(&cluster),
                            kind: envelope.kind,
                            after: NOTIFY_BOUND,
                        }),
                    };
                (cluster, sent)
            }
        };
        // Both at once, each bounded: a cluster whose region is lost costs the others nothing.
        let (source, target) = tokio::join!(bounded(&op.source), bounded(&op.target));
        vec![source, target]
    }

    /// Sends `envelope` to `target_cluster`'s inbox; returns the SQS message id. The
    /// envelope is checked first, so the receiver never rejects what this sends.
    pub async fn send(
        &self,
        target_cluster: &str,
        envelope: &Envelope,
    ) -> Result<String, InboxError> {
        let queue = self.inner.options.inbox_queue_name(target_cluster);
        check_queue_name(&queue)?;
        envelope
            .validate()
            .map_err(|source| InboxError::InvalidEnvelope {
                queue: queue.clone(),
                source,
            })?;
        let (url, client) = self.destination(target_cluster, &queue).await?;
        let sent = client
            .send_message()
            .queue_url(url)
            .message_body(envelope.encode())
            .send()
            .await;
        self.count("SendMessage", &sent);
        let out = sent.map_err(|e| {
            if queue_missing!(e) {
                self.missing(&queue, e)
            } else {
                InboxError::SendMessage {
                    queue: queue.clone(),
                    kind: envelope.kind,
                    source: Box::new(e),
                }
            }
        })?;
        let message_id = out.message_id().unwrap_or_default().to_owned();
        tracing::debug!(
            queue = %queue,
            message_id = %message_id,
            kind = %envelope.kind,
            operation_id = %envelope.operation_id,
            group = %envelope.group,
            epoch = envelope.epoch,
            "sent envelope"
        );
        Ok(message_id)
    }

    /// Whole seconds the messages of one receive stay hidden: [`RECEIVE_VISIBILITY`], or
    /// the queue's visibility timeout when that is shorter.
    fn receive_visibility(&self) -> i32 {
        let hidden = RECEIVE_VISIBILITY.min(self.inner.options.visibility_timeout);
        i32::try_from(hidden.as_secs().max(1)).unwrap_or(5)
    }

    /// Long-polls this cluster's inbox for up to `wait_seconds` (at most 20) and returns up
    /// to `max` messages (1–10), hidden from other receives for [`RECEIVE_VISIBILITY`].
    /// Messages that fail to decode are logged, counted and returned as `Err` without being
    /// deleted.
    pub async fn receive(&self, wait_seconds: u32, max: u32) -> Result<Vec<Received>, InboxError> {
        let queue = self.queue_name();
        let url = self.queue_url(&queue).await?;
        let wait = wait_seconds.min(MAX_WAIT_SECONDS);
        let max = max.clamp(1, MAX_MESSAGES_PER_RECEIVE);
        let answer = self
            .inner
            .client
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(i32::try_from(wait).unwrap_or(20))
            .max_number_of_messages(i32::try_from(max).unwrap_or(10))
            .visibility_timeout(self.receive_visibility())
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        self.count("ReceiveMessage", &answer);
        let out = answer.map_err(|e| {
            if queue_missing!(e) {
                self.missing(&queue, e)
            } else {
                InboxError::ReceiveMessage {
                    queue: queue.clone(),
                    source: Box::new(e),
                }
            }
        })?;

        let mut received = Vec::with_capacity(out.messages().len());
        for message in out.messages() {
            let message_id = message.message_id().unwrap_or_default().to_owned();
            let Some(receipt_handle) = message.receipt_handle() else {
                tracing::warn!(queue = %queue, message_id = %message_id, "SQS returned a message without a receipt handle; skipping it");
                continue;
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let envelope = Envelope::decode(message.body().unwrap_or_default());
            if let Err(error) = &envelope {
                self.inner.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    queue = %queue,
                    message_id = %message_id,
                    receive_count,
                    max_receive_count = self.inner.options.max_receive_count,
                    error = %error_chain(error),
                    "rejected an SQS message that is not a valid envelope; leaving it for the dead-letter queue"
                );
            }
            received.push(Received {
                message_id,
                envelope,
                receipt_handle: receipt_handle.to_owned(),
                receive_count,
            });
        }
        Ok(received)
    }

    /// Deletes a handled message from this cluster's inbox.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), InboxError> {
        let queue = self.queue_name();
        let url = self.queue_url(&queue).await?;
        let deleted = self
            .inner
            .client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .send()
            .await;
        self.count("DeleteMessage", &deleted);
        deleted.map_err(|e| {
            if queue_missing!(e) {
                self.missing(&queue, e)
            } else {
                InboxError::DeleteMessage {
                    queue: queue.clone(),
                    source: Box::new(e),
                }
            }
        })?;
        Ok(())
    }

    /// The URL of `queue`, from the cache or GetQueueUrl.
    async fn queue_url(&self, queue: &str) -> Result<String, InboxError> {
        if let Some(url) = self.urls().get(queue) {
            return Ok(url.clone());
        }
        let out = self
            .inner
            .client
            .get_queue_url()
            .queue_name(queue)
            .send()
            .await;
        self.count("GetQueueUrl", &out);
        let out = out.map_err(|e| {
            if queue_missing!(e) {
                self.missing(queue, e)
            } else {
                InboxError::GetQueueUrl {
                    queue: queue.to_owned(),
                    source: Box::new(e),
                }
            }
        })?;
        let url = out.queue_url().ok_or_else(|| InboxError::VerifyQueue {
            queue: queue.to_owned(),
            reason: "GetQueueUrl returned no URL".into(),
        })?;
        self.urls().insert(queue.to_owned(), url.to_owned());
        Ok(url.to_owned())
    }

    /// Forgets the cached URL of a queue SQS says is gone, and builds the error.
    fn missing<E>(&self, queue: &str, source: SdkError<E>) -> InboxError
    where
        E: StdError + Send + Sync + 'static,
    {
        self.urls().remove(queue);
        InboxError::QueueDoesNotExist {
            queue: queue.to_owned(),
            source: Box::new(source),
        }
    }

    fn urls(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.inner
            .urls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// An error and its sources, joined by `: `.
fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let _ = write!(text, ": {e}");
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests;
