//! The client layer agents and the coordinator use to read and write the protocol's records.
//!
//! [`Store`] wraps an `aws_sdk_dynamodb::Client`, the table name, an injected [`Clock`] (so
//! tests can move time) and a shared [`CallCounter`]. Its methods map one-to-one onto the
//! protocol steps of `docs/protocol.md`:
//!
//! | who | method | protocol |
//! |---|---|---|
//! | coordinator | [`Store::register_group`], [`Store::set_suspended`] | group state created at epoch 0 |
//! | coordinator | [`Store::start_operation`] | step 1: the operation item, then the group state |
//! | agents | [`Store::renew_lease`] | leases |
//! | agents | [`Store::publish_stage`] (once per stage), [`Store::journal_note`] (a long wait) | step 3, the journal as DynamoDB keeps it |
//! | source | [`Store::record_original_replicas`] | rule 3 (replicas kept in the operation) |
//! | source | [`Store::mark_all_ready`], [`Store::mark_group_ready`] | step 4, all volumes in one write |
//! | target | [`Store::list_handoffs`], [`Store::claim_promotion`], [`Store::mark_promoted`], [`Store::mark_all_promoted`] | step 5 |
//! | target | [`Store::complete_operation`] | step 6 / rule 5: the group state, then the operation and its history |
//! | coordinator / source | [`Store::request_abort`] / [`Store::finish_abort`] | abort |
//! | agents | [`Store::fail_operation`] | a failure before the claim: the group state, then the operation |
//! | agents | [`Store::record_dual_active`], [`Store::set_phase`] | UPTIME window, phases |
//! | agents | [`Store::put_heartbeat`], [`Store::get_heartbeat`], [`Store::list_heartbeats`] | heartbeats |
//! | anyone | [`Store::get_group_state`], [`Store::get_operation`], [`Store::journal`], [`Store::list_groups`], [`Store::list_operations`], [`Store::history`] | reads |
//!
//! # Guarantees
//!
//! * Every read of a single item or of one partition is strongly consistent
//!   (`ConsistentRead`); only the `GSI1` listings ([`Store::list_groups`],
//!   [`Store::list_operations`]) are eventually consistent, as every index is.
//! * Every write an agent makes for operation (`e`, `id`) that carries authority (all but the
//!   journal's published stages and notes and the operation item's phase, original replica
//!   counts, dual-active marks and closing copy, which are informational) is one
//!   `UpdateItem` of the group state under `epoch = e AND opId = id` and its own conditions:
//!   the group state item carries the operation's handoff (READY, claim, PROMOTED, abort,
//!   the failure mark). No write is a transaction, so the same code runs on a global table in multi-Region
//!   strong consistency mode. A condition on the operation item's own `epoch` would prove
//!   nothing (that attribute never changes). A lost condition comes back as an [`Outcome`]
//!   (`StaleEpoch`, `AbortRequested`, …), classified from the item the refusal returned
//!   (`ReturnValuesOnConditionCheckFailure = ALL_OLD`) or from a consistent read; it is
//!   never an error and never retried.
//! * Only throttling, 5xx and transport failures are retried ([`retry`]), with capped
//!   exponential backoff and jitter; the SDK's own retries are switched off so that the
//!   policy and the [`CallCounter`] see every attempt.
//! * A write whose effect is unknown after a transport failure is resolved by reading back
//!   (the start, the abort and the failure mark read the group state; a close finds
//!   `lastOpId`), so a committed write is never reported as lost.

mod agent;
mod calls;
mod clock;
mod coordinator;
mod error;
mod group_handoff;
mod op_view;
mod outcome;
mod read;
mod replicas;
pub mod retry;
mod start;
mod start_view;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use jiff::Timestamp;

pub use self::agent::CarriedStages;
pub use self::calls::{CallCounter, CallOutcome, classify_outcome};
pub use self::clock::{Clock, ManualClock, SystemClock};
pub(crate) use self::error::failure_kind;
pub use self::error::{AwsError, Cause, StoreError};
pub use self::outcome::{
    DualActiveMark, HeartbeatStatus, OpRef, Outcome, RegisterOutcome, Stale, StartOutcome,
    StartRequest, SuspendOutcome,
};
use self::retry::{FailureKind, RetryPolicy};
pub use self::start_view::StartView;
use crate::failpoint;
use crate::keys;
use crate::records::{Item, attr, av_s, truncate_to_millis};

