//! Which failed DynamoDB calls are retried, and how long to wait: small pure functions.
//!
//! Only throttling, server errors (HTTP 5xx) and transport errors (timeouts, connection
//! failures, unreadable responses) are retried. Everything else, in particular a lost
//! conditional write, is returned at once: the protocol never retries a lost conditional
//! write (`docs/protocol.md`, "Rules each side keeps").
//!
//! The wait before attempt `n + 1` is `min(cap, base · 2^(n-1))`, of which the upper half is
//! jittered ("equal jitter"), so that racing agents spread out but never wait less than half
//! the nominal delay.

use std::time::Duration;

/// Why a call failed, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// DynamoDB asked us to slow down (throttling, provisioned throughput, transaction
    /// conflicts, request limit).
    Throttling,
    /// DynamoDB failed (HTTP 5xx, `InternalServerError`, `ServiceUnavailable`).
    Server,
    /// The request or response got lost: timeout, connection error, unreadable response.
    /// The call may or may not have taken effect.
    Transport,
    /// Anything else (validation, missing table, lost condition, …): never retried.
    Other,
}

impl FailureKind {
    /// True for the kinds that are retried.
    pub fn is_retryable(self) -> bool {
        !matches!(self, Self::Other)
    }

    /// True when the call may have taken effect although it failed.
    pub fn is_ambiguous(self) -> bool {
        matches!(self, Self::Transport | Self::Server)
    }
}

/// Error codes DynamoDB uses for throttling.
const THROTTLING_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ThrottlingError",
    "ProvisionedThroughputExceededException",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
    "TransactionConflict",
    "TransactionConflictException",
    "TransactionInProgressException",
    "LimitExceededException",
];

/// True for the error (or cancellation reason) codes DynamoDB uses for throttling.
pub fn is_throttling_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code)
}

/// Error codes DynamoDB uses for its own failures.
const SERVER_CODES: &[&str] = &[
    "InternalServerError",
    "ServiceUnavailable",
    "InternalFailure",
];

/// Classifies a failed call from its error code, HTTP status and whether it failed in
/// transport (no usable response at all).
pub fn classify(code: Option<&str>, http_status: Option<u16>, transport: bool) -> FailureKind {
    if transport {
        return FailureKind::Transport;
    }
    if let Some(code) = code {
        if THROTTLING_CODES.contains(&code) {
            return FailureKind::Throttling;
        }
        if SERVER_CODES.contains(&code) {
            return FailureKind::Server;
        }
    }
    match http_status {
        Some(429) => FailureKind::Throttling,
        Some(s) if (500..600).contains(&s) => FailureKind::Server,
        _ => FailureKind::Other,
    }
}

/// Classifies a cancelled transaction from its per-item cancellation reason codes
/// (`None` or `"None"` for items that passed). It is retryable only when no item failed for
/// a lasting reason (a condition, a validation error) and at least one was throttled or
/// conflicted with another transaction.
pub fn classify_cancellation(codes: &[Option<&str>]) -> FailureKind {
    let mut throttled = false;
    for code in codes.iter().flatten() {
        match *code {
            "None" => {}
            c if THROTTLING_CODES.contains(&c) => throttled = true,
            _ => return FailureKind::Other,
        }
    }
    if throttled {
        FailureKind::Throttling
    } else {
        FailureKind::Other
    }
}

/// Capped exponential backoff with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Nominal wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// How long to wait before the next attempt after `attempts` attempts failed, the last
    /// with `kind`; `None` means give up. `jitter` is a random number in `[0, 1]` (clamped).
    pub fn delay(&self, attempts: u32, kind: FailureKind, jitter: f64) -> Option<Duration> {
        if !kind.is_retryable() || attempts == 0 || attempts >= self.max_attempts {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(31);
        let nominal = self
            .base
            .checked_mul(1u32 << exp)
            .unwrap_or(self.cap)
            .min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let half = nominal / 2;
        Some(half + half.mul_f64(jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_server_and_transport_failures_are_retried() {
        assert_eq!(
            classify(Some("ThrottlingException"), Some(400), false),
            FailureKind::Throttling
        );
        assert_eq!(
            classify(
                Some("ProvisionedThroughputExceededException"),
                Some(400),
                false
            ),
            FailureKind::Throttling
        );
        assert_eq!(
            classify(Some("InternalServerError"), Some(500), false),
            FailureKind::Server
        );
        assert_eq!(classify(None, Some(503), false), FailureKind::Server);
        assert_eq!(classify(None, Some(429), false), FailureKind::Throttling);
        assert_eq!(classify(None, None, true), FailureKind::Transport);
        assert_eq!(
            classify(Some("ConditionalCheckFailedException"), Some(400), false),
            FailureKind::Other
        );
        assert_eq!(
            classify(Some("ValidationException"), Some(400), false),
            FailureKind::Other
        );
        assert_eq!(
            classify(Some("ResourceNotFoundException"), Some(400), false),
            FailureKind::Other
        );
        assert_eq!(
            classify(Some("TransactionCanceledException"), Some(400), false),
            FailureKind::Other
        );
    }

    #[test]
    fn cancelled_transactions_are_retried_only_for_conflicts_and_throttling() {
        assert_eq!(
            classify_cancellation(&[None, Some("TransactionConflict")]),
            FailureKind::Throttling
        );
        assert_eq!(
            classify_cancellation(&[Some("None"), Some("ThrottlingError")]),
            FailureKind::Throttling
        );
        assert_eq!(
            classify_cancellation(&[Some("ConditionalCheckFailed"), Some("TransactionConflict")]),
            FailureKind::Other
        );
        assert_eq!(
            classify_cancellation(&[Some("ValidationError")]),
            FailureKind::Other
        );
        assert_eq!(
            classify_cancellation(&[None, Some("None")]),
            FailureKind::Other
        );
        assert_eq!(classify_cancellation(&[]), FailureKind::Other);
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_gives_up() {
        let p = RetryPolicy {
            max_attempts: 6,
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
        };
        let t = FailureKind::Throttling;
        assert_eq!(p.delay(1, t, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(p.delay(2, t, 1.0), Some(Duration::from_millis(200)));
        assert_eq!(p.delay(3, t, 1.0), Some(Duration::from_millis(400)));
        assert_eq!(p.delay(4, t, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(5, t, 1.0), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(6, t, 1.0), None);
        assert_eq!(p.delay(0, t, 1.0), None);
    }

    #[test]
    fn jitter_keeps_at_least_half_the_delay() {
        let p = RetryPolicy::default();
        let k = FailureKind::Transport;
        assert_eq!(p.delay(1, k, 0.0), Some(Duration::from_millis(25)));
        assert_eq!(p.delay(1, k, 0.5), Some(Duration::from_micros(37_500)));
        assert_eq!(p.delay(1, k, 7.0), Some(Duration::from_millis(50)));
        assert_eq!(p.delay(1, k, f64::NAN), Some(Duration::from_millis(25)));
    }

    #[test]
    fn lasting_failures_are_never_retried() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, FailureKind::Other, 0.5), None);
        assert_eq!(
            RetryPolicy::never().delay(1, FailureKind::Throttling, 0.5),
            None
        );
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(20),
        };
        assert_eq!(
            p.delay(1_000, FailureKind::Server, 1.0),
            Some(Duration::from_secs(20))
        );
    }
}
