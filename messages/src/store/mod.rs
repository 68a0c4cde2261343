//! The client layer agents and the coordinator use to read and write the protocol's records.
//!
//! [`Store`] wraps an `aws_sdk_dynamodb::Client`, the table name, an injected [`Clock`] (so
//! tests can move time) and a shared [`CallCounter`]. Its methods map one-to-one onto the
//! protocol steps of `docs/protocol.md`:
//!
//! | who | method | protocol |
//! |---|---|---|
//! | coordinator | [`Store::register_group`], [`Store::set_suspended`] | group state created at epoch 0 |
//! | coordinator | [`Store::start_operation`] | step 1, one `TransactWriteItems` |
//! | agents | [`Store::renew_lease`] | leases |
//! | agents | [`Store::publish_stage`] (once per stage), [`Store::journal_note`] (a long wait) | step 3, the journal as DynamoDB keeps it |
//! | source | [`Store::record_original_replicas`] | rule 3 (replicas kept in the operation) |
//! | source | [`Store::mark_all_ready`] | step 4, all volumes in one transaction |
//! | target | [`Store::list_handoffs`], [`Store::claim_promotion`], [`Store::mark_promoted`], [`Store::mark_all_promoted`] | step 5 |
//! | target | [`Store::complete_operation`] | step 6 / rule 5, one transaction |
//! | coordinator / source | [`Store::request_abort`] / [`Store::finish_abort`] | abort |
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
//!   counts and dual-active marks, which are informational) is conditioned on the
//!   group state `epoch = e AND opId = id`: either it updates the group state under that condition, or
//!   it is a transaction carrying a `ConditionCheck` on the group state with it (a condition
//!   on the operation item's own `epoch` would prove nothing: that attribute never changes). A lost condition comes back
//!   as an [`Outcome`] (`StaleEpoch`, `AbortRequested`, …), classified from the transaction's
//!   cancellation reasons (with `ReturnValuesOnConditionCheckFailure = ALL_OLD`) or from a
//!   consistent read; it is never an error and never retried.
//! * Only throttling, 5xx and transport failures are retried ([`retry`]), with capped
//!   exponential backoff and jitter; the SDK's own retries are switched off so that the
//!   policy and the [`CallCounter`] see every attempt.
//! * A write whose effect is unknown after a transport failure is resolved by reading back
//!   (the start reads `opId`; completing and aborting read the operation's phase), so a
//!   committed write is never reported as lost.

mod agent;
mod calls;
mod clock;
mod coordinator;
mod error;
mod group_handoff;
mod outcome;
mod read;
mod replicas;
pub mod retry;
mod start_view;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, ConditionCheck, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use jiff::Timestamp;

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
use crate::records::{Item, attr, av_n, av_s, truncate_to_millis};

