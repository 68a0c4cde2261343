//! Failpoints: named places in the store, the agent and `failoverctl` where a fault test makes
//! the process crash or a call fail, so every safety claim can be tried under the faults it
//! claims to survive.
//!
//! They exist only in builds with the `failpoints` feature (the test suite and the chaos
//! runner turn it on through the test crate; a release build of the agent or of
//! `failoverctl` has none: [`hit`] is then an empty inline function). A process configures
//! them from the `FAILPOINTS` environment variable at start ([`setup`]), in the syntax of
//! the `fail` crate: `name=actions;name=actions`, where actions chain with `->` and take
//! counts and probabilities, e.g. `engine::done::before=3*off->return(crash)` (crash at the
//! fourth step whose outcome is about to be journaled) or `dynamodb::UpdateItem=
//! 20%return(throttle)`.
//!
//! What a place does when its point fires with `return(<arg>)`:
//! - `crash`: the process aborts at once (as SIGKILL would leave it: nothing flushed, no
//!   handler run);
//! - any other argument: the call at that place fails with an injected error naming the
//!   point (places that only observe, like step boundaries, treat it as `crash`);
//! - `sleep(ms)`, `pause`, `panic` and the rest behave as in the `fail` crate.
//!
//! The places:
//! - `store::<operation>::before` / `store::<operation>::after`, and the same with the API
//!   (`store::<operation>::<Api>::after`): around every store call (`<operation>` is the
//!   label of `failover_dynamodb_calls_total`: `journal_intent`, `claim_promotion`,
//!   `start_operation`, `renew_lease`, …; one operation may read with `GetItem` before it
//!   writes with `UpdateItem`); an error *after* the call means the write happened
//!   and its answer was lost;
//! - `dynamodb::<Api>` (`UpdateItem`, `PutItem`, `GetItem`, …): the HTTP
//!   answer of one DynamoDB attempt is replaced by DynamoDB's own error for `throttle`
//!   (`ThrottlingException`, HTTP 400), `throughput` (`ProvisionedThroughputExceeded
//!   Exception`), `server` (`InternalServerError`, HTTP 500), `unavailable` (HTTP 503),
//!   `conditional` (`ConditionalCheckFailedException`), `conflict` (a transaction cancelled
//!   by `TransactionConflict`) or `timeout` (no answer: the attempt times out), so the
//!   store's real classification and retries run;
//! - `engine::<boundary>` and `engine::<boundary>::<stage>::<task>` in the agent's
//!   workflow engine, at each step boundary: `intent::before` (before the step's intent is
//!   journaled), `run::before` (intent journaled, before the step acts on Kubernetes),
//!   `done::before` (the step acted, before its outcome is journaled) and `done::after`;
//! - `engine::skip::<kind>` (`WaitPodsGone`, `ScaleDown`, …): the step reports done without
//!   acting — a deliberately broken agent, for showing that the fault tests catch one.

/// What the injected error says, for a point that fired with an argument other than
/// `crash`.
pub fn injected_message(point: &str, arg: &str) -> String {
    format!("failpoint {point} injected {arg}")
}

/// Configures the failpoints named in the `FAILPOINTS` environment variable; returns the
/// configured `(name, actions)` pairs (for the start-up log). An entry that is not
/// `name=actions` or whose actions do not parse is an error naming it. Without the
/// `failpoints` feature a non-empty `FAILPOINTS` is an error too, so a test never believes
/// a fault was injected into a build that cannot inject it.
pub fn setup() -> Result<Vec<(String, String)>, String> {
    let spec = std::env::var("FAILPOINTS").unwrap_or_default();
    let mut configured = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((name, actions)) = entry.split_once('=') else {
            return Err(format!("FAILPOINTS entry {entry:?} is not name=actions"));
        };
        configure(name.trim(), actions.trim())
            .map_err(|e| format!("FAILPOINTS entry {entry:?}: {e}"))?;
        configured.push((name.trim().to_owned(), actions.trim().to_owned()));
    }
    Ok(configured)
}

/// True when this build has failpoints.
pub const fn enabled() -> bool {
    cfg!(feature = "failpoints")
}

#[cfg(feature = "failpoints")]
fn configure(name: &str, actions: &str) -> Result<(), String> {
    fail::cfg(name, actions)
}

#[cfg(not(feature = "failpoints"))]
fn configure(_name: &str, _actions: &str) -> Result<(), String> {
    Err("this build has no failpoints (built without the `failpoints` feature)".into())
}

/// Evaluates the point `name`: `None` when it does not fire (always, without the feature),
/// `Some(arg)` when it fired with `return(arg)`; aborts the process when `arg` is `crash`.
#[cfg(feature = "failpoints")]
pub fn hit(name: &str) -> Option<String> {
    let arg = fire(name)?;
    if arg == "crash" {
        crash(name, None);
    }
    Some(arg)
}

/// The point's argument when it fires (no crash handling).
#[cfg(feature = "failpoints")]
fn fire(name: &str) -> Option<String> {
    fail::eval(name, |arg| arg.unwrap_or_default())
}

#[cfg(not(feature = "failpoints"))]
#[inline(always)]
fn fire(_name: &str) -> Option<String> {
    None
}

/// Aborts the process as SIGKILL would (no destructors, no buffered output, no shutdown),
/// after one line on stderr that names the point: `failpoint <name> [(<at>)]: crash`.
fn crash(name: &str, at: Option<&str>) -> ! {
    match at {
        Some(at) => eprintln!("failpoint {name} ({at}): crash"),
        None => eprintln!("failpoint {name}: crash"),
    }
    std::process::abort();
}

/// Evaluates the point `name`: never fires in a build without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &str) -> Option<String> {
    None
}

/// A point that only observes (a step boundary, `at` says which): fires as a crash
/// whatever its argument.
pub fn boundary(name: &str, at: &str) {
    if fire(name).is_some() {
        crash(name, Some(at));
    }
}

#[cfg(feature = "failpoints")]
pub(crate) mod http;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_point_and_the_injection() {
        assert_eq!(
            injected_message("store::claim_promotion::before", "error"),
            "failpoint store::claim_promotion::before injected error"
        );
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn a_configured_point_fires_with_its_argument_and_a_count_runs_out() {
        fail::cfg("test::point", "2*return(oops)").unwrap();
        assert_eq!(hit("test::point").as_deref(), Some("oops"));
        assert_eq!(hit("test::point").as_deref(), Some("oops"));
        assert_eq!(hit("test::point"), None);
        assert_eq!(hit("test::never-configured"), None);
        fail::remove("test::point");
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn bad_actions_are_refused_with_the_entry() {
        assert!(configure("test::bad", "return(").is_err());
    }
}
