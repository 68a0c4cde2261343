//! [`FailoverReporter`]: keeps the `Failover` object of one operation in this cluster
//! current, so `kubectl get failovers -w` in either cluster shows that cluster's side live.
//!
//! It is opened once per run (creating the object if absent: an existing one is kept, the
//! spec is immutable) and then follows the run's progress stream ([`Progress`]). Every
//! engine event is folded into the status ([`super::failover_status`]) where the run sends
//! it, in the object's [`StatusWriter`], which the run's journal writes through too; the
//! reporter writes what no journal write carried (within [`URGENT_GRACE`] for a stage
//! change or a failure, at most every [`MIN_WRITE_INTERVAL`] otherwise), the operation
//! record stored after the run adds its timings, and the side's end writes the final status
//! and its Event. It also publishes the operation's Kubernetes Events on that object
//! ([`super::failover_events`]). A write that fails is logged as a warning and never fails
//! the workflow.
//!
//! **A Failover a user created** (see [`super::trigger`]): when the operation was submitted
//! from a single-group `Failover` in this very cluster (its `requestedBy` is
//! `kubernetes:<this cluster>/<ns>/<name>` and the object's UID gives this operation id),
//! the reporter keeps the status of the user's object instead of creating a second one.
//! The peer cluster, which has no user object, creates its own as for any operation. A
//! multi-group user `Failover` gets one agent-created object per operation (the groups'
//! progress would overwrite each other in one status); the user's object then carries the
//! operation ids and the `Accepted` condition.

use std::sync::Arc;
use std::time::{Duration, Instant};

use failover_messages::crd::Failover;
use failover_messages::records::Operation;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, PostParams};
use tokio::sync::mpsc;

use crate::errors::error_chain_without_repeats;
use crate::kube_events::{EventSpec, Events};
use crate::workflow::{Progress, ProgressEvent};

use super::failover_events::{ProgressEvents, result_event};
use super::failover_names::{
    failover_name, operation_ids, parse_requested_by, status_on_user_object,
};
use super::failover_status::{desired_failover, initial_status};
use super::status_writer::StatusWriter;

/// Least time between two progress writes of the same Failover (stage changes and failures
/// sooner, see [`URGENT_GRACE`]; the final status always).
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// How long a change (a stage change, a failure, the object's first status: at most this
/// long; any other: also [`MIN_WRITE_INTERVAL`] after the last write) waits for a journal
/// write to carry it (the journal writes before every run of Kubernetes steps, with the
/// whole status: [`StatusWriter`]) before the reporter writes it itself.
pub const URGENT_GRACE: Duration = Duration::from_millis(100);

/// Keeps one operation's `Failover` in this cluster current. Every write is best effort.
#[derive(Debug)]
pub struct FailoverReporter {
    api: Api<Failover>,
    name: String,
    namespace: String,
    cluster: String,
    op_id: String,
    writer: Arc<StatusWriter>,
    /// When the reporter writes what no journal write carried, if a change waits.
    due: Option<Instant>,
    events: Events,
    progress_events: ProgressEvents,
    reference: Option<ObjectReference>,
}

impl FailoverReporter {
    /// The reporter of `op` in cluster `cluster`, writing through `client`: the operation's
    /// `Failover` is created unless it exists (an existing one is kept as is: the spec is
    /// immutable); then [`Self::follow`] the run's progress.
    pub async fn open(client: kube::Client, cluster: &str, op: &Operation) -> Self {
        let mut reporter = Self::new(client, cluster, op);
        reporter.create(op).await;
        reporter
    }

    fn new(client: kube::Client, cluster: &str, op: &Operation) -> Self {
        let api = Api::namespaced(client.clone(), &op.group.namespace);
        let name = failover_name(&op.id);
        Self {
            events: Events::new(client, cluster),
            writer: Arc::new(StatusWriter::new(api.clone(), &name, initial_status(op))),
            api,
            name,
            namespace: op.group.namespace.clone(),
            cluster: cluster.to_owned(),
            op_id: op.id.clone(),
            due: None,
            progress_events: ProgressEvents::default(),
            reference: None,
        }
    }

    /// The writer of the object's status (the user's object for an operation submitted from
    /// a Failover in this cluster, see the module docs), which the run's journal shares and
    /// its progress is folded into ([`StatusWriter::fold`]).
    pub fn writer(&self) -> Arc<StatusWriter> {
        Arc::clone(&self.writer)
    }

    /// The user's single-group `Failover` in this cluster that submitted `op`, if any.
    async fn user_failover(&self, op: &Operation) -> Option<Failover> {
        let (cluster, ns, name) = parse_requested_by(&op.requested_by)?;
        if cluster != self.cluster || ns != op.group.namespace {
            return None;
        }
        let fo = match self.api.get_opt(name).await {
            Ok(fo) => fo?,
            Err(e) => {
                tracing::warn!(
                    failover = %name, namespace = %ns, cluster = %self.cluster,
                    error = %error_chain_without_repeats(&e), "cannot read the Failover that requested the operation"
                );
                return None;
            }
        };
        (status_on_user_object(&fo) && operation_ids(&fo).first() == Some(&op.id)).then_some(fo)
    }

