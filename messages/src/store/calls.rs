//! Counting DynamoDB call attempts by store operation, API and outcome.
//!
//! Every attempt the store makes (retries included) is counted once, when its result is
//! known, under `(operation, api, outcome)`. The outcome ([`CallOutcome`]) comes from a pure
//! function of the error code, the retry classification and, for cancelled transactions, the
//! per-item cancellation reasons ([`classify_outcome`]). A lost condition is a normal answer
//! of the protocol, so it has outcomes of its own and is never counted as an `error`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use super::error;
use super::retry::{self, FailureKind};

/// How one call attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallOutcome {
    /// DynamoDB answered with success.
    Ok,
    /// A single-item write lost its condition (`ConditionalCheckFailedException`).
    ConditionalCheckFailed,
    /// A transaction was cancelled because some item failed its condition
    /// (`TransactionCanceledException` with a `ConditionalCheckFailed` reason).
    TransactionCanceled,
    /// DynamoDB asked to slow down: throttling, provisioned throughput, request limit,
    /// HTTP 429, or a transaction cancelled only by throttling or conflicts.
    Throttled,
    /// Anything else: server errors, timeouts, dispatch failures, validation errors, an
    /// attempt abandoned before its answer arrived, …
    Error,
}

impl CallOutcome {
    /// Every outcome, in label order.
    pub const ALL: [CallOutcome; 5] = [
        Self::Ok,
        Self::ConditionalCheckFailed,
        Self::TransactionCanceled,
        Self::Throttled,
        Self::Error,
    ];

    /// The metric label: `ok`, `conditional_check_failed`, `transaction_canceled`,
    /// `throttled` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ConditionalCheckFailed => "conditional_check_failed",
            Self::TransactionCanceled => "transaction_canceled",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }

    /// True for the outcomes that are normal protocol answers (success or a lost condition).
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            Self::Ok | Self::ConditionalCheckFailed | Self::TransactionCanceled
        )
    }
}

impl std::fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a failed attempt, from its service error code (`None` when DynamoDB did
/// not answer), its retry classification and, for a `TransactionCanceledException`, the
/// items' cancellation reason codes (`None` or `"None"` for items that passed).
///
/// A transaction cancelled because some item failed its condition is `TransactionCanceled`
/// even when other items were throttled (it is not retried); one cancelled only by
/// throttling or conflicts is `Throttled`; one cancelled for another lasting reason
/// (validation, item collection size) is an `Error`.
pub fn classify_outcome(
    code: Option<&str>,
    kind: FailureKind,
    reasons: &[Option<&str>],
) -> CallOutcome {
    match code {
        Some("ConditionalCheckFailedException") => CallOutcome::ConditionalCheckFailed,
        Some("TransactionCanceledException")
            if reasons.contains(&Some("ConditionalCheckFailed")) =>
        {
            CallOutcome::TransactionCanceled
        }
        _ if kind == FailureKind::Throttling => CallOutcome::Throttled,
        Some(c) if retry::is_throttling_code(c) => CallOutcome::Throttled,
        _ => CallOutcome::Error,
    }
}

/// Classifies a failed call without cancellation reasons: for retrying and for counting.
pub(crate) fn classify_error<E: ProvideErrorMetadata>(
    err: &SdkError<E>,
) -> (FailureKind, CallOutcome) {
    let kind = error::failure_kind(err);
    let code = match err {
        SdkError::ServiceError(_) => err.code(),
        _ => None,
    };
    (kind, classify_outcome(code, kind, &[]))
}

type Key = (&'static str, &'static str, CallOutcome);

/// AWS calls made, per store operation, DynamoDB API and [`CallOutcome`]. Every attempt
/// counts, retries included, once its result is known (an attempt abandoned before its
/// answer arrived counts as an `error`). Share one counter between stores (or read
/// [`Store::calls`](super::Store::calls)) to measure "AWS calls per failover".
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<Key, u64>>,
}