/// DynamoDB's limit of items in one transaction.
pub use crate::protocol::spec::MAX_TRANSACTION_ITEMS;

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
            match call().await {
                Ok(out) => {
                    attempt.finished(CallOutcome::Ok);
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

    /// Runs a transaction. A cancellation in which some item failed its condition comes
    /// back as [`TxResult::Cancelled`] with every item's reason; anything else that is not a
    /// commit is an error.
    async fn transact(
        &self,
        operation: &'static str,
        items: Vec<TransactWriteItem>,
        token: Option<String>,
    ) -> Result<TxResult, Failed<TransactWriteItemsError>> {
        let req = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .set_client_request_token(token);
        let result = self
            .send(
                operation,
                "TransactWriteItems",
                classify_transaction,
                || req.clone().send(),
            )
            .await;
        match result {
            Ok(_) => Ok(TxResult::Committed),
            Err(failed) => {
                if let SdkError::ServiceError(se) = &failed.err
                    && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
                {
                    let reasons = tc.cancellation_reasons();
                    if reasons.iter().any(condition_failed) {
                        return Ok(TxResult::Cancelled(Cancellation(
                            reasons.iter().map(Reason::from).collect(),
                        )));
                    }
                }
                Err(failed)
            }
        }
    }

    /// Runs an agent write for `op`: a transaction whose item 0 carries the group-state
    /// condition `epoch = e AND opId = id` ([`Store::group_check`] or an update under it).
    /// When item 0 failed, says where the group stands ([`Store::stale`]); when another
    /// item failed, hands the cancellation back for the caller to classify.
    async fn transact_for_op(
        &self,
        operation: &'static str,
        op: &OpRef,
        items: Vec<TransactWriteItem>,
    ) -> Result<TxVerdict, Cause> {
        let result = self
            .transact(operation, items, None)
            .await
            .map_err(Failed::into_cause)?;
        match result {
            TxResult::Committed => Ok(TxVerdict::Committed),
            TxResult::Cancelled(cancelled) => match cancelled.failed(0) {
                Some(r) => Ok(TxVerdict::Stale(
                    self.stale(operation, op, r.item.as_ref()).await?,
                )),
                None => Ok(TxVerdict::Rejected(cancelled)),
            },
        }
    }

    /// `ConditionCheck` on the group state: `epoch = e AND opId = id` (the operation is still
    /// the one in flight at its epoch), returning the old item when it fails. Every agent
    /// write that does not update the group state itself carries this check.
    fn group_check(&self, op: &OpRef) -> Result<TransactWriteItem, Cause> {
        let (expr, names, values) = group_condition(op);
        let check = ConditionCheck::builder()
            .table_name(self.table.as_ref())
            .set_key(Some(key_map(keys::group_state_key(&op.group))))
            .condition_expression(expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()?;
        Ok(TransactWriteItem::builder().condition_check(check).build())
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

enum TxResult {
    Committed,
    Cancelled(Cancellation),
}

/// What became of an agent write ([`Store::transact_for_op`]).
enum TxVerdict {
    Committed,
    /// The group-state condition (item 0) failed: where the group stands now.
    Stale(Stale),
    /// Item 0 passed, another item failed its condition.
    Rejected(Cancellation),
}

/// The items' reasons of a transaction cancelled because some item failed its condition.
struct Cancellation(Vec<Reason>);

impl Cancellation {
    /// Whether item `i` failed its condition: then its reason, with its old item.
    fn failed(&self, i: usize) -> Option<&Reason> {
        self.0.get(i).filter(|r| r.failed)
    }
}

/// One item's cancellation reason.
struct Reason {
    failed: bool,
    item: Option<Item>,
}

impl From<&CancellationReason> for Reason {
    fn from(r: &CancellationReason) -> Self {
        Self {
            failed: condition_failed(r),
            item: r.item().cloned(),
        }
    }
}

fn condition_failed(r: &CancellationReason) -> bool {
    r.code() == Some("ConditionalCheckFailed")
}

fn classify_transaction(err: &SdkError<TransactWriteItemsError>) -> (FailureKind, CallOutcome) {
    if let SdkError::ServiceError(se) = err
        && let TransactWriteItemsError::TransactionCanceledException(tc) = se.err()
    {
        let codes: Vec<Option<&str>> = tc.cancellation_reasons().iter().map(|r| r.code()).collect();
        let kind = retry::classify_cancellation(&codes);
        let outcome = classify_outcome(Some("TransactionCanceledException"), kind, &codes);
        return (kind, outcome);
    }
    calls::classify_error(err)
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

/// The group-state condition of every agent write: `epoch = e AND opId = id`.
fn group_condition(
    op: &OpRef,
) -> (
    &'static str,
    HashMap<String, String>,
    HashMap<String, AttributeValue>,
) {
    (
        "#epoch = :e AND #opId = :id",
        names(&[attr::EPOCH, attr::OP_ID]),
        values([(":e", av_n(op.epoch)), (":id", av_s(&op.id))]),
    )
}

/// The `ClientRequestToken` of the transaction that starts operation `op_id` from the
/// group's epoch `from_epoch`: a stable 32-hex-digit digest (DynamoDB allows at most 36
/// characters), so a retried start is recognised as the same request, while an attempt at
/// another epoch (after the state moved) is a different request.
pub fn start_request_token(op_id: &str, from_epoch: u64) -> String {
    let input = format!("{op_id}@{from_epoch}");
    // FNV-1a, 64 bits, twice with different offsets: stable across builds and platforms.
    fn fnv(offset: u64, bytes: &[u8]) -> u64 {
        bytes.iter().fold(offset, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
        })
    }
    let a = fnv(0xcbf2_9ce4_8422_2325, input.as_bytes());
    let b = fnv(0x6c62_272e_07bb_0142, input.as_bytes());
    format!("{a:016x}{b:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PINNED_TOKEN: &str = "3bec4cf10decc0ec5d7e649edbc36393";

    #[test]
    fn start_token_is_stable_short_and_distinct() {
        let id = "0d6c8a1e-4b0e-4f7a-9c1d-2a3b4c5d6e7f";
        let a = start_request_token(id, 3);
        assert_eq!(a, start_request_token(id, 3));
        assert_eq!(a.len(), 32);
        assert_ne!(
            a,
            start_request_token("0d6c8a1e-4b0e-4f7a-9c1d-2a3b4c5d6e7e", 3)
        );
        assert_ne!(a, start_request_token(id, 4));
        assert_eq!(start_request_token("", 0).len(), 32);
        // Pinned so that a change of the function (which would break idempotent retries
        // between versions) is noticed.
        assert_eq!(start_request_token("op-1", 0), PINNED_TOKEN);
    }

    #[test]
    fn group_condition_names_only_what_it_uses() {
        let op = OpRef {
            id: "op-1".into(),
            group: "shop/orders".parse().unwrap(),
            epoch: 4,
        };
        let (expr, names, values) = group_condition(&op);
        assert_eq!(expr, "#epoch = :e AND #opId = :id");
        assert_eq!(names.len(), 2);
        assert_eq!(values[":e"], av_n(4));
        assert_eq!(values[":id"], av_s("op-1"));
    }
}