    fn reference_of(&self, fo: &Failover) -> ObjectReference {
        let mut r = fo.object_ref(&());
        r.namespace = r.namespace.or_else(|| Some(self.namespace.clone()));
        r
    }

    /// The object Events are attached to: the Failover as created or read, else one built
    /// from its name.
    fn regarding(&self) -> ObjectReference {
        self.reference.clone().unwrap_or_else(|| ObjectReference {
            api_version: Some(Failover::api_version(&()).into_owned()),
            kind: Some(Failover::kind(&()).into_owned()),
            name: Some(self.name.clone()),
            namespace: Some(self.namespace.clone()),
            ..ObjectReference::default()
        })
    }

    async fn publish(&self, ev: &EventSpec) {
        self.events.publish(&self.regarding(), ev).await;
    }

    /// Creates the Failover unless it exists (the spec is immutable, so an existing one is
    /// kept as is); writes the initial status when it was created here.
    async fn create(&mut self, op: &Operation) {
        if let Some(fo) = self.user_failover(op).await {
            self.name = fo.metadata.name.clone().unwrap_or_default();
            self.writer = Arc::new(StatusWriter::new(
                self.api.clone(),
                &self.name,
                initial_status(op),
            ));
            self.reference = Some(self.reference_of(&fo));
            if fo.status.as_ref().and_then(|s| s.phase).is_none() {
                self.soon(URGENT_GRACE);
            }
            return;
        }
        match self
            .api
            .create(&PostParams::default(), &desired_failover(op))
            .await
        {
            Ok(created) => {
                self.reference = Some(self.reference_of(&created));
                self.soon(URGENT_GRACE);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if let Ok(Some(existing)) = self.api.get_opt(&self.name).await {
                    self.reference = Some(self.reference_of(&existing));
                }
            }
            Err(e) => tracing::warn!(
                failover = %self.name, namespace = %self.namespace, cluster = %self.cluster,
                error = %error_chain_without_repeats(&e), "cannot create the Failover; the operation goes on"
            ),
        }
    }

    /// Writes the status unless a journal write already carried every change.
    async fn write(&mut self) {
        self.due = None;
        if let Err(e) = self.writer.write_if_unwritten().await {
            tracing::warn!(
                failover = %self.name, namespace = %self.namespace, cluster = %self.cluster,
                error = %error_chain_without_repeats(&e), "cannot write the Failover status; the operation goes on"
            );
        }
    }

    /// Writes within `after` at the latest.
    fn soon(&mut self, after: Duration) {
        let at = Instant::now() + after;
        self.due = Some(self.due.map_or(at, |d| d.min(at)));
    }

    /// When a change that waits is due: at most every [`MIN_WRITE_INTERVAL`].
    fn after_interval(&self) -> Duration {
        self.writer.last_write().map_or(Duration::ZERO, |t| {
            (t + MIN_WRITE_INTERVAL).saturating_duration_since(Instant::now())
        })
    }

    /// Follows every progress event of the run from `rx` (already folded into the status
    /// where the run sent it: [`StatusWriter::fold`]) and writes what no journal write
    /// carried: at most every [`MIN_WRITE_INTERVAL`], stage changes and failures within
    /// [`URGENT_GRACE`], the end of the side at once; until `rx` closes, then whatever is
    /// still unwritten.
    pub async fn follow(mut self, mut rx: mpsc::UnboundedReceiver<Progress>) {
        loop {
            tokio::select! {
                p = rx.recv() => {
                    let Some(p) = p else { break };
                    self.on(&p).await;
                }
                () = tokio::time::sleep_until(self.due.unwrap_or_else(Instant::now).into()), if self.due.is_some() => {
                    self.write().await;
                }
            }
        }
        self.write().await;
    }

    async fn on(&mut self, p: &Progress) {
        match &p.event {
            // Written with the final status, which follows.
            ProgressEvent::Recorded(_) => {}
            ProgressEvent::SideFinished(result) => {
                self.write().await;
                let ev = result_event(result, &self.op_id, &self.cluster);
                self.publish(&ev).await;
            }
            _ => {
                if let Some(ev) = self.progress_events.on(p) {
                    self.publish(&ev).await;
                }
                let urgent = matches!(
                    p.event,
                    ProgressEvent::StageStarted { .. } | ProgressEvent::TaskFailed { .. }
                );
                let after = if urgent {
                    URGENT_GRACE
                } else {
                    self.after_interval().max(URGENT_GRACE)
                };
                self.soon(after);
            }
        }
    }
}
