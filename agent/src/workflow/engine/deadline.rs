//! How much of a limit is left, counted from the first start recorded in the journal, so
//! that a run resumed after a failure or a restart does not get the whole limit again.
//!
//! * A stage's limit covers its own steps (waits for the other cluster excepted): the
//!   time each of them took in earlier runs, from the first intent (`firstStartedAt`) to
//!   the outcome, or to now for the step that did not finish, is carried into this run.
//! * A step with its own limit (a wait for the other cluster) counts from its own first
//!   start.
//!
//! Pure: the journal entries and `now` are passed in.

use std::time::Duration;

use failover_messages::records::{JournalStep, StepStatus};
use jiff::Timestamp;

use super::bound::BoundStage;

/// Time from `from` to `to`; zero when `to` is earlier (another clock).
fn between(from: Timestamp, to: Timestamp) -> Duration {
    Duration::try_from(to.duration_since(from)).unwrap_or(Duration::ZERO)
}

/// How long a journaled step has used so far: from its first start to its outcome when it
/// is done, to `now` otherwise (it failed or was interrupted and runs again now).
pub(super) fn used_by(step: &JournalStep, now: Timestamp) -> Duration {
    let end = match (step.status, step.finished_at) {
        (StepStatus::Done, Some(finished)) => finished,
        _ => now,
    };
    between(step.first_started(), end)
}

/// The time `stage`'s own steps used in earlier runs, by their journal entries (`entry`
/// finds a step's entry by its key).
pub(super) fn carried<'a>(
    stage: &BoundStage,
    entry: impl Fn(&str) -> Option<&'a JournalStep>,
    now: Timestamp,
) -> Duration {
    stage
        .steps
        .iter()
        .filter(|step| step.journaled && step.own_deadline.is_none())
        .filter_map(|step| entry(&step.key))
        .map(|earlier| used_by(earlier, now))
        .fold(Duration::ZERO, Duration::saturating_add)
}

/// What is left of a step's own `limit` when an earlier run journaled it as `earlier`.
pub(super) fn own_left(limit: Duration, earlier: Option<&JournalStep>, now: Timestamp) -> Duration {
    limit.saturating_sub(earlier.map_or(Duration::ZERO, |s| used_by(s, now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_780_000_000 + s).unwrap()
    }

    fn step(status: StepStatus, first: i64, last: i64, finished: Option<i64>) -> JournalStep {
        JournalStep {
            op_id: "op-1".into(),
            cluster: "east".into(),
            stage: "S".into(),
            task: "t".into(),
            epoch: 1,
            status,
            attempts: 2,
            started_at: at(last),
            first_started_at: Some(at(first)),
            finished_at: finished.map(at),
            message: None,
        }
    }

    #[test]
    fn a_step_that_did_not_finish_has_used_the_time_since_its_first_start() {
        let failed = step(StepStatus::Failed, 0, 45, Some(46));
        assert_eq!(used_by(&failed, at(60)), Duration::from_secs(60));
        let interrupted = step(StepStatus::Started, 10, 50, None);
        assert_eq!(used_by(&interrupted, at(60)), Duration::from_secs(50));
    }

    #[test]
    fn a_done_step_used_the_time_to_its_outcome() {
        let done = step(StepStatus::Done, 0, 20, Some(25));
        assert_eq!(used_by(&done, at(600)), Duration::from_secs(25));
    }

    #[test]
    fn a_step_journaled_without_its_first_start_counts_from_its_last() {
        let old = JournalStep {
            first_started_at: None,
            ..step(StepStatus::Failed, 0, 45, Some(46))
        };
        assert_eq!(used_by(&old, at(60)), Duration::from_secs(15));
    }

    #[test]
    fn a_clock_behind_the_journal_uses_nothing() {
        let failed = step(StepStatus::Failed, 100, 100, Some(101));
        assert_eq!(used_by(&failed, at(60)), Duration::ZERO);
    }

    #[test]
    fn an_own_limit_shrinks_by_the_time_since_the_first_start() {
        let limit = Duration::from_secs(300);
        assert_eq!(own_left(limit, None, at(0)), limit);
        let waited = step(StepStatus::Started, 0, 200, None);
        assert_eq!(
            own_left(limit, Some(&waited), at(240)),
            Duration::from_secs(60)
        );
        assert_eq!(own_left(limit, Some(&waited), at(400)), Duration::ZERO);
    }
}
