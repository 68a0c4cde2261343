//! The agent's Prometheus metrics ([`Metrics`]), rendered at `/metrics` by the admin
//! server. A leaf: components report plain values (a step's stage, task, outcome and
//! duration; a run's result; an SQS message's kind), so nothing here knows the workflow.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use failover_messages::store::CallCounter;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set of every family: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn step_histogram() -> Histogram {
    // 10 ms … ~160 s.
    Histogram::new(exponential_buckets(0.01, 2.0, 15))
}

/// The agent's metrics. Cheap to clone; clones share the registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<MetricsInner>,
}

struct MetricsInner {
    registry: Registry,
    operations: Family<Labels, Counter>,
    step_duration: HistogramFamily,
    sqs_messages: Family<Labels, Counter>,
    aws_calls: Family<Labels, Counter>,
    sqs_calls: Family<Labels, Counter>,
    heartbeats: Family<Labels, Counter>,
    leases_lost: Counter,
    fencings: Family<Labels, Counter>,
    kube_jobs: Family<Labels, Counter>,
    kube_jobs_in_flight: Family<Labels, Gauge>,
    handoff_latency: Histogram,
    dual_active: Histogram,
    auto_failovers: Family<Labels, Counter>,
    auto_armed: Family<Labels, Gauge>,
    calls: Mutex<Option<Arc<CallCounter>>>,
    /// The stores of components that are not operation work, each with its label prefix.
    scoped_calls: Mutex<Vec<(&'static str, Arc<CallCounter>)>>,
    sqs_counter: Mutex<Option<Arc<CallCounter>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered.
    pub fn new() -> Self {
        let mut r = Registry::default();
        let operations = registered(
            &mut r,
            "failover_operations",
            "Runs of this cluster's side of an operation, by result",
            Family::<Labels, Counter>::default(),
        );
        let step_duration: HistogramFamily = registered(
            &mut r,
            "failover_step_duration_seconds",
            "Duration of workflow steps, by stage, task and outcome",
            Family::new_with_constructor(step_histogram),
        );
        let sqs_messages = registered(
            &mut r,
            "failover_sqs_messages",
            "SQS inbox messages received, by kind and outcome",
            Family::<Labels, Counter>::default(),
        );
        let aws_calls = registered(
            &mut r,
            "failover_aws_calls",
            "DynamoDB call attempts, by store operation, API and outcome (ok, conditional_check_failed, transaction_canceled, throttled, error)",
            Family::<Labels, Counter>::default(),
        );
        let sqs_calls = registered(
            &mut r,
            "failover_sqs_calls",
            "SQS calls through this agent's inbox (its receives and deletes, its notifications to other clusters), by API and outcome (ok, error)",
            Family::<Labels, Counter>::default(),
        );
        let heartbeats = registered(
            &mut r,
            "failover_heartbeat_writes",
            "Serving lease renewals (heartbeat writes), by outcome",
            Family::<Labels, Counter>::default(),
        );
        let leases_lost = registered(
            &mut r,
            "failover_leases_lost",
            "Times this agent's serving lease ran out (no successful renewal for 3/4 of it)",
            Counter::default(),
        );
        let fencings = registered(
            &mut r,
            "failover_fencings",
            "Times this cluster fenced its side of a group it was not entitled to, by group and occasion",
            Family::<Labels, Counter>::default(),
        );
        let kube_jobs = registered(
            &mut r,
            "failover_kube_jobs",
            "Workflow steps carried out by the per-concern actors, by concern and outcome",
            Family::<Labels, Counter>::default(),
        );
        let kube_jobs_in_flight = registered(
            &mut r,
            "failover_kube_jobs_in_flight",
            "Steps a per-concern actor is carrying out right now, by concern",
            Family::<Labels, Gauge>::default(),
        );
        // 1 ms … ~33 s.
        let handoff_latency = registered(
            &mut r,
            "failover_handoff_latency_seconds",
            "Target side: last READY_FOR_PROMOTION record written to promotion claimed",
            Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        );
        // 100 ms … ~55 min.
        let dual_active = registered(
            &mut r,
            "failover_dual_active_window_seconds",
            "Source side of UPTIME operations: first target Primary to last source Secondary",
            Histogram::new(exponential_buckets(0.1, 2.0, 16)),
        );
        let auto_failovers = registered(
            &mut r,
            "failover_auto_failovers",
            "Automatic (forced) failovers this cluster started after the active cluster's serving lease went unrenewed, by group",
            Family::<Labels, Counter>::default(),
        );
        let auto_armed = registered(
            &mut r,
            "failover_auto_failover_armed",
            "Groups with automatic failover enabled and armed in this cluster (1: watching or counting, 0: not armed), by group",
            Family::<Labels, Gauge>::default(),
        );
        // Known label values start at zero, so dashboards and alerts see the series before
        // the first event (rates need a starting point).
        for result in ["succeeded", "stopped", "failed", "interrupted", "panicked"] {
            let _ = operations.get_or_create(&vec![("result", result.to_owned())]);
        }
        let _ = sqs_messages.get_or_create(&vec![
            ("kind", "malformed".to_owned()),
            ("outcome", "rejected".to_owned()),
        ]);
        for outcome in ["ok", "error"] {
            let _ = heartbeats.get_or_create(&vec![("outcome", outcome.to_owned())]);
        }
        Self {
            inner: Arc::new(MetricsInner {
                registry: r,
                operations,
                step_duration,
                sqs_messages,
                aws_calls,
                sqs_calls,
                heartbeats,
                leases_lost,
                fencings,
                kube_jobs,
                kube_jobs_in_flight,
                handoff_latency,
                dual_active,
                auto_failovers,
                auto_armed,
                calls: Mutex::new(None),
                scoped_calls: Mutex::new(Vec::new()),
                sqs_counter: Mutex::new(None),
            }),
        }
    }

    /// Reports DynamoDB calls from `calls` (read on every scrape), by operation, API and
    /// outcome.
    pub fn track_aws_calls(&self, calls: Arc<CallCounter>) {
        *self.inner.calls.lock().unwrap() = Some(calls);
    }

    /// Reports DynamoDB calls from `calls` as [`Metrics::track_aws_calls`] does, with the
    /// `operation` label prefixed `<scope>.` (e.g. `status.get_group_state`): the calls of a
    /// component that keeps its own store (the status keeper, the auto-failover watch).
    pub fn track_scoped_aws_calls(&self, scope: &'static str, calls: Arc<CallCounter>) {
        let mut scoped = self.inner.scoped_calls.lock().unwrap();
        scoped.retain(|(s, _)| *s != scope);
        scoped.push((scope, calls));
    }

    /// Reports SQS calls from `calls` (read on every scrape), by API and outcome.
    pub fn track_sqs_calls(&self, calls: Arc<CallCounter>) {
        *self.inner.sqs_counter.lock().unwrap() = Some(calls);
    }

    /// One run of an operation ended with `result`.
    pub fn operation(&self, result: &str) {
        self.inner
            .operations
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// One SQS message of `kind` was handled with `outcome`.
    pub fn sqs_message(&self, kind: &str, outcome: &str) {
        self.inner
            .sqs_messages
            .get_or_create(&vec![
                ("kind", kind.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// This cluster started an automatic failover of `group`.
    pub fn auto_failover(&self, group: &str) {
        self.inner
            .auto_failovers
            .get_or_create(&vec![("group", group.to_owned())])
            .inc();
    }

    /// Whether automatic failover of `group` is armed in this cluster. The group's count of
    /// automatic failovers starts at zero here, so an alert sees its first one.
    pub fn auto_failover_armed(&self, group: &str, armed: bool) {
        let labels = vec![("group", group.to_owned())];
        self.inner
            .auto_armed
            .get_or_create(&labels)
            .set(i64::from(armed));
        let _ = self.inner.auto_failovers.get_or_create(&labels);
    }

    /// This cluster fenced its side of `group` on `occasion`.
    pub fn fenced(&self, group: &str, occasion: &str) {
        self.inner
            .fencings
            .get_or_create(&vec![
                ("group", group.to_owned()),
                ("occasion", occasion.to_owned()),
            ])
            .inc();
    }

    /// A per-concern actor finished a step with `outcome`.
    pub fn kube_job(&self, concern: &str, outcome: &str) {
        self.inner
            .kube_jobs
            .get_or_create(&vec![
                ("concern", concern.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc();
    }

    /// A per-concern actor has `n` steps in flight.
    pub fn kube_jobs_in_flight(&self, concern: &str, n: i64) {
        self.inner
            .kube_jobs_in_flight
            .get_or_create(&vec![("concern", concern.to_owned())])
            .set(n);
    }

    /// A handoff took `latency` (last ready record to promotion claimed).
    pub fn handoff_latency(&self, latency: Duration) {
        self.inner.handoff_latency.observe(latency.as_secs_f64());
    }

    /// An UPTIME operation's dual-active window lasted `window`.
    pub fn dual_active_window(&self, window: Duration) {
        self.inner.dual_active.observe(window.as_secs_f64());
    }

    /// The serving lease ran out.
    pub fn lease_lost(&self) {
        self.inner.leases_lost.inc();
    }

    /// A lease renewal (heartbeat write) ended with `outcome` (`ok`, `error`).
    pub fn heartbeat(&self, outcome: &str) {
        self.inner
            .heartbeats
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    /// A workflow step ended with `outcome` (`done` or `failed`) after `elapsed`.
    pub fn step_duration(&self, stage: &str, task: &str, outcome: &str, elapsed: Duration) {
        let labels: Labels = vec![
            ("stage", stage.to_owned()),
            ("task", task.to_owned()),
            ("outcome", outcome.to_owned()),
        ];
        self.inner
            .step_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let main = self.inner.calls.lock().unwrap().clone();
        let scoped = self.inner.scoped_calls.lock().unwrap().clone();
        let counters = main.map(|c| ("", c)).into_iter().chain(scoped);
        for (scope, calls) in counters {
            for ((operation, api, outcome), n) in calls.by_operation_api_and_outcome() {
                let operation = if scope.is_empty() {
                    operation
                } else {
                    format!("{scope}.{operation}")
                };
                self.inner
                    .aws_calls
                    .get_or_create(&vec![
                        ("operation", operation),
                        ("api", api),
                        ("outcome", outcome.as_str().to_owned()),
                    ])
                    .inner()
                    .store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(calls) = self.inner.sqs_counter.lock().unwrap().as_ref() {
            for ((_, api, outcome), n) in calls.by_operation_api_and_outcome() {
                self.inner
                    .sqs_calls
                    .get_or_create(&vec![
                        ("api", api),
                        ("outcome", outcome.as_str().to_owned()),
                    ])
                    .inner()
                    .store(n, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.inner.registry);
        out
    }
}

/// Registers `metric` in `registry` under `name` and hands it back.
fn registered<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

#[cfg(test)]
mod tests {
    use failover_messages::store::CallOutcome;

    use super::*;

    #[test]
    fn metrics_render_every_family() {
        let m = Metrics::new();
        m.operation("succeeded");
        m.sqs_message("malformed", "rejected");
        m.heartbeat("ok");
        m.step_duration(
            "SourceShutdown",
            "TrafficOff",
            "done",
            Duration::from_millis(20),
        );
        let text = m.render();
        for name in [
            "failover_operations_total{result=\"succeeded\"} 1",
            "failover_sqs_messages_total{kind=\"malformed\",outcome=\"rejected\"} 1",
            "failover_heartbeat_writes_total{outcome=\"ok\"} 1",
            "failover_step_duration_seconds_count{stage=\"SourceShutdown\"",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }

    #[test]
    fn a_component_with_its_own_store_shows_its_calls_under_its_prefix() {
        let m = Metrics::new();
        let (work, status) = (CallCounter::new(), CallCounter::new());
        m.track_aws_calls(work.clone());
        m.track_scoped_aws_calls("status", status.clone());
        work.record("get_group_state", "GetItem", CallOutcome::Ok);
        status.record("get_group_state", "GetItem", CallOutcome::Ok);
        status.record("get_group_state", "GetItem", CallOutcome::Ok);
        let text = m.render();
        for line in [
            "failover_aws_calls_total{operation=\"get_group_state\",api=\"GetItem\",outcome=\"ok\"} 1",
            "failover_aws_calls_total{operation=\"status.get_group_state\",api=\"GetItem\",outcome=\"ok\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn aws_calls_are_rendered_by_operation_api_and_outcome() {
        let m = Metrics::new();
        let calls = CallCounter::new();
        m.track_aws_calls(calls.clone());
        calls.record("put_heartbeat", "PutItem", CallOutcome::Ok);
        calls.record("put_heartbeat", "PutItem", CallOutcome::Ok);
        calls.record("put_heartbeat", "PutItem", CallOutcome::Throttled);
        calls.record(
            "claim_promotion",
            "TransactWriteItems",
            CallOutcome::TransactionCanceled,
        );
        let text = m.render();
        for line in [
            "failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"ok\"} 2",
            "failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"throttled\"} 1",
            "failover_aws_calls_total{operation=\"claim_promotion\",api=\"TransactWriteItems\",outcome=\"transaction_canceled\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Counts are read on every scrape.
        calls.record("put_heartbeat", "PutItem", CallOutcome::Ok);
        assert!(m.render().contains(
            "failover_aws_calls_total{operation=\"put_heartbeat\",api=\"PutItem\",outcome=\"ok\"} 3"
        ));
    }

    #[test]
    fn sqs_calls_are_rendered_by_api_and_outcome() {
        let m = Metrics::new();
        let calls = CallCounter::new();
        m.track_sqs_calls(calls.clone());
        calls.record("inbox", "SendMessage", CallOutcome::Ok);
        calls.record("inbox", "SendMessage", CallOutcome::Error);
        calls.record("inbox", "ReceiveMessage", CallOutcome::Ok);
        let text = m.render();
        for line in [
            "failover_sqs_calls_total{api=\"SendMessage\",outcome=\"ok\"} 1",
            "failover_sqs_calls_total{api=\"SendMessage\",outcome=\"error\"} 1",
            "failover_sqs_calls_total{api=\"ReceiveMessage\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("failover_aws_calls_total{"), "{text}");
    }
}
