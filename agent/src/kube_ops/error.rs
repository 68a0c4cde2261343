//! [`KubeOpsError`]: one variant per Kubernetes operation, each naming the object
//! ([`ObjectId`]: kind, `namespace/name`, cluster) and carrying the [`Cause`].
//!
//! Messages read as one sentence with the cause appended, e.g. `VolumeReplication
//! shop/data in cluster east did not reach Secondary: timed out after 5s waiting for
//! state Secondary with Completed=True at the current generation; last seen: ...`.
//!
//! [`Cause::is_permanent`] tells a failure that running the step again cannot mend (the
//! object does not exist, the request is forbidden or invalid: HTTP 400, 403, 404, 405,
//! 422) from a transient one (5xx, 409 conflict, 429, 401, timeouts, a broken connection or
//! watch), which the agent retries.

use std::fmt;
use std::time::Duration;

/// An object in one cluster, as errors name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectId {
    /// `Deployment`, `VolumeReplication`, ...
    pub kind: &'static str,
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The cluster it lives in.
    pub cluster: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}/{} in cluster {}",
            self.kind, self.namespace, self.name, self.cluster
        )
    }
}

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// A request to the API server failed.
    #[error("API request failed: {0}")]
    Api(#[source] kube::Error),
    /// The watch behind a wait failed and could not be re-established.
    #[error("watch failed: {0}")]
    Watch(#[source] kube::runtime::watcher::Error),
    /// The object does not exist.
    #[error("the object does not exist")]
    NotFound,
    /// The object was deleted while waiting for it.
    #[error("the object was deleted while waiting for {expected}")]
    Deleted {
        /// What the wait was for.
        expected: String,
    },
    /// A wait passed its deadline.
    #[error("timed out after {after:?} waiting for {expected}; last seen: {last}")]
    Timeout {
        /// The deadline.
        after: Duration,
        /// What the wait was for.
        expected: String,
        /// The last state seen (or the last watch error).
        last: String,
    },
    /// The volume reports `Degraded=True` for the current generation: waiting is pointless.
    #[error("volume is Degraded: {message}")]
    Degraded {
        /// The Degraded condition's reason and message.
        message: String,
    },
    /// The object, or the request, cannot be acted on as asked.
    #[error("{0}")]
    Invalid(String),
    /// A watch stream ended without an answer (the API server closed it): worth a retry.
    #[error("{0}")]
    WatchEnded(String),
    /// A verification found problems.
    #[error("verification failed: {}", problems.join("; "))]
    Verify {
        /// Each problem found, one sentence each.
        problems: Vec<String>,
    },
}

/// True for the HTTP status codes of a request the API server refuses the same way every
/// time: 400 bad request, 403 forbidden, 404 not found, 405 method not allowed, 422 invalid.
/// Everything else (401, 409 conflict, 410 gone, 429 too many requests, 5xx) may pass later.
pub fn is_permanent_status(code: u16) -> bool {
    matches!(code, 400 | 403 | 404 | 405 | 422)
}

/// True when the API server answered `e` with a permanent status
/// ([`is_permanent_status`]); a transport error, a timeout or an unreadable answer is not.
pub fn is_permanent_api_error(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if is_permanent_status(status.code))
}

impl Cause {
    /// True when running the step again cannot mend this: the object does not exist or was
    /// deleted, the request is forbidden or invalid, or the object cannot be acted on as
    /// asked. False for what may pass (server errors, conflicts, throttling, a broken
    /// connection or watch) and for the outcomes of waits (a timeout, a Degraded volume, a
    /// failed verification), which callers judge on their own.
    pub fn is_permanent(&self) -> bool {
        use kube::runtime::watcher::Error as W;
        match self {
            Self::NotFound | Self::Deleted { .. } | Self::Invalid(_) => true,
            Self::Api(e) => is_permanent_api_error(e),
            Self::Watch(W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e)) => {
                is_permanent_api_error(e)
            }
            Self::Watch(W::WatchError(status)) => is_permanent_status(status.code),
            Self::Watch(W::NoResourceVersion) => true,
            Self::WatchEnded(_)
            | Self::Timeout { .. }
            | Self::Degraded { .. }
            | Self::Verify { .. } => false,
        }
    }
}

