//! Waiting on one object with a watch, a pure verdict and a deadline.
//!
//! [`until`] reads a single named object, then watches it from the version it read (a
//! watch narrowed to its name), and hands every version it sees to a pure judge returning
//! a [`Verdict`]: done, still pending (with a description of what it saw), or failed (stop
//! at once). Deadline passed: a [`Cause::Timeout`] naming what was expected and the last
//! state seen. There is no sleep loop: between events nothing runs.
//!
//! The read comes first because most waits find their goal already reached (a volume that
//! settled while its neighbours were demoted, a Deployment whose pods started while the
//! others were scaled); it is a quorum read, so a goal it shows is reached. Its
//! `resourceVersion` (the object's own) starts the watch: no list, and no waiting for the
//! API server's watch cache to catch up with a fresh list's version (on an otherwise quiet
//! resource, up to etcd's next progress notification). A watch that ends (the server's
//! timeout) is opened again from the last version seen; one the server refuses (the
//! version is too old: `410 Gone`) or that fails starts over with a read, after a pause
//! that doubles from [`RETRY_FIRST`] up to [`RETRY_MAX`] while the failures go on.

use std::fmt::Debug;
use std::pin::pin;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::api::{Api, WatchEvent, WatchParams};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::error::Cause;

/// The first pause after a failed read or watch.
pub const RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest pause between tries.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long one watch request stays open before it is opened again from the last version.
const WATCH_SECONDS: u32 = 290;
/// A watch that ends sooner than this without a failure counts as one (no busy loop when
/// a server or proxy keeps closing it at once).
const SHORTEST_WATCH: Duration = Duration::from_secs(1);

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

/// The pauses between failed tries: [`RETRY_FIRST`], doubled each time, at most
/// [`RETRY_MAX`]; back to the first once something works.
#[derive(Debug)]
struct Retry(Duration);

impl Retry {
    fn new() -> Self {
        Self(RETRY_FIRST)
    }

    async fn pause(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(RETRY_MAX);
    }

    fn reset(&mut self) {
        self.0 = RETRY_FIRST;
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
    let mut last = String::from("nothing (the object could not be read)");
    let mut last_error: Option<String> = None;
    let watch = async {
        let mut seen = false;
        let mut retry = Retry::new();
        // Whether `judge` is done with one version: the answer, or the version to go on from.
        let mut look = |obj: &K, last: &mut String| -> Result<Option<String>, Result<T, Cause>> {
            match judge(obj) {
                Verdict::Done(t) => Err(Ok(t)),
                Verdict::Failed(c) => Err(Err(c)),
                Verdict::Pending(s) => {
                    if s != *last {
                        tracing::debug!(object = %what, expected = %expected, seen = %s, "waiting");
                        *last = s;
                    }
                    Ok(obj.meta().resource_version.clone())
                }
            }
        };
        let params = WatchParams::default()
            .fields(&format!("metadata.name={name}"))
            .timeout(WATCH_SECONDS);
        // The version to watch from; `None`: read the object first.
        let mut from: Option<String> = None;
        loop {
            let version = match from.take() {
                Some(v) => v,
                None => match api.get_opt(name).await {
                    Ok(Some(obj)) => {
                        seen = true;
                        last_error = None;
                        match look(&obj, &mut last) {
                            Err(answer) => return answer,
                            Ok(Some(v)) => v,
                            Ok(None) => {
                                return Err(Cause::Invalid(format!(
                                    "{what} has no resourceVersion to watch from"
                                )));
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
                        tracing::warn!(object = %what, "read failed, retrying: {e}");
                        last_error = Some(e.to_string());
                        retry.pause().await;
                        continue;
                    }
                },
            };
            let opened = Instant::now();
            let stream = match api.watch(&params, &version).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(object = %what, "watch failed, retrying: {e}");
                    last_error = Some(e.to_string());
                    retry.pause().await;
                    continue;
                }
            };
            let mut stream = pin!(stream);
            // Where to go on when the stream ends: its last version, or a new read.
            let mut resume = Some(version);
            let mut failed = false;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(obj) | WatchEvent::Modified(obj)) => {
                        last_error = None;
                        retry.reset();
                        match look(&obj, &mut last) {
                            Err(answer) => return answer,
                            Ok(v) => resume = v,
                        }
                    }
                    Ok(WatchEvent::Deleted(_)) => {
                        return Err(Cause::Deleted {
                            expected: expected.to_string(),
                        });
                    }
                    Ok(WatchEvent::Bookmark(b)) => resume = Some(b.metadata.resource_version),
                    Ok(WatchEvent::Error(status)) => {
                        // 410 Gone: the version left the watch cache; read again at once.
                        tracing::debug!(object = %what, code = status.code, "watch refused, reading again: {}", status.message);
                        failed = status.code != 410;
                        last_error = Some(status.message);
                        resume = None;
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(object = %what, "watch failed, retrying: {e}");
                        last_error = Some(e.to_string());
                        failed = true;
                        resume = None;
                        break;
                    }
                }
            }
            if failed || opened.elapsed() < SHORTEST_WATCH {
                retry.pause().await;
            }
            from = resume;
        }
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