/// The most volumes one group's handoff can carry (the claim's condition names each).
pub use crate::protocol::spec::MAX_VOLUMES;

/// Client for the failover table. Cheap to clone; clones share the clock and the counter.
#[derive(Clone)]
pub struct Store {
    client: Client,
    table: Arc<str>,
    clock: Arc<dyn Clock>,
    calls: Arc<CallCounter>,
    retry: RetryPolicy,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("table", &self.table)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// Per-attempt timeout set on the client when its configuration has none, so a hung
/// connection becomes a retryable transport failure.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl Store {
    /// A store for `table` using the system clock, the default [`RetryPolicy`] and a fresh
    /// [`CallCounter`]. The client's own retries are switched off (the store retries).
    pub fn new(client: &Client, table: impl Into<String>) -> Self {
        let conf = client.config();
        let timeouts = conf
            .timeout_config()
            .cloned()
            .unwrap_or_else(|| aws_smithy_types::timeout::TimeoutConfig::builder().build());
        let timeouts = if timeouts.operation_attempt_timeout().is_none() {
            timeouts
                .to_builder()
                .operation_attempt_timeout(DEFAULT_ATTEMPT_TIMEOUT)
                .build()
        } else {
            timeouts
        };
        let builder = conf
            .to_builder()
            .retry_config(aws_smithy_types::retry::RetryConfig::disabled())
            .timeout_config(timeouts);
        #[cfg(feature = "failpoints")]
        let builder = crate::failpoint::http::wrap(conf.http_client(), builder);
        let conf = builder.build();
        Self {
            client: Client::from_conf(conf),
            table: Arc::from(table.into()),
            clock: Arc::new(SystemClock),
            calls: CallCounter::new(),
            retry: RetryPolicy::default(),
        }
    }

    /// Uses `clock` for every timestamp and expiry check.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `policy` for retries.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Counts calls in `counter` (to share one counter between several stores).
    pub fn with_call_counter(mut self, counter: Arc<CallCounter>) -> Self {
        self.calls = counter;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The call counter.
    pub fn calls(&self) -> &Arc<CallCounter> {
        &self.calls
    }

    /// The clock's time, truncated to the millisecond (the precision records keep).
    pub fn now(&self) -> Timestamp {
        truncate_to_millis(self.clock.now())
    }

    /// Runs one DynamoDB call with the retry policy, counting every attempt.
    async fn send<T, E, Fut>(
        &self,
        operation: &'static str,
        api: &'static str,
        classify: fn(&SdkError<E>) -> (FailureKind, CallOutcome),
        mut call: impl FnMut() -> Fut,
    ) -> Result<T, Failed<E>>
    where
        Fut: Future<Output = Result<T, SdkError<E>>>,
    {
        if failpoint::enabled()
            && let Some((point, arg)) = store_points(operation, api, "before")
        {
            return Err(Failed::injected(&point, api, &arg));
        }
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Counted when the answer arrives (as an `error` if this future is dropped first).
            let attempt = self.calls.attempt(operation, api);
            let started = std::time::Instant::now();
            match call().await {
                Ok(out) => {
                    attempt.finished(CallOutcome::Ok);
                    tracing::debug!(operation, api, elapsed = ?started.elapsed(), "DynamoDB call");
                    if failpoint::enabled()
                        && let Some((point, arg)) = store_points(operation, api, "after")
                    {
                        return Err(Failed::injected(&point, api, &arg));
                    }
                    return Ok(out);
                }
                Err(err) => {
                    let (kind, outcome) = classify(&err);
                    attempt.finished(outcome);
                    match self.retry.delay(attempts, kind, rand::random::<f64>()) {
                        Some(wait) => {
                            tracing::debug!(
                                table = %self.table, operation, api, attempts, ?kind,
                                "DynamoDB call failed, retrying in {wait:?}"
                            );
                            tokio::time::sleep(wait).await;
                        }
                        None => {
                            return Err(Failed {
                                api,
                                attempts,
                                kind,
                                err,
                            });
                        }
                    }
                }
            }
        }
    }