impl From<kube::Error> for Cause {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(s) if s.is_not_found() => Cause::NotFound,
            _ => Cause::Api(e),
        }
    }
}

/// A Kubernetes operation of the agent failed. Each variant is named after the operation
/// and names the object and the cluster.
#[derive(Debug, thiserror::Error)]
pub enum KubeOpsError {
    /// Switching the external-dns annotation of a VirtualService or Ingress.
    #[error("cannot switch traffic {state} on {object}: {source}")]
    PatchTraffic {
        object: ObjectId,
        /// `on` or `off`.
        state: &'static str,
        #[source]
        source: Cause,
    },
    /// Reading the traffic state of a VirtualService or Ingress.
    #[error("cannot read the traffic state of {object}: {source}")]
    ReadTraffic {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Suspending a HelmRelease or Kustomization.
    #[error("cannot suspend {object}: {source}")]
    SuspendFlux {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Resuming a HelmRelease or Kustomization.
    #[error("cannot resume {object}: {source}")]
    ResumeFlux {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Recording the replica count of a Deployment or StatefulSet.
    #[error("cannot record the replica count of {object}: {source}")]
    RecordReplicas {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Scaling a Deployment or StatefulSet (down to 0, or back up).
    #[error("cannot scale {object} to {to}: {source}")]
    ScaleWorkload {
        object: ObjectId,
        /// `0 replicas`, `3 replicas`, `the recorded replicas`.
        to: String,
        #[source]
        source: Cause,
    },
    /// Waiting until no pod of a workload is left.
    #[error("pods of {object} are not gone: {source}")]
    WaitPodsGone {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Waiting until a Deployment or StatefulSet is ready.
    #[error("{object} is not ready: {source}")]
    WaitWorkloadReady {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Reading a workload.
    #[error("cannot read {object}: {source}")]
    ReadWorkload {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Suspending a CronJob.
    #[error("cannot suspend {object}: {source}")]
    SuspendCronJob {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Resuming a CronJob.
    #[error("cannot resume {object}: {source}")]
    ResumeCronJob {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Waiting for a CronJob's running Jobs to finish.
    #[error("Jobs of {object} did not finish: {source}")]
    WaitJobsFinished {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Setting `spec.replicationState` of a VolumeReplication.
    #[error("cannot set {object} to {state}: {source}")]
    SetReplicationState {
        object: ObjectId,
        /// `primary`, `secondary` or `resync`.
        state: &'static str,
        #[source]
        source: Cause,
    },
    /// Waiting until a VolumeReplication is settled in a state.
    #[error("{object} did not reach {expected}: {source}")]
    WaitVolumeState {
        object: ObjectId,
        /// `Primary` or `Secondary`.
        expected: &'static str,
        #[source]
        source: Cause,
    },
    /// Waiting until a VolumeReplication has resynced.
    #[error("{object} did not finish resyncing: {source}")]
    WaitVolumeResynced {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Verifying a promoted VolumeReplication.
    #[error("{object} failed verification: {source}")]
    VerifyVolume {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Reading a VolumeReplication.
    #[error("cannot observe {object}: {source}")]
    ObserveVolume {
        object: ObjectId,
        #[source]
        source: Cause,
    },
    /// Reading an object the preflight checks.
    #[error("cannot check {object}: {source}")]
    Preflight {
        object: ObjectId,
        #[source]
        source: Cause,
    },
}

impl KubeOpsError {
    /// The object the failed operation was about.
    pub fn object(&self) -> &ObjectId {
        match self {
            Self::PatchTraffic { object, .. }
            | Self::ReadTraffic { object, .. }
            | Self::SuspendFlux { object, .. }
            | Self::ResumeFlux { object, .. }
            | Self::RecordReplicas { object, .. }
            | Self::ScaleWorkload { object, .. }
            | Self::WaitPodsGone { object, .. }
            | Self::WaitWorkloadReady { object, .. }
            | Self::ReadWorkload { object, .. }
            | Self::SuspendCronJob { object, .. }
            | Self::ResumeCronJob { object, .. }
            | Self::WaitJobsFinished { object, .. }
            | Self::SetReplicationState { object, .. }
            | Self::WaitVolumeState { object, .. }
            | Self::WaitVolumeResynced { object, .. }
            | Self::VerifyVolume { object, .. }
            | Self::ObserveVolume { object, .. }
            | Self::Preflight { object, .. } => object,
        }
    }

    /// The cause.
    pub fn cause(&self) -> &Cause {
        match self {
            Self::PatchTraffic { source, .. }
            | Self::ReadTraffic { source, .. }
            | Self::SuspendFlux { source, .. }
            | Self::ResumeFlux { source, .. }
            | Self::RecordReplicas { source, .. }
            | Self::ScaleWorkload { source, .. }
            | Self::WaitPodsGone { source, .. }
            | Self::WaitWorkloadReady { source, .. }
            | Self::ReadWorkload { source, .. }
            | Self::SuspendCronJob { source, .. }
            | Self::ResumeCronJob { source, .. }
            | Self::WaitJobsFinished { source, .. }
            | Self::SetReplicationState { source, .. }
            | Self::WaitVolumeState { source, .. }
            | Self::WaitVolumeResynced { source, .. }
            | Self::VerifyVolume { source, .. }
            | Self::ObserveVolume { source, .. }
            | Self::Preflight { source, .. } => source,
        }
    }

    /// True when the cause is a wait that passed its deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self.cause(), Cause::Timeout { .. })
    }

    /// True when the cause is permanent ([`Cause::is_permanent`]).
    pub fn is_permanent(&self) -> bool {
        self.cause().is_permanent()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_object_cluster_and_cause() {
        let e = KubeOpsError::WaitVolumeState {
            object: ObjectId {
                kind: "VolumeReplication",
                namespace: "shop".into(),
                name: "data".into(),
                cluster: "east".into(),
            },
            expected: "Secondary",
            source: Cause::Timeout {
                after: Duration::from_secs(5),
                expected: "state Secondary".into(),
                last: "state Primary".into(),
            },
        };
        let m = e.to_string();
        assert!(
            m.contains("VolumeReplication shop/data in cluster east"),
            "{m}"
        );
        assert!(m.contains("did not reach Secondary"), "{m}");
        assert!(m.contains("timed out after 5s"), "{m}");
        assert!(m.contains("last seen: state Primary"), "{m}");
        assert!(e.is_timeout());
        assert_eq!(e.object().name, "data");
        assert!(std::error::Error::source(&e).is_some());
    }

    fn api(code: u16) -> Cause {
        Cause::Api(kube::Error::Api(
            kube::core::Status::failure("refused", "Reason")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn refusals_that_repeat_are_permanent() {
        for code in [400, 403, 404, 405, 422] {
            assert!(api(code).is_permanent(), "{code}");
        }
        assert!(Cause::NotFound.is_permanent());
        assert!(
            Cause::Deleted {
                expected: "Primary".into()
            }
            .is_permanent()
        );
        assert!(Cause::Invalid("no replica count recorded".into()).is_permanent());
        assert!(
            Cause::Watch(kube::runtime::watcher::Error::WatchStartFailed(
                kube::Error::Api(
                    kube::core::Status::failure("no", "Forbidden")
                        .with_code(403)
                        .boxed()
                )
            ))
            .is_permanent()
        );
    }

    #[test]
    fn what_may_pass_is_transient() {
        for code in [401, 409, 410, 429, 500, 502, 503, 504] {
            assert!(!api(code).is_permanent(), "{code}");
        }
        assert!(!Cause::WatchEnded("the watch ended".into()).is_permanent());
        assert!(
            !Cause::Watch(kube::runtime::watcher::Error::WatchError(
                kube::core::Status::failure("too old", "Expired")
                    .with_code(410)
                    .boxed()
            ))
            .is_permanent()
        );
        let transport = kube::Error::Service(Box::new(std::io::Error::other("connection reset")));
        assert!(!Cause::Api(transport).is_permanent());
        let timeout = Cause::Timeout {
            after: Duration::from_secs(5),
            expected: "Primary".into(),
            last: "Secondary".into(),
        };
        assert!(!timeout.is_permanent(), "waits are judged by their callers");
    }

    #[test]
    fn verify_lists_every_problem() {
        let c = Cause::Verify {
            problems: vec!["a".into(), "b".into()],
        };
        assert_eq!(c.to_string(), "verification failed: a; b");
    }
}