impl CallCounter {
    /// A new counter, ready to share.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Counts one attempt of `api` for `operation` that ended with `outcome`.
    pub fn record(&self, operation: &'static str, api: &'static str, outcome: CallOutcome) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((operation, api, outcome)).or_default() += 1;
    }

    /// Starts counting one attempt: the returned guard counts it when
    /// [`finished`](Attempt::finished), or as an `error` when dropped unfinished (the
    /// caller gave up waiting for the answer).
    pub(crate) fn attempt(&self, operation: &'static str, api: &'static str) -> Attempt<'_> {
        Attempt {
            counter: self,
            operation,
            api,
            done: false,
        }
    }

    fn snapshot(&self) -> BTreeMap<Key, u64> {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn sum_by<K: Ord>(&self, key: impl Fn(&Key) -> K) -> BTreeMap<K, u64> {
        let mut out = BTreeMap::new();
        for (k, n) in self.snapshot() {
            *out.entry(key(&k)).or_default() += n;
        }
        out
    }

    /// Calls per store operation (`start_operation`, `mark_all_ready`, …).
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.sum_by(|(op, _, _)| (*op).to_owned())
    }

    /// Calls per DynamoDB API (`TransactWriteItems`, `GetItem`, `Query`, …).
    pub fn by_api(&self) -> BTreeMap<String, u64> {
        self.sum_by(|(_, api, _)| (*api).to_owned())
    }

    /// Calls per outcome.
    pub fn by_outcome(&self) -> BTreeMap<CallOutcome, u64> {
        self.sum_by(|(_, _, outcome)| *outcome)
    }

    /// Calls per `(operation, API)` pair, all outcomes together.
    pub fn by_operation_and_api(&self) -> BTreeMap<(String, String), u64> {
        self.sum_by(|(op, api, _)| ((*op).to_owned(), (*api).to_owned()))
    }

    /// Calls per `(operation, API, outcome)`.
    pub fn by_operation_api_and_outcome(&self) -> BTreeMap<(String, String, CallOutcome), u64> {
        self.snapshot()
            .into_iter()
            .map(|((op, api, outcome), n)| ((op.to_owned(), api.to_owned(), outcome), n))
            .collect()
    }

    /// Calls of one store operation.
    pub fn get(&self, operation: &str) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|((op, _, _), _)| *op == operation)
            .map(|(_, n)| n)
            .sum()
    }

    /// Calls of one store operation that ended with `outcome`.
    pub fn get_outcome(&self, operation: &str, outcome: CallOutcome) -> u64 {
        self.snapshot()
            .into_iter()
            .filter(|((op, _, o), _)| *op == operation && *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    /// All calls.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Forgets every count.
    pub fn reset(&self) {
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One call attempt being counted ([`CallCounter::attempt`]).
pub(crate) struct Attempt<'a> {
    counter: &'a CallCounter,
    operation: &'static str,
    api: &'static str,
    done: bool,
}

impl Attempt<'_> {
    /// Counts the attempt with `outcome`.
    pub(crate) fn finished(mut self, outcome: CallOutcome) {
        self.done = true;
        self.counter.record(self.operation, self.api, outcome);
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.counter
                .record(self.operation, self.api, CallOutcome::Error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_conditions_are_answers_not_errors() {
        assert_eq!(
            classify_outcome(
                Some("ConditionalCheckFailedException"),
                FailureKind::Other,
                &[]
            ),
            CallOutcome::ConditionalCheckFailed
        );
        assert_eq!(
            classify_outcome(
                Some("TransactionCanceledException"),
                FailureKind::Other,
                &[Some("None"), Some("ConditionalCheckFailed")]
            ),
            CallOutcome::TransactionCanceled
        );
        // A condition failed and another item conflicted: still a lost condition.
        assert_eq!(
            classify_outcome(
                Some("TransactionCanceledException"),
                FailureKind::Other,
                &[Some("ConditionalCheckFailed"), Some("TransactionConflict")]
            ),
            CallOutcome::TransactionCanceled
        );
        assert!(CallOutcome::ConditionalCheckFailed.is_answer());
        assert!(CallOutcome::TransactionCanceled.is_answer());
        assert!(!CallOutcome::Throttled.is_answer());
    }

    #[test]
    fn throttling_codes_and_statuses_are_throttled() {
        for code in [
            "ProvisionedThroughputExceededException",
            "ThrottlingException",
            "RequestLimitExceeded",
        ] {
            assert_eq!(
                classify_outcome(Some(code), FailureKind::Throttling, &[]),
                CallOutcome::Throttled,
                "{code}"
            );
            // The code alone is enough.
            assert_eq!(
                classify_outcome(Some(code), FailureKind::Other, &[]),
                CallOutcome::Throttled,
                "{code}"
            );
        }
        // HTTP 429 without a known code.
        assert_eq!(
            classify_outcome(None, FailureKind::Throttling, &[]),
            CallOutcome::Throttled
        );
        // A transaction cancelled only by conflicts or throttling.
        assert_eq!(
            classify_outcome(
                Some("TransactionCanceledException"),
                FailureKind::Throttling,
                &[None, Some("TransactionConflict")]
            ),
            CallOutcome::Throttled
        );
    }

    #[test]
    fn everything_else_is_an_error() {
        assert_eq!(
            classify_outcome(None, FailureKind::Transport, &[]),
            CallOutcome::Error
        );
        assert_eq!(
            classify_outcome(Some("InternalServerError"), FailureKind::Server, &[]),
            CallOutcome::Error
        );
        assert_eq!(
            classify_outcome(Some("ValidationException"), FailureKind::Other, &[]),
            CallOutcome::Error
        );
        assert_eq!(
            classify_outcome(Some("ResourceNotFoundException"), FailureKind::Other, &[]),
            CallOutcome::Error
        );
        assert_eq!(
            classify_outcome(
                Some("TransactionCanceledException"),
                FailureKind::Other,
                &[Some("ValidationError")]
            ),
            CallOutcome::Error
        );
    }

    #[test]
    fn labels_are_stable() {
        let labels: Vec<&str> = CallOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            labels,
            [
                "ok",
                "conditional_check_failed",
                "transaction_canceled",
                "throttled",
                "error"
            ]
        );
    }

    #[test]
    fn counter_sums_per_operation_api_and_outcome() {
        let c = CallCounter::new();
        c.record("start_operation", "GetItem", CallOutcome::Ok);
        c.record(
            "start_operation",
            "TransactWriteItems",
            CallOutcome::Throttled,
        );
        c.record("start_operation", "TransactWriteItems", CallOutcome::Ok);
        c.record(
            "mark_all_ready",
            "TransactWriteItems",
            CallOutcome::TransactionCanceled,
        );
        assert_eq!(c.get("start_operation"), 3);
        assert_eq!(c.get_outcome("start_operation", CallOutcome::Ok), 2);
        assert_eq!(c.by_api()["TransactWriteItems"], 3);
        assert_eq!(c.by_operation()["mark_all_ready"], 1);
        assert_eq!(
            c.by_operation_and_api()[&("start_operation".into(), "TransactWriteItems".into())],
            2
        );
        let full = c.by_operation_api_and_outcome();
        assert_eq!(full.len(), 4);
        assert_eq!(
            full[&(
                "mark_all_ready".into(),
                "TransactWriteItems".into(),
                CallOutcome::TransactionCanceled
            )],
            1
        );
        assert_eq!(c.by_outcome()[&CallOutcome::Ok], 2);
        assert_eq!(c.total(), 4);
        c.reset();
        assert_eq!(c.total(), 0);
    }

    #[test]
    fn an_abandoned_attempt_counts_as_an_error() {
        let c = CallCounter::new();
        c.attempt("put_heartbeat", "PutItem")
            .finished(CallOutcome::Ok);
        drop(c.attempt("put_heartbeat", "PutItem"));
        assert_eq!(c.get_outcome("put_heartbeat", CallOutcome::Ok), 1);
        assert_eq!(c.get_outcome("put_heartbeat", CallOutcome::Error), 1);
        assert_eq!(c.total(), 2);
    }
}
