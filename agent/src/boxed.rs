//! Futures built straight into a box.
//!
//! An `async fn` reserves room in its poll frame for every future it builds before moving
//! it into its own state, and a debug build shares none of that room between awaits. The
//! agent's futures nest deeply (a run, its stage, its batch, a step, a wait on a watch), so
//! in a debug build those frames add up to more than a 2 MiB thread stack. [`boxed`] builds
//! the future in a frame of its own that is gone again before the first poll: the caller
//! keeps only the box. `Box::pin(f())` does not help there: `f()` is built in the caller's
//! frame first.

use std::future::Future;

use futures::future::BoxFuture;

/// The future `make` returns, built in this function's frame and moved into a box.
///
/// Its type is erased: the compiler then checks `Send` on the box, not again through every
/// future nested in it.
#[inline(never)]
pub fn boxed<'a, T, F>(make: impl FnOnce() -> F) -> BoxFuture<'a, T>
where
    F: Future<Output = T> + Send + 'a,
{
    Box::pin(make())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::boxed;

    #[tokio::test]
    async fn the_future_is_built_at_once_and_runs_when_awaited() {
        let polled = AtomicBool::new(false);
        let fut = boxed(|| async {
            polled.store(true, Ordering::SeqCst);
            7
        });
        assert!(!polled.load(Ordering::SeqCst), "ran before it was awaited");
        assert_eq!(fut.await, 7);
        assert!(polled.load(Ordering::SeqCst));
    }
}
