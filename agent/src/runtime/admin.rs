//! The admin endpoints (`/live`, `/ready`, `/metrics`) and the readiness they report.
//!
//! `/live` answers 200 while the process serves HTTP and the serving-lease loop keeps
//! running: once that loop has started, a gap of more than a quarter of the lease between two
//! of its ticks (a hung runtime, a stuck actor) makes it answer 503, so Kubernetes restarts
//! the agent well within the lease ([`Readiness::live`]; the deployment's probe bound is in
//! `deploy/`). `/ready` answers
//! 200 only once the first AWS call and the Kubernetes API check succeeded, the start-up
//! fencing check finished, the FailoverGroup and Failover watches delivered their first list
//! and the first heartbeat was written (so a failover started once the agent is ready sees
//! it alive) ([`Readiness`]), else 503 with the reason. `/metrics` renders the [`Metrics`] registry
//! ([`crate::metrics`]) in the Prometheus text format.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::metrics::Metrics;

/// What `/ready` answers: ready once the first AWS call and the Kubernetes API check
/// succeeded. Cheap to clone; clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    inner: Arc<Mutex<ReadyState>>,
}

#[derive(Debug, Default)]
struct ReadyState {
    aws: bool,
    kube: bool,
    fenced: bool,
    /// The first heartbeat is written: `failoverctl` and the other agents see this agent
    /// alive (a start is decided on it).
    beating: bool,
    /// Watches the agent relies on: name → synced (initial list delivered).
    watches: std::collections::BTreeMap<&'static str, bool>,
    /// The serving-lease loop's last tick, and the gap after which the agent is not live.
    lease_loop: Option<(std::time::Instant, std::time::Duration)>,
}

impl Readiness {
    /// An AWS call succeeded.
    pub fn aws_ok(&self) {
        self.inner.lock().unwrap().aws = true;
    }

    /// The heartbeat record was written.
    pub fn heartbeat_written(&self) {
        self.inner.lock().unwrap().beating = true;
    }

    /// The serving-lease loop ticked; it must tick again within `stall`.
    pub fn lease_loop_tick(&self, stall: std::time::Duration) {
        self.inner.lock().unwrap().lease_loop = Some((std::time::Instant::now(), stall));
    }

    /// `Ok` while the agent's loops make progress, else why not.
    pub fn live(&self) -> Result<(), String> {
        let s = self.inner.lock().unwrap();
        live_reason(s.lease_loop, std::time::Instant::now())
    }

    /// The Kubernetes API check succeeded.
    pub fn kube_ok(&self) {
        self.inner.lock().unwrap().kube = true;
    }

    /// The start-up fencing check is done (the agent's side of every group it is not
    /// entitled to is down), so the agent works on operations from now on.
    pub fn startup_fencing_done(&self) {
        self.inner.lock().unwrap().fenced = true;
    }

    /// The agent relies on the watch `name`: not ready until it has synced.
    pub fn expect_watch(&self, name: &'static str) {
        self.inner
            .lock()
            .unwrap()
            .watches
            .entry(name)
            .or_insert(false);
    }

    /// The watch `name` delivered its initial list.
    pub fn watch_synced(&self, name: &'static str) {
        self.inner.lock().unwrap().watches.insert(name, true);
    }

    /// `Ok` when ready, else why not.
    pub fn check(&self) -> Result<(), String> {
        let s = self.inner.lock().unwrap();
        ready_reason(s.aws, s.kube)?;
        let pending: Vec<&str> = s
            .watches
            .iter()
            .filter(|(_, synced)| !**synced)
            .map(|(name, _)| *name)
            .collect();
        if !pending.is_empty() {
            return Err(format!(
                "the watch of {} has not synced yet",
                pending.join(", ")
            ));
        }
        if !s.fenced {
            return Err("the start-up fencing check has not finished yet".into());
        }
        if s.beating {
            Ok(())
        } else {
            Err("the first heartbeat has not been written yet (failoverctl would see this agent as down)".into())
        }
    }
}

/// The pure liveness decision: live until the lease loop, once started, misses its stall
/// bound.
pub fn live_reason(
    lease_loop: Option<(std::time::Instant, std::time::Duration)>,
    now: std::time::Instant,
) -> Result<(), String> {
    match lease_loop {
        Some((last, stall)) if now.saturating_duration_since(last) > stall => Err(format!(
            "the serving-lease loop has not run for {:.1}s (bound {:.1}s)",
            now.saturating_duration_since(last).as_secs_f64(),
            stall.as_secs_f64()
        )),
        _ => Ok(()),
    }
}

/// The pure readiness decision.
pub fn ready_reason(aws: bool, kube: bool) -> Result<(), String> {
    match (aws, kube) {
        (true, true) => Ok(()),
        (false, true) => Err("no successful AWS call yet".into()),
        (true, false) => Err("the Kubernetes API check has not succeeded yet".into()),
        (false, false) => Err("no successful AWS call and no Kubernetes API check yet".into()),
    }
}

#[derive(Clone)]
struct AdminState {
    metrics: Metrics,
    readiness: Readiness,
}

/// The admin router.
pub fn router(metrics: Metrics, readiness: Readiness) -> Router {
    Router::new()
        .route("/live", get(live))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(AdminState { metrics, readiness })
}

async fn live(State(s): State<AdminState>) -> impl IntoResponse {
    match s.readiness.live() {
        Ok(()) => (StatusCode::OK, "live\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {reason}\n"),
        ),
    }
}

async fn ready(State(s): State<AdminState>) -> impl IntoResponse {
    match s.readiness.check() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        ),
    }
}

async fn render_metrics(State(s): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

/// Serves the admin endpoints on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    readiness: Readiness,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, readiness)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_until_the_lease_loop_misses_its_bound() {
        use std::time::{Duration, Instant};
        let t0 = Instant::now();
        let stall = Duration::from_millis(7_500);
        assert!(live_reason(None, t0).is_ok(), "not started yet");
        assert!(live_reason(Some((t0, stall)), t0 + stall).is_ok());
        let err = live_reason(Some((t0, stall)), t0 + Duration::from_secs(8)).unwrap_err();
        assert!(err.contains("8.0s") && err.contains("7.5s"), "{err}");
    }

    #[test]
    fn ready_only_after_aws_and_kube() {
        assert!(ready_reason(false, false).is_err());
        assert!(
            ready_reason(true, false)
                .unwrap_err()
                .contains("Kubernetes")
        );
        assert!(ready_reason(false, true).unwrap_err().contains("AWS"));
        assert!(ready_reason(true, true).is_ok());
    }

    #[test]
    fn ready_also_waits_for_the_start_up_fencing_the_first_heartbeat_and_every_expected_watch() {
        let r = Readiness::default();
        r.aws_ok();
        r.kube_ok();
        assert!(r.check().unwrap_err().contains("fencing"));
        r.startup_fencing_done();
        assert!(r.check().unwrap_err().contains("heartbeat"));
        r.heartbeat_written();
        assert!(r.check().is_ok());
        r.expect_watch("failovergroups");
        r.expect_watch("failovers");
        let why = r.check().unwrap_err();
        assert!(why.contains("failovergroups, failovers"), "{why}");
        r.watch_synced("failovers");
        r.watch_synced("failovergroups");
        assert!(r.check().is_ok());
    }
}
