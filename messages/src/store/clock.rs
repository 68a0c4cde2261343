//! The clock the store reads: injected so tests can move time (lease expiry, stale
//! heartbeats) without sleeping.

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;

/// A source of the current time.
///
/// Any `Fn() -> Timestamp` closure is a clock, as are [`SystemClock`] and [`ManualClock`].
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

impl<F> Clock for F
where
    F: Fn() -> Timestamp + Send + Sync + 'static,
{
    fn now(&self) -> Timestamp {
        self()
    }
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that stands still until moved, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// A clock showing the system time now.
    pub fn starting_now() -> Self {
        Self::new(Timestamp::now())
    }

    /// Sets the time.
    pub fn set(&self, at: Timestamp) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    /// Moves the time forward by `by` (saturating at the largest timestamp).
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        let by = jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX);
        *now = now.checked_add(by).unwrap_or(Timestamp::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let start = Timestamp::from_second(1_000).unwrap();
        let c = ManualClock::new(start);
        assert_eq!(c.now(), start);
        c.advance(Duration::from_millis(1_500));
        assert_eq!(c.now(), Timestamp::from_millisecond(1_001_500).unwrap());
        c.advance(Duration::MAX);
        assert_eq!(c.now(), Timestamp::MAX);
    }

    #[test]
    fn closures_are_clocks() {
        let fixed = Timestamp::from_second(42).unwrap();
        let clock: std::sync::Arc<dyn Clock> = std::sync::Arc::new(move || fixed);
        assert_eq!(clock.now(), fixed);
    }
}