    /// Describes where the group stands after a write conditioned on `op.epoch` lost, from
    /// the returned old item or, when there is none, a consistent read.
    async fn stale(
        &self,
        operation: &'static str,
        op: &OpRef,
        old: Option<&Item>,
    ) -> Result<Stale, Cause> {
        let item = self
            .item_or_read(operation, old, keys::group_state_key(&op.group))
            .await?;
        let item = item.as_deref();
        Ok(Stale {
            expected_epoch: op.epoch,
            current_epoch: item.and_then(|i| match i.get(attr::EPOCH) {
                Some(AttributeValue::N(n)) => n.parse().ok(),
                _ => None,
            }),
            current_op: item.and_then(|i| match i.get(attr::OP_ID) {
                Some(AttributeValue::S(s)) => Some(s.clone()),
                _ => None,
            }),
        })
    }

    /// A consistent `GetItem`.
    async fn get_item(
        &self,
        operation: &'static str,
        key: (String, String),
    ) -> Result<Option<Item>, Cause> {
        let req = self
            .client
            .get_item()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(key)))
            .consistent_read(true);
        let out = self
            .send(operation, "GetItem", calls::classify_error, || {
                req.clone().send()
            })
            .await
            .map_err(Failed::into_cause)?;
        Ok(out.item)
    }

    /// `old` (the item a failed condition returned) or, when there is none, a consistent
    /// read of `key`.
    async fn item_or_read<'a>(
        &self,
        operation: &'static str,
        old: Option<&'a Item>,
        key: (String, String),
    ) -> Result<Option<Cow<'a, Item>>, Cause> {
        match old {
            Some(item) => Ok(Some(Cow::Borrowed(item))),
            None => Ok(self.get_item(operation, key).await?.map(Cow::Owned)),
        }
    }
}

/// A call that failed for good, before it is turned into an [`AwsError`].
struct Failed<E> {
    api: &'static str,
    attempts: u32,
    kind: FailureKind,
    err: SdkError<E>,
}

/// The store failpoints `when` (`before`/`after`) one call of `operation` to `api`:
/// `store::<operation>::<when>` and `store::<operation>::<api>::<when>` (one store operation
/// may read before it writes); the first that fires, with its argument.
fn store_points(operation: &str, api: &str, when: &str) -> Option<(String, String)> {
    [
        format!("store::{operation}::{when}"),
        format!("store::{operation}::{api}::{when}"),
    ]
    .into_iter()
    .find_map(|point| failpoint::hit(&point).map(|arg| (point, arg)))
}

impl<E> Failed<E> {
    /// The error of the store failpoint `point` that fired with `arg`: not retried, as a
    /// call whose request could not be sent (before) or whose answer was lost after it took
    /// effect (after).
    fn injected(point: &str, api: &'static str, arg: &str) -> Self {
        Failed {
            api,
            attempts: 1,
            kind: FailureKind::Other,
            err: SdkError::construction_failure(failpoint::injected_message(point, arg)),
        }
    }
}

impl<E> Failed<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn into_aws(self) -> AwsError {
        AwsError::new(self.api, self.attempts, self.kind, self.err)
    }

    fn into_cause(self) -> Cause {
        Cause::Aws(self.into_aws())
    }
}

/// `{PK, SK}` as an attribute map.
fn key_map((pk, sk): (String, String)) -> Item {
    HashMap::from([
        (keys::PK.to_owned(), av_s(pk)),
        (keys::SK.to_owned(), av_s(sk)),
    ])
}

/// `{"#a": "a", …}` for the attribute names used in an expression.
fn names(attributes: &[&str]) -> HashMap<String, String> {
    attributes
        .iter()
        .map(|a| (format!("#{a}"), (*a).to_owned()))
        .collect()
}

/// Expression values.
fn values<const N: usize>(pairs: [(&str, AttributeValue); N]) -> HashMap<String, AttributeValue> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}
