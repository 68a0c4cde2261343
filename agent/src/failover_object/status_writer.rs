//! [`StatusWriter`]: the one writer of an operation's `Failover` status in this cluster.
//!
//! Two parts of the agent keep that status: the reporter (phase, stage, task, timings,
//! conditions: what `kubectl get failovers -w` shows) and the journal (`status.journal`,
//! what a restarted agent resumes from). Each status write costs the API server the same
//! whatever it changes (it decodes, validates and tracks the managed fields of the whole
//! object), so they share one writer: every write sends the whole status, the progress
//! folded so far and the journal, in one merge patch of the status subresource.
//!
//! - The progress of the run is folded in as it happens ([`StatusWriter::fold`], called
//!   where the run sends it, before the engine's next step), so the journal's writes, which
//!   come before every run of Kubernetes steps, carry it; the reporter only writes what no
//!   journal write has carried yet ([`StatusWriter::write_if_unwritten`]).
//! - Writes go out one at a time (an async lock held across the request), each with the
//!   newest status when it is sent, so an older status never lands after a newer one.
//! - A journal write fails the journal's step (its caller decides); a progress write is
//!   best effort and only logged.

use std::time::Instant;

use failover_messages::crd::{Failover, FailoverStatus};
use kube::api::{Api, Patch};
use serde_json::json;

use crate::kube_ops::patch_params;
use crate::workflow::Progress;

use super::failover_status::apply_progress;

/// What the writer holds between writes.
#[derive(Debug)]
struct Held {
    /// The status as folded so far; its `journal` is the journal's last list.
    status: FailoverStatus,
    /// Bumped by every change.
    version: u64,
    /// The version the last successful write carried.
    written: u64,
    /// When the last write was sent.
    last_write: Option<Instant>,
}

/// The one writer of a `Failover`'s status in this cluster; see the module docs.
#[derive(Debug)]
pub struct StatusWriter {
    api: Api<Failover>,
    name: String,
    held: std::sync::Mutex<Held>,
    sending: tokio::sync::Mutex<()>,
}

impl StatusWriter {
    /// The writer of the status of `Failover` `name` (in `api`'s namespace), starting from
    /// `status` (nothing written yet).
    pub fn new(api: Api<Failover>, name: &str, status: FailoverStatus) -> Self {
        Self {
            api,
            name: name.to_owned(),
            held: std::sync::Mutex::new(Held {
                status,
                version: 1,
                written: 0,
                last_write: None,
            }),
            sending: tokio::sync::Mutex::new(()),
        }
    }

    /// The name of the `Failover`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `Failover` as the API server has it now.
    pub async fn read(&self) -> Result<Option<Failover>, kube::Error> {
        self.api.get_opt(&self.name).await
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Folds one progress event of the run into the status (written with the next write).
    pub fn fold(&self, progress: &Progress) {
        let mut held = self.held();
        apply_progress(&mut held.status, progress);
        held.version += 1;
    }

    /// When the last write was sent, if any.
    pub fn last_write(&self) -> Option<Instant> {
        self.held().last_write
    }

    /// Whether a change is not written yet.
    pub fn unwritten(&self) -> bool {
        let held = self.held();
        held.version > held.written
    }

    /// Sets the journal to `lines` and writes the whole status; answers the status the API
    /// server returned.
    pub async fn write_journal(
        &self,
        lines: Vec<String>,
    ) -> Result<Option<FailoverStatus>, kube::Error> {
        {
            let mut held = self.held();
            held.status.journal = lines;
            held.version += 1;
        }
        let _sending = self.sending.lock().await;
        self.send().await
    }

    /// Writes the whole status unless a write already carried every change (the journal's,
    /// or another one that went out while this one waited for its turn).
    pub async fn write_if_unwritten(&self) -> Result<(), kube::Error> {
        let _sending = self.sending.lock().await;
        if !self.unwritten() {
            return Ok(());
        }
        self.send().await.map(drop)
    }

    /// Sends the newest status (the caller holds `sending`).
    async fn send(&self) -> Result<Option<FailoverStatus>, kube::Error> {
        let (patch, version) = {
            let mut held = self.held();
            held.last_write = Some(Instant::now());
            (json!({ "status": &held.status }), held.version)
        };
        let written = self
            .api
            .patch_status(&self.name, &patch_params(), &Patch::Merge(&patch))
            .await?;
        let mut held = self.held();
        held.written = held.written.max(version);
        Ok(written.status)
    }
}
