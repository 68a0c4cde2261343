//! Waiting on one object with a watch, a pure verdict and a deadline.
//!
//! [`until`] watches a single named object (`kube::runtime::watcher::watch_object`, with
//! the default backoff, so a dropped watch is re-established and re-listed) and hands
//! every version it sees to a pure judge returning a [`Verdict`]: done, still pending (with
//! a description of what it saw), or failed (stop at once). Deadline passed: a
//! [`Cause::Timeout`] naming what was expected and the last state seen. There is no sleep
//! loop: between events nothing runs.
//!
//! Before the watch, one plain read of the object: most waits find their goal already
//! reached (a volume that settled while its neighbours were demoted, a Deployment whose
//! pods started while the others were scaled). A watch opened at the list's fresh
//! `resourceVersion` is only served once the apiserver's watch cache has caught up with
//! etcd, which on an otherwise quiet resource takes until etcd's next progress notification
//! (the apiserver asks for one every 100 ms); a read answers in milliseconds. The read is a
//! quorum read, so a goal it shows is reached; anything else falls through to the watch.

use std::fmt::Debug;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::watch_object;
use serde::de::DeserializeOwned;

use super::error::Cause;

/// What a judge says about one version of the watched object.
#[derive(Debug)]
pub enum Verdict<T> {
    /// The wait is over.
    Done(T),
    /// Not yet; the text describes what was seen (it ends up in a timeout message).
    Pending(String),
    /// Waiting longer cannot help.
    Failed(Cause),
}

impl<T> Verdict<T> {
    /// True for [`Verdict::Done`].
    pub fn is_done(&self) -> bool {
        matches!(self, Verdict::Done(_))
    }
}

/// Watches object `name` of `api` until `judge` says [`Verdict::Done`] (its value is
/// returned) or [`Verdict::Failed`], the object is missing or deleted, or `deadline`
/// passes. `expected` describes the goal for messages; `what` names the object in logs.
pub async fn until<K, T>(
    api: Api<K>,
    name: &str,
    what: &str,
    expected: &str,
    deadline: Duration,
    mut judge: impl FnMut(&K) -> Verdict<T> + Send,
) -> Result<T, Cause>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Send,
{
    let mut last = String::from("nothing (no watch event arrived)");
    let mut last_error: Option<String> = None;
    let watch = async {
        let mut seen = false;
        match api.get_opt(name).await {
            Ok(Some(obj)) => match judge(&obj) {
                Verdict::Done(t) => return Ok(t),
                Verdict::Failed(c) => return Err(c),
                Verdict::Pending(s) => {
                    tracing::debug!(object = %what, expected = %expected, seen = %s, "waiting");
                    last = s;
                    seen = true;
                }
            },
            Ok(None) => return Err(Cause::NotFound),
            // The watch retries with backoff and reports what keeps failing.
            Err(e) => last_error = Some(e.to_string()),
        }
        let mut stream = pin!(watch_object(api, name).default_backoff());
        while let Some(item) = stream.next().await {
            match item {
                Ok(Some(obj)) => {
                    seen = true;
                    last_error = None;
                    match judge(&obj) {
                        Verdict::Done(t) => return Ok(t),
                        Verdict::Failed(c) => return Err(c),
                        Verdict::Pending(s) => {
                            if s != last {
                                tracing::debug!(object = %what, expected = %expected, seen = %s, "waiting");
                                last = s;
                            }
                        }
                    }
                }
                Ok(None) if seen => {
                    return Err(Cause::Deleted {
                        expected: expected.to_string(),
                    });
                }
                Ok(None) => return Err(Cause::NotFound),
                Err(e) => {
                    tracing::warn!(object = %what, "watch failed, retrying: {e}");
                    last_error = Some(e.to_string());
                }
            }
        }
        Err(Cause::WatchEnded(format!("the watch of {what} ended")))
    };
    let res = tokio::time::timeout(deadline, watch).await;
    match res {
        Ok(r) => r,
        Err(_) => Err(Cause::Timeout {
            after: deadline,
            expected: expected.to_string(),
            last: match last_error {
                Some(e) => format!("{last}; then the watch failed: {e}"),
                None => last,
            },
        }),
    }
}
