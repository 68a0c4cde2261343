//! [`FailoverReporter`]: keeps the `Failover` object of one operation in this cluster
//! current, so `kubectl get failovers -w` in either cluster shows that cluster's side live.
//!
//! It is opened once per run (creating the object if absent: an existing one is kept, the
//! spec is immutable) and then follows the run's progress stream
//! ([`Progress`]): every engine event is folded into the status
//! ([`super::failover_status`]) and the status subresource merge-patched, the operation
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

use std::time::{Duration, Instant};

use failover_messages::crd::{Failover, FailoverStatus};
use failover_messages::records::Operation;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::mpsc;

use crate::errors::error_chain_without_repeats;
use crate::kube_events::{EventSpec, Events};
use crate::kube_ops::FIELD_MANAGER;
use crate::workflow::{Progress, ProgressEvent};

use super::failover_events::{ProgressEvents, result_event};
use super::failover_names::{
    failover_name, operation_ids, parse_requested_by, status_on_user_object,
};
use super::failover_status::{apply_progress, desired_failover, initial_status};

/// Least time between two progress writes of the same Failover (stage changes and failures
/// are written at once; the final status always).
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(500);

/// Keeps one operation's `Failover` in this cluster current. Every write is best effort.
#[derive(Debug)]
pub struct FailoverReporter {
    api: Api<Failover>,
    name: String,
    namespace: String,
    cluster: String,
    op_id: String,
    status: FailoverStatus,
    last_write: Option<Instant>,
    dirty: bool,
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
        Self {
            events: Events::new(client.clone(), cluster),
            api: Api::namespaced(client, &op.group.namespace),
            name: failover_name(&op.id),
            namespace: op.group.namespace.clone(),
            cluster: cluster.to_owned(),
            op_id: op.id.clone(),
            status: initial_status(op),
            last_write: None,
            dirty: false,
            progress_events: ProgressEvents::default(),
            reference: None,
        }
    }

    /// The name of the `Failover` whose status this reporter keeps (the user's object for
    /// an operation submitted from a Failover in this cluster, see the module docs).
    pub fn name(&self) -> &str {
        &self.name
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

    /// The status as folded so far.
    pub fn status(&self) -> &FailoverStatus {
        &self.status
    }

    /// Creates the Failover unless it exists (the spec is immutable, so an existing one is
    /// kept as is); writes the initial status when it was created here.
    async fn create(&mut self, op: &Operation) {
        if let Some(fo) = self.user_failover(op).await {
            self.name = fo.metadata.name.clone().unwrap_or_default();
            self.reference = Some(self.reference_of(&fo));
            if fo.status.as_ref().and_then(|s| s.phase).is_none() {
                self.write().await;
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
                self.write().await;
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

    /// Merge-patches the status subresource with the folded status.
    async fn write(&mut self) {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        };
        let patch = json!({ "status": &self.status });
        self.last_write = Some(Instant::now());
        self.dirty = false;
        if let Err(e) = self
            .api
            .patch_status(&self.name, &pp, &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(
                failover = %self.name, namespace = %self.namespace, cluster = %self.cluster,
                error = %error_chain_without_repeats(&e), "cannot write the Failover status; the operation goes on"
            );
        }
    }

    fn due(&self) -> Option<Instant> {
        self.dirty.then(|| {
            self.last_write
                .map_or_else(Instant::now, |t| t + MIN_WRITE_INTERVAL)
        })
    }

    /// Folds every progress event of the run from `rx` into the status and writes it, at
    /// most every [`MIN_WRITE_INTERVAL`] (stage changes and failures at once, the end of the
    /// side always), until `rx` closes; then writes what is still unwritten.
    pub async fn follow(mut self, mut rx: mpsc::UnboundedReceiver<Progress>) {
        loop {
            let due = self.due();
            tokio::select! {
                p = rx.recv() => {
                    let Some(p) = p else { break };
                    self.on(&p).await;
                }
                () = tokio::time::sleep_until(due.unwrap_or_else(Instant::now).into()), if due.is_some() => {
                    self.write().await;
                }
            }
        }
        if self.dirty {
            self.write().await;
        }
    }

    async fn on(&mut self, p: &Progress) {
        apply_progress(&mut self.status, p);
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
                self.dirty = true;
                let urgent = matches!(
                    p.event,
                    ProgressEvent::StageStarted { .. } | ProgressEvent::TaskFailed { .. }
                );
                if urgent || self.due().is_some_and(|t| t <= Instant::now()) {
                    self.write().await;
                }
            }
        }
    }
}
